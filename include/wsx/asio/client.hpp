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

#include <wsx/asio/config.hpp>
#include <wsx/asio/websocket.hpp>
#if defined(WSX_ASIO_BOOST)
#include <boost/asio/ssl/context.hpp>
#else
#include <asio/ssl/context.hpp>
#endif
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

// One attempt, following redirects: wsx/asio/impl/client.ipp.
WSX_DECL net::awaitable<connect_outcome> connect_following(std::string_view text, const client_options& options);
WSX_DECL net::awaitable<websocket> connect_or_throw(std::string uri_text, client_options options);
WSX_DECL net::awaitable<websocket> connect_with_error(std::string uri_text, client_options options,
                                                      std::error_code& ec);

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

#if !defined(WSX_SEPARATE_COMPILATION)
#include <wsx/asio/impl/client.ipp>
#endif
