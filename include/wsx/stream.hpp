// wsx/stream.hpp - a blocking WebSocket over any byte stream.
//
// wsx::stream<NextLayer> puts the sans-I/O wsx::connection on a blocking byte
// stream: a wsx::tcp_socket, a wsx::tls_stream, a test pipe, anything with
// these two member functions (the NextLayer concept):
//
//   std::size_t read_some(wsx::mutable_bytes buffer, std::error_code& ec);
//       Blocks until at least one byte arrived and returns how many were
//       read; at end of stream returns 0 with wsx::error::end_of_stream.
//   std::size_t write_some(wsx::const_bytes buffer, std::error_code& ec);
//       Blocks until at least one byte was written; returns how many.
//
// Optional, detected at compile time:
//   std::size_t write_some(const wsx::const_bytes* buffers, std::size_t count,
//                          std::error_code& ec);
//       A gather write (writev): frame headers and payloads leave in one call.
//   void teardown(Layer& layer, std::error_code& ec);   // a free function
//       How to end the layer (found by argument-dependent lookup, so it lives
//       in the layer's namespace); tcp.hpp and tls.hpp bring their own. A
//       layer without one is closed with its member close(ec) if it has one,
//       and otherwise left for its destructor.
//
// NextLayer may be a reference (stream<tcp_socket&>) or a value the stream
// owns (stream<tcp_socket>, constructed from the stream's arguments).
//
//   wsx::stream<wsx::tcp_socket> ws(std::move(socket));
//   ws.handshake("example.com", "/chat");       // client; or ws.accept() on a server
//   ws.write_text("hello");
//   wsx::message m;
//   ws.read(m);                                  // pings are answered inside
//   ws.close(wsx::close_code::normal);
//
// Every call comes in two forms: one that throws std::system_error, and one
// that fills a std::error_code& and never throws for run-time failures. A
// read that meets the peer's close frame completes the closing handshake,
// ends the layer and reports wsx::error::connection_closed (or the error
// that failed the connection); get_close_status() then tells what the peer said.
// An error of the layer below (a reset, a timeout) is final: the stream ends
// the layer and every later call reports that error.
//
// Time: each time the stream is about to read it tells the connection the
// steady-clock time (connection::tick), so the open, close and keepalive
// timers of connection_options act whenever the stream reads. A read that
// blocks is bounded only by the layer: give it a timeout (for example
// tcp_socket::set_read_timeout) to bound every call. A layer's timeout is an
// error like any other and ends the stream.
//
// Destroying a stream does no I/O (a TLS layer sends no close_notify then):
// close() first. Not thread-safe: one thread at a time uses a stream.
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/close_code.hpp>
#include <wsx/connection.hpp>
#include <wsx/error.hpp>
#include <wsx/handshake.hpp>
#include <wsx/message.hpp>
#include <wsx/uri.hpp>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace wsx {

// Server: decides about a valid upgrade request (see stream::accept).
using request_handler = std::function<int(const server_request& request, accept_options& answer)>;

