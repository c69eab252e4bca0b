// The README's callbacks example: an echo server with no coroutine per connection.
#include <wsx/asio/server.hpp>

#include <csignal>
#include <iostream>

int main() {
    wsx::message_handler echo;
    echo.on_message = [](wsx::websocket& ws, wsx::message& m) {
        const std::error_code ec = m.text ? ws.try_send_text(m.view()) : ws.try_send_binary(m.bytes());
        // Above the send queue's high water mark: close rather than queue more.
        if (ec == wsx::error::would_block) ws.post_close(wsx::close_code::try_again_later, "slow down");
    };
    echo.on_close = [](wsx::websocket& ws, const wsx::close_status& status) {
        std::cerr << ws.path() << " closed " << static_cast<int>(status.code) << '\n';
    };
    wsx::server server = wsx::serve(echo, "127.0.0.1", 8765);

    wsx::net::signal_set signals(server.get_executor(), SIGINT, SIGTERM);
    signals.async_wait([&](auto, int) { server.stop(); });
    server.wait();
}
