// wsx/asio/async_stream.hpp - a WebSocket over any Asio async stream.
//
// wsx::async_stream<NextLayer> puts the sans-I/O wsx::connection on an Asio
// AsyncReadStream + AsyncWriteStream: a tcp::socket, an ssl::stream<tcp::socket>
// (include <wsx/asio/ssl.hpp> too), or a reference to one. Every operation
// takes an Asio completion token, so coroutines, callbacks and futures work:
//
//   wsx::async_stream<tcp::socket> ws(std::move(socket));
//   co_await ws.async_accept(net::use_awaitable);      // server
//   // or co_await ws.async_handshake("example.com", "/chat", net::use_awaitable);
//   wsx::message m;
//   co_await ws.async_read(m, net::use_awaitable);     // a whole message
//   co_await ws.async_write_text(m.view(), net::use_awaitable);
//   co_await ws.async_close(wsx::close_code::normal, net::use_awaitable);
//
// Completion signature: void(wsx::net_error_code). A read that meets the
// peer's close frame completes the closing handshake, ends the transport and
// reports wsx::error::connection_closed (or the error that failed the
// connection); get_close_status() then tells what the peer said.
//
// Threads: like any Asio I/O object, one async_stream is used from one
// executor at a time - its NextLayer's (make the socket with a strand when
// several threads run the io_context). Every initiating function may be
// called from anywhere; its work runs on that executor. try_write_* and the
// accessors are synchronous and must be called on it.
//
// Reading: one read (async_read or async_close's wait) at a time. Writing:
// any number of writers at once. A write puts its frame into the
// connection's send queue and completes; one internal writer drains the
// queue, so frames queued together leave in one write. A server's large
// message (64 KiB or more, sent uncompressed) is not copied into the queue:
// it is written from the caller's memory after what was queued before it,
// and its write completes once it is written. The queue has a high
// water mark (connection_options::max_pending_output, 1 MiB) and a low water
// mark (256 KiB): above the high one, async_write_* waits until the queue is
// back under the low one, and try_write_* answers wsx::error::would_block.
// Write errors end the connection and are reported by the next operation.
//
// Time: one steady_timer per connection follows connection::next_deadline(),
// so the open timeout, the close timeout and keepalive pings (with their pong
// timeout) act even while nobody reads or writes.
//
// Server: async_accept reads the upgrade request. An upgrade handler (if
// set) inspects it and accepts - filling accept_options (subprotocol, extra
// headers) - or refuses with an HTTP reply. A request that does not ask for
// a WebSocket at all (no "Upgrade: websocket", e.g. a browser's GET /) is
// answered by the HTTP handler if one is set - the way to serve a page or a
// health check - and async_accept then fails with handshake_rejected. Bad
// upgrades get the core's HTTP errors (400, 426 + Sec-WebSocket-Version...).
//
// The object may be destroyed while operations are pending: the transport is
// closed, and they complete with an error.
#pragma once

#include <wsx/asio/buffer_pool.hpp>
#include <wsx/asio/config.hpp>
#include <wsx/bytes.hpp>
#include <wsx/close_code.hpp>
#include <wsx/connection.hpp>
#include <wsx/error.hpp>
#include <wsx/handshake.hpp>
#include <wsx/message.hpp>
#include <wsx/uri.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace wsx {

// Server: decides an upgrade request. Return std::nullopt to accept (after
// filling `answer` if needed), or the reply that refuses it.
using upgrade_handler = std::function<std::optional<http_reply>(const server_request& request, accept_options& answer)>;

// Server: answers a plain HTTP request (one that does not ask for a
// WebSocket). request.http has the method, target and headers.
using http_handler = std::function<http_reply(const server_request& request)>;

// How a NextLayer ends. Specialise for layers with their own way of ending
// (wsx/asio/ssl.hpp does for ssl::stream). `graceful` is false when a read
// may still be pending on the layer.
template <class NextLayer, class = void>
struct async_teardown;

