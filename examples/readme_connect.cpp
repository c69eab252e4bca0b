// The README's connect() example: a client, and one that reconnects.
#include <wsx/asio/client.hpp>

#include <iostream>

wsx::net::awaitable<void> hello() {
    wsx::websocket ws = co_await wsx::connect("ws://127.0.0.1:8765/");
    co_await ws.send_text("hello");
    if (auto reply = co_await ws.receive()) std::cout << reply->data << '\n';
    co_await ws.close();
}

wsx::net::awaitable<void> follow_feed() {
    wsx::client_options options;
    options.max_redirects = 3;
    wsx::reconnector feed("ws://127.0.0.1:8765/feed", options); // backoff with jitter
    for (;;) {
        wsx::websocket ws = co_await feed.next(); // throws on a 4xx, retries the rest
        try {
            while (auto message = co_await ws.receive()) std::cout << message->data << '\n';
        } catch (const wsx::connection_closed& e) {
            std::cerr << "closed " << static_cast<int>(e.code()) << ", reconnecting\n";
        }
    }
}

int main(int argc, char**) {
    wsx::net::io_context io;
    wsx::net::co_spawn(io, argc > 1 ? follow_feed() : hello(), wsx::net::detached);
    io.run();
}
