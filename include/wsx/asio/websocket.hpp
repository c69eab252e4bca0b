// wsx/asio/websocket.hpp - one WebSocket, as serve() hands it to a handler
// and connect() returns it: ws:// or wss:// alike, used from C++20 coroutines.
//
//   net::awaitable<void> echo(wsx::websocket ws) {
//       while (auto message = co_await ws.receive())   // ends on close 1000/1001
//           co_await ws.send(*message);
//   }                                                 // other closes throw
//
// receive() returns the next whole message, or an empty optional once the
// connection closed normally (1000, 1001, or a close frame without a code);
// any other end - a close code such as 1008 or 1011, a protocol error, a
// timeout, a dropped TCP connection - throws wsx::connection_closed_error
// (which carries the code and reason). The forms taking a std::error_code&
// never throw. send_*() throw connection_closed_ok or connection_closed_error
// once the connection is over.
//
// The connection reads in the background from the moment it opens: pings
// are answered and the closing handshake completed whatever the handler
// does, and messages wait in a bounded queue (max_queue) that receive()
// takes from; a cancelled receive() loses nothing.
//
// Keepalive, timeouts and backpressure are the connection's (see
// connection_options): a ping every ping_interval, a close with 1011
// "keepalive ping timeout" when no frame arrives within ping_timeout of it;
// send() waits while the send queue is above its high water mark, and
// try_send_*() answers wsx::error::would_block then.
//
// A websocket is a cheap handle (copies share the connection); keep a copy
// to reach the connection from elsewhere (a room, a broadcast). Its
// operations run on its executor: a serve() handler and the coroutine that
// called connect() are already there. From other threads use post_close(),
// or net::post/co_spawn onto get_executor(); broadcast() does that itself.
#pragma once

#include <wsx/asio/config.hpp>
#include <wsx/bytes.hpp>
#include <wsx/close_code.hpp>
#include <wsx/connection.hpp>
#include <wsx/error.hpp>
#include <wsx/handshake.hpp>
#include <wsx/message.hpp>
#include <wsx/prepared_message.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <typeinfo>
#include <utility>
#include <vector>

namespace wsx {

// ---- logging -------------------------------------------------------------------

enum class log_level : std::uint8_t { debug, info, warning, error };

inline std::string_view to_string(log_level level) noexcept {
    switch (level) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
    }
    return "?";
}

// Told of opens, closes and errors. The library is silent unless one is set.
using log_handler = std::function<void(log_level level, std::string_view message)>;

// A handler that prints "level: message" lines to stderr, from `minimum` up.
inline log_handler stderr_logger(log_level minimum = log_level::info) {
    return [minimum](log_level level, std::string_view message) {
        if (level < minimum) return;
        std::fprintf(stderr, "%.*s: %.*s\n", static_cast<int>(to_string(level).size()), to_string(level).data(),
                     static_cast<int>(message.size()), message.data());
    };
}

// ---- how a connection ended ------------------------------------------------------

// A close with 1000 (normal), 1001 (going away) or a close frame without a
// code (1005), after a complete closing handshake: the ends that receive()
// reports as an empty optional rather than an exception.
inline bool is_normal_close(const close_status& status) noexcept {
    const bool ok_code = status.code == close_code::normal || status.code == close_code::going_away ||
                         status.code == close_code::no_status;
    return ok_code && (!status.ec || status.ec == error::connection_closed);
}

// The connection is over: thrown by receive() (not for a normal close) and
// by send_*(). code(), reason() and status() tell how it ended.
class connection_closed : public std::system_error {
public:
    explicit connection_closed(close_status status)
        : std::system_error(status.ec ? status.ec : make_error_code(error::connection_closed), describe(status)),
          status_(std::move(status)) {}

    close_code code() const noexcept { return status_.code; }
    const std::string& reason() const noexcept { return status_.reason; }
    const close_status& status() const noexcept { return status_; }

private:
    static std::string describe(const close_status& status) {
        std::string text = "connection closed: " + std::to_string(static_cast<unsigned>(status.code));
        if (!status.reason.empty()) text += " " + status.reason;
        return text;
    }

