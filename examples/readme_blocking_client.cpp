// The README's blocking client: connect, send one message, print the reply, close.
#include <wsx/stream.hpp>
#include <wsx/tcp.hpp>
#include <wsx/uri.hpp>

#include <chrono>
#include <iostream>

int main() {
    const wsx::uri where = wsx::parse_uri("ws://localhost:9001/"); // host, port and target
    std::error_code ec;
    wsx::tcp_socket socket;
    socket.connect(where.host, where.port, std::chrono::seconds(5), ec); // 5 s per address tried
    if (ec) throw std::system_error(ec, "connect");
    socket.set_read_timeout(std::chrono::seconds(30), ec); // bounds each blocking read
    socket.set_write_timeout(std::chrono::seconds(30), ec);

    wsx::stream<wsx::tcp_socket> ws(std::move(socket));
    wsx::connection_options options;                  // limits, timers, deflate (see Limits)
    options.max_message_size = 16 * 1024 * 1024;      // 16 MiB messages need both limits:
    options.max_frame_size = 16 * 1024 * 1024;        // the message and one frame of it
    options.deflate.emplace();                        // offer permessage-deflate
    ws.set_options(options);                          // before handshake() or accept()
    ws.handshake(where);
    ws.write_text("Hello, WebSocket");
    wsx::message reply;
    ws.read(reply);
    std::cout << reply.data << '\n';
    ws.close(wsx::close_code::normal);
}
