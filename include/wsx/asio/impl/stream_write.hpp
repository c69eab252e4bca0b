// wsx/asio/impl/stream_write.hpp - async_stream: the writer: one per stream,
// writing straight from the connection's output queue; the write operations;
// the deadline driver.
// Part of wsx::async_stream's implementation; <wsx/asio/async_stream.hpp>
// includes it.
#pragma once

#include <wsx/asio/async_stream.hpp>

namespace wsx {

template <class NextLayer>
void async_stream<NextLayer>::impl::start_driver(std::shared_ptr<impl> self) {
    if (driver_running) return;
    driver_running = true;
    arm_driver(std::move(self));
}

// Ticks the connection at each deadline it names: open and close
// timeouts, keepalive pings and their pong timeout. A callback rather
// than a coroutine: an idle connection keeps only the timer's wait.
// rearm_driver() cancels the wait; the callback then arms it again.
template <class NextLayer>
void async_stream<NextLayer>::impl::arm_driver(std::shared_ptr<impl> self) {
    if (ended || !conn) {
        driver_running = false;
        return;
    }
    const std::optional<time_point> deadline = conn->next_deadline();
    deadline_timer.expires_at(deadline ? *deadline : net::steady_timer::time_point::max());
    deadline_timer.async_wait([self = std::move(self)](const net_error_code&) mutable {
        impl& me = *self;
        if (me.ended || !me.conn) {
            me.driver_running = false;
            return;
        }
        me.conn->tick(clock_type::now());
        me.start_writer(self);
        if (me.conn->transport_action() == transport_action::close) {
            me.driver_running = false;
            net::co_spawn(me.next.get_executor(), me.finish_transport(self), net::detached);
            return;
        }
        me.arm_driver(std::move(self));
    });
}

template <class NextLayer>
void async_stream<NextLayer>::impl::start_writer(const std::shared_ptr<impl>& self) {
    if (writing || failure || transport_closed || !conn || conn->pending_output_size() == 0) return;
    writing = true;
    hold_back_turns = 0;
    net::post(next.get_executor(), [self] { self->write_when_ready(self); });
}

// The one writer drains the connection's send queue: callbacks, not a
// coroutine, so that a write costs no coroutine frame or spawn.
// Whatever else runs now may queue frames too: they leave together,
// in one write. While the application holds a message it was just
// handed, or more were read and wait to be handed out (an echo
// answers each), it gets a bounded number of turns to queue those
// answers too; once it reads again, or has nothing to answer (a
// handshake, a feed that only writes), the write starts at once.
template <class NextLayer>
void async_stream<NextLayer>::impl::write_when_ready(const std::shared_ptr<impl>& self) {
    if (hold_back_turns < max_hold_back_turns && conn && !failure && !transport_closed && !read_pending &&
        (message_in_hand || conn->buffered_input() > 0)) {
        ++hold_back_turns;
        net::post(next.get_executor(), [self] { self->write_when_ready(self); });
        return;
    }
    write_next(self);
}

// A write of the writer's ended: on to what was queued meanwhile.
template <class NextLayer>
void async_stream<NextLayer>::impl::written(
    const std::shared_ptr<impl>& self, const net_error_code& ec, std::size_t n) {
    if (ec) {
        fail_transport(ec);
    } else {
        conn->consume_output(n);
        wake();
    }
    write_next(self);
}

template <class NextLayer>
void async_stream<NextLayer>::impl::write_next(const std::shared_ptr<impl>& self) {
    if (failure || transport_closed || !conn || conn->pending_output_size() == 0) {
        writing = false;
        wake();
        return;
    }
    // The queued bytes stay where they are until consumed, so the
    // connection may queue more (pongs, other writers' frames) while
    // this write is in flight: a gather write straight from the
    // queue, no copy.
    std::array<const_bytes, max_gather> pieces;
    const std::size_t count = conn->pending_output(pieces.data(), pieces.size());
    auto done = [self](const net_error_code& ec, std::size_t n) { self->written(self, ec, n); };
    // The operation holds its buffers: one piece (the usual case) or
    // two (a header and a borrowed payload) keep it small, and so
    // the memory the next operation recycles.
    if (count == 1) {
        net::async_write(next, net::buffer(pieces[0].data(), pieces[0].size()), write_all_at_once, done);
    } else if (count == 2) {
        const std::array<net::const_buffer, 2> buffers{net::buffer(pieces[0].data(), pieces[0].size()),
                                                       net::buffer(pieces[1].data(), pieces[1].size())};
        net::async_write(next, buffers, write_all_at_once, done);
    } else {
        std::array<net::const_buffer, max_gather> buffers;
        for (std::size_t i = 0; i < count; ++i) buffers[i] = net::buffer(pieces[i].data(), pieces[i].size());
        net::async_write(next, buffers, write_all_at_once, done);
    }
}

// Waits until everything queued was written (or writing failed).
template <class NextLayer>
net::awaitable<void> async_stream<NextLayer>::impl::flush(std::shared_ptr<impl> self) {
    while (!failure && !transport_closed && (writing || (conn && conn->pending_output_size() > 0))) {
        start_writer(self);
        co_await wait_for_change();
    }
}

template <class NextLayer>
void async_stream<NextLayer>::impl::fail_transport(const net_error_code& ec) {
    if (!failure) failure = ec;
    // The core keeps its own reason when it failed first (after a
    // keepalive timeout the transport is ended under a writer stuck
    // on a peer that does not read, and this error is only the echo).
    if (conn) conn->receive_transport_error(to_std_error(ec));
    end_transport_now();
}

// Lets queued frames leave (bounded by the close timeout), then ends
// the layer.
template <class NextLayer>
net::awaitable<void> async_stream<NextLayer>::impl::finish_transport(std::shared_ptr<impl> self) {
    if (closing_transport) {
        while (!transport_closed) co_await wait_for_change();
        co_return;
    }
    closing_transport = true;
    const duration close_timeout = active_options().close_timeout;
    const duration limit = close_timeout.count() > 0 ? close_timeout : duration(10000);
    if (writing || (conn && conn->pending_output_size() > 0)) {
        net::steady_timer guard(next.get_executor());
        guard.expires_after(limit);
        guard.async_wait([self](const net_error_code& ec) {
            if (!ec) detail::close_lowest_layer(self->next);
        });
        co_await flush(self);
        guard.cancel();
    }
    if (!transport_closed) co_await teardown_type::teardown(next, !read_pending, limit);
    transport_closed = true;
    ended = true;
    deadline_timer.cancel();
    wake();
}

template <class NextLayer>
net::awaitable<net_error_code> async_stream<NextLayer>::impl::write_op(
    std::shared_ptr<impl> self, bool text, const_bytes data) {
    // Backpressure: above the high water mark, wait for the queue to
    // drain below the low one.
    if (const net_error_code ec = co_await wait_for_room()) co_return ec;
    const std::error_code ec = text ? conn->send_text(as_string_view(data)) : conn->send_binary(data);
    if (ec) co_return to_net_error(ec);
    start_writer(self);
    co_return net_error_code{};
}

// Writes go through write_op, or through write_borrowed for a
// large message (decided before either starts: write_op's frame
// stays small, which keeps the heap of many connections compact).
template <class NextLayer>
net::awaitable<net_error_code> async_stream<NextLayer>::impl::write(
    std::shared_ptr<impl> self, bool text, const_bytes data) {
    if (data.size() >= connection::direct_payload_size) return write_borrowed(std::move(self), text, data);
    return write_op(std::move(self), text, data);
}

// Waits while the send queue is above its high water mark, until it
// is back under the low one (or no write can start).
template <class NextLayer>
net::awaitable<net_error_code> async_stream<NextLayer>::impl::wait_for_room() {
    for (;;) {
        if (const net_error_code ec = check_open()) co_return ec;
        if (queued() <= active_options().max_pending_output) co_return net_error_code{};
        while (queued() > low_water_mark && !check_open()) co_await wait_for_change();
    }
}

// A large message leaves from the caller's memory when the
// connection can send it as given (connection::send_borrowed): the
// queue references it, and the operation completes once it was
// written (the caller's bytes must stay until then).
template <class NextLayer>
net::awaitable<net_error_code> async_stream<NextLayer>::impl::write_borrowed(
    std::shared_ptr<impl> self, bool text, const_bytes data) {
    if (const net_error_code ec = co_await wait_for_room()) co_return ec;
    bool borrowed = false;
    if (const std::error_code ec = conn->send_borrowed(text, data, borrowed)) co_return to_net_error(ec);
    start_writer(self);
    if (!borrowed) co_return net_error_code{};
    const std::uint64_t end = conn->output_queued();
    for (;;) {
        if (failure || transport_closed) {
            // A write may still be reading the caller's bytes.
            while (writing) co_await wait_for_change();
            co_return failure ? failure : to_net_error(error::connection_closed);
        }
        if (conn->output_written() >= end) co_return net_error_code{};
        co_await wait_for_change();
    }
}

template <class NextLayer>
std::error_code async_stream<NextLayer>::impl::try_write(bool text, const_bytes data) {
    if (const net_error_code ec = check_open()) return to_std_error(ec);
    if (queued() > active_options().max_pending_output) return error::would_block;
    const std::error_code ec = text ? conn->send_text(as_string_view(data)) : conn->send_binary(data);
    if (!ec) start_writer(this->shared_from_this());
    return ec;
}

// A message framed once for many connections (a broadcast): its
// frame referenced, unless the queue is above `high_water_mark`.
template <class NextLayer>
std::error_code async_stream<NextLayer>::impl::try_write_shared(
    const std::shared_ptr<prepared_message>& m, std::size_t high_water_mark) {
    if (const net_error_code ec = check_open()) return to_std_error(ec);
    if (queued() > high_water_mark) return error::would_block;
    const std::error_code ec = conn->send_shared(m);
    if (!ec) start_writer(this->shared_from_this());
    return ec;
}

template <class NextLayer>
net::awaitable<net_error_code> async_stream<NextLayer>::impl::ping_op(
    std::shared_ptr<impl> self, std::vector<std::uint8_t> payload) {
    if (const net_error_code ec = check_open()) co_return ec;
    if (const std::error_code ec = conn->send_ping(payload)) co_return to_net_error(ec);
    start_writer(self);
    co_return net_error_code{};
}

} // namespace wsx