    close_status status_;
};

// It ended normally (is_normal_close).
class connection_closed_ok : public connection_closed {
public:
    using connection_closed::connection_closed;
};

// It ended any other way.
class connection_closed_error : public connection_closed {
public:
    using connection_closed::connection_closed;
};

[[noreturn]] inline void throw_connection_closed(const close_status& status) {
    if (is_normal_close(status)) throw connection_closed_ok(status);
    throw connection_closed_error(status);
}

namespace detail {

// What a websocket needs of its stream, whatever the layer below (TCP, TLS).
class websocket_backend {
public:
    virtual ~websocket_backend() = default;

    virtual net::any_io_executor executor() = 0;
    // True when the caller may touch the connection directly: it runs on
    // the connection's strand, or on the only thread of its io_context.
    virtual bool running_in_this_thread() const noexcept = 0;
    virtual wsx::connection* core() noexcept = 0;
    virtual const close_status& status() const noexcept = 0;
    virtual bool is_open() const noexcept = 0;
    virtual std::size_t queued_bytes() const noexcept = 0;
    virtual std::size_t high_water_mark() const noexcept = 0;

    // A read: read_now() completes it at once when it can (true, `result`
    // set); else read() - right after it, nothing in between - waits.
    virtual bool read_now(message& out, net_error_code& result) = 0;
    virtual net::awaitable<net_error_code> read(message& out) = 0;
    // The same wait with a callback (out must live until it is called).
    virtual void read_then(message& out, std::function<void(net_error_code)> done) = 0;
    virtual net::awaitable<net_error_code> write(bool text, const_bytes data) = 0;
    virtual std::error_code try_write(bool text, const_bytes data) = 0;
    virtual std::error_code try_write_shared(const std::shared_ptr<prepared_message>& m, std::size_t high_water_mark) = 0;
    virtual net::awaitable<net_error_code> ping(const_bytes payload) = 0;
    virtual net::awaitable<net_error_code> close(close_code code, std::string reason) = 0;
    // Starts the closing handshake without waiting for it (on the executor).
    virtual void start_close(close_code code, std::string reason) = 0;
    virtual void abort() = 0;

    // Set once, before the handler or the caller of connect() sees it.
    std::string target;           // the request target: path ["?" query]
    std::string subprotocol;
    net::ip::tcp::endpoint remote;
    std::uint64_t id = 0;
    bool request_kept = true;     // connection::request()/response() still valid
    std::shared_ptr<void> keep_alive;             // e.g. the TLS context of a client

    // ---- reading in the background (coroutine handlers, connect()) ----------
    //
    // Once started, reads go on whatever the application does: pings are
    // answered, pongs taken and the closing handshake completed while the
    // application only sends, or does nothing. Messages wait in a queue of at
    // most max_queue; when it is full, reading stops (TCP backpressure) until
    // the application takes one. While closing, reading goes on regardless
    // and drops what does not fit: the application is done with messages.

    void start_reading(std::size_t max_queue) {
        if (!reader_) reader_ = std::make_unique<background_reader>();
        reader_->max_queue = max_queue > 0 ? max_queue : 1;
        pump();
    }

    // The next message into `out` (true, `result` clear), or the end once
    // the queue is empty (true, `result` set), or false: nothing yet; wait
    // with async_wait_delivery() and ask again.
    bool take(message& out, net_error_code& result) {
        if (!reader_) start_reading(default_max_queue);
        background_reader& r = *reader_;
        if (!r.queue.empty()) {
            std::swap(out, r.queue.front());
            // The application's old buffer serves a later message.
            if (r.queue.front().data.capacity() > r.spare.data.capacity()) std::swap(r.spare, r.queue.front());
            r.queue.erase(r.queue.begin());
            result = {};
            pump();
            return true;
        }
        if (!r.ended) return false;
        result = r.end;
        return true;
    }

