// An echo server on plain poll() and non-blocking POSIX sockets: wsx's
// protocol core needs no particular event loop.
//
//   poll_echo_server [port]     (default 9001; 0 picks a free port)
//
// Listens on 127.0.0.1, prints "listening on 127.0.0.1:PORT", accepts any
// number of clients, answers the opening handshake (permessage-deflate when
// offered), echoes every message, and closes each connection cleanly. Pings
// are answered and keepalive pings sent by the connection itself; the loop's
// only part in it is calling tick() and sleeping no longer than
// next_deadline(). SIGINT or SIGTERM sends close 1001 to every client and
// exits.
//
// The loop, per client: read when POLLIN (into prepare()/commit()), pull
// events with next_event() while the output is under its limit (that is the
// backpressure: unread events wait in the input buffer), write
// pending_output() when POLLOUT, and close the socket once
// transport_action() says so and the output is written.
#include <wsx/connection.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using steady_clock = std::chrono::steady_clock;

// SIGINT/SIGTERM write a byte here, so that poll() wakes up at once (a flag
// alone could be set just before poll() goes to sleep).
int signal_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int) {
    const int saved = errno;
    const char byte = 1;
    (void)!::write(signal_pipe[1], &byte, 1);
    errno = saved;
}

bool set_non_blocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL, 0);
    return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

int listen_on_loopback(std::uint16_t port, std::uint16_t& bound_port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(fd, SOMAXCONN) != 0 ||
        !set_non_blocking(fd) || ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
        ::close(fd);
        return -1;
    }
    bound_port = ntohs(address.sin_port);
    return fd;
}

wsx::connection_options server_options() {
    wsx::connection_options options;
    options.deflate.emplace(); // accepted when a client offers it
    return options;
}

struct client {
    int fd;
    wsx::connection conn{wsx::role::server, server_options()};
    bool done = false; // the socket is to be closed and dropped

    explicit client(int socket) : fd(socket) {}
    ~client() {
        if (fd >= 0) ::close(fd);
    }
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    // Events wait in the input while the output is above its limit, so that
    // every echo can be queued.
    bool output_full() const { return conn.pending_output_size() > conn.options().max_pending_output; }

    // Returns false when it stopped with events still waiting (the output is full).
    bool handle_events() {
        for (;;) {
            if (output_full()) return false;
            const wsx::event ev = conn.next_event();
            if (!ev) return true;
            switch (ev.type) {
            case wsx::event_type::request:
                conn.accept();
                break;
            case wsx::event_type::http_request:
                // Not an upgrade (a browser's GET /): the core's 426, 405 or
                // 400 says what it lacks. reject(200, page) would serve a page.
                conn.refuse();
                break;
            case wsx::event_type::message:
                // send_* copies the payload out before the view could move.
                if (ev.text) {
                    conn.send_text(ev.data_view());
                } else {
                    conn.send_binary(ev.data);
                }
                break;
            case wsx::event_type::close:
                if (ev.ec) std::fprintf(stderr, "client %d failed: %s\n", fd, ev.ec.message().c_str());
                break;
            default: // pings are answered by the connection; pongs need nothing
                break;
            }
        }
    }

    void read_some() {
        const wsx::mutable_bytes area = conn.prepare(conn.read_size_hint());
        const ssize_t n = ::recv(fd, area.data(), area.size(), 0);
        if (n > 0) {
            conn.commit(static_cast<std::size_t>(n));
        } else if (n == 0) {
            conn.receive_eof();
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn.receive_eof(); // a reset: the same as an end for the protocol
        }
    }

    void write_some() {
        while (conn.pending_output_size() > 0) {
            const wsx::const_bytes out = conn.pending_output();
            const ssize_t n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
            if (n > 0) {
                conn.consume_output(static_cast<std::size_t>(n));
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else {
                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) done = true;
                return;
            }
        }
    }

    // What to wait for; 0 when nothing (and then the socket is done with).
    short wanted_events() const {
        short events = 0;
        if (conn.pending_output_size() > 0) events |= POLLOUT;
        if (!output_full() && conn.get_state() != wsx::state::closed) events |= POLLIN;
        return events;
    }