namespace detail {

template <class Layer>
class stream_backend; // wsx/asio/websocket.hpp

template <class Layer, class = void>
struct has_lowest_layer : std::false_type {};
template <class Layer>
struct has_lowest_layer<Layer, std::void_t<decltype(std::declval<Layer&>().lowest_layer())>> : std::true_type {};

template <class Layer, class = void>
struct has_net_close : std::false_type {};
template <class Layer>
struct has_net_close<Layer, std::void_t<decltype(std::declval<Layer&>().close(std::declval<net_error_code&>()))>>
    : std::true_type {};

// A plain socket can wait for readability without a buffer; layers with
// their own buffering (TLS) cannot, since bytes may already wait inside them.
template <class Layer>
struct is_plain_socket : std::false_type {};
template <class Protocol, class Executor>
struct is_plain_socket<net::basic_stream_socket<Protocol, Executor>> : std::true_type {};

// Closes the socket under any layer: pending operations end with an error.
template <class Layer>
void close_lowest_layer(Layer& layer) noexcept {
    net_error_code ignored;
    if constexpr (has_lowest_layer<Layer>::value) {
        auto& socket = layer.lowest_layer();
        if (!socket.is_open()) return;
        // close() alone sends the FIN (a shutdown() first would only cost a
        // system call) and ends the pending operations.
        socket.close(ignored);
    } else if constexpr (has_net_close<Layer>::value) {
        layer.close(ignored);
    }
}

// Runs `action` once at a deadline unless disarmed first. The shared state
// keeps a late timer completion harmless after the guard and what the action
// touches are gone: the guard disarms itself when destroyed, so declare it
// after the objects its action uses.
class deadline_guard {
public:
    template <class Executor>
    deadline_guard(const Executor& executor, duration after, std::function<void()> action)
        : state_(std::make_shared<shared_state>(executor, std::move(action))) {
        state_->timer.expires_after(after);
        state_->timer.async_wait([state = state_](const net_error_code& ec) {
            if (ec || !state->armed) return;
            state->armed = false;
            state->fired = true;
            state->action();
        });
    }
    deadline_guard(const deadline_guard&) = delete;
    deadline_guard& operator=(const deadline_guard&) = delete;
    ~deadline_guard() { disarm(); }

    void disarm() noexcept {
        state_->armed = false;
        state_->timer.cancel();
    }
    bool fired() const noexcept { return state_->fired; }

private:
    struct shared_state {
        template <class Executor>
        shared_state(const Executor& executor, std::function<void()> a) : timer(executor), action(std::move(a)) {}
        net::steady_timer timer;
        std::function<void()> action;
        bool armed = true;
        bool fired = false;
    };
    std::shared_ptr<shared_state> state_;
};

} // namespace detail

template <class NextLayer, class>
struct async_teardown {
    static bool is_end_of_stream(const net_error_code& ec) noexcept { return ec == net::error::eof; }
    static net::awaitable<void> teardown(NextLayer& layer, bool /*graceful*/, duration /*timeout*/) {
        detail::close_lowest_layer(layer);
        co_return;
    }
};

template <class NextLayer>
class async_stream {
public:
    using next_layer_type = std::remove_reference_t<NextLayer>;
    using executor_type = typename next_layer_type::executor_type;
    using teardown_type = async_teardown<next_layer_type>;

    // The arguments construct the layer: a socket to move in, a reference to
    // bind, or an ssl::stream's (socket, context).
    template <class... Args,
              class = std::enable_if_t<!(sizeof...(Args) == 1 &&
                                         (std::is_same_v<std::decay_t<Args>, async_stream> || ...))>>
    explicit async_stream(Args&&... args) : impl_(std::make_shared<impl>(std::forward<Args>(args)...)) {}

    async_stream(async_stream&&) noexcept = default;
    async_stream& operator=(async_stream&& other) noexcept {
        if (this != &other) {
            if (impl_) impl_->abort();
            impl_ = std::move(other.impl_);
        }
        return *this;
    }
    ~async_stream() {
        if (impl_) impl_->abort();
    }

    executor_type get_executor() noexcept { return impl_->next.get_executor(); }
    next_layer_type& next_layer() noexcept { return impl_->next; }
    const next_layer_type& next_layer() const noexcept { return impl_->next; }

    // Limits, timers and deflate for the next accept or handshake. Messages
    // are always delivered whole: `streaming` is ignored.
    void set_options(connection_options options) {
        options.streaming = false;
        set_options(std::make_shared<const connection_options>(std::move(options)));
    }
    // The same, shared with other streams (a server's connections): each
    // keeps a pointer to them rather than a copy.
    void set_options(std::shared_ptr<const connection_options> options) {
        if (options && options->streaming) {
            connection_options whole = *options;
            whole.streaming = false;
            options = std::make_shared<const connection_options>(std::move(whole));
        }
        impl_->next_options = std::move(options);
    }
    // The options of the next accept or handshake, else of the connection.
    const connection_options& options() const noexcept {
        return impl_->next_options ? *impl_->next_options : impl_->active_options();
    }
    // The send queue's low water mark (the high one is max_pending_output).
    void set_low_water_mark(std::size_t bytes) noexcept { impl_->low_water_mark = bytes; }
    std::size_t low_water_mark() const noexcept { return impl_->low_water_mark; }