    // Waits until a message or the end arrives or the wait is cancelled
    // through its handler's cancellation slot (both complete with
    // operation_aborted: cancellation_state tells them apart), or the
    // deadline passes (completes clear). A timer's wait, so that the
    // io_context owns the waiting handler: one it destroys unfinished takes
    // the handler's frame (and its handle on this object) with it. One wait
    // at a time.
    template <class CompletionToken>
    auto async_wait_delivery(std::optional<time_point> deadline, CompletionToken&& token) {
        background_reader& r = *reader_;
        if (!r.signal) r.signal = std::make_unique<net::steady_timer>(executor());
        r.signal->expires_at(deadline ? *deadline : time_point::max());
        r.waiting = true;
        return r.signal->async_wait(std::forward<CompletionToken>(token));
    }
    void stop_waiting() noexcept { reader_->waiting = false; }
    // One receive at a time: it holds the wait.
    bool receiving() const noexcept { return reader_ && reader_->receiving; }
    void set_receiving(bool on) noexcept { reader_->receiving = on; }

    static constexpr std::size_t default_max_queue = 16;

    // Frees the upgrade request (or the client's response): request() and
    // response() are null afterwards.
    void release_request() noexcept {
        if (!request_kept) return;
        request_kept = false;
        if (wsx::connection* c = core()) c->release_handshake();
    }

    // The status to report for a failed operation or an end: the final one
    // once the connection ended, else (closing, or a close we started that
    // the peer answered without a code) the code we closed with.
    close_status reported_status(const std::error_code& ec = {}) const {
        close_status reported = status();
        if (reported.code == close_code::no_status && !reported.ec && !reported.closed_by_peer) {
            reported.code = reported.sent.value_or(close_code::normal);
            if (ec && ec != error::connection_closed) reported.ec = ec;
        }
        return reported;
    }

protected:
    // This object, kept alive by a read in flight.
    virtual std::shared_ptr<websocket_backend> self() = 0;

private:
    // Reads what is already there, then waits for more with one read in
    // flight, until the queue is full or the connection ended.
    void pump() {
        background_reader& r = *reader_;
        if (r.pumping || r.ended) return;
        for (;;) {
            if (r.queue.size() >= r.max_queue && is_open()) return;
            if (r.incoming.data.capacity() < r.spare.data.capacity()) std::swap(r.incoming, r.spare);
            net_error_code result;
            if (!read_now(r.incoming, result)) break;
            if (!delivered(result)) return;
        }
        r.pumping = true;
        read_then(r.incoming, [me = self()](net_error_code result) {
            me->reader_->pumping = false;
            if (me->delivered(result)) me->pump();
        });
    }

    // After a read: queues its message, or records the end; false at the end.
    bool delivered(const net_error_code& result) {
        background_reader& r = *reader_;
        if (result) {
            r.ended = true;
            r.end = result;
        } else if (r.queue.size() < r.max_queue) {
            r.queue.emplace_back();
            std::swap(r.queue.back(), r.incoming);
        }
        if (r.waiting) {
            r.waiting = false;
            r.signal->cancel();
        }
        return !r.ended;
    }

    // Allocated when reading in the background starts: a connection served
    // by callbacks (which read by themselves) does without it.
    struct background_reader {
        std::vector<message> queue; // oldest first
        message incoming;           // the read in flight fills it
        message spare;              // a taken message's buffer, for a later read
        std::size_t max_queue = default_max_queue;
        net_error_code end;
        std::unique_ptr<net::steady_timer> signal; // a waiting receive's; made for the first wait
        bool waiting = false;  // a receive waits on `signal`
        bool pumping = false;  // a read in flight
        bool ended = false;    // `end` says how
        bool receiving = false;
    };
    std::unique_ptr<background_reader> reader_;
};

} // namespace detail

class websocket {
public:
    websocket() noexcept = default;
    explicit websocket(std::shared_ptr<detail::websocket_backend> backend) noexcept : backend_(std::move(backend)) {}