    void after_io() {
        bool all_handled = handle_events();
        write_some();
        // Output written makes room for the events that waited behind it.
        while (!all_handled && !output_full() && !done) {
            all_handled = handle_events();
            write_some();
        }
        // RFC 6455 §7.1.1: the server closes the TCP connection first, once
        // its last frame is written.
        if (conn.transport_action() == wsx::transport_action::close && conn.pending_output_size() == 0) {
            ::shutdown(fd, SHUT_WR);
            done = true;
        }
    }
};

int poll_timeout(const std::vector<std::unique_ptr<client>>& clients, steady_clock::time_point now) {
    std::chrono::milliseconds wait{-1};
    for (const auto& c : clients) {
        if (const auto deadline = c->conn.next_deadline()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - now);
            const auto clamped = std::max(left, std::chrono::milliseconds{0});
            if (wait.count() < 0 || clamped < wait) wait = clamped;
        }
    }
    return wait.count() < 0 ? -1 : static_cast<int>(std::min<long long>(wait.count(), 60000));
}

} // namespace

int main(int argc, char** argv) {
    long port = 9001;
    if (argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
        std::printf("usage: poll_echo_server [PORT]\n\n"
                    "  PORT     the port to listen on, on 127.0.0.1 (0: a free one, printed); default 9001\n"
                    "  --help   this text\n");
        return 0;
    }
    char* end = nullptr;
    if (argc > 2 || (argc == 2 && (port = std::strtol(argv[1], &end, 10), *end != '\0' || port < 0 || port > 65535))) {
        std::fprintf(stderr, "poll_echo_server: %s is not a port (0-65535)\nusage: poll_echo_server [PORT]\n",
                     argc > 2 ? argv[2] : argv[1]);
        return 2;
    }
    if (::pipe(signal_pipe) != 0 || !set_non_blocking(signal_pipe[0]) || !set_non_blocking(signal_pipe[1])) {
        std::perror("pipe");
        return 1;
    }
    struct sigaction action{};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    std::uint16_t bound_port = 0;
    const int listener = listen_on_loopback(static_cast<std::uint16_t>(port), bound_port);
    if (listener < 0) {
        std::perror("listen");
        return 1;
    }
    std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(bound_port));
    std::fflush(stdout);

    std::vector<std::unique_ptr<client>> clients;
    std::vector<pollfd> fds;
    for (;;) {
        // 0: the signal pipe, 1: the listener, then one per client.
        fds.assign({{signal_pipe[0], POLLIN, 0}, {listener, POLLIN, 0}});
        for (const auto& c : clients) fds.push_back({c->fd, c->wanted_events(), 0});
        const int ready = ::poll(fds.data(), fds.size(), poll_timeout(clients, steady_clock::now()));
        if (ready < 0 && errno != EINTR) {
            std::perror("poll");
            break;
        }
        if (fds[0].revents & POLLIN) break;

        const auto now = steady_clock::now();
        for (std::size_t i = 0; i < clients.size(); ++i) {
            client& c = *clients[i];
            const short revents = ready > 0 ? fds[i + 2].revents : 0;
            if (revents & (POLLIN | POLLHUP | POLLERR)) c.read_some();
            // Open, close and keepalive timers; a ping goes out from here.
            c.conn.tick(now);
            c.after_io();
        }
        clients.erase(std::remove_if(clients.begin(), clients.end(), [](const auto& c) { return c->done; }),
                      clients.end());

        if (fds[1].revents & POLLIN) {
            for (;;) {
                const int fd = ::accept(listener, nullptr, nullptr);
                if (fd < 0) break; // EAGAIN: no more waiting; anything else: try again later
                const int on = 1;
                ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
                if (!set_non_blocking(fd)) {
                    ::close(fd);
                    continue;
                }
                clients.push_back(std::make_unique<client>(fd));
                clients.back()->conn.tick(now); // starts the open timeout
            }
        }
    }

    // Going away: a close frame to each client, written if the socket takes it.
    for (auto& c : clients) {
        c->conn.close(wsx::close_code::going_away, "server shutting down");
        c->write_some();
    }
    clients.clear();
    ::close(listener);
    std::printf("stopped\n");
    return 0;
}
