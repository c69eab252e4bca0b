// wsx/asio/client.hpp - connect(uri, options): a WebSocket client in one call,
// and reconnector: a client that connects again after each end, with
// exponential backoff and jitter.
//
//   wsx::websocket ws = co_await wsx::connect("ws://127.0.0.1:8765/chat");
//   co_await ws.send_text("hello");
//   auto reply = co_await ws.receive();
//
//   wsx::reconnector feed("wss://example.com/feed");
//   for (;;) {
//       wsx::websocket ws = co_await feed.next();  // waits before retrying
//       try {
//           while (auto message = co_await ws.receive()) ...;
//       } catch (const wsx::connection_closed&) {}  // and connect again
//   }
//
// connect() resolves the host, connects over TCP, runs TLS for wss:// (the
// peer's certificate and host name are verified, SNI is sent), and the
// opening handshake, all within connection.open_timeout. It throws
// wsx::handshake_failed (a std::system_error with the HTTP status, when
// there was one) or std::system_error; the form with a std::error_code&
// never throws. Redirects (301, 302, 307, 308 with a Location header) are
// followed up to max_redirects times; by default none is.
//
// The websocket lives on the executor of the coroutine that called
// connect(): use it from there (see wsx/asio/websocket.hpp).
#pragma once

#include <wsx/asio/async_stream.hpp>
#include <wsx/asio/config.hpp>
#include <wsx/asio/ssl.hpp>
#include <wsx/asio/websocket.hpp>
#include <wsx/connection.hpp>
#include <wsx/error.hpp>
#include <wsx/handshake.hpp>
#include <wsx/uri.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <openssl/ssl.h>

namespace wsx {

struct client_options {
    // User-provided on purpose: GCC 12 destroys some temporaries of
    // aggregates with default member initializers twice when they appear in
    // a co_await expression, as in `co_await connect(uri, {})`.
    client_options() {}

