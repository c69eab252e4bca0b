// The README's blocking server: an echo server, one connection at a time.
#include <wsx/stream.hpp>
#include <wsx/tcp.hpp>

#include <iostream>

int main() {
    std::error_code ec;
    wsx::tcp_listener listener;
    listener.listen("127.0.0.1", 9001, ec);
    if (ec) throw std::system_error(ec, "listen");

    for (;;) {
        wsx::stream<wsx::tcp_socket> ws(listener.accept(ec));
        if (ec) continue;
        ws.accept(ec);
        wsx::message m;
        while (!ec) {
            ws.read(m, ec); // pings are answered and the closing handshake is done inside
            if (!ec) m.text ? ws.write_text(m.data, ec) : ws.write_binary(m.data, ec);
        }
        if (ec != wsx::error::connection_closed) std::cerr << "connection ended: " << ec.message() << '\n';
    }
}
