// The README's serve() example: an echo server with a health check.
#include <wsx/asio/server.hpp>

#include <csignal>

wsx::net::awaitable<void> echo(wsx::websocket ws) {
    // Ends on a normal close (1000, 1001); other ends throw wsx::connection_closed_error.
    while (auto message = co_await ws.receive()) co_await ws.send(*message);
}

int main() {
    wsx::server_options options;
    options.connection.ping_interval = std::chrono::seconds(20); // keepalive (the default)
    options.connection.deflate.emplace();                        // permessage-deflate
    options.max_connections = 10000;                             // beyond: 503 + Retry-After
    options.threads = 2;
    options.log = wsx::stderr_logger();
    options.process_request = [](const wsx::server_request& request,
                                 wsx::accept_options&) -> std::optional<wsx::http_reply> {
        if (request.http.target == "/health") return wsx::http_reply{200, "OK\n", {}};
        return std::nullopt; // go on with the upgrade
    };
    wsx::server server = wsx::serve(echo, "127.0.0.1", 8765, options);

    wsx::net::signal_set signals(server.get_executor(), SIGINT, SIGTERM);
    signals.async_wait([&](auto, int) { server.stop(); }); // 1001 to every client
    server.wait();
}