    void set_control_callback(control_callback callback) { impl_->set_hook(&impl::callbacks::control, std::move(callback)); }
    void set_upgrade_handler(upgrade_handler handler) { impl_->set_hook(&impl::callbacks::upgrade, std::move(handler)); }
    void set_http_handler(http_handler handler) { impl_->set_hook(&impl::callbacks::http, std::move(handler)); }

    // The protocol core, once an accept or handshake started (else null).
    wsx::connection* connection() noexcept { return impl_->conn ? &*impl_->conn : nullptr; }
    bool is_open() const noexcept {
        return impl_->conn && !impl_->ended && !impl_->failure && impl_->conn->get_state() == state::open;
    }
    std::string_view subprotocol() const noexcept {
        return impl_->conn ? impl_->conn->subprotocol() : std::string_view();
    }
    bool deflate_enabled() const noexcept { return impl_->conn && impl_->conn->deflate_enabled(); }
    // How the connection ended (meaningful once it has).
    const close_status& get_close_status() const noexcept {
        static const close_status none;
        return impl_->conn ? impl_->conn->status() : none;
    }
    // Bytes queued and not yet written (the send queue's fill).
    std::size_t queued_bytes() const noexcept { return impl_->queued(); }

    // ---- server ------------------------------------------------------------

    template <class CompletionToken>
    auto async_accept(CompletionToken&& token) {
        return launch(std::forward<CompletionToken>(token),
                      [self = impl_]() { return self->accept_op(self); });
    }

    // ---- client ------------------------------------------------------------

    // `host` is the Host header ("name", "name:port", "[::1]:9001"), `target`
    // the resource ("/path?query").
    template <class CompletionToken>
    auto async_handshake(std::string_view host, std::string_view target, const handshake_options& options,
                         CompletionToken&& token) {
        client_request_options request;
        const bool valid = make_client_request(host, target, options, request);
        return launch(std::forward<CompletionToken>(token),
                      [self = impl_, request = std::move(request), valid]() mutable {
                          return self->handshake_op(self, std::move(request), valid);
                      });
    }
    template <class CompletionToken>
    auto async_handshake(std::string_view host, std::string_view target, CompletionToken&& token) {
        return async_handshake(host, target, handshake_options{}, std::forward<CompletionToken>(token));
    }
    // The host, port and target of a parsed ws:// or wss:// URI.
    template <class CompletionToken>
    auto async_handshake(const uri& where, const handshake_options& options, CompletionToken&& token) {
        return launch(std::forward<CompletionToken>(token),
                      [self = impl_, request = make_client_request(where, options)]() mutable {
                          return self->handshake_op(self, std::move(request), true);
                      });
    }
    template <class CompletionToken>
    auto async_handshake(const uri& where, CompletionToken&& token) {
        return async_handshake(where, handshake_options{}, std::forward<CompletionToken>(token));
    }

    // ---- messages ------------------------------------------------------------

    // Reads the next whole message into `out` (its capacity is reused).
    // Pings are answered and reported to the control callback on the way.
    template <class CompletionToken>
    auto async_read(message& out, CompletionToken&& token) {
        auto initiation = [](auto handler, std::shared_ptr<impl> self, message* into) {
            start_read(std::move(self), into, std::move(handler), false);
        };
        return net::async_initiate<CompletionToken, void(net_error_code)>(std::move(initiation), token, impl_, &out);
    }
    // A read that completes now when it can: true with `result` set when a
    // message was read into `out` (or the read failed at once); false when
    // it would have to wait - start an async_read then. Pings and pongs met
    // on the way are handled, as by async_read. On the stream's executor.
    bool try_read(message& out, net_error_code& result) { return impl_->try_read(impl_, out, result); }

    // The data must stay valid until the operation completes.
    template <class CompletionToken>
    auto async_write_text(std::string_view text, CompletionToken&& token) {
        return async_write(true, const_bytes(text), std::forward<CompletionToken>(token));
    }
    template <class CompletionToken>
    auto async_write_binary(const_bytes data, CompletionToken&& token) {
        return async_write(false, data, std::forward<CompletionToken>(token));
    }
    template <class CompletionToken>
    auto async_write(bool text, const_bytes data, CompletionToken&& token) {
        return launch(std::forward<CompletionToken>(token),
                      [self = impl_, text, data]() { return self->write(self, text, data); });
    }

    // Queues a message now, or answers would_block when the send queue is
    // above its high water mark (connection_closed when it cannot be sent).
    std::error_code try_write_text(std::string_view text) { return impl_->try_write(true, const_bytes(text)); }
    std::error_code try_write_binary(const_bytes data) { return impl_->try_write(false, data); }
    // Queues a message framed once for many connections (see
    // wsx/asio/broadcast.hpp), or answers would_block when the send queue
    // holds more than `high_water_mark` bytes.
    std::error_code try_write_shared(const std::shared_ptr<prepared_message>& m, std::size_t high_water_mark) {
        return impl_->try_write_shared(m, high_water_mark);
    }

