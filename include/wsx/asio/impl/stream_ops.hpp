// wsx/asio/impl/stream_ops.hpp - async_stream: the operations with a
// beginning and an end: accept, handshake, close, abort.
// Part of wsx::async_stream's implementation; <wsx/asio/async_stream.hpp>
// includes it.
#pragma once

#include <wsx/asio/async_stream.hpp>

namespace wsx {

// The object that owned us is gone (or replaced): stop everything.
template <class NextLayer>
void async_stream<NextLayer>::impl::abort() {
    if (!failure) failure = net::error::operation_aborted;
    end_transport_now();
}

template <class NextLayer>
void async_stream<NextLayer>::impl::start(role r, std::shared_ptr<const connection_options> settings) {
    conn.reset();
    conn.emplace(r, std::move(settings));
    failure = {};
    ended = closing_transport = transport_closed = close_pending = false;
    conn->tick(clock_type::now());
}

template <class NextLayer>
net::awaitable<net_error_code> async_stream<NextLayer>::impl::accept_op(std::shared_ptr<impl> self) {
    start(role::server, take_options());
    start_driver(self);
    bool first_read = true;
    for (;;) {
        const event ev = poll_event(self);
        if (ev.type == event_type::request) {
            accept_options answer;
            std::optional<http_reply> refusal;
            if (hooks && hooks->upgrade) refusal = hooks->upgrade(conn->request(), answer);
            // An answer that cannot be sent makes the core answer 500.
            if (refusal) conn->reject(refusal->status, refusal->body, refusal->headers);
            else conn->accept(std::move(answer));
            rearm_driver();
            co_await flush(self);
            if (failure) co_return failure;
            if (conn->get_state() == state::open) {
                co_return net_error_code{};
            }
            continue; // refused: the close event follows
        }
        if (ev.type == event_type::http_request) {
            // Not an upgrade: the HTTP handler's reply, else the
            // core's refusal (426 for a plain GET).
            if (hooks && hooks->http) {
                const http_reply reply = hooks->http(conn->request());
                conn->reject(reply.status, reply.body, reply.headers);
            } else {
                conn->refuse();
            }
            continue;
        }
        if (ev.type == event_type::close) {
            const std::error_code result = ev.ec;
            co_await finish_transport(self);
            if (failure) co_return failure;
            co_return to_net_error(result ? result : make_error_code(error::connection_closed));
        }
        if (ev) continue;
        const net_error_code ec = first_read ? co_await read_request_start() : co_await read_more();
        first_read = false;
        if (ec) {
            fail_transport(ec);
            const event closed = poll_event(self, false);
            if (closed.type == event_type::close && closed.ec != to_std_error(ec)) co_return to_net_error(closed.ec);
            co_return ec;
        }
    }
}

template <class NextLayer>
net::awaitable<net_error_code> async_stream<NextLayer>::impl::handshake_op(
    std::shared_ptr<impl> self, client_request_options request, bool valid) {
    if (!valid) co_return to_net_error(std::make_error_code(std::errc::invalid_argument));
    start(role::client, take_options());
    if (const std::error_code started = conn->start_handshake(std::move(request))) {
        conn.reset();
        co_return to_net_error(started);
    }
    start_driver(self);
    for (;;) {
        const event ev = poll_event(self);
        if (ev.type == event_type::response && conn->get_state() == state::open) {
            co_await flush(self);
            co_return failure;
        }
        if (ev.type == event_type::close) {
            const std::error_code result = ev.ec;
            co_await finish_transport(self);
            co_return to_net_error(result ? result : make_error_code(error::handshake_rejected));
        }
        if (ev) continue;
        const net_error_code ec = co_await read_more();
        if (ec) co_return co_await after_read_error(self, ec);
    }
}

template <class NextLayer>
net::awaitable<net_error_code> async_stream<NextLayer>::impl::close_op(
    std::shared_ptr<impl> self, close_code code, std::string reason) {
    if (failure) co_return failure;
    if (!conn || ended) co_return to_net_error(error::connection_closed);
    // The close timeout counts from now, not from the last tick.
    conn->tick(clock_type::now());
    conn->close(code, reason);
    deadline_timer.cancel(); // the close timeout starts now
    start_writer(self);
    if (reading) {
        while (!ended) co_await wait_for_change();
    } else {
        // Reads (dropping messages) until the peer's close.
        reading = true;
        co_await read_awaitable(self, nullptr, false);
        end_message_read();
    }
    const close_status& status = conn->status();
    if (failure && !status.ec) co_return failure;
    if (status.ec && status.ec != error::connection_closed) co_return to_net_error(status.ec);
    co_return net_error_code{};
}

} // namespace wsx