    explicit operator bool() const noexcept { return backend_ != nullptr; }

    // ---- receiving ---------------------------------------------------------------

    // The next message; empty once the connection closed normally. Throws
    // connection_closed_error for any other end. Messages are read in the
    // background and wait in a bounded queue (server_options::max_queue,
    // client_options::max_queue); receive() takes the oldest. It is
    // cancellation-safe: a receive cancelled through Asio (say, the loser of
    // `co_await (ws.receive() || timer.async_wait(...))`) takes no message,
    // so none is lost. One receive at a time.
    net::awaitable<std::optional<message>> receive() {
        return receive_into<std::optional<message>>(nullptr, std::nullopt, [this](const received& r, message& m) {
            return r.result ? throw_unless_normal(r), std::optional<message>() : std::optional<message>(std::move(m));
        });
    }
    // The same into `out`, reusing its capacity: true for a message.
    net::awaitable<bool> receive(message& out) {
        return receive_into<bool>(&out, std::nullopt, [this](const received& r, message&) {
            return r.result ? throw_unless_normal(r), false : true;
        });
    }
    // Never throws: false with `ec` clear for a normal close, set otherwise
    // (get_close_status() tells the rest; operation_aborted when cancelled).
    net::awaitable<bool> receive(message& out, std::error_code& ec) {
        return receive_into<bool>(&out, std::nullopt, [this, &ec](const received& r, message&) {
            ec = error_of(r);
            return !r.result;
        });
    }
    net::awaitable<std::optional<message>> receive(std::error_code& ec) {
        return receive_into<std::optional<message>>(nullptr, std::nullopt, [this, &ec](const received& r, message& m) {
            ec = error_of(r);
            return r.result ? std::optional<message>() : std::optional<message>(std::move(m));
        });
    }
    // With a time limit, as Python's recv(timeout): false with
    // std::errc::timed_out in `ec` when no message came in time; a later
    // receive still gets whatever arrives after.
    net::awaitable<bool> receive(message& out, duration timeout, std::error_code& ec) {
        return receive_into<bool>(&out, clock_type::now() + timeout, [this, &ec](const received& r, message&) {
            ec = error_of(r);
            return !r.result;
        });
    }
    // Throws std::system_error with std::errc::timed_out when no message
    // came in time.
    net::awaitable<std::optional<message>> receive(duration timeout) {
        return receive_into<std::optional<message>>(nullptr, clock_type::now() + timeout,
                                                    [this](const received& r, message& m) {
            return r.result ? throw_unless_normal(r), std::optional<message>() : std::optional<message>(std::move(m));
        });
    }

    // ---- sending ---------------------------------------------------------------

    // Waits while the send queue is above its high water mark; completes
    // once the message is queued (the data must live until then).
    net::awaitable<void> send_text(std::string_view text) { return send_or_throw(true, const_bytes(text)); }
    net::awaitable<void> send_binary(const_bytes data) { return send_or_throw(false, data); }
    net::awaitable<void> send(const message& m) { return send_or_throw(m.text, m.bytes()); }
    net::awaitable<void> send_text(std::string_view text, std::error_code& ec) {
        return send_with_error(true, const_bytes(text), ec);
    }
    net::awaitable<void> send_binary(const_bytes data, std::error_code& ec) { return send_with_error(false, data, ec); }
    net::awaitable<void> send(const message& m, std::error_code& ec) { return send_with_error(m.text, m.bytes(), ec); }

    // Queues now or answers would_block (the queue is above its high water
    // mark) or connection_closed; never waits.
    std::error_code try_send_text(std::string_view text) { return backend_->try_write(true, const_bytes(text)); }
    std::error_code try_send_binary(const_bytes data) { return backend_->try_write(false, data); }

    // A ping; its pong (like every frame) counts as activity for keepalive.
    net::awaitable<void> ping(const_bytes payload = {}) {
        const net_error_code ec = co_await backend_->ping(payload);
        if (ec) throw_connection_closed(status_for(to_std_error(ec)));
    }