namespace detail {

// Each trait is true when the call compiles and returns a byte count.
template <class Layer, class = void>
struct has_read_some : std::false_type {};
template <class Layer>
struct has_read_some<Layer, std::void_t<decltype(std::declval<Layer&>().read_some(
                                std::declval<mutable_bytes>(), std::declval<std::error_code&>()))>>
    : std::is_convertible<decltype(std::declval<Layer&>().read_some(std::declval<mutable_bytes>(),
                                                                    std::declval<std::error_code&>())),
                          std::size_t> {};

template <class Layer, class = void>
struct has_write_some : std::false_type {};
template <class Layer>
struct has_write_some<Layer, std::void_t<decltype(std::declval<Layer&>().write_some(
                                 std::declval<const_bytes>(), std::declval<std::error_code&>()))>>
    : std::is_convertible<decltype(std::declval<Layer&>().write_some(std::declval<const_bytes>(),
                                                                     std::declval<std::error_code&>())),
                          std::size_t> {};

template <class Layer, class = void>
struct has_gather_write_some : std::false_type {};
template <class Layer>
struct has_gather_write_some<Layer, std::void_t<decltype(std::declval<Layer&>().write_some(
                                        std::declval<const const_bytes*>(), std::size_t{},
                                        std::declval<std::error_code&>()))>>
    : std::is_convertible<decltype(std::declval<Layer&>().write_some(std::declval<const const_bytes*>(),
                                                                     std::size_t{}, std::declval<std::error_code&>())),
                          std::size_t> {};

template <class Layer, class = void>
struct has_close_member : std::false_type {};
template <class Layer>
struct has_close_member<Layer, std::void_t<decltype(std::declval<Layer&>().close(std::declval<std::error_code&>()))>>
    : std::true_type {};

namespace teardown_lookup {

// Hides any teardown of enclosing namespaces, so the call below finds only
// the overloads that argument-dependent lookup brings from the layer's own
// namespace.
void teardown() = delete;

template <class Layer>
auto call(Layer& layer, std::error_code& ec, int) -> decltype(teardown(layer, ec), void()) {
    teardown(layer, ec);
}

template <class Layer>
void call(Layer& layer, std::error_code& ec, long) {
    ec.clear();
    if constexpr (has_close_member<Layer>::value) layer.close(ec);
}

} // namespace teardown_lookup

// Ends a layer: its own teardown() if argument-dependent lookup finds one,
// else its close(ec), else nothing.
template <class Layer>
void teardown_layer(Layer& layer, std::error_code& ec) {
    teardown_lookup::call(layer, ec, 0);
}

inline void throw_on_error(const std::error_code& ec, const char* what) {
    if (ec) throw std::system_error(ec, what);
}

} // namespace detail

template <class NextLayer>
class stream {
public:
    using next_layer_type = std::remove_reference_t<NextLayer>;

    static_assert(detail::has_read_some<next_layer_type>::value,
                  "wsx::stream<NextLayer>: NextLayer needs a member function "
                  "std::size_t read_some(wsx::mutable_bytes, std::error_code&) that blocks until at least one "
                  "byte is read (see the top of wsx/stream.hpp)");
    static_assert(detail::has_write_some<next_layer_type>::value,
                  "wsx::stream<NextLayer>: NextLayer needs a member function "
                  "std::size_t write_some(wsx::const_bytes, std::error_code&) that blocks until at least one "
                  "byte is written (see the top of wsx/stream.hpp)");

    // The arguments construct the layer: a socket to move in, a reference
    // to bind, or a TLS stream's (socket, context).
    template <class... Args,
              class = std::enable_if_t<!(sizeof...(Args) == 1 &&
                                         (std::is_same_v<std::decay_t<Args>, stream> || ...))>>
    explicit stream(Args&&... args) : next_(std::forward<Args>(args)...) {}

    next_layer_type& next_layer() noexcept { return next_; }
    const next_layer_type& next_layer() const noexcept { return next_; }

    // Limits, timers, streaming and deflate for the next handshake or
    // accept (connection_options); read them back with options().
    void set_options(connection_options options) { options_ = std::move(options); }
    const connection_options& options() const noexcept { return options_; }

    void set_control_callback(control_callback callback) { control_callback_ = std::move(callback); }

    // The protocol core, once a handshake or accept started (else null).
    wsx::connection* connection() noexcept { return connection_ ? &*connection_ : nullptr; }

    // Open: the handshake succeeded and no close frame was read or sent.
    bool is_open() const noexcept { return connection_ && !ended_ && connection_->get_state() == state::open; }
    std::string_view subprotocol() const noexcept { return connection_ ? connection_->subprotocol() : std::string_view(); }
    bool deflate_enabled() const noexcept { return connection_ && connection_->deflate_enabled(); }
    // How the connection ended (meaningful once it has).
    const close_status& get_close_status() const noexcept {
        static const close_status none;
        return connection_ ? connection_->status() : none;
    }

    // ---- client --------------------------------------------------------------

