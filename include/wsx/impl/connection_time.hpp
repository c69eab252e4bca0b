// wsx/impl/connection_time.hpp - time: timeouts, keepalive pings and the deadline to wake at.
// Part of wsx::connection's implementation; <wsx/connection.hpp> includes it.
#pragma once

#include <wsx/connection.hpp>

namespace wsx {

// ---- time ---------------------------------------------------------------------

inline void connection::tick(time_point now) {
    const bool first = !now_;
    now_ = now;
    if (first) {
        last_activity_ = now;
        if (state_ == state::connecting && options_->open_timeout.count() > 0)
            open_deadline_ = now + options_->open_timeout;
        if (state_ == state::closing && options_->close_timeout.count() > 0)
            close_deadline_ = now + options_->close_timeout;
    }
    switch (state_) {
    case state::connecting:
        if (open_deadline_ && now >= *open_deadline_) abandon(error::open_timeout);
        return;
    case state::open:
        if (ping_sent_) {
            // Any frame received since the ping shows the peer is alive.
            if (last_activity_ >= *ping_sent_) {
                ping_sent_.reset();
            } else if (options_->ping_timeout.count() > 0 && now >= *ping_sent_ + options_->ping_timeout) {
                // RFC 6455 §7.1.7 with 1011, as Python websockets does.
                queue_close(close_code::internal_error, "keepalive ping timeout");
                abandon(error::ping_timeout, close_code::internal_error);
                return;
            }
        }
        if (!ping_sent_ && options_->ping_interval.count() > 0 && now >= last_activity_ + options_->ping_interval) {
            random_fill(mutable_bytes(ping_payload_, sizeof ping_payload_));
            queue_frame(opcode::ping, const_bytes(ping_payload_, sizeof ping_payload_), true);
            ping_sent_ = now;
        }
        return;
    case state::closing:
        if (close_deadline_ && now >= *close_deadline_) abandon(error::close_timeout);
        return;
    case state::closed:
        // A client waiting for the server to close TCP stops waiting.
        if (close_deadline_ && now >= *close_deadline_) close_transport_ = true;
        return;
    }
}

inline std::optional<time_point> connection::next_deadline() const noexcept {
    if (!now_) return std::nullopt;
    switch (state_) {
    case state::connecting:
        return open_deadline_;
    case state::open:
        if (ping_sent_ && options_->ping_timeout.count() > 0) return *ping_sent_ + options_->ping_timeout;
        if (!ping_sent_ && options_->ping_interval.count() > 0) return last_activity_ + options_->ping_interval;
        return std::nullopt;
    case state::closing:
        return close_deadline_;
    case state::closed:
        return close_transport_ ? std::nullopt : close_deadline_;
    }
    return std::nullopt;
}

} // namespace wsx
