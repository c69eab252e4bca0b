// examples/poll_echo_server, run as a process and talked to over TCP on
// 127.0.0.1 by small blocking clients that drive wsx::connection on a POSIX
// socket. Every wait is bounded (poll with a deadline); the server is
// stopped with SIGTERM by its PID, or killed if it does not stop.
#include <wsx/connection.hpp>

#include "support/connection_pair.hpp"

#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef WSX_POLL_ECHO_SERVER
#error "WSX_POLL_ECHO_SERVER must name the poll_echo_server program"
#endif

extern char** environ;

using namespace wsx;
using wsx::test::bytes;
using wsx::test::recorded;

namespace {

using steady_clock = std::chrono::steady_clock;
constexpr std::chrono::seconds io_timeout{20};

// Waits for `events` on fd until the deadline; false on timeout.
bool wait_for(int fd, short events, steady_clock::time_point deadline) {
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd, events, 0};
        const int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r > 0) return true;
        if (r < 0 && errno != EINTR) return false;
    }
}

// The server, started with port 0; its stdout is read for the real port.
class server_process {
public:
    server_process() {
        int out[2];
        if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
        posix_spawn_file_actions_addclose(&actions, out[0]);
        char program[] = WSX_POLL_ECHO_SERVER;
        char port_zero[] = "0";
        char* argv[] = {program, port_zero, nullptr};
        const int rc = ::posix_spawn(&pid_, program, &actions, nullptr, argv, environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(out[1]);
        stdout_ = out[0];
        if (rc != 0) {
            pid_ = -1;
            throw std::runtime_error("cannot start " + std::string(program));
        }
        const std::string line = read_line();
        const std::string prefix = "listening on 127.0.0.1:";
        if (line.compare(0, prefix.size(), prefix) != 0) throw std::runtime_error("unexpected output: " + line);
        port_ = static_cast<std::uint16_t>(std::stoi(line.substr(prefix.size())));
    }
    ~server_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (stdout_ >= 0) ::close(stdout_);
    }
    server_process(const server_process&) = delete;
    server_process& operator=(const server_process&) = delete;

    std::uint16_t port() const { return port_; }

    // SIGTERM, then waits (bounded) for the process to end; returns its
    // stdout after the first line and whether it exited with status 0.
    bool stop(std::string& rest) {
        ::kill(pid_, SIGTERM);
        const auto deadline = steady_clock::now() + io_timeout;
        char buffer[256];
        // The process's end closes the pipe: then it is exiting, and waitpid
        // returns at once. Past the deadline it is killed.
        bool ended = false;
        while (!ended && wait_for(stdout_, POLLIN, deadline)) {
            const ssize_t n = ::read(stdout_, buffer, sizeof buffer);
            if (n > 0) rest.append(buffer, static_cast<std::size_t>(n));
            else ended = n == 0 || errno != EINTR;
        }
        if (!ended) ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return ended && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }

private:
    std::string read_line() {
        std::string line;
        const auto deadline = steady_clock::now() + io_timeout;
        char c;
        while (wait_for(stdout_, POLLIN, deadline) && ::read(stdout_, &c, 1) == 1) {
            if (c == '\n') return line;
            line += c;
        }
        throw std::runtime_error("the server printed no port");
    }

    pid_t pid_ = -1;
    int stdout_ = -1;
    std::uint16_t port_ = 0;
};

int connect_to(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    return fd;
}

// A blocking client: wsx::connection on a POSIX socket, every wait bounded.
class client {
public:
    explicit client(std::uint16_t port, bool deflate = false)
        : fd_(connect_to(port)), conn_(role::client, options(deflate)) {}
    ~client() { ::close(fd_); }
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    connection& conn() { return conn_; }
    int fd() const { return fd_; }

    void handshake() {
        client_request_options request;
        request.host = "127.0.0.1";
        request.target = "/echo";
        REQUIRE_FALSE(conn_.start_handshake(request));
        const recorded response = next();
        REQUIRE(response.type == event_type::response);
        REQUIRE(conn_.get_state() == state::open);
    }