    // Sends the opening handshake for `target` ("/path?query") to `host`
    // (the Host header: "name", "name:port", "[::1]:9001"...) and reads the
    // answer. A refused upgrade fails with the connection's handshake error
    // (unexpected_status, bad_sec_accept...); connection()->response() keeps
    // the server's answer (status, Location, ...). Options that cannot be
    // sent fail with std::errc::invalid_argument.
    void handshake(std::string_view host, std::string_view target, const handshake_options& options,
                   std::error_code& ec) {
        client_request_options request;
        if (!make_client_request(host, target, options, request)) {
            ec = std::make_error_code(std::errc::invalid_argument);
            return;
        }
        client_handshake(std::move(request), ec);
    }
    void handshake(std::string_view host, std::string_view target, std::error_code& ec) {
        handshake(host, target, handshake_options{}, ec);
    }
    void handshake(std::string_view host, std::string_view target, const handshake_options& options = {}) {
        std::error_code ec;
        handshake(host, target, options, ec);
        detail::throw_on_error(ec, "wsx::stream::handshake");
    }

    // The same for a parsed ws:// or wss:// URI (its host, port and target).
    void handshake(const uri& where, const handshake_options& options, std::error_code& ec) {
        client_handshake(make_client_request(where, options), ec);
    }
    void handshake(const uri& where, std::error_code& ec) { handshake(where, handshake_options{}, ec); }
    void handshake(const uri& where, const handshake_options& options = {}) {
        std::error_code ec;
        handshake(where, options, ec);
        detail::throw_on_error(ec, "wsx::stream::handshake");
    }

    // ---- server --------------------------------------------------------------

    // Reads the upgrade request, checks it and answers 101 Switching
    // Protocols with `answer`; a bad request is answered with the right HTTP
    // error (400, 426, 403, 431...), the layer is ended and the check's
    // error returned. connection()->request() keeps the parsed request.
    void accept(const accept_options& answer, std::error_code& ec) { accept(const_bytes(), answer, ec); }
    void accept(std::error_code& ec) { accept(const_bytes(), accept_options{}, ec); }
    void accept(const accept_options& answer = {}) {
        std::error_code ec;
        accept(const_bytes(), answer, ec);
        detail::throw_on_error(ec, "wsx::stream::accept");
    }

    // The same for a request the caller already read from the layer (an
    // HTTP server that found an Upgrade header): `already_read` holds those
    // bytes, the head and anything read past it.
    void accept(const_bytes already_read, const accept_options& answer, std::error_code& ec) {
        accept(already_read, answer, request_handler(), ec);
    }
    void accept(const_bytes already_read, const accept_options& answer = {}) {
        std::error_code ec;
        accept(already_read, answer, ec);
        detail::throw_on_error(ec, "wsx::stream::accept");
    }

    // The same, asking `handler` once the request passed the checks: it may
    // look at the request (path, query, headers, offered subprotocols), fill
    // in the answer (select_subprotocol(), Set-Cookie...), and returns 101
    // to accept or the HTTP status to refuse with (401, 403, 404...), which
    // fails the call with handshake_rejected.
    void accept(const request_handler& handler, std::error_code& ec) {
        accept(const_bytes(), accept_options{}, handler, ec);
    }
    void accept(const request_handler& handler) {
        std::error_code ec;
        accept(const_bytes(), accept_options{}, handler, ec);
        detail::throw_on_error(ec, "wsx::stream::accept");
    }
    void accept(const_bytes already_read, const accept_options& answer, const request_handler& handler,
                std::error_code& ec) {
        start(role::server, options_);
        connection_->receive(already_read);
        for (;;) {
            const event ev = next_event(ec);
            if (ec) return;
            if (ev.type == event_type::request) {
                accept_options chosen = answer;
                const int status = handler ? handler(connection_->request(), chosen) : 101;
                // An answer that cannot be sent fails the call with
                // invalid_argument; the core answered 500 then.
                ec = status == 101 ? connection_->accept(std::move(chosen))
                                   : connection_->reject(status, {}, chosen.headers);
                std::error_code flushed;
                if (!flush(flushed)) {
                    if (!ec) ec = flushed;
                    return;
                }
                if (ec) {
                    end_layer();
                    return;
                }
                if (connection_->get_state() == state::open) return;
                continue; // a refusal: its close event comes next
            }
            if (ev.type == event_type::http_request) {
                connection_->refuse(); // not an upgrade: the HTTP error that says why
                continue;
            }
            if (ev.type == event_type::close) {
                ec = end_with(ev);
                if (!ec) ec = make_error_code(error::handshake_rejected);
                return;
            }
        }
    }

