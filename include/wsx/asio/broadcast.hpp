// wsx/asio/broadcast.hpp - one message to many connections, framed once.
//
//   std::set<wsx::websocket> room;                 // filled by handlers
//   wsx::broadcast_result r = wsx::broadcast_text(room, "hello, all");
//
// Server frames are not masked, so the same bytes serve every connection:
// the frame is made once (and compressed once for the connections whose
// permessage-deflate starts every message afresh - server_no_context_takeover
// - with the same window; the others compress it with their own context).
// broadcast() queues it on each connection and returns at once: it never
// waits for a slow reader. A connection whose send queue is above the high
// water mark is skipped (and counted) or, by policy, closed with 1013 (or
// the code chosen, e.g. 1008): a slow reader never makes a queue grow
// without bound.
//
// Threads: a connection that lives on the calling thread (its strand, or
// the only thread of its io_context) gets the message at once; one on
// another thread gets it through its executor, soon after (counted in
// `posted`, its own outcome is not reported).
#pragma once

#include <wsx/asio/config.hpp>
#include <wsx/asio/websocket.hpp>
#include <wsx/bytes.hpp>
#include <wsx/close_code.hpp>
#include <wsx/connection.hpp>
#include <wsx/deflate.hpp>
#include <wsx/frame.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace wsx {

enum class overflow_policy : std::uint8_t {
    skip,  // leave that connection out of this message
    close, // close it (overflow_close_code)
};

struct broadcast_options {
    overflow_policy on_overflow = overflow_policy::skip;
    close_code overflow_close_code = close_code::try_again_later; // 1013; 1008 (policy_violation) is the other usual one
    // Queued bytes above which a connection counts as slow; 0: each
    // connection's own max_pending_output.
    std::size_t high_water_mark = 0;
};

struct broadcast_result {
    std::size_t queued = 0;   // the message is in their send queue
    std::size_t skipped = 0;  // slow: left out
    std::size_t closed = 0;   // slow: closed (overflow_policy::close)
    std::size_t not_open = 0; // closing or closed already
    std::size_t posted = 0;   // on another thread: handed to its executor
};

namespace detail {

// The frames of one message, shared by the connections (and threads) it
// goes to: the plain frame made at once, compressed ones on first use.
class prepared_message {
public:
    prepared_message(bool text, const_bytes payload) : text_(text) {
        header_size_ = frame(payload, false, plain_);
    }

    bool text() const noexcept { return text_; }
    // The payload is kept once, inside the plain frame.
    const_bytes payload() const noexcept {
        return const_bytes(plain_.data() + header_size_, plain_.size() - header_size_);
    }
    const_bytes plain_frame() const noexcept { return plain_; }

    // The frame compressed for connections that agreed on `params` without
    // context takeover for our side; empty when it cannot be shared (or the
    // message is under the threshold: then the plain frame serves).
    const_bytes compressed_frame(const deflate_params& params, const deflate_options& options) {
        if (!params.our_no_context_takeover) return {};
        if (payload().size() < options.compress_threshold) return plain_frame();
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& entry : compressed_) {
            if (entry->window_bits == params.our_max_window_bits && entry->level == options.compression_level &&
                entry->memory_level == options.memory_level)
                return entry->frame;
        }
        deflater compressor(params, options);
        std::vector<std::uint8_t> compressed;
        if (compressor.compress(payload(), true, compressed)) return {};
        auto entry = std::make_unique<compressed_entry>();
        entry->window_bits = params.our_max_window_bits;
        entry->level = options.compression_level;
        entry->memory_level = options.memory_level;
        frame(compressed, true, entry->frame);
        compressed_.push_back(std::move(entry));
        return compressed_.back()->frame; // stays where it is: entries are never moved
    }

private:
    struct compressed_entry {
        std::uint8_t window_bits = 0;
        int level = 0;
        int memory_level = 0;
        std::vector<std::uint8_t> frame;
    };