    // Writes everything pending. A server that has gone (a close reply to
    // its going-away close) takes nothing more: the output is dropped.
    void flush() {
        const auto deadline = steady_clock::now() + io_timeout;
        while (conn_.pending_output_size() > 0) {
            REQUIRE(wait_for(fd_, POLLOUT, deadline));
            const const_bytes out = conn_.pending_output();
            const ssize_t n = ::send(fd_, out.data(), out.size(), MSG_NOSIGNAL);
            if (n < 0 && (errno == EPIPE || errno == ECONNRESET) && conn_.get_state() == state::closed) {
                conn_.consume_output(out.size());
                return;
            }
            REQUIRE(n > 0);
            conn_.consume_output(static_cast<std::size_t>(n));
        }
    }

    // The next event, reading as needed; a copy that outlives the buffers.
    recorded next() {
        const auto deadline = steady_clock::now() + io_timeout;
        for (;;) {
            flush();
            if (const event ev = conn_.next_event()) {
                recorded r;
                r.type = ev.type;
                r.text = ev.text;
                r.data = std::string(ev.data_view());
                r.code = ev.code;
                r.reason = std::string(ev.reason);
                r.closed_by_peer = ev.closed_by_peer;
                r.ec = ev.ec;
                flush(); // an automatic pong or close reply
                return r;
            }
            REQUIRE(wait_for(fd_, POLLIN, deadline));
            const mutable_bytes area = conn_.prepare(conn_.read_size_hint());
            const ssize_t n = ::recv(fd_, area.data(), area.size(), 0);
            REQUIRE(n >= 0);
            if (n == 0) conn_.receive_eof();
            else conn_.commit(static_cast<std::size_t>(n));
        }
    }

    // True when the server closes the TCP connection before the deadline.
    bool server_closes_tcp() {
        const auto deadline = steady_clock::now() + io_timeout;
        char buffer[4096];
        while (wait_for(fd_, POLLIN, deadline)) {
            const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
            if (n == 0) return true;
            if (n < 0 && errno != EINTR) return errno == ECONNRESET;
        }
        return false;
    }

    void expect_echo(bool text, const std::string& payload) {
        const std::error_code ec = text ? conn_.send_text(payload) : conn_.send_binary(payload);
        REQUIRE_FALSE(ec);
        const recorded r = next();
        REQUIRE(r.type == event_type::message);
        CHECK(r.text == text);
        CHECK(r.data.size() == payload.size());
        CHECK(r.data == payload);
    }

    void close_cleanly() {
        REQUIRE_FALSE(conn_.close(close_code::normal, "done"));
        const recorded r = next();
        REQUIRE(r.type == event_type::close);
        CHECK(r.code == close_code::normal);
        CHECK_FALSE(r.closed_by_peer);
        CHECK_FALSE(r.ec);
        // RFC 6455 §7.1.1: the server closes TCP first.
        CHECK(server_closes_tcp());
    }

private:
    static connection_options options(bool deflate) {
        connection_options o;
        if (deflate) o.deflate.emplace();
        return o;
    }

    int fd_;
    connection conn_;
};

std::string text_of(std::size_t size) {
    const std::string words = "echo \xc3\xa9\xc3\xa9 \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8e\x89 ";
    std::string s;
    while (s.size() < size) s += words;
    // Cut where a character starts (not before a continuation byte), then pad.
    std::size_t n = size;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
    s.resize(n);
    s.resize(size, '.');
    return s;
}

std::string binary_of(std::size_t size) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131 + 7) & 0xff);
    return s;
}

// Sends a raw HTTP request; returns all the server answers until it closes.
std::string http_answer(std::uint16_t port, const std::string& request) {
    const int fd = connect_to(port);
    REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
    std::string response;
    char buffer[1024];
    const auto deadline = steady_clock::now() + io_timeout;
    while (wait_for(fd, POLLIN, deadline)) {
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        response.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return response;
}

void stop_cleanly(server_process& server) {
    std::string rest;
    CHECK(server.stop(rest));
    CHECK(rest == "stopped\n");
}

} // namespace