    // ---- coroutine forms (wsx::websocket uses these) ---------------------------
    // The operations above as awaitables that run inside the caller's
    // coroutine, without spawning one: await them on the stream's executor.
    net::awaitable<net_error_code> co_accept() { return impl_->accept_op(impl_); }
    net::awaitable<net_error_code> co_handshake(const uri& where, const handshake_options& options) {
        return impl_->handshake_op(impl_, make_client_request(where, options), true);
    }
    net::awaitable<net_error_code> co_read(message& out) {
        net_error_code result;
        if (try_read(out, result)) co_return result;
        co_return co_await read_awaitable(impl_, &out, true);
    }
    net::awaitable<net_error_code> co_write(bool text, const_bytes data) { return impl_->write(impl_, text, data); }
    net::awaitable<net_error_code> co_ping(const_bytes payload) {
        return impl_->ping_op(impl_, std::vector<std::uint8_t>(payload.begin(), payload.end()));
    }
    net::awaitable<net_error_code> co_close(close_code code, std::string reason) {
        return impl_->close_op(impl_, code, std::move(reason));
    }
    // Ends the transport at once (on the stream's executor): pending
    // operations complete with an error.
    void abort() { impl_->abort(); }

    // Queues a ping (its pong arrives through the control callback).
    template <class CompletionToken>
    auto async_ping(const_bytes payload, CompletionToken&& token) {
        std::vector<std::uint8_t> copy(payload.begin(), payload.end());
        return launch(std::forward<CompletionToken>(token), [self = impl_, copy = std::move(copy)]() mutable {
            return self->ping_op(self, std::move(copy));
        });
    }

    // Starts the closing handshake and completes once it is over and the
    // transport is closed (or the close timeout ran out: close_timeout).
    template <class CompletionToken>
    auto async_close(close_code code, std::string_view reason, CompletionToken&& token) {
        return launch(std::forward<CompletionToken>(token), [self = impl_, code, reason = std::string(reason)]() mutable {
            return self->close_op(self, code, std::move(reason));
        });
    }
    template <class CompletionToken>
    auto async_close(close_code code, CompletionToken&& token) {
        return async_close(code, {}, std::forward<CompletionToken>(token));
    }

private:
    struct impl : std::enable_shared_from_this<impl> {
        template <class... Args>
        explicit impl(Args&&... args)
            : next(std::forward<Args>(args)...), deadline_timer(next.get_executor()) {}

        NextLayer next;
        net::steady_timer deadline_timer; // follows connection::next_deadline()
        // A condition variable, cancelled on every change; it exists only
        // while someone waits (an idle connection has none).
        std::unique_ptr<net::steady_timer> signal;
        std::size_t signal_waiters = 0;
        // Options for the next accept or handshake (set_options); once one
        // starts the connection holds them.
        std::shared_ptr<const connection_options> next_options;
        std::size_t low_water_mark = 256 * 1024;
        std::optional<wsx::connection> conn;
        // The callbacks, allocated once one is set (most connections have
        // none once open) and freed once all are cleared.
        struct callbacks {
            control_callback control;
            upgrade_handler upgrade;
            http_handler http;
        };
        std::unique_ptr<callbacks> hooks;
        template <class Callback>
        void set_hook(Callback callbacks::*which, Callback value) {
            if (!hooks) hooks = std::make_unique<callbacks>();
            (*hooks).*which = std::move(value);
            if (!hooks->control && !hooks->upgrade && !hooks->http) hooks.reset();
        }
        net_error_code failure; // the transport's error that ended everything

        static constexpr int max_hold_back_turns = 64;
        int hold_back_turns = 0;    // the writer's turns given to the application
        bool writing = false;       // the internal writer runs
        bool reading = false;       // a read (or close's wait) runs
        bool message_in_hand = false; // a read delivered a message; no read since
        bool close_pending = false; // the close event was taken; its read ends the transport
        bool read_pending = false;  // a read (or a wait for bytes) is pending on the layer
        bool reading_into_buffer = false; // that read fills the connection's input buffer
        bool driver_running = false;
        bool ended = false;         // the connection is over
        bool closing_transport = false;
        bool transport_closed = false;

        // The bytes of a write in flight stay queued until written.
        std::size_t queued() const noexcept { return conn ? conn->pending_output_size() : 0; }
        void wake() {
            if (signal) signal->cancel();
        }