    // RFC 6455 §5.1: a server MUST NOT mask its frames, so one frame fits all.
    // Writes one whole unmasked frame into `out`; returns its header's size.
    std::size_t frame(const_bytes payload, bool compressed, std::vector<std::uint8_t>& out) const {
        frame_header h;
        h.fin = true;
        h.op = text_ ? opcode::text : opcode::binary;
        // RFC 7692 §6.1: RSV1 marks a compressed message.
        h.rsv = compressed ? rsv1_bit : 0;
        h.masked = false;
        h.payload_length = payload.size();
        const std::size_t header_size = frame_header_size(h.payload_length, false);
        out.resize(header_size + payload.size());
        write_frame_header(h, mutable_bytes(out.data(), header_size));
        std::copy(payload.begin(), payload.end(), out.begin() + static_cast<std::ptrdiff_t>(header_size));
        return header_size;
    }

    bool text_;
    std::size_t header_size_ = 0;
    std::vector<std::uint8_t> plain_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<compressed_entry>> compressed_;
};

enum class broadcast_outcome : std::uint8_t { queued, skipped, closed, not_open };

// Queues the message on one connection; on its executor.
inline broadcast_outcome broadcast_one(websocket_backend& backend, prepared_message& message,
                                       const broadcast_options& options) {
    wsx::connection* core = backend.core();
    if (core == nullptr || !backend.is_open() || core->get_role() != role::server) return broadcast_outcome::not_open;
    const std::size_t high_water_mark = options.high_water_mark > 0 ? options.high_water_mark : backend.high_water_mark();
    if (backend.queued_bytes() > high_water_mark) {
        if (options.on_overflow == overflow_policy::skip) return broadcast_outcome::skipped;
        backend.start_close(options.overflow_close_code, "too slow");
        return broadcast_outcome::closed;
    }
    std::error_code ec;
    if (core->deflate_enabled()) {
        const_bytes shared = core->deflate_parameters() && core->options().deflate
                                 ? message.compressed_frame(*core->deflate_parameters(), *core->options().deflate)
                                 : const_bytes();
        if (!shared.empty()) {
            ec = backend.try_write_prepared(shared, high_water_mark);
        } else {
            // Context takeover: this connection's compressor has a history.
            ec = backend.try_write(message.text(), message.payload());
        }
    } else {
        ec = backend.try_write_prepared(message.plain_frame(), high_water_mark);
    }
    if (ec == error::would_block) return broadcast_outcome::skipped;
    return ec ? broadcast_outcome::not_open : broadcast_outcome::queued;
}

inline void count(broadcast_result& result, broadcast_outcome outcome) noexcept {
    switch (outcome) {
    case broadcast_outcome::queued: ++result.queued; break;
    case broadcast_outcome::skipped: ++result.skipped; break;
    case broadcast_outcome::closed: ++result.closed; break;
    case broadcast_outcome::not_open: ++result.not_open; break;
    }
}

template <class Range>
broadcast_result broadcast_prepared(const Range& connections, std::shared_ptr<prepared_message> message,
                                    const broadcast_options& options) {
    broadcast_result result;
    for (const websocket& ws : connections) {
        if (!ws) continue;
        const std::shared_ptr<websocket_backend>& backend = ws.backend();
        if (backend->running_in_this_thread()) {
            count(result, broadcast_one(*backend, *message, options));
        } else {
            ++result.posted;
            net::post(backend->executor(), [backend, message, options] { broadcast_one(*backend, *message, options); });
        }
    }
    return result;
}

} // namespace detail

// Sends a text message to every websocket in `connections` (any range of
// wsx::websocket), without waiting for any of them.
template <class Range>
broadcast_result broadcast_text(const Range& connections, std::string_view text, const broadcast_options& options = {}) {
    return detail::broadcast_prepared(connections, std::make_shared<detail::prepared_message>(true, const_bytes(text)),
                                      options);
}

template <class Range>
broadcast_result broadcast_binary(const Range& connections, const_bytes data, const broadcast_options& options = {}) {
    return detail::broadcast_prepared(connections, std::make_shared<detail::prepared_message>(false, data), options);
}

template <class Range>
broadcast_result broadcast(const Range& connections, const message& m, const broadcast_options& options = {}) {
    return detail::broadcast_prepared(connections, std::make_shared<detail::prepared_message>(m.text, m.bytes()),
                                      options);
}

} // namespace wsx