TEST_CASE("poll_echo_server echoes text and binary of every size, answers pings and closes cleanly") {
    server_process server;
    client c(server.port());
    c.handshake();
    for (std::size_t size : {0, 1, 125, 126, 65535, 65536, 1024 * 1024}) {
        CAPTURE(size);
        c.expect_echo(true, text_of(size));
        c.expect_echo(false, binary_of(size));
    }

    // Many messages in one write come back in order.
    for (int i = 0; i < 200; ++i) REQUIRE_FALSE(c.conn().send_text("message " + std::to_string(i)));
    for (int i = 0; i < 200; ++i) {
        const recorded r = c.next();
        REQUIRE(r.type == event_type::message);
        CHECK(r.data == "message " + std::to_string(i));
    }

    // RFC 6455 §5.5.2: the pong echoes the ping's payload.
    REQUIRE_FALSE(c.conn().send_ping(std::string("are you there?")));
    const recorded pong = c.next();
    CHECK(pong.type == event_type::pong);
    CHECK(pong.data == "are you there?");

    c.close_cleanly();
    stop_cleanly(server);
}

TEST_CASE("poll_echo_server serves many clients at once, with and without permessage-deflate") {
    server_process server;
    std::vector<std::unique_ptr<client>> clients;
    for (int i = 0; i < 8; ++i) {
        clients.push_back(std::make_unique<client>(server.port(), i % 2 == 1));
        clients.back()->handshake();
        CHECK(clients.back()->conn().deflate_enabled() == (i % 2 == 1));
    }
    // Every client sends before any reads, so the server holds them all.
    for (int round = 0; round < 3; ++round) {
        for (std::size_t i = 0; i < clients.size(); ++i) {
            const std::string text = "client " + std::to_string(i) + " round " + std::to_string(round) + " " +
                                     text_of(1000 * (i + 1));
            REQUIRE_FALSE(clients[i]->conn().send_text(text));
            clients[i]->flush();
        }
        for (std::size_t i = 0; i < clients.size(); ++i) {
            const recorded r = clients[i]->next();
            REQUIRE(r.type == event_type::message);
            CHECK(r.data.rfind("client " + std::to_string(i) + " round " + std::to_string(round) + " ", 0) == 0);
        }
    }
    // A big compressible message through the deflate path.
    clients[1]->expect_echo(true, std::string(1024 * 1024, 'z'));
    for (auto& c : clients) c->close_cleanly();
    stop_cleanly(server);
}

TEST_CASE("poll_echo_server fails a client that breaks the protocol, and answers bad handshakes with HTTP errors") {
    server_process server;
    {
        client c(server.port());
        c.handshake();
        // RFC 6455 §5.1: a server must close on an unmasked client frame.
        const bytes unmasked = test::frame(role::server, opcode::text, {'h', 'i'});
        REQUIRE(::send(c.fd(), unmasked.data(), unmasked.size(), MSG_NOSIGNAL) ==
                static_cast<ssize_t>(unmasked.size()));
        const recorded r = c.next();
        REQUIRE(r.type == event_type::close);
        CHECK(r.code == close_code::protocol_error);
        CHECK(r.closed_by_peer);
        CHECK(c.server_closes_tcp());
    }
    // A plain HTTP request is told to upgrade; a bad key is a bad request.
    CHECK(http_answer(server.port(), "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").rfind("HTTP/1.1 426 ", 0) == 0);
    CHECK(http_answer(server.port(),
                      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: too-short\r\n\r\n")
              .rfind("HTTP/1.1 400 ", 0) == 0);
    // The server is still serving.
    client after(server.port());
    after.handshake();
    after.expect_echo(true, "still here");
    after.close_cleanly();
    stop_cleanly(server);
}

TEST_CASE("poll_echo_server says going away to its clients on SIGTERM") {
    server_process server;
    client c(server.port());
    c.handshake();
    c.expect_echo(true, "hello");
    stop_cleanly(server);
    const recorded r = c.next();
    REQUIRE(r.type == event_type::close);
    CHECK(r.code == close_code::going_away);
    CHECK(r.reason == "server shutting down");
}