        const connection_options& active_options() const noexcept {
            static const connection_options defaults;
            return conn ? conn->options() : defaults;
        }
        // The options to start a connection with: the ones set last, else
        // the previous connection's.
        std::shared_ptr<const connection_options> take_options() {
            if (next_options) return std::move(next_options);
            if (conn) return conn->shared_options();
            return std::make_shared<const connection_options>();
        }

        // Buffers come from the thread's pool when the connection needs them
        // and go back when it is idle (wsx/asio/buffer_pool.hpp).
        void lend() {
            if (conn) detail::thread_buffer_pool().lend(*conn);
        }
        void reclaim() {
            if (conn && !reading_into_buffer && !writing) detail::thread_buffer_pool().reclaim(*conn);
        }

        net::awaitable<void> wait_for_change() {
            if (!signal) {
                signal = std::make_unique<net::steady_timer>(next.get_executor());
                signal->expires_at(net::steady_timer::time_point::max());
            }
            ++signal_waiters;
            net_error_code ignored;
            co_await signal->async_wait(net::redirect_error(net::use_awaitable, ignored));
            if (--signal_waiters == 0) signal.reset();
        }

        // The object that owned us is gone (or replaced): stop everything.
        void abort() {
            if (!failure) failure = net::error::operation_aborted;
            ended = true;
            transport_closed = true;
            detail::close_lowest_layer(next);
            deadline_timer.cancel();
            wake();
        }

        void start(role r, std::shared_ptr<const connection_options> settings) {
            conn.reset();
            conn.emplace(r, std::move(settings));
            failure = {};
            ended = closing_transport = transport_closed = close_pending = false;
            conn->tick(clock_type::now());
        }

        void start_driver(std::shared_ptr<impl> self) {
            if (driver_running) return;
            driver_running = true;
            arm_driver(std::move(self));
        }

