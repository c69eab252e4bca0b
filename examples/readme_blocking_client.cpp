// The README's blocking client: connect, send one message, print the reply, close.
#include <wsx/stream.hpp>
#include <wsx/tcp.hpp>

#include <iostream>

int main() {
    std::error_code ec;
    wsx::tcp_socket socket;
    socket.connect("localhost", 9001, ec);
    if (ec) throw std::system_error(ec, "connect");

    wsx::stream<wsx::tcp_socket> ws(std::move(socket));
    ws.handshake("localhost:9001", "/");
    ws.write_text("Hello, WebSocket");
    wsx::message reply;
    ws.read(reply);
    std::cout << reply.data << '\n';
    ws.close(wsx::close_code::normal);
}