    // Limits, timers (open_timeout bounds the whole connect), and deflate
    // (permessage-deflate offered with these parameters when set).
    connection_options connection;
    // Origin, subprotocols offered, extra headers (Authorization, Cookie),
    // User-Agent.
    handshake_options handshake;
    // wss://: the context to verify the server with; when empty, one that
    // trusts the system's certificate authorities.
    std::shared_ptr<net::ssl::context> tls;
    // Redirects to follow (301, 302, 307, 308); 0: none.
    std::size_t max_redirects = 0;
    std::size_t low_water_mark = 256 * 1024;
    // Messages read in the background and not yet taken by receive(); when
    // the queue is full reading stops until one is taken.
    std::size_t max_queue = 16;
    log_handler log;
};

// The server answered the opening handshake with something other than 101.
class handshake_failed : public std::system_error {
public:
    handshake_failed(std::error_code ec, int status, std::string location)
        : std::system_error(ec, status != 0 ? "HTTP " + std::to_string(status) : std::string("handshake failed")),
          status_(status), location_(std::move(location)) {}
    // The HTTP status (0 when none was received), and its Location header.
    int status() const noexcept { return status_; }
    const std::string& location() const noexcept { return location_; }

private:
    int status_;
    std::string location_;
};

namespace detail {

// What one attempt learnt, beyond its error.
struct connect_outcome {
    websocket ws;
    std::error_code ec;
    int status = 0;       // the HTTP status of a refused handshake
    std::string location; // its Location header
};

// The Location of a redirect, as a ws:// or wss:// URI: absolute (ws, wss,
// http, https) or an absolute path on the same server.
inline std::optional<std::string> redirect_target(const uri& from, std::string_view location) {
    const auto starts = [&](std::string_view prefix) {
        return location.size() >= prefix.size() &&
               std::equal(prefix.begin(), prefix.end(), location.begin(),
                          [](char a, char b) { return a == (b >= 'A' && b <= 'Z' ? char(b - 'A' + 'a') : b); });
    };
    if (starts("ws://") || starts("wss://")) return std::string(location);
    if (starts("http://")) return "ws://" + std::string(location.substr(7));
    if (starts("https://")) return "wss://" + std::string(location.substr(8));
    if (!location.empty() && location.front() == '/' && (location.size() < 2 || location[1] != '/'))
        return std::string(from.secure ? "wss://" : "ws://") + from.host_header + std::string(location);
    return std::nullopt;
}

inline bool is_redirect(int status) noexcept { return status == 301 || status == 302 || status == 307 || status == 308; }

template <class Layer>
net::awaitable<connect_outcome> finish_connect(std::shared_ptr<stream_backend<Layer>> backend, const uri& where,
                                               const client_options& options) {
    connect_outcome out;
    auto& stream = backend->stream;
    stream.set_options(options.connection);
    stream.set_low_water_mark(options.low_water_mark);
    const net_error_code ec = co_await stream.co_handshake(where, options.handshake);
    if (ec) {
        out.ec = to_std_error(ec);
        if (const wsx::connection* core = stream.connection()) {
            out.status = core->response().http.status;
            if (auto location = core->response().http.headers.find("Location")) out.location = std::string(*location);
        }
        co_return out;
    }
    backend->id = websocket::next_id();
    backend->target = where.target;
    backend->subprotocol = std::string(stream.subprotocol());
    backend->start_reading(options.max_queue); // in the background from now on
    out.ws = websocket(backend);
    co_return out;
}

inline net::awaitable<connect_outcome> connect_once(const uri& where, const client_options& options) {
    using tcp = net::ip::tcp;
    connect_outcome out;
    const auto executor = co_await net::this_coro::executor;
    const duration limit = options.connection.open_timeout;
    const auto started = clock_type::now();

    // Resolve and connect within the open timeout.
    tcp::resolver resolver(executor);
    tcp::socket socket(executor);
    detail::deadline_guard guard(executor, limit.count() > 0 ? limit : duration(std::chrono::hours(24)), [&] {
        resolver.cancel();
        net_error_code ignored;
        socket.close(ignored);
    });
    net_error_code ec;
    const auto endpoints = co_await resolver.async_resolve(where.host, std::to_string(where.port),
                                                           net::redirect_error(net::use_awaitable, ec));
    if (!ec) co_await net::async_connect(socket, endpoints, net::redirect_error(net::use_awaitable, ec));
    guard.disarm();
    if (guard.fired()) ec = to_net_error(error::open_timeout);
    if (ec) {
        out.ec = to_std_error(ec);
        co_return out;
    }
    socket.set_option(tcp::no_delay(true), ec);
    const tcp::endpoint remote = socket.remote_endpoint(ec);

    // What is left of the open timeout, for TLS and the handshake.
    client_options rest = options;
    if (limit.count() > 0) {
        const auto spent = std::chrono::duration_cast<duration>(clock_type::now() - started);
        rest.connection.open_timeout = std::max(duration(1), limit - spent);
    }

    if (!where.secure) {
        auto backend = std::make_shared<stream_backend<tcp::socket>>(std::move(socket));
        backend->remote = remote;
        co_return co_await finish_connect(backend, where, rest);
    }

    std::shared_ptr<net::ssl::context> context = options.tls;
    if (!context) {
        context = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
        context->set_default_verify_paths();
        context->set_verify_mode(net::ssl::verify_peer);
    }
    using layer = net::ssl::stream<tcp::socket>;
    auto backend = std::make_shared<stream_backend<layer>>(std::move(socket), *context);
    backend->keep_alive = context;
    backend->remote = remote;
    layer& tls = backend->stream.next_layer();
    // RFC 6066 §3: SNI carries a host name, never an address literal.
    if (where.host_kind == uri_host_kind::name) SSL_set_tlsext_host_name(tls.native_handle(), where.host.c_str());
    tls.set_verify_callback(net::ssl::host_name_verification(where.host));
    detail::deadline_guard tls_guard(executor, rest.connection.open_timeout.count() > 0 ? rest.connection.open_timeout
                                                                                         : duration(std::chrono::hours(24)),
                                     [&tls] { close_lowest_layer(tls); });
    co_await tls.async_handshake(net::ssl::stream_base::client, net::redirect_error(net::use_awaitable, ec));
    tls_guard.disarm();
    const bool tls_timed_out = tls_guard.fired();
    if (ec) {
        out.ec = tls_timed_out ? make_error_code(error::open_timeout) : make_error_code(error::tls_failed);
        co_return out;
    }
    if (limit.count() > 0) {
        const auto spent = std::chrono::duration_cast<duration>(clock_type::now() - started);
        rest.connection.open_timeout = std::max(duration(1), limit - spent);
    }
    co_return co_await finish_connect(backend, where, rest);
}

// connect() with its redirects; the outcome of the last attempt.
inline net::awaitable<connect_outcome> connect_following(std::string_view text, const client_options& options) {
    std::string current(text);
    for (std::size_t redirects = 0;; ++redirects) {
        std::error_code ec;
        const uri where = parse_uri(current, ec);
        if (ec) {
            connect_outcome out;
            out.ec = ec;
            co_return out;
        }
        connect_outcome out = co_await connect_once(where, options);
        if (!out.ec || !is_redirect(out.status) || redirects >= options.max_redirects) co_return out;
        const std::optional<std::string> next = redirect_target(where, out.location);
        if (!next) co_return out;
        if (options.log) options.log(log_level::info, "redirect " + std::to_string(out.status) + " to " + *next);
        current = *next;
    }
}

} // namespace detail

namespace detail {

inline net::awaitable<websocket> connect_or_throw(std::string uri_text, client_options options) {
    connect_outcome out = co_await connect_following(uri_text, options);
    if (out.ec) {
        if (out.status != 0 || out.ec == error::unexpected_status)
            throw handshake_failed(out.ec, out.status, std::move(out.location));
        throw std::system_error(out.ec, "connect");
    }
    co_return std::move(out.ws);
}

inline net::awaitable<websocket> connect_with_error(std::string uri_text, client_options options, std::error_code& ec) {
    connect_outcome out = co_await connect_following(uri_text, options);
    ec = out.ec;
    co_return std::move(out.ws);
}

} // namespace detail

// Connects to a ws:// or wss:// URI. Throws handshake_failed when the
// server refused the handshake, std::system_error otherwise.
// (Plain functions around coroutines: GCC 12 mishandles a coroutine's
// by-value parameters that have default arguments.)
inline net::awaitable<websocket> connect(std::string_view uri_text, client_options options) {
    return detail::connect_or_throw(std::string(uri_text), std::move(options));
}
inline net::awaitable<websocket> connect(std::string_view uri_text) {
    return detail::connect_or_throw(std::string(uri_text), client_options{});
}

// The same without exceptions: an empty websocket and `ec` set on failure.
inline net::awaitable<websocket> connect(std::string_view uri_text, client_options options, std::error_code& ec) {
    return detail::connect_with_error(std::string(uri_text), std::move(options), ec);
}

// How long reconnector waits between attempts: min_delay, then times
// `factor` after each failure, up to max_delay; each wait is shortened by a
// random part of up to `jitter` of it, so that many clients dropped at once
// do not come back at once. A successful connection starts over.
struct backoff_options {
    duration min_delay{1000};
    duration max_delay{60000};
    double factor = 1.618;
    double jitter = 0.5; // 0..1
    // Wait before the first reconnection too (false: reconnect at once once).
    bool delay_first_retry = false;
};

// A client that connects again after every end (Python websockets'
// `async for ws in connect(uri)`). next() retries network failures,
// timeouts and 5xx answers; it throws on the errors that retrying cannot
// mend: a bad URI, a 4xx answer or a refused handshake.
class reconnector {
public:
    explicit reconnector(std::string uri, client_options options = {}, backoff_options backoff = {})
        : uri_(std::move(uri)), options_(std::move(options)), backoff_(backoff),
          random_(std::random_device{}()) {}

