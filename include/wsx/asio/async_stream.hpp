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
    // are always delivered whole: `streaming` is ignored. Unless `buffers`
    // names a source, an idle connection gives its buffers to its thread's
    // pool (wsx/asio/buffer_pool.hpp).
    void set_options(connection_options options) {
        options.streaming = false;
        if (options.buffers == nullptr) options.buffers = detail::thread_buffers();
        set_options(std::make_shared<const connection_options>(std::move(options)));
    }
    // The same, shared with other streams (a server's connections): each
    // keeps a pointer to them rather than a copy.
    void set_options(std::shared_ptr<const connection_options> options) {
        if (options && (options->streaming || options->buffers == nullptr)) set_options(connection_options(*options));
        else impl_->next_options = std::move(options);
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
        // The read starts on the stream's executor: at once when called
        // there, else posted (a caller on another thread must not touch the
        // connection while the writer does).
        auto initiation = [](auto handler, std::shared_ptr<impl> self, message* into) {
            const executor_type executor = self->next.get_executor();
            net::dispatch(executor, [handler = std::move(handler), self = std::move(self), into]() mutable {
                start_read(std::move(self), into, std::move(handler), false);
            });
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
            connection_options defaults;
            defaults.buffers = detail::thread_buffers();
            return std::make_shared<const connection_options>(std::move(defaults));
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

        net_error_code check_open() const {
            if (failure) return failure;
            if (!conn || ended || conn->get_state() != state::open) return to_net_error(error::connection_closed);
            return {};
        }

        // Ends the layer at once: pending operations complete with an error.
        void end_transport_now() {
            ended = true;
            transport_closed = true;
            detail::close_lowest_layer(next);
            deadline_timer.cancel();
            wake();
        }

        // What poll_read() found.
        enum class read_result : std::uint8_t { none, message, close };

        // ---- the writer (wsx/asio/impl/stream_write.hpp)
        void start_driver(std::shared_ptr<impl> self);
        void arm_driver(std::shared_ptr<impl> self);
        void start_writer(const std::shared_ptr<impl>& self);
        void write_when_ready(const std::shared_ptr<impl>& self);
        void written(const std::shared_ptr<impl>& self, const net_error_code& ec, std::size_t n);
        void write_next(const std::shared_ptr<impl>& self);
        net::awaitable<void> flush(std::shared_ptr<impl> self);
        void fail_transport(const net_error_code& ec);
        net::awaitable<void> finish_transport(std::shared_ptr<impl> self);
        net::awaitable<net_error_code> write_op(std::shared_ptr<impl> self, bool text, const_bytes data);
        net::awaitable<net_error_code> write(std::shared_ptr<impl> self, bool text, const_bytes data);
        net::awaitable<net_error_code> wait_for_room();
        net::awaitable<net_error_code> write_borrowed(std::shared_ptr<impl> self, bool text, const_bytes data);
        std::error_code try_write(bool text, const_bytes data);
        std::error_code try_write_shared(const std::shared_ptr<prepared_message>& m, std::size_t high_water_mark);
        net::awaitable<net_error_code> ping_op(std::shared_ptr<impl> self, std::vector<std::uint8_t> payload);

        // ---- reading (wsx/asio/impl/stream_read.hpp)
        event poll_event(const std::shared_ptr<impl>& self, bool write = true);
        void rearm_driver();
        net::awaitable<net_error_code> read_request_start();
        net::awaitable<net_error_code> read_more();
        bool wait_before_read();
        mutable_bytes begin_read();
        net_error_code end_read(std::size_t n, net_error_code ec);
        net_error_code take_end_of_stream(net_error_code ec);
        bool closed_after_read_error(const std::shared_ptr<impl>& self, const net_error_code& ec);
        net::awaitable<net_error_code> after_read_error(std::shared_ptr<impl> self, net_error_code ec);
        net::awaitable<net_error_code> finish_close(std::shared_ptr<impl> self);
        net_error_code begin_message_read();
        void end_message_read();
        read_result poll_read(const std::shared_ptr<impl>& self, message* out);
        bool try_read(const std::shared_ptr<impl>& self, message& out, net_error_code& result);

        // ---- the operations with a beginning and an end (wsx/asio/impl/stream_ops.hpp)
        void abort();
        void start(role r, std::shared_ptr<const connection_options> settings);
        net::awaitable<net_error_code> accept_op(std::shared_ptr<impl> self);
        net::awaitable<net_error_code> handshake_op(std::shared_ptr<impl> self, client_request_options request,
                                                   bool valid);
        net::awaitable<net_error_code> close_op(std::shared_ptr<impl> self, close_code code, std::string reason);
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

// The implementation of async_stream's parts, by concept.
#include <wsx/asio/impl/stream_read.hpp>
#include <wsx/asio/impl/stream_write.hpp>
#include <wsx/asio/impl/stream_ops.hpp>