    // ---- reading -------------------------------------------------------------

    // Reads one whole message (up to connection_options::max_message_size).
    // After a partial read_some(), returns the rest of that message.
    void read(message& out, std::error_code& ec) {
        out.data.clear();
        if (!check_open(ec)) return;
        if (reading_message_) {
            out.text = message_text_;
            out.data.append(as_string_view(pending_));
            pending_ = {};
            if (pending_fin_) {
                reading_message_ = false;
                return;
            }
        }
        for (;;) {
            const event ev = next_data(ec);
            if (ec) return;
            out.text = ev.text;
            if (ev.type == event_type::message) {
                connection_->take_message(ev, out.data);
                return;
            }
            out.data.append(ev.data_view());
            if (ev.fin) return;
        }
    }
    void read(message& out) {
        std::error_code ec;
        read(out, ec);
        detail::throw_on_error(ec, "wsx::stream::read");
    }

    // Reads part of a message into `buffer`: up to buffer.size() bytes of
    // the frame (streaming mode) or message being read. message_done() tells
    // when the message is complete, last_message_text() what it is. An
    // empty message gives 0 bytes with message_done(). With
    // connection_options::streaming set, no more than one frame is held in
    // memory, so a message of any size (up to max_message_size) passes
    // through a small buffer.
    std::size_t read_some(mutable_bytes buffer, std::error_code& ec) {
        if (!check_open(ec) || buffer.empty()) return 0;
        if (!reading_message_ || (pending_.empty() && !pending_fin_)) {
            const event ev = next_data(ec);
            if (ec) return 0;
            reading_message_ = true;
            message_text_ = ev.text;
            pending_ = ev.data;
            pending_fin_ = ev.type == event_type::message || ev.fin;
        }
        const std::size_t n = std::min(buffer.size(), pending_.size());
        if (n > 0) std::memcpy(buffer.data(), pending_.data(), n);
        pending_ = pending_.subspan(n);
        if (pending_.empty() && pending_fin_) reading_message_ = false;
        return n;
    }
    std::size_t read_some(mutable_bytes buffer) {
        std::error_code ec;
        const std::size_t n = read_some(buffer, ec);
        detail::throw_on_error(ec, "wsx::stream::read_some");
        return n;
    }
    bool message_done() const noexcept { return !reading_message_; }
    bool last_message_text() const noexcept { return message_text_; }

    // ---- writing -------------------------------------------------------------

    // A server's large message (64 KiB or more, uncompressed) is written
    // from `text` or `data` itself, after its header, not copied first.
    void write_text(std::string_view text, std::error_code& ec) {
        write_message(true, const_bytes(text), ec);
    }
    void write_text(std::string_view text) {
        std::error_code ec;
        write_text(text, ec);
        detail::throw_on_error(ec, "wsx::stream::write_text");
    }

    void write_binary(const_bytes data, std::error_code& ec) { write_message(false, data, ec); }
    void write_binary(const_bytes data) {
        std::error_code ec;
        write_binary(data, ec);
        detail::throw_on_error(ec, "wsx::stream::write_binary");
    }

    // Writes a message in parts: `text` counts on the first part, `fin`
    // ends the message. Each part leaves as one frame (or more, with
    // connection_options::fragment_size).
    void write_part(bool text, const_bytes data, bool fin, std::error_code& ec) {
        if (!check_open(ec)) return;
        if (!writing_message_ && fin) {
            ec = text ? connection_->send_text(as_string_view(data)) : connection_->send_binary(data);
        } else if (!writing_message_) {
            ec = connection_->begin_message(text, data);
            writing_message_ = !ec;
        } else if (fin) {
            ec = connection_->finish_message(data);
            writing_message_ = false;
        } else {
            ec = connection_->continue_message(data);
        }
        if (!ec) flush(ec);
    }
    void write_part(bool text, const_bytes data, bool fin) {
        std::error_code ec;
        write_part(text, data, fin, ec);
        detail::throw_on_error(ec, "wsx::stream::write_part");
    }

