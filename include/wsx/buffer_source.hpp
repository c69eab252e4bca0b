// wsx/buffer_source.hpp - where an idle connection's buffers go.
//
// A connection that has nothing unread, no message half received and
// nothing waiting to be written needs no buffer. Given a buffer_source
// (connection_options::buffers), it hands its buffers to the source as soon
// as it is idle and takes what it lacks back from it when bytes arrive or
// it has something to send: 10,000 idle connections then hold no buffer
// between them, and a busy thread reuses the same few (the Asio adapter's
// per-thread pool, wsx/asio/buffer_pool.hpp). Without one, a connection
// keeps its own buffers for its whole life.
#pragma once

#include <wsx/output_queue.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace wsx {

// A connection's buffers, by kind: capacity, never contents.
struct connection_buffers {
    std::vector<std::uint8_t> input;   // bytes read, not yet turned into events
    std::string message;               // a message being put together
    output_queue::storage output;      // bytes waiting to be written
    std::vector<std::uint8_t> scratch; // compressed payloads

    // No memory in any of them.
    bool empty() const noexcept {
        return input.capacity() == 0 && message.capacity() <= std::string().capacity() &&
               output.bytes.capacity() == 0 && output.segments.capacity() == 0 && output.blocks.capacity() == 0 &&
               scratch.capacity() == 0;
    }
};

class buffer_source {
public:
    // Fills each buffer of `wanted` (all empty when called) with one the
    // source keeps, where it has one; the others stay empty.
    virtual void lend(connection_buffers& wanted) = 0;
    // Takes every buffer of `returned`: keeps it for a later lend or frees
    // it. They are all empty afterwards.
    virtual void give_back(connection_buffers& returned) = 0;

protected:
    ~buffer_source() = default;
};

} // namespace wsx