    // The closing handshake: completes once the peer answered and the
    // transport is closed (or the close timeout ran out). Never throws.
    net::awaitable<void> close(close_code code = close_code::normal, std::string_view reason = {}) {
        co_await backend_->close(code, std::string(reason));
    }
    // Starts the closing handshake from any thread, without waiting; the
    // handler's receive() then ends.
    void post_close(close_code code = close_code::going_away, std::string_view reason = {}) const {
        net::post(backend_->executor(), [backend = backend_, code, reason = std::string(reason)]() mutable {
            backend->start_close(code, std::move(reason));
        });
    }

    // ---- what it is ---------------------------------------------------------------

    bool is_open() const noexcept { return backend_->is_open(); }
    // How it ended (code, peer's reason, error), once it has.
    const close_status& get_close_status() const noexcept { return backend_->status(); }
    // The request target ("/chat/room?x=1"), its path ("/chat/room") and query ("x=1").
    std::string_view target() const noexcept { return backend_->target; }
    std::string_view path() const noexcept {
        const std::string_view t = backend_->target;
        return t.substr(0, t.find('?'));
    }
    std::string_view query() const noexcept {
        const std::string_view t = backend_->target;
        const std::size_t mark = t.find('?');
        return mark == std::string_view::npos ? std::string_view() : t.substr(mark + 1);
    }
    std::string_view subprotocol() const noexcept { return backend_->subprotocol; }
    bool deflate_enabled() const noexcept {
        const wsx::connection* c = backend_->core();
        return c != nullptr && c->deflate_enabled();
    }
    // Server: the upgrade request with every header (cookies, tokens...);
    // client: the server's response. Valid until the first receive(), which
    // frees them (a few KiB per connection); null afterwards.
    const server_request* request() const noexcept {
        const wsx::connection* c = backend_->core();
        return backend_->request_kept && c != nullptr && c->get_role() == role::server ? &c->request() : nullptr;
    }
    const client_response* response() const noexcept {
        const wsx::connection* c = backend_->core();
        return backend_->request_kept && c != nullptr && c->get_role() == role::client ? &c->response() : nullptr;
    }
    // Round-trip time of the last keepalive ping answered.
    std::optional<duration> latency() const noexcept {
        const wsx::connection* c = backend_->core();
        return c != nullptr ? c->latency() : std::nullopt;
    }
    net::ip::tcp::endpoint remote_endpoint() const noexcept { return backend_->remote; }
    // Bytes queued and not yet written.
    std::size_t queued_bytes() const noexcept { return backend_->queued_bytes(); }
    // A number unique among the connections of a process.
    std::uint64_t id() const noexcept { return backend_->id; }
    net::any_io_executor get_executor() const { return backend_->executor(); }
    // The protocol core (for what the handle does not offer).
    wsx::connection* connection() const noexcept { return backend_->core(); }
    const std::shared_ptr<detail::websocket_backend>& backend() const noexcept { return backend_; }

    friend bool operator==(const websocket& a, const websocket& b) noexcept { return a.backend_ == b.backend_; }
    friend bool operator!=(const websocket& a, const websocket& b) noexcept { return a.backend_ != b.backend_; }
    friend bool operator<(const websocket& a, const websocket& b) noexcept {
        return std::less<const void*>()(a.backend_.get(), b.backend_.get());
    }

    // A process-wide connection number.
    static std::uint64_t next_id() noexcept {
        static std::atomic<std::uint64_t> counter{0};
        return counter.fetch_add(1, std::memory_order_relaxed) + 1;
    }

private:
    void forget_request() noexcept { backend_->release_request(); }

    // What a receive found: a message (result clear), the connection's end
    // (`end`), or a wait cut short: operation_aborted when the receive was
    // cancelled, timed_out at its deadline, operation_in_progress when
    // another receive is waiting.
    struct received {
        net_error_code result;
        bool end = true;
    };