        // Ticks the connection at each deadline it names: open and close
        // timeouts, keepalive pings and their pong timeout. A callback rather
        // than a coroutine: an idle connection keeps only the timer's wait.
        // rearm_driver() cancels the wait; the callback then arms it again.
        void arm_driver(std::shared_ptr<impl> self) {
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
                me.lend();
                me.conn->tick(clock_type::now());
                me.start_writer(self);
                if (me.conn->transport_action() == transport_action::close) {
                    me.driver_running = false;
                    net::co_spawn(me.next.get_executor(), me.finish_transport(self), net::detached);
                    return;
                }
                if (!me.writing) me.reclaim();
                me.arm_driver(std::move(self));
            });
        }

        void start_writer(const std::shared_ptr<impl>& self) {
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
        void write_when_ready(const std::shared_ptr<impl>& self) {
            if (hold_back_turns < max_hold_back_turns && conn && !failure && !transport_closed && !read_pending &&
                (message_in_hand || conn->buffered_input() > 0)) {
                ++hold_back_turns;
                net::post(next.get_executor(), [self] { self->write_when_ready(self); });
                return;
            }
            write_next(self);
        }

        // A write of the writer's ended: on to what was queued meanwhile.
        void written(const std::shared_ptr<impl>& self, const net_error_code& ec, std::size_t n) {
            if (ec) {
                fail_transport(ec);
            } else {
                conn->consume_output(n);
                wake();
            }
            write_next(self);
        }

        // Asio's own transfer_all() hands the stream at most 64 KiB a call:
        // a 1 MiB message then costs 17 send() calls, and the kernel's
        // per-call work (pushing, waking the peer) 17 times. Each call here
        // offers all that is left, and the kernel takes what its send buffer
        // holds (a TLS stream still writes one record at a time).
        static std::size_t write_all_at_once(const net_error_code& ec, std::size_t) noexcept {
            return ec ? 0 : std::numeric_limits<std::size_t>::max();
        }

        // At most this many pieces of the send queue go in one write.
        static constexpr std::size_t max_gather = 8;

        void write_next(const std::shared_ptr<impl>& self) {
            if (failure || transport_closed || !conn || conn->pending_output_size() == 0) {
                writing = false;
                reclaim();
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
        net::awaitable<void> flush(std::shared_ptr<impl> self) {
            while (!failure && !transport_closed && (writing || (conn && conn->pending_output_size() > 0))) {
                start_writer(self);
                co_await wait_for_change();
            }
        }

        void fail_transport(const net_error_code& ec) {
            if (!failure) failure = ec;
            // The core keeps its own reason when it failed first (after a
            // keepalive timeout the transport is ended under a writer stuck
            // on a peer that does not read, and this error is only the echo).
            if (conn) conn->receive_transport_error(to_std_error(ec));
            ended = true;
            transport_closed = true;
            detail::close_lowest_layer(next);
            deadline_timer.cancel();
            wake();
        }

        // Lets queued frames leave (bounded by the close timeout), then ends
        // the layer.
        net::awaitable<void> finish_transport(std::shared_ptr<impl> self) {
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

        // The connection's next event; what it queued is handed to the writer.
        event poll_event(const std::shared_ptr<impl>& self, bool write = true) {
            lend();
            conn->tick(clock_type::now());
            event ev = conn->next_event();
            if (write) start_writer(self);
            rearm_driver();
            return ev;
        }

        // Wakes the driver when the connection's next deadline moved
        // earlier than the one it sleeps until (the connection opened, a
        // pong arrived, a close started).
        void rearm_driver() {
            const std::optional<time_point> deadline = conn->next_deadline();
            if (deadline && *deadline < deadline_timer.expiry()) deadline_timer.cancel();
        }

        // The first read of a server: the request has usually arrived by the
        // time the connection is accepted, so it is read at once rather than
        // after a wait for readability (one trip through the reactor less).
        // Into a small buffer of this frame, not a lent one: a peer that
        // connects and sends nothing holds no connection buffer.
        net::awaitable<net_error_code> read_request_start() {
            std::uint8_t start_bytes[1024];
            net_error_code ec;
            read_pending = true;
            const std::size_t n = co_await next.async_read_some(net::buffer(start_bytes, sizeof start_bytes),
                                                                net::redirect_error(net::use_awaitable, ec));
            read_pending = false;
            lend();
            conn->receive(const_bytes(start_bytes, n));
            co_return take_end_of_stream(ec);
        }

        // Reads from the layer straight into the connection's buffer.
        net::awaitable<net_error_code> read_more() {
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
        bool wait_before_read() {
            if (!conn->input_idle()) return false;
            reclaim();
            read_pending = true;
            return true;
        }
        mutable_bytes begin_read() {
            lend();
            read_pending = true;
            reading_into_buffer = true;
            return conn->prepare(conn->read_size_hint());
        }
        net_error_code end_read(std::size_t n, net_error_code ec) {
            read_pending = false;
            reading_into_buffer = false;
            conn->commit(n);
            return take_end_of_stream(ec);
        }
        // The layer's end of stream is the peer's EOF for the connection,
        // not an error.
        net_error_code take_end_of_stream(net_error_code ec) {
            if (!ec || !teardown_type::is_end_of_stream(ec)) return ec;
            conn->receive_eof();
            return {};
        }

        // After a failed read: true when the connection ended the transport
        // itself (a timeout) and has its close event (taken: finish_close()
        // next); else the layer's failure ends the stream.
        bool closed_after_read_error(const std::shared_ptr<impl>& self, const net_error_code& ec) {
            const event ev = poll_event(self);
            if (ev.type == event_type::close) {
                close_pending = true; // the read that ends the transport: finish_close()
                return true;
            }
            fail_transport(ec);
            return false;
        }
        net::awaitable<net_error_code> after_read_error(std::shared_ptr<impl> self, net_error_code ec) {
            if (closed_after_read_error(self, ec)) co_return co_await finish_close(self);
            co_return ec;
        }


        // After the close event: let the server end TCP first where it
        // should, then end the layer (after the close reply, which the
        // writer is already sending, has left).
        net::awaitable<net_error_code> finish_close(std::shared_ptr<impl> self) {
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

        net_error_code check_open() const {
            if (failure) return failure;
            if (!conn || ended || conn->get_state() != state::open) return to_net_error(error::connection_closed);
            return {};
        }

        // ---- operations ------------------------------------------------------

        net::awaitable<net_error_code> accept_op(std::shared_ptr<impl> self) {
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
                        reclaim();
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

        net::awaitable<net_error_code> handshake_op(std::shared_ptr<impl> self, client_request_options request,
                                                   bool valid) {
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
                    reclaim();
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

        // Before a read of messages: the error when none can start, else
        // the stream is marked as reading (one read at a time).
        net_error_code begin_message_read() {
            if (failure) return failure;
            const bool over = !conn || ended || conn->get_state() == state::connecting || conn->get_state() == state::closed;
            if (over && !close_pending) return to_net_error(error::connection_closed);
            if (reading) return to_net_error(std::make_error_code(std::errc::operation_in_progress));
            reading = true;
            message_in_hand = false;
            return {};
        }
        void end_message_read() {
            reading = false;
            wake();
        }

        enum class read_result : std::uint8_t { none, message, close };

        // Hands out what the connection already has: the next message into
        // *out (without `out` messages are dropped: a close waiting for the
        // peer's answer), pings and pongs to the control callback, and the
        // close event, which is recorded (close_pending) for the read that
        // ends the transport.
        read_result poll_read(const std::shared_ptr<impl>& self, message* out) {
            if (close_pending) return read_result::close;
            for (;;) {
                const event ev = poll_event(self);
                switch (ev.type) {
                case event_type::message:
                    if (out == nullptr) continue;
                    out->text = ev.text;
                    conn->take_message(ev, out->data);
                    if (!writing) reclaim();
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

        bool try_read(const std::shared_ptr<impl>& self, message& out, net_error_code& result) {
            result = begin_message_read();
            if (result) return true;
            const bool got = poll_read(self, &out) == read_result::message;
            end_message_read();
            return got;
        }

        net::awaitable<net_error_code> write_op(std::shared_ptr<impl> self, bool text, const_bytes data) {
            // Backpressure: above the high water mark, wait for the queue to
            // drain below the low one.
            if (const net_error_code ec = co_await wait_for_room()) co_return ec;
            lend();
            const std::error_code ec = text ? conn->send_text(as_string_view(data)) : conn->send_binary(data);
            if (ec) co_return to_net_error(ec);
            start_writer(self);
            co_return net_error_code{};
        }

        // Writes go through write_op, or through write_borrowed for a
        // large message (decided before either starts: write_op's frame
        // stays small, which keeps the heap of many connections compact).
        net::awaitable<net_error_code> write(std::shared_ptr<impl> self, bool text, const_bytes data) {
            if (data.size() >= connection::direct_payload_size) return write_borrowed(std::move(self), text, data);
            return write_op(std::move(self), text, data);
        }

        // Waits while the send queue is above its high water mark, until it
        // is back under the low one (or no write can start).
        net::awaitable<net_error_code> wait_for_room() {
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
        net::awaitable<net_error_code> write_borrowed(std::shared_ptr<impl> self, bool text, const_bytes data) {
            if (const net_error_code ec = co_await wait_for_room()) co_return ec;
            lend();
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

        std::error_code try_write(bool text, const_bytes data) {
            if (const net_error_code ec = check_open()) return to_std_error(ec);
            if (queued() > active_options().max_pending_output) return error::would_block;
            lend();
            const std::error_code ec = text ? conn->send_text(as_string_view(data)) : conn->send_binary(data);
            if (!ec) start_writer(this->shared_from_this());
            return ec;
        }

        // A message framed once for many connections (a broadcast): its
        // frame referenced, unless the queue is above `high_water_mark`.
        std::error_code try_write_shared(const std::shared_ptr<prepared_message>& m, std::size_t high_water_mark) {
            if (const net_error_code ec = check_open()) return to_std_error(ec);
            if (queued() > high_water_mark) return error::would_block;
            lend();
            const std::error_code ec = conn->send_shared(m);
            if (!ec) start_writer(this->shared_from_this());
            return ec;
        }

        net::awaitable<net_error_code> ping_op(std::shared_ptr<impl> self, std::vector<std::uint8_t> payload) {
            if (const net_error_code ec = check_open()) co_return ec;
            lend();
            if (const std::error_code ec = conn->send_ping(payload)) co_return to_net_error(ec);
            start_writer(self);
            co_return net_error_code{};
        }

        net::awaitable<net_error_code> close_op(std::shared_ptr<impl> self, close_code code, std::string reason) {
            if (failure) co_return failure;
            if (!conn || ended) co_return to_net_error(error::connection_closed);
            lend();
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
    };

    // A read as a chain of callbacks rather than a coroutine: while it waits
    // for the peer, an idle connection holds only the reactor's small
    // operation. Reads until a message (into *out) or the end; without `out`
    // it drops messages until the close (close_op), and leaves the stream's
    // `reading` mark to its caller.
    template <class Handler>
    struct read_operation {
        // `polled`: a try_read() just found nothing there, so the read
        // starts with the wait rather than polling the connection again.
        enum class step : std::uint8_t { start, polled, waited, read };

        std::shared_ptr<impl> self;
        message* out;
        Handler handler;
        step at = step::start;

        void operator()(net_error_code ec = {}, std::size_t n = 0) {
            impl& me = *self;
            if (at == step::waited) {
                me.read_pending = false;
                if (ec) return failed(ec);
                return read_into_buffer();
            }
            if (at == step::read) {
                ec = me.end_read(n, ec);
                if (ec) return failed(ec);
            }
            const auto found = at != step::polled  ? me.poll_read(self, out)
                               : me.close_pending ? impl::read_result::close
                                                  : impl::read_result::none;
            switch (found) {
            case impl::read_result::message: return complete({});
            case impl::read_result::close: return finish_close();
            case impl::read_result::none: break;
            }
            if constexpr (detail::is_plain_socket<next_layer_type>::value) {
                if (me.wait_before_read()) {
                    at = step::waited;
                    me.next.async_wait(net::socket_base::wait_read, std::move(*this));
                    return;
                }
            }
            read_into_buffer();
        }

    private:
        void read_into_buffer() {
            impl& me = *self;
            const mutable_bytes area = me.begin_read();
            at = step::read;
            me.next.async_read_some(net::buffer(area.data(), area.size()), std::move(*this));
        }

        // After a failed read: the connection's own close event when it
        // ended the transport itself (a timeout), else the layer's failure.
        void failed(net_error_code ec) {
            if (self->closed_after_read_error(self, ec)) return finish_close();
            complete(ec);
        }

        // The close is rare and has several steps: a coroutine of its own.
        void finish_close() {
            impl& me = *self;
            const executor_type executor = me.next.get_executor();
            net::awaitable<net_error_code> closing = me.finish_close(self);
            net::co_spawn(executor, std::move(closing),
                          [op = std::move(*this)](std::exception_ptr e, net_error_code result) mutable {
                              if (e) std::rethrow_exception(e);
                              op.at = step::read; // completes from a handler
                              op.complete(result);
                          });
        }

        void complete(net_error_code result) {
            impl& me = *self;
            if (out != nullptr) me.end_message_read();
            const auto executor = net::get_associated_executor(handler, me.next.get_executor());
            auto call = [handler = std::move(handler), result]() mutable { std::move(handler)(result); };
            self.reset();
            // Not from inside the initiating function: never before it returned.
            if (at == step::start) net::post(executor, std::move(call));
            else net::dispatch(executor, std::move(call));
        }
    };

    // Starts the callback read: into *out (a read of messages, which marks
    // the stream as reading, or fails at once), or without `out` until the
    // close (close_op, which owns the reading mark). `polled`: right after a
    // try_read() that found nothing.
    template <class Handler>
    static void start_read(std::shared_ptr<impl> self, message* out, Handler handler, bool polled) {
        if (out != nullptr) {
            if (const net_error_code ec = self->begin_message_read()) {
                const auto executor = net::get_associated_executor(handler, self->next.get_executor());
                net::post(executor, [handler = std::move(handler), ec]() mutable { std::move(handler)(ec); });
                return;
            }
        }
        using op = read_operation<Handler>;
        op{std::move(self), out, std::move(handler), polled ? op::step::polled : op::step::start}();
    }

    // The callback read, awaited without an exception for its error: the
    // coroutine waits in the reactor, not in a frame of its own.
    static net::awaitable<net_error_code> read_awaitable(std::shared_ptr<impl> self, message* out, bool polled) {
        auto initiation = [](auto handler, std::shared_ptr<impl> me, message* into, bool after_poll) {
            const auto executor = net::get_associated_executor(handler, me->next.get_executor());
            auto adapted = net::bind_executor(executor, [handler = std::move(handler)](net_error_code ec) mutable {
                std::move(handler)(std::exception_ptr(), ec);
            });
            start_read(std::move(me), into, std::move(adapted), after_poll);
        };
        return net::async_initiate<const net::use_awaitable_t<>&, void(std::exception_ptr, net_error_code)>(
            std::move(initiation), net::use_awaitable, std::move(self), out, polled);
    }
    // For the websocket backend: the reads that follow a try_read() that
    // found nothing.
    net::awaitable<net_error_code> read_after_try(message& out) { return read_awaitable(impl_, &out, true); }
    template <class Handler>
    void read_after_try(message& out, Handler handler) {
        start_read(impl_, &out, std::move(handler), true);
    }
    template <class>
    friend class detail::stream_backend;

    // Runs `op` (a callable returning awaitable<net_error_code>) on the
    // layer's executor and completes `token` with its result.
    template <class CompletionToken, class Op>
    auto launch(CompletionToken&& token, Op op) {
        auto initiation = [](auto handler, executor_type executor, Op operation) {
            auto handler_executor = net::get_associated_executor(handler, executor);
            net::co_spawn(executor, std::move(operation),
                          net::bind_executor(handler_executor,
                                             [handler = std::move(handler)](std::exception_ptr e,
                                                                            net_error_code ec) mutable {
                                                 if (e) std::rethrow_exception(e);
                                                 std::move(handler)(ec);
                                             }));
        };
        return net::async_initiate<CompletionToken, void(net_error_code)>(std::move(initiation), token,
                                                                          get_executor(), std::move(op));
    }

    std::shared_ptr<impl> impl_;
};

} // namespace wsx
