// wsx/asio/buffer_pool.hpp - buffers shared by the connections of a thread.
//
// An idle connection needs no buffer (connection::idle()). The pool is the
// buffer_source (wsx/buffer_source.hpp) of the Asio adapter's connections:
// each gives it its buffers the moment it goes idle and takes some again
// when bytes arrive or a message is sent, so 10,000 idle connections hold
// no message buffer between them, while a busy thread reuses the same few
// buffers and allocates nothing in steady state.
//
// One pool per thread (thread_buffer_pool()): no lock. A buffer may be lent
// on one thread and given back on another; it then simply changes pools.
#pragma once

#include <wsx/buffer_source.hpp>
#include <wsx/output_queue.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace wsx::detail {

class buffer_pool final : public buffer_source {
public:
    // At most this many buffers of each kind are kept, holding at most
    // max_kept_bytes in all: a stream of large messages reuses its buffers
    // (allocating and zero-filling a megabyte per message costs more than
    // the message's copies), and a burst of them pins no more than that.
    static constexpr std::size_t max_kept = 64;
    static constexpr std::size_t max_kept_bytes = 16 * 1024 * 1024;

    buffer_pool() {
        inputs_.reserve(max_kept);
        messages_.reserve(max_kept);
        outputs_.reserve(max_kept);
        scratches_.reserve(max_kept);
    }

    // buffer_source: a buffer of each kind the pool has; everything given
    // back is kept, up to the limits, or freed.
    void lend(connection_buffers& wanted) override {
        take(inputs_, wanted.input);
        take(messages_, wanted.message);
        take(outputs_, wanted.output);
        take(scratches_, wanted.scratch);
    }
    void give_back(connection_buffers& returned) override {
        put(inputs_, returned.input);
        put(messages_, returned.message);
        put(outputs_, returned.output);
        put(scratches_, returned.scratch);
    }

    std::size_t kept() const noexcept {
        return inputs_.size() + messages_.size() + outputs_.size() + scratches_.size();
    }
    std::size_t kept_bytes() const noexcept { return kept_bytes_; }

private:
    static std::size_t bytes_of(const std::vector<std::uint8_t>& v) noexcept { return v.capacity(); }
    static std::size_t bytes_of(const std::string& v) noexcept {
        // A string's own small buffer is not worth keeping.
        return v.capacity() > std::string().capacity() ? v.capacity() : 0;
    }
    static std::size_t bytes_of(const output_queue::storage& v) noexcept {
        return v.bytes.capacity() + v.segments.capacity() * sizeof(output_queue::segment) +
               v.blocks.capacity() * sizeof(output_queue::block);
    }

    template <class Buffer>
    void take(std::vector<Buffer>& from, Buffer& into) noexcept {
        if (from.empty()) return;
        into = std::move(from.back());
        from.pop_back();
        kept_bytes_ -= bytes_of(into);
    }
    template <class Buffer>
    void put(std::vector<Buffer>& into, Buffer& v) {
        const std::size_t bytes = bytes_of(v);
        if (bytes == 0) return;
        if (into.size() < max_kept && bytes <= max_kept_bytes - kept_bytes_) {
            kept_bytes_ += bytes;
            into.push_back(std::move(v));
        }
        v = Buffer(); // freed unless kept
    }

    std::size_t kept_bytes_ = 0;

    std::vector<std::vector<std::uint8_t>> inputs_;
    std::vector<std::string> messages_;
    std::vector<output_queue::storage> outputs_;
    std::vector<std::vector<std::uint8_t>> scratches_;
};

inline buffer_pool& thread_buffer_pool() {
    thread_local buffer_pool pool;
    return pool;
}

// The source the Asio adapter gives its connections: the pool of whichever
// thread the connection runs on at the time.
class thread_buffer_source final : public buffer_source {
public:
    void lend(connection_buffers& wanted) override { thread_buffer_pool().lend(wanted); }
    void give_back(connection_buffers& returned) override { thread_buffer_pool().give_back(returned); }
};

inline buffer_source* thread_buffers() noexcept {
    static thread_buffer_source source;
    return &source;
}

} // namespace wsx::detail
