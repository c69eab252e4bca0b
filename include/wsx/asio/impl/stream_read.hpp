// wsx/asio/impl/stream_read.hpp - async_stream: reading: bytes into the
// connection, events out, and the end of the stream.
// Part of wsx::async_stream's implementation; <wsx/asio/async_stream.hpp>
// includes it.
#pragma once

#include <wsx/asio/async_stream.hpp>

namespace wsx {

// The connection's next event; what it queued is handed to the writer.
template <class NextLayer>
event async_stream<NextLayer>::impl::poll_event(const std::shared_ptr<impl>& self, bool write) {
    conn->tick(clock_type::now());
    event ev = conn->next_event();
    if (write) start_writer(self);
    rearm_driver();
    return ev;
}

// Wakes the driver when the connection's next deadline moved
// earlier than the one it sleeps until (the connection opened, a
// pong arrived, a close started).
template <class NextLayer>
void async_stream<NextLayer>::impl::rearm_driver() {
    const std::optional<time_point> deadline = conn->next_deadline();
    if (deadline && *deadline < deadline_timer.expiry()) deadline_timer.cancel();
}

// The first read of a server: the request has usually arrived by the
// time the connection is accepted, so it is read at once rather than
// after a wait for readability (one trip through the reactor less).
// Into a small buffer of this frame, not a lent one: a peer that
// connects and sends nothing holds no connection buffer.
template <class NextLayer>
net::awaitable<net_error_code> async_stream<NextLayer>::impl::read_request_start() {
    std::uint8_t start_bytes[1024];
    net_error_code ec;
    read_pending = true;
    const std::size_t n = co_await next.async_read_some(net::buffer(start_bytes, sizeof start_bytes),
                                                        net::redirect_error(net::use_awaitable, ec));
    read_pending = false;
    conn->receive(const_bytes(start_bytes, n));
    co_return take_end_of_stream(ec);
}

// Reads from the layer straight into the connection's buffer.
template <class NextLayer>
net::awaitable<net_error_code> async_stream<NextLayer>::impl::read_more() {
    net_error_code ec;
    if constexpr (detail::is_plain_socket<next_layer_type>::value) {
        if (wait_before_read()) {
            co_await next.async_wait(net::socket_base::wait_read, net::redirect_error(net::use_awaitable, ec));
            read_pending = false;
            if (ec) co_return ec;
        }
    }
    const mutable_bytes area = begin_read();
    const std::size_t n = co_await next.async_read_some(net::buffer(area.data(), area.size()),
                                                        net::redirect_error(net::use_awaitable, ec));
    co_return end_read(n, ec);
}

// A read in three steps (read_loop inlines them to keep idle
// connections one coroutine frame lighter). First: with nothing half
// read on a plain socket, wait for bytes holding no buffer (the
// writer gives the rest back once it is done).
template <class NextLayer>
bool async_stream<NextLayer>::impl::wait_before_read() {
    if (!conn->input_idle()) return false;
    read_pending = true;
    return true;
}

template <class NextLayer>
mutable_bytes async_stream<NextLayer>::impl::begin_read() {
    read_pending = true;
    return conn->prepare(conn->read_size_hint());
}

template <class NextLayer>
net_error_code async_stream<NextLayer>::impl::end_read(std::size_t n, net_error_code ec) {
    read_pending = false;
    conn->commit(n);
    return take_end_of_stream(ec);
}

// The layer's end of stream is the peer's EOF for the connection,
// not an error.
template <class NextLayer>
net_error_code async_stream<NextLayer>::impl::take_end_of_stream(net_error_code ec) {
    if (!ec || !teardown_type::is_end_of_stream(ec)) return ec;
    conn->receive_eof();
    return {};
}

// After a failed read: true when the connection ended the transport
// itself (a timeout) and has its close event (taken: finish_close()
// next); else the layer's failure ends the stream.
template <class NextLayer>
bool async_stream<NextLayer>::impl::closed_after_read_error(
    const std::shared_ptr<impl>& self, const net_error_code& ec) {
    const event ev = poll_event(self);
    if (ev.type == event_type::close) {
        close_pending = true; // the read that ends the transport: finish_close()
        return true;
    }
    fail_transport(ec);
    return false;
}

template <class NextLayer>
net::awaitable<net_error_code> async_stream<NextLayer>::impl::after_read_error(
    std::shared_ptr<impl> self, net_error_code ec) {
    if (closed_after_read_error(self, ec)) co_return co_await finish_close(self);
    co_return ec;
}

// After the close event: let the server end TCP first where it
// should, then end the layer (after the close reply, which the
// writer is already sending, has left).
template <class NextLayer>
net::awaitable<net_error_code> async_stream<NextLayer>::impl::finish_close(std::shared_ptr<impl> self) {
    close_pending = false;
    const std::error_code ended_with = conn->status().ec;
    const std::error_code result = ended_with ? ended_with : make_error_code(error::connection_closed);
    deadline_timer.cancel(); // the close deadline may have changed
    // RFC 6455 §7.1.1: "the underlying TCP connection, in most normal
    // cases, SHOULD be closed first by the server"; the client, done
    // writing, shuts down its sending side once its close frame has
    // left and reads until the server does (the driver ends the wait
    // at the close timeout).
    if (conn->transport_action() == transport_action::shutdown_write) {
        co_await flush(self);
        if constexpr (detail::is_plain_socket<next_layer_type>::value) {
            net_error_code ignored;
            if (!failure && !transport_closed) next.shutdown(net::socket_base::shutdown_send, ignored);
        }
    }
    std::uint8_t discard[4096];
    while (!failure && !transport_closed && conn->transport_action() != transport_action::close) {
        net_error_code ec;
        read_pending = true;
        const std::size_t n = co_await next.async_read_some(net::buffer(discard, sizeof discard),
                                                            net::redirect_error(net::use_awaitable, ec));
        read_pending = false;
        if (ec || n == 0) break;
    }
    co_await finish_transport(self);
    co_return to_net_error(result);
}

// Before a read of messages: the error when none can start, else
// the stream is marked as reading (one read at a time).
template <class NextLayer>
net_error_code async_stream<NextLayer>::impl::begin_message_read() {
    if (failure) return failure;
    const bool over = !conn || ended || conn->get_state() == state::connecting || conn->get_state() == state::closed;
    if (over && !close_pending) return to_net_error(error::connection_closed);
    if (reading) return to_net_error(std::make_error_code(std::errc::operation_in_progress));
    reading = true;
    message_in_hand = false;
    return {};
}

template <class NextLayer>
void async_stream<NextLayer>::impl::end_message_read() {
    reading = false;
    wake();
}

// Hands out what the connection already has: the next message into
// *out (without `out` messages are dropped: a close waiting for the
// peer's answer), pings and pongs to the control callback, and the
// close event, which is recorded (close_pending) for the read that
// ends the transport.
template <class NextLayer>
auto async_stream<NextLayer>::impl::poll_read(const std::shared_ptr<impl>& self, message* out) -> read_result {
    if (close_pending) return read_result::close;
    for (;;) {
        const event ev = poll_event(self);
        switch (ev.type) {
        case event_type::message:
            if (out == nullptr) continue;
            out->text = ev.text;
            conn->take_message(ev, out->data);
            message_in_hand = true;
            return read_result::message;
        case event_type::ping:
        case event_type::pong:
            if (hooks && hooks->control) hooks->control(ev.type, ev.data);
            continue;
        case event_type::close:
            close_pending = true; // the read that ends the transport: finish_close()
            return read_result::close;
        case event_type::none:
            return read_result::none;
        default:
            continue;
        }
    }
}

template <class NextLayer>
bool async_stream<NextLayer>::impl::try_read(const std::shared_ptr<impl>& self, message& out, net_error_code& result) {
    result = begin_message_read();
    if (result) return true;
    const bool got = poll_read(self, &out) == read_result::message;
    end_message_read();
    return got;
}

} // namespace wsx