    // Sends a ping (payload up to 125 bytes); its pong reaches the control
    // callback during a later read.
    void ping(const_bytes payload, std::error_code& ec) {
        if (!check_open(ec)) return;
        ec = connection_->send_ping(payload);
        if (!ec) flush(ec);
    }
    void ping(std::error_code& ec) { ping(const_bytes(), ec); }
    void ping(const_bytes payload = {}) {
        std::error_code ec;
        ping(payload, ec);
        detail::throw_on_error(ec, "wsx::stream::ping");
    }

    // ---- closing -------------------------------------------------------------

    // Sends a close frame, reads (and drops) messages until the peer's close
    // frame, waits for the end of the stream where a client should (RFC 6455
    // §7.1.1), and ends the layer. Succeeds at once when the connection has
    // ended already; fails with the error that ended it if the closing
    // handshake went wrong.
    void close(close_code code, std::string_view reason, std::error_code& ec) {
        ec.clear();
        if (!connection_ || ended_) return;
        ec = connection_->close(code, reason);
        if (ec) return;
        for (;;) {
            const event ev = next_event(ec);
            if (ec) return;
            if (ev.type == event_type::close) {
                ec = end_with(ev);
                return;
            }
            report_control(ev);
        }
    }
    void close(close_code code, std::error_code& ec) { close(code, {}, ec); }
    void close(close_code code = close_code::normal, std::string_view reason = {}) {
        std::error_code ec;
        close(code, reason, ec);
        detail::throw_on_error(ec, "wsx::stream::close");
    }

private:
    void start(role r, connection_options options) {
        connection_.reset();
        connection_.emplace(r, std::move(options));
        ended_ = false;
        layer_ended_ = false;
        failure_.clear();
        reading_message_ = false;
        writing_message_ = false;
        pending_ = {};
        pending_fin_ = true;
    }

    void client_handshake(client_request_options request, std::error_code& ec) {
        start(role::client, options_);
        ec = connection_->start_handshake(std::move(request));
        if (ec) {
            connection_.reset();
            return;
        }
        for (;;) {
            const event ev = next_event(ec);
            if (ec) return;
            if (ev.type == event_type::response && connection_->get_state() == state::open) return;
            if (ev.type == event_type::close) {
                ec = end_with(ev);
                if (!ec) ec = make_error_code(error::handshake_rejected);
                return;
            }
        }
    }

    bool check_open(std::error_code& ec) {
        ec.clear();
        if (failure_) {
            ec = failure_;
        } else if (!connection_ || ended_ || connection_->get_state() != state::open) {
            ec = make_error_code(error::connection_closed);
        }
        return !ec;
    }

    void report_control(const event& ev) {
        if ((ev.type == event_type::ping || ev.type == event_type::pong) && control_callback_)
            control_callback_(ev.type, ev.data);
    }

    // The next message or chunk; pings and pongs go to the callback, a close
    // ends the stream and reports connection_closed (or its error).
    event next_data(std::error_code& ec) {
        for (;;) {
            const event ev = next_event(ec);
            if (ec) return {};
            switch (ev.type) {
            case event_type::message:
            case event_type::chunk:
                return ev;
            case event_type::close:
                ec = end_with(ev);
                if (!ec) ec = make_error_code(error::connection_closed);
                return {};
            default:
                report_control(ev);
                break;
            }
        }
    }