    // Every receive form: one coroutine (one frame while it waits) that
    // takes the next message from the background reader into *into (or a
    // message of its own), waiting until `deadline`, and returns what
    // finish(received, message&) makes of it. A cancelled receive takes
    // nothing: a message that came at the same time stays queued.
    template <class Result, class Finish>
    net::awaitable<Result> receive_into(message* into, std::optional<time_point> deadline, Finish finish) {
        forget_request();
        const std::shared_ptr<detail::websocket_backend> keep = backend_;
        detail::websocket_backend& backend = *keep;
        message own;
        message& out = into != nullptr ? *into : own;
        received r;
        if (!backend.take(out, r.result)) {
            r.end = false;
            if (backend.receiving()) {
                r.result = to_net_error(std::make_error_code(std::errc::operation_in_progress));
            } else {
                backend.set_receiving(true);
                // A handle: it sees a cancellation that comes later too.
                const net::cancellation_state cancellation = co_await net::this_coro::cancellation_state;
                for (;;) {
                    // Cancelled: back before taking anything (and before an
                    // await, which would throw).
                    if (cancellation.cancelled() != net::cancellation_type::none) {
                        r.result = net::error::operation_aborted;
                        break;
                    }
                    net_error_code waited;
                    co_await backend.async_wait_delivery(deadline, net::redirect_error(net::use_awaitable, waited));
                    backend.stop_waiting();
                    if (cancellation.cancelled() != net::cancellation_type::none) {
                        r.result = net::error::operation_aborted;
                        break;
                    }
                    if (backend.take(out, r.result)) {
                        r.end = true;
                        break;
                    }
                    if (!waited) { // the deadline passed, not a wake-up
                        r.result = to_net_error(std::make_error_code(std::errc::timed_out));
                        break;
                    }
                }
                backend.set_receiving(false);
            }
        }
        co_return finish(r, out);
    }

    // The error_code forms' answer: nothing for a message or a normal
    // close, else why not.
    std::error_code error_of(const received& r) const { return r.end ? end_error(r.result) : to_std_error(r.result); }
    // The throwing forms: a cut-short wait as std::system_error, an end
    // other than a normal close as connection_closed_error.
    void throw_unless_normal(const received& r) const {
        if (!r.end) throw std::system_error(to_std_error(r.result), "receive");
        if (const std::error_code ec = end_error(r.result)) throw connection_closed_error(status_for(ec));
    }

    // After a read: nothing for a message or a normal close, else the error.
    std::error_code end_error(const net_error_code& result) const {
        if (!result || is_normal_close(backend_->status())) return {};
        return ended_error(result);
    }

    std::error_code ended_error(const net_error_code& result) const {
        const close_status& status = backend_->status();
        if (status.ec) return status.ec;
        const std::error_code ec = to_std_error(result);
        return ec ? ec : make_error_code(error::connection_closed);
    }

    close_status status_for(const std::error_code& ec) const { return backend_->reported_status(ec); }

    // Most sends are queued at once, without an operation of their own;
    // one that must wait for room (or a large one, written from the
    // caller's memory) goes through the backend's write.
    net::awaitable<void> send_or_throw(bool text, const_bytes data) {
        std::error_code ec;
        if (!send_now(text, data, ec)) ec = to_std_error(co_await backend_->write(text, data));
        if (ec) throw_connection_closed(status_for(ec));
    }
    net::awaitable<void> send_with_error(bool text, const_bytes data, std::error_code& ec) {
        if (!send_now(text, data, ec)) ec = to_std_error(co_await backend_->write(text, data));
    }
    bool send_now(bool text, const_bytes data, std::error_code& ec) {
        if (data.size() >= connection::direct_payload_size) return false;
        ec = backend_->try_write(text, data);
        return ec != error::would_block;
    }

    std::shared_ptr<detail::websocket_backend> backend_;
};

} // namespace wsx

template <>
struct std::hash<wsx::websocket> {
    std::size_t operator()(const wsx::websocket& ws) const noexcept {
        return std::hash<const void*>()(ws.backend().get());
    }
};
