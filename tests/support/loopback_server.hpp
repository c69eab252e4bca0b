// tests/support/loopback_server.hpp - one connection served on a loopback
// port from its own thread, for tests of blocking adapters.
//
// The server listens on 127.0.0.1 port 0 (the system picks a free port), and
// its accept and every read and write of the accepted socket are bounded by
// io_limit, so the thread always ends; the destructor waits for it. Results
// are passed back through whatever the serve function captures; check them
// on the test's thread after join().
#pragma once

#include <wsx/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <system_error>
#include <thread>
#include <utility>

namespace wsx::test {

inline constexpr std::chrono::milliseconds io_limit{10000};

class one_connection_server {
public:
    explicit one_connection_server(std::function<void(tcp_socket)> serve) {
        listener_.listen("127.0.0.1", 0, listen_error_);
        if (listen_error_) return;
        thread_ = std::thread([this, serve = std::move(serve)] {
            std::error_code ec;
            tcp_socket socket = listener_.accept(io_limit, ec);
            if (!ec) socket.set_read_timeout(io_limit, ec);
            if (!ec) socket.set_write_timeout(io_limit, ec);
            if (ec) {
                accept_error_ = ec;
                return;
            }
            serve(std::move(socket));
        });
    }
    ~one_connection_server() { join(); }
    one_connection_server(const one_connection_server&) = delete;
    one_connection_server& operator=(const one_connection_server&) = delete;

    void join() {
        if (thread_.joinable()) thread_.join();
    }
    std::uint16_t port() const { return listener_.local_port(); }
    std::error_code listen_error() const { return listen_error_; }
    std::error_code accept_error() const { return accept_error_; }

private:
    tcp_listener listener_;
    std::error_code listen_error_;
    std::error_code accept_error_;
    std::thread thread_;
};

// A client socket connected to 127.0.0.1:port with bounded reads and writes.
inline tcp_socket connect_loopback(std::uint16_t port) {
    std::error_code ec;
    tcp_socket socket;
    socket.connect("127.0.0.1", port, io_limit, ec);
    if (!ec) socket.set_read_timeout(io_limit, ec);
    if (!ec) socket.set_write_timeout(io_limit, ec);
    if (ec) throw std::system_error(ec, "connect");
    return socket;
}

} // namespace wsx::test