    // The connection's next event, reading from the layer as needed. Output
    // the connection queued (requests, answers, pongs, close frames) is
    // written before reading and after each event.
    event next_event(std::error_code& ec) {
        ec.clear();
        if (failure_) {
            ec = failure_;
            return {};
        }
        if (!connection_ || ended_) {
            ec = make_error_code(error::connection_closed);
            return {};
        }
        wsx::connection& c = *connection_;
        for (;;) {
            c.tick(clock_type::now());
            const event ev = c.next_event();
            // A message stays deliverable even if writing what it caused
            // fails: the failure is reported by the next call.
            if (!flush(ec) && !ev) return {};
            if (ev) {
                ec.clear();
                return ev;
            }
            const mutable_bytes area = c.prepare(c.read_size_hint());
            const std::size_t n = next_.read_some(area, ec);
            if (ec == error::end_of_stream) {
                c.commit(n);
                c.receive_eof();
                ec.clear();
                continue;
            }
            if (!ec && n == 0) ec = std::make_error_code(std::errc::io_error); // a layer that read nothing
            if (ec) {
                fail_layer(ec);
                return {};
            }
            c.commit(n);
        }
    }

    // Writes everything the connection has queued. A large payload is
    // written from the caller's memory (connection::send_borrowed): this
    // returns only once it was written, or the layer failed.
    void write_message(bool text, const_bytes data, std::error_code& ec) {
        if (!check_open(ec)) return;
        wsx::connection& c = *connection_;
        bool borrowed = false;
        ec = c.send_borrowed(text, data, borrowed);
        if (!ec) flush(ec);
    }

    // After a write_some: false, with the layer failed, on an error or a
    // layer that wrote nothing.
    bool wrote(std::size_t n, std::error_code& ec) {
        if (!ec && n == 0) ec = std::make_error_code(std::errc::io_error);
        if (!ec) return true;
        fail_layer(ec);
        return false;
    }

    bool flush(std::error_code& ec) {
        ec.clear();
        if (failure_) {
            ec = failure_;
            return false;
        }
        wsx::connection& c = *connection_;
        while (c.pending_output_size() > 0) {
            std::size_t n = 0;
            if constexpr (detail::has_gather_write_some<next_layer_type>::value) {
                const_bytes buffers[16];
                const std::size_t count = c.pending_output(buffers, 16);
                n = next_.write_some(buffers, count, ec);
            } else {
                n = next_.write_some(c.pending_output(), ec);
            }
            if (!wrote(n, ec)) return false;
            c.consume_output(n);
        }
        return true;
    }

    // The layer failed: nothing more can be sent or received.
    void fail_layer(const std::error_code& ec) {
        failure_ = ec;
        connection_->receive_transport_error(ec);
        end_layer();
    }

    void end_layer() {
        ended_ = true;
        if (layer_ended_) return;
        layer_ended_ = true;
        std::error_code ignored; // the connection is over either way
        detail::teardown_layer(next_, ignored);
    }

    // The connection's close event (the core recorded it in its status):
    // let the peer end the stream first where it should, end the layer.
    // Returns the event's error.
    std::error_code end_with(const event& ev) {
        reading_message_ = false;
        pending_ = {};
        ended_ = true;
        // RFC 6455 §7.1.1: "the underlying TCP connection, in most normal
        // cases, SHOULD be closed first by the server"; the client waits for
        // the end of the stream (up to the close timeout), which also spares
        // the server a reset for unread bytes.
        wsx::connection& c = *connection_;
        std::uint8_t discard[4096];
        for (;;) {
            c.tick(clock_type::now());
            if (failure_ || c.transport_action() == transport_action::close) break;
            std::error_code read_ec;
            const std::size_t n = next_.read_some(mutable_bytes(discard, sizeof discard), read_ec);
            if (read_ec || n == 0) break;
        }
        end_layer();
        return ev.ec;
    }

    NextLayer next_;
    connection_options options_;
    std::optional<wsx::connection> connection_;
    control_callback control_callback_;
    std::error_code failure_; // the layer's error that ended the stream
    bool ended_ = false;       // the connection ended: close event seen or layer failed
    bool layer_ended_ = false; // teardown done

    // read_some(): the rest of the frame or message being handed out.
    const_bytes pending_;
    bool pending_fin_ = true;
    bool reading_message_ = false;
    bool message_text_ = false;
    // write_part(): a message is being written.
    bool writing_message_ = false;
};

} // namespace wsx
