// wsx/connection_options.hpp - a connection's limits, timers and
// extensions, and the clock it counts time with.
#pragma once

#include <wsx/buffer_source.hpp>
#include <wsx/deflate.hpp>
#include <wsx/handshake.hpp>
#include <wsx/http.hpp>
#include <wsx/random.hpp>

#include <chrono>
#include <cstddef>
#include <optional>

namespace wsx {

using clock_type = std::chrono::steady_clock;
using time_point = clock_type::time_point;
using duration = std::chrono::milliseconds;

// Every limit has a name and a default (see the README's limits table). A
// duration of zero turns that timer off.
struct connection_options {
    std::size_t max_message_size = 1024 * 1024;   // after inflation; close 1009
    std::size_t max_frame_size = 1024 * 1024;     // one frame's payload; close 1009
    std::size_t max_fragments = 100000;           // frames per message; close 1009
    std::size_t max_pending_output = 1024 * 1024; // above it, send_* answers would_block
    std::size_t fragment_size = 0;                // split outgoing messages above this (0: never)
    bool streaming = false;                       // deliver message_chunk events, frame by frame
    duration open_timeout{10000};
    duration close_timeout{10000};
    duration ping_interval{20000};
    duration ping_timeout{20000};
    http_limits http;                            // handshake head size and header count
    origin_policy origins;                       // server: which Origin headers are let in
    std::optional<deflate_options> deflate;      // permessage-deflate offered/accepted when set
    random_source random;                        // mask keys, Sec-WebSocket-Key; CSPRNG when empty
    buffer_source* buffers = nullptr;            // takes an idle connection's buffers (wsx/buffer_source.hpp)
};

} // namespace wsx
