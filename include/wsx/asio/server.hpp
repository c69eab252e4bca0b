// wsx/asio/server.hpp - serve(handler, host, port, options): a WebSocket
// server, one coroutine per connection.
//
//   net::awaitable<void> echo(wsx::websocket ws) {
//       while (auto message = co_await ws.receive()) co_await ws.send(*message);
//   }
//   wsx::server server = wsx::serve(echo, "127.0.0.1", 8765);
//   server.wait();                       // or server.stop() from elsewhere
//
// serve() listens, accepts, runs the opening handshake (TLS first for
// wss://), and calls the handler with each open websocket on a coroutine of
// its own. When the handler returns the connection is closed with 1000; when
// it throws, with 1011 (a connection_closed exception just ends it). Or it
// takes a message_handler (on_open, on_message, on_close callbacks): no
// coroutine per connection, for servers of many idle connections.
//
// Before accepting, every request - an upgrade or a plain HTTP request such
// as a health check - goes through these steps, each of which may answer it
// with an HTTP response instead:
//   1. beyond max_connections: 503 with Retry-After;
//   2. process_request(request, answer): a reply to send (200 for a health
//      check, 401 with WWW-Authenticate, a redirect...) or nullopt to go on;
//      `answer` takes extra response headers (Set-Cookie) and a subprotocol;
//   3. a plain HTTP request that got no reply: 426 Upgrade Required;
//   4. the core's checks: 400, 426 + Sec-WebSocket-Version, 403 for an
//      Origin not in connection.origins;
//   5. the subprotocol: select_subprotocol(request), or else the first one
//      the client offers that is in `subprotocols`; none is not an error.
//
// Threads: serve(handler, host, port, options) runs its own io_context on
// options.threads threads; serve(executor, ...) runs on yours (run it
// yourself). With more than one thread each connection gets a strand, so a
// handler and everything on its connection never run at once.
//
// stop(): stop accepting, close every client with 1001 "going away", wait
// up to shutdown_timeout for the handlers to end, then drop what is left.
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

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <unordered_map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace wsx {

// Server: inspects a request before it is accepted (see the steps above).
using process_request_handler = std::function<std::optional<http_reply>(const server_request& request,
                                                                        accept_options& answer)>;

struct server_options {
    // Limits (max_message_size, max_pending_output...), timers (open_timeout,
    // close_timeout, ping_interval, ping_timeout), origins, and deflate
    // (permessage-deflate with its parameters) for every connection.
    connection_options connection;
    // wss://: a server context with its certificate and key (not owned
    // beyond this pointer: keep it alive as long as the server).
    std::shared_ptr<net::ssl::context> tls;
    std::vector<std::string> subprotocols; // supported, in no particular order
    // Picks the subprotocol instead (wsx::subprotocol_selector: empty for
    // none, or one the request offers).
    subprotocol_selector select_subprotocol;
    process_request_handler process_request;
    // Open connections (handshaking or open) beyond which a request is
    // answered 503 Service Unavailable with Retry-After; 0: no limit.
    std::size_t max_connections = 0;
    std::chrono::seconds retry_after{5};
    // Threads that run the io_context: serve() without an executor starts
    // this many; with your executor, say how many of yours run it. Above 1
    // each connection gets a strand (its handler and I/O never run at once);
    // at 1 none is needed, and broadcast() reaches every connection at once.
    unsigned threads = 1;
    // How long stop() waits for handlers to end after closing with 1001.
    duration shutdown_timeout{10000};
    // The send queue's low water mark (the high one is connection.max_pending_output).
    std::size_t low_water_mark = 256 * 1024;
    // Messages read in the background and not yet taken by receive(); when
    // the queue is full reading stops until the handler takes one.
    std::size_t max_queue = 16;
    bool reuse_address = true;
    int backlog = net::socket_base::max_listen_connections;
    // Opens, closes, refusals and handler errors; silent when empty.
    log_handler log;
};

using connection_handler = std::function<net::awaitable<void>(websocket)>;

// Callbacks instead of a coroutine per connection, for servers that hold
// many mostly idle connections (feeds, chat): an idle connection then holds
// no coroutine frame at all, only its stream (see the README's memory
// figures). Each runs on the connection's executor, one at a time. Send
// with try_send_*() (would_block above the high water mark: drop, close,
// or keep it for later) or co_spawn a coroutine onto ws.get_executor() for
// send(). Do not call receive(): messages arrive here. A callback that
// throws closes its connection with 1011; on_close follows.
struct message_handler {
    std::function<void(websocket& ws)> on_open;
    std::function<void(websocket& ws, message& received)> on_message;
    // Once, when the connection is over: how it ended.
    std::function<void(websocket& ws, const close_status& status)> on_close;
};

namespace detail {

class server_state; // wsx/asio/impl/server.ipp
struct server_access;

// A handler taking `websocket` or `websocket&`.
template <class Handler>
connection_handler to_connection_handler(Handler handler) {
    if constexpr (std::is_invocable_r_v<net::awaitable<void>, Handler&, websocket&&>) {
        return connection_handler(std::move(handler));
    } else {
        static_assert(std::is_invocable_r_v<net::awaitable<void>, Handler&, websocket&>,
                      "a connection handler is net::awaitable<void>(wsx::websocket) or (wsx::websocket&)");
        // The lambda lives in the server, the websocket in this coroutine's frame.
        return [handler = std::move(handler)](websocket ws) -> net::awaitable<void> { co_await handler(ws); };
    }
}

} // namespace detail

// A running server. Destroying it stops it (gracefully, see stop()).
class server {
public:
    server() = default;
    server(server&&) noexcept = default;
    server& operator=(server&& other) noexcept {
        if (this != &other) {
            stop();
            state_ = std::move(other.state_);
            executor_ = std::move(other.executor_);
            io_ = std::move(other.io_);
            work_ = std::move(other.work_);
            threads_ = std::move(other.threads_);
        }
        return *this;
    }
    ~server() { stop(); }

    // The address it listens on (the port chosen when 0 was asked for).
    WSX_DECL net::ip::tcp::endpoint local_endpoint() const;
    std::uint16_t port() const { return local_endpoint().port(); }
    // Connections open or handshaking.
    WSX_DECL std::size_t connections() const noexcept;

    // Graceful stop: stop accepting, close every client with 1001, wait up to
    // shutdown_timeout for the handlers, then drop what is left. With its
    // own threads it blocks until they are joined (called from one of them
    // it only starts the stop: wait() then finishes it); on your executor it
    // only starts the stop (async_stop() waits for it).
    WSX_DECL void stop();

    // Stops (as stop()) and completes once every handler ended.
    template <class CompletionToken>
    auto async_stop(CompletionToken&& token) {
        return net::co_spawn(executor_, stopping_operation(), std::forward<CompletionToken>(token));
    }

    // With its own threads: blocks until a stop() (from a handler, a signal
    // handler on get_executor(), another thread) is over, then joins them.
    WSX_DECL void wait();

    net::any_io_executor get_executor() const { return executor_; }
    WSX_DECL bool stopping() const noexcept;

private:
    friend struct detail::server_access;

    WSX_DECL net::awaitable<void> stopping_operation();
    WSX_DECL bool running_on_own_thread() const;
    // The io_context itself stays until the server is destroyed: the
    // caller may still hold objects on it (a signal_set...).
    WSX_DECL void join();

    // Declared first, destroyed last: everything else runs on it.
    std::unique_ptr<net::io_context> io_;
    net::any_io_executor executor_;
    net::any_io_executor work_; // keeps the own io_context running
    std::vector<std::thread> threads_;
    std::shared_ptr<detail::server_state> state_;
};

namespace detail {

// Builds servers (a friend of server).
struct server_access {
    WSX_DECL static server on_executor(net::any_io_executor executor, connection_handler handler,
                                       message_handler callbacks, const std::string& host, std::uint16_t port,
                                       server_options options);
    WSX_DECL static server on_own_threads(connection_handler handler, message_handler callbacks,
                                          const std::string& host, std::uint16_t port, server_options options);
};

} // namespace detail

// Serves on your executor (an io_context you run; if more than one thread
// runs it, set options.threads). `host` is an address ("127.0.0.1", "::")
// or a name, which listens on each of its addresses ("localhost": 127.0.0.1
// and ::1 where both are configured; see wsx/asio/listen.hpp). Throws
// std::system_error, naming the host or address, if it cannot listen. The handler is net::awaitable<void>(wsx::websocket) or
// (wsx::websocket&).
template <class Handler>
server serve(net::any_io_executor executor, Handler handler, const std::string& host, std::uint16_t port,
             server_options options = {}) {
    return detail::server_access::on_executor(executor, detail::to_connection_handler(std::move(handler)), {}, host,
                                              port, std::move(options));
}

// Serves on options.threads threads of its own.
template <class Handler>
server serve(Handler handler, const std::string& host, std::uint16_t port, server_options options = {}) {
    return detail::server_access::on_own_threads(detail::to_connection_handler(std::move(handler)), {}, host, port,
                                                 std::move(options));
}

// The same with callbacks (message_handler) instead of a coroutine per
// connection.
inline server serve(net::any_io_executor executor, message_handler callbacks, const std::string& host,
                    std::uint16_t port, server_options options = {}) {
    return detail::server_access::on_executor(executor, {}, std::move(callbacks), host, port, std::move(options));
}
inline server serve(message_handler callbacks, const std::string& host, std::uint16_t port,
                    server_options options = {}) {
    return detail::server_access::on_own_threads({}, std::move(callbacks), host, port, std::move(options));
}

} // namespace wsx

#if !defined(WSX_SEPARATE_COMPILATION)
#include <wsx/asio/impl/server.ipp>
#endif
