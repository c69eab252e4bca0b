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
#include <wsx/prepared_message.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
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

enum class broadcast_outcome : std::uint8_t { queued, skipped, closed, not_open };

// Queues the message on one connection; on its executor.
inline broadcast_outcome broadcast_one(websocket_backend& backend, const std::shared_ptr<prepared_message>& message,
                                       const broadcast_options& options) {
    wsx::connection* core = backend.core();
    if (core == nullptr || !backend.is_open() || core->get_role() != role::server) return broadcast_outcome::not_open;
    const std::size_t high_water_mark = options.high_water_mark > 0 ? options.high_water_mark : backend.high_water_mark();
    if (backend.queued_bytes() > high_water_mark) {
        if (options.on_overflow == overflow_policy::skip) return broadcast_outcome::skipped;
        backend.start_close(options.overflow_close_code, "too slow");
        return broadcast_outcome::closed;
    }
    // The core decides whether the shared frame suits this connection.
    const std::error_code ec = backend.try_write_shared(message, high_water_mark);
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
            count(result, broadcast_one(*backend, message, options));
        } else {
            ++result.posted;
            net::post(backend->executor(), [backend, message, options] { broadcast_one(*backend, message, options); });
        }
    }
    return result;
}

} // namespace detail

// Sends a text message to every websocket in `connections` (any range of
// wsx::websocket), without waiting for any of them.
template <class Range>
broadcast_result broadcast_text(const Range& connections, std::string_view text, const broadcast_options& options = {}) {
    return detail::broadcast_prepared(connections, std::make_shared<prepared_message>(true, const_bytes(text)),
                                      options);
}

template <class Range>
broadcast_result broadcast_binary(const Range& connections, const_bytes data, const broadcast_options& options = {}) {
    return detail::broadcast_prepared(connections, std::make_shared<prepared_message>(false, data), options);
}

template <class Range>
broadcast_result broadcast(const Range& connections, const message& m, const broadcast_options& options = {}) {
    return detail::broadcast_prepared(connections, std::make_shared<prepared_message>(m.text, m.bytes()),
                                      options);
}

} // namespace wsx