    // Connects (waiting first after a previous connection or failure).
    net::awaitable<websocket> next() {
        for (;;) {
            if (attempts_ > 0 && (failures_ > 0 || backoff_.delay_first_retry)) {
                net::steady_timer pause(co_await net::this_coro::executor);
                pause.expires_after(delay());
                co_await pause.async_wait(net::use_awaitable);
            }
            ++attempts_;
            detail::connect_outcome out = co_await detail::connect_following(uri_, options_);
            if (!out.ec) {
                failures_ = 0;
                last_error_.clear();
                co_return std::move(out.ws);
            }
            last_error_ = out.ec;
            ++failures_;
            if (!retryable(out)) {
                if (out.status != 0) throw handshake_failed(out.ec, out.status, std::move(out.location));
                throw std::system_error(out.ec, "connect");
            }
            if (options_.log)
                options_.log(log_level::info, "connect to " + uri_ + " failed (" + out.ec.message() + "), retrying");
        }
    }

    std::size_t attempts() const noexcept { return attempts_; }
    std::size_t failures() const noexcept { return failures_; }
    std::error_code last_error() const noexcept { return last_error_; }

    // The wait before the next attempt (exposed for tests).
    duration delay() {
        double base = static_cast<double>(backoff_.min_delay.count());
        for (std::size_t i = 1; i < failures_ && base < static_cast<double>(backoff_.max_delay.count()); ++i)
            base *= backoff_.factor;
        base = std::min(base, static_cast<double>(backoff_.max_delay.count()));
        const double jitter = std::clamp(backoff_.jitter, 0.0, 1.0);
        std::uniform_real_distribution<double> cut(0.0, jitter);
        return duration(static_cast<duration::rep>(base * (1.0 - cut(random_))));
    }

private:
    static bool retryable(const detail::connect_outcome& out) {
        if (out.status != 0) return out.status >= 500;
        if (out.ec.category() == error_category()) {
            return out.ec == error::open_timeout || out.ec == error::unexpected_eof ||
                   out.ec == error::end_of_stream || out.ec == error::connection_closed ||
                   out.ec == error::tls_failed;
        }
        return true; // the network: refused, reset, unreachable, no name yet
    }

    std::string uri_;
    client_options options_;
    backoff_options backoff_;
    std::minstd_rand random_;
    std::size_t attempts_ = 0;
    std::size_t failures_ = 0;
    std::error_code last_error_;
};

} // namespace wsx
