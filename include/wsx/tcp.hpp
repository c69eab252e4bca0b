// wsx/tcp.hpp - a blocking POSIX TCP socket, ready as a NextLayer.
//
// wsx::tcp_socket models the NextLayer byte stream that wsx::stream and
// wsx::tls_stream sit on:
//   std::size_t read_some(wsx::mutable_bytes, std::error_code&);
//   std::size_t write_some(wsx::const_bytes, std::error_code&);
//   void teardown(tcp_socket&, std::error_code&);   // found by ADL
// read_some returns 0 with wsx::error::end_of_stream once the peer has shut
// its side down cleanly; a read or write that outlives its timeout fails with
// std::errc::timed_out. wsx::tcp_listener accepts such sockets.
//
// Ownership: each object owns one file descriptor, closes it when destroyed,
// and is move-only. release() hands the descriptor back to the caller.
// Calls are retried on EINTR; writes never raise SIGPIPE (MSG_NOSIGNAL, or
// SO_NOSIGPIPE where that is the only way). Every socket has TCP_NODELAY on:
// WebSocket frames are written whole, so Nagle's delay only adds latency.
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/error.hpp>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

namespace wsx {

namespace detail {

// getaddrinfo() reports its failures as EAI_* values with their own texts.
class resolver_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "wsx.resolver"; }
    std::string message(int value) const override { return ::gai_strerror(value); }
};

inline const std::error_category& resolver_category() noexcept {
    static const resolver_category_impl instance;
    return instance;
}

inline std::error_code last_socket_error() noexcept { return {errno, std::system_category()}; }

inline constexpr int send_flags() noexcept {
#if defined(MSG_NOSIGNAL)
    return MSG_NOSIGNAL;
#else
    return 0;
#endif
}

// A negative timeout means none; poll() wants milliseconds as an int.
inline int poll_timeout(std::chrono::milliseconds timeout) noexcept {
    if (timeout.count() < 0) return -1;
    return timeout.count() > INT_MAX ? INT_MAX : static_cast<int>(timeout.count());
}

// Waits for `events` on fd; errc::timed_out when the time runs out.
inline void wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline, bool has_deadline,
                     std::error_code& ec) noexcept {
    for (;;) {
        int timeout_ms = -1;
        if (has_deadline) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                ec = std::make_error_code(std::errc::timed_out);
                return;
            }
            timeout_ms = poll_timeout(left);
        }
        pollfd entry{fd, events, 0};
        const int ready = ::poll(&entry, 1, timeout_ms);
        if (ready > 0) {
            ec.clear();
            return;
        }
        if (ready == 0) {
            ec = std::make_error_code(std::errc::timed_out);
            return;
        }
        if (errno != EINTR) {
            ec = last_socket_error();
            return;
        }
    }
}

// A new stream socket that does not leak into exec'd children and never
// raises SIGPIPE. Returns -1 with ec set on failure.
inline int open_stream_socket(int family, std::error_code& ec) noexcept {
#if defined(SOCK_CLOEXEC)
    const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
#else
    const int fd = ::socket(family, SOCK_STREAM, 0);
    if (fd >= 0) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
    if (fd < 0) {
        ec = last_socket_error();
        return -1;
    }
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
#endif
    ec.clear();
    return fd;
}

inline void set_no_delay(int fd) noexcept {
    const int on = 1;
    // Best effort: a socket that refuses it still works, only slower.
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

inline bool set_non_blocking(int fd, bool on) noexcept {
    const int flags = ::fcntl(fd, F_GETFL, 0);
    if (flags < 0) return false;
    return ::fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK)) == 0;
}

// Owns the list getaddrinfo() returns.
struct address_list {
    addrinfo* head = nullptr;
    address_list() = default;
    address_list(const address_list&) = delete;
    address_list& operator=(const address_list&) = delete;
    ~address_list() {
        if (head) ::freeaddrinfo(head);
    }
};

// Resolves host:port for a stream socket; an empty host with `passive`
// means every local address.
inline void resolve(std::string_view host, std::uint16_t port, bool passive, address_list& out,
                    std::error_code& ec) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    const std::string host_text(host);
    const std::string port_text = std::to_string(port);
    const int status =
        ::getaddrinfo(host_text.empty() ? nullptr : host_text.c_str(), port_text.c_str(), &hints, &out.head);
    if (status == 0) {
        ec.clear();
    } else if (status == EAI_SYSTEM) {
        ec = last_socket_error();
    } else {
        ec = {status, resolver_category()};
    }
}

// Sets SO_RCVTIMEO or SO_SNDTIMEO; zero means no timeout.
inline void set_timeout_option(int fd, int option, std::chrono::milliseconds timeout, std::error_code& ec) noexcept {
    if (timeout.count() < 0) {
        ec = std::make_error_code(std::errc::invalid_argument);
        return;
    }
    timeval value{};
    value.tv_sec = static_cast<decltype(value.tv_sec)>(timeout.count() / 1000);
    value.tv_usec = static_cast<decltype(value.tv_usec)>((timeout.count() % 1000) * 1000);
    if (::setsockopt(fd, SOL_SOCKET, option, &value, sizeof value) != 0) {
        ec = last_socket_error();
    } else {
        ec.clear();
    }
}

// A blocking call that ran into SO_RCVTIMEO / SO_SNDTIMEO fails with
// EAGAIN; callers are told the truth: the time ran out.
inline std::error_code io_error() noexcept {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::make_error_code(std::errc::timed_out);
    return last_socket_error();
}

inline std::uint16_t port_of(const sockaddr_storage& address) noexcept {
    if (address.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(address).sin_port);
    if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(address).sin6_port);
    return 0;
}

// Base of tcp_socket and tcp_listener: owns one descriptor.
class socket_handle {
public:
    socket_handle() noexcept = default;
    explicit socket_handle(int fd) noexcept : fd_(fd) {}
    socket_handle(socket_handle&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    socket_handle& operator=(socket_handle&& other) noexcept {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    socket_handle(const socket_handle&) = delete;
    socket_handle& operator=(const socket_handle&) = delete;
    ~socket_handle() { reset(); }

    bool is_open() const noexcept { return fd_ >= 0; }
    int native_handle() const noexcept { return fd_; }
    // Gives up ownership: the caller closes the descriptor.
    int release() noexcept { return std::exchange(fd_, -1); }

    void close(std::error_code& ec) noexcept {
        ec.clear();
        if (fd_ < 0) return;
        // close() is never retried: on EINTR the descriptor is already gone
        // on Linux, and retrying could close a descriptor another thread got.
        if (::close(std::exchange(fd_, -1)) != 0 && errno != EINTR) ec = last_socket_error();
    }
    void close() noexcept {
        std::error_code ignored;
        close(ignored);
    }

    // The local port, e.g. the one the system chose for port 0; 0 on error.
    std::uint16_t local_port() const noexcept {
        sockaddr_storage address{};
        socklen_t length = sizeof address;
        if (fd_ < 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) return 0;
        return port_of(address);
    }

protected:
    void reset() noexcept { close(); }

    int fd_ = -1;
};

} // namespace detail

class tcp_socket : public detail::socket_handle {
public:
    enum class shutdown_type { receive = SHUT_RD, send = SHUT_WR, both = SHUT_RDWR };

    // A closed socket; connect() opens it.
    tcp_socket() noexcept = default;
    // Adopts a connected descriptor (it will be closed by this object).
    explicit tcp_socket(int fd) noexcept : socket_handle(fd) {}

    // Connects to host:port, trying each address the name resolves to (IPv6
    // and IPv4) in order; each attempt may take up to `timeout` (negative:
    // no limit but the system's own). Closes the
    // socket first if it was open. On failure ec holds the last attempt's error.
    void connect(std::string_view host, std::uint16_t port, std::chrono::milliseconds timeout,
                 std::error_code& ec) {
        close();
        if (host.empty() || port == 0) {
            ec = std::make_error_code(std::errc::invalid_argument);
            return;
        }
        detail::address_list addresses;
        detail::resolve(host, port, false, addresses, ec);
        if (ec) return;
        ec = std::make_error_code(std::errc::host_unreachable);
        for (const addrinfo* a = addresses.head; a != nullptr; a = a->ai_next) {
            const int fd = detail::open_stream_socket(a->ai_family, ec);
            if (fd < 0) continue;
            socket_handle candidate(fd);
            connect_one(fd, a->ai_addr, a->ai_addrlen, timeout, ec);
            if (!ec) {
                detail::set_no_delay(fd);
                fd_ = candidate.release();
                return;
            }
        }
    }
    // Connects with a 30 second limit per address.
    void connect(std::string_view host, std::uint16_t port, std::error_code& ec) {
        connect(host, port, std::chrono::seconds(30), ec);
    }

    // Per-call limits for read_some / write_some; zero (the default) waits
    // forever. A call that runs out of time fails with std::errc::timed_out.
    void set_read_timeout(std::chrono::milliseconds timeout, std::error_code& ec) noexcept {
        detail::set_timeout_option(fd_, SO_RCVTIMEO, timeout, ec);
    }
    void set_write_timeout(std::chrono::milliseconds timeout, std::error_code& ec) noexcept {
        detail::set_timeout_option(fd_, SO_SNDTIMEO, timeout, ec);
    }

    // Reads at least one byte unless buffer is empty. Returns 0 with
    // wsx::error::end_of_stream when the peer has shut its side down.
    std::size_t read_some(mutable_bytes buffer, std::error_code& ec) noexcept {
        ec.clear();
        if (buffer.empty()) return 0;
        for (;;) {
            const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
            if (n > 0) return static_cast<std::size_t>(n);
            if (n == 0) {
                ec = make_error_code(error::end_of_stream);
                return 0;
            }
            if (errno != EINTR) {
                ec = detail::io_error();
                return 0;
            }
        }
    }

    // Writes at least one byte unless buffer is empty.
    std::size_t write_some(const_bytes buffer, std::error_code& ec) noexcept {
        ec.clear();
        if (buffer.empty()) return 0;
        for (;;) {
            const ssize_t n = ::send(fd_, buffer.data(), buffer.size(), detail::send_flags());
            if (n >= 0) return static_cast<std::size_t>(n);
            if (errno != EINTR) {
                ec = detail::io_error();
                return 0;
            }
        }
    }

    // Gathers several buffers into one system call (a frame header and its
    // payload, say). Writes at least one byte unless all are empty; only the
    // first 64 non-empty buffers are looked at per call.
    std::size_t write_some(const const_bytes* buffers, std::size_t count, std::error_code& ec) noexcept {
        ec.clear();
        constexpr std::size_t max_buffers = 64;
        iovec vectors[max_buffers];
        std::size_t used = 0;
        for (std::size_t i = 0; i < count && used < max_buffers; ++i) {
            if (buffers[i].empty()) continue;
            vectors[used].iov_base = const_cast<std::uint8_t*>(buffers[i].data());
            vectors[used].iov_len = buffers[i].size();
            ++used;
        }
        if (used == 0) return 0;
        msghdr message{};
        message.msg_iov = vectors;
        message.msg_iovlen = static_cast<decltype(message.msg_iovlen)>(used);
        for (;;) {
            const ssize_t n = ::sendmsg(fd_, &message, detail::send_flags());
            if (n >= 0) return static_cast<std::size_t>(n);
            if (errno != EINTR) {
                ec = detail::io_error();
                return 0;
            }
        }
    }

    void shutdown(shutdown_type how, std::error_code& ec) noexcept {
        if (::shutdown(fd_, static_cast<int>(how)) != 0) {
            ec = detail::last_socket_error();
        } else {
            ec.clear();
        }
    }

    // The peer's port; 0 when not connected.
    std::uint16_t remote_port() const noexcept {
        sockaddr_storage address{};
        socklen_t length = sizeof address;
        if (fd_ < 0 || ::getpeername(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) return 0;
        return detail::port_of(address);
    }

private:
    // A non-blocking connect bounded by poll(), then back to blocking mode.
    static void connect_one(int fd, const sockaddr* address, socklen_t length, std::chrono::milliseconds timeout,
                            std::error_code& ec) noexcept {
        if (!detail::set_non_blocking(fd, true)) {
            ec = detail::last_socket_error();
            return;
        }
        if (::connect(fd, address, length) != 0) {
            // EINTR leaves the connect going on in the background, as EINPROGRESS does.
            if (errno != EINPROGRESS && errno != EINTR) {
                ec = detail::last_socket_error();
                return;
            }
            const bool has_deadline = timeout.count() >= 0;
            const auto deadline = std::chrono::steady_clock::now() + (has_deadline ? timeout : timeout.zero());
            detail::wait_for(fd, POLLOUT, deadline, has_deadline, ec);
            if (ec) return;
            int status = 0;
            socklen_t status_length = sizeof status;
            if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &status, &status_length) != 0) {
                ec = detail::last_socket_error();
                return;
            }
            if (status != 0) {
                ec = {status, std::system_category()};
                return;
            }
        }
        if (!detail::set_non_blocking(fd, false)) {
            ec = detail::last_socket_error();
            return;
        }
        ec.clear();
    }
};

// Closing a TCP connection: stop sending (the peer reads end of stream),
// then release the descriptor. A peer that is already gone is not an error.
inline void teardown(tcp_socket& socket, std::error_code& ec) noexcept {
    ec.clear();
    if (!socket.is_open()) return;
    std::error_code shutdown_ec;
    socket.shutdown(tcp_socket::shutdown_type::send, shutdown_ec);
    if (shutdown_ec && shutdown_ec != std::errc::not_connected) ec = shutdown_ec;
    std::error_code close_ec;
    socket.close(close_ec);
    if (!ec) ec = close_ec;
}

class tcp_listener : public detail::socket_handle {
public:
    tcp_listener() noexcept = default;

    // Binds and listens on host:port. An empty host means every local
    // address; port 0 lets the system choose (see local_port()). Tries each
    // address the host resolves to until one binds.
    void listen(std::string_view host, std::uint16_t port, std::error_code& ec, int backlog = SOMAXCONN) {
        close();
        detail::address_list addresses;
        detail::resolve(host, port, true, addresses, ec);
        if (ec) return;
        ec = std::make_error_code(std::errc::address_not_available);
        for (const addrinfo* a = addresses.head; a != nullptr; a = a->ai_next) {
            const int fd = detail::open_stream_socket(a->ai_family, ec);
            if (fd < 0) continue;
            socket_handle candidate(fd);
            // Lets a restarted server bind while old connections sit in TIME_WAIT.
            const int on = 1;
            ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
            // Non-blocking, so accept() never blocks on a connection that
            // vanished between poll() and accept().
            if (!detail::set_non_blocking(fd, true) || ::bind(fd, a->ai_addr, a->ai_addrlen) != 0 ||
                ::listen(fd, backlog) != 0) {
                ec = detail::last_socket_error();
                continue;
            }
            fd_ = candidate.release();
            ec.clear();
            return;
        }
    }

    // Waits up to `timeout` (negative: forever) for a connection.
    tcp_socket accept(std::chrono::milliseconds timeout, std::error_code& ec) noexcept {
        const bool has_deadline = timeout.count() >= 0;
        const auto deadline = std::chrono::steady_clock::now() + (has_deadline ? timeout : timeout.zero());
        for (;;) {
            detail::wait_for(fd_, POLLIN, deadline, has_deadline, ec);
            if (ec) return tcp_socket();
#if defined(__linux__)
            const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
#else
            const int fd = ::accept(fd_, nullptr, nullptr);
#endif
            if (fd >= 0) {
                tcp_socket socket(fd);
#if !defined(__linux__)
                ::fcntl(fd, F_SETFD, FD_CLOEXEC);
#if defined(SO_NOSIGPIPE)
                const int on = 1;
                ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
#endif
#endif
                // Some systems pass the listener's O_NONBLOCK on; ours block.
                if (!detail::set_non_blocking(fd, false)) {
                    ec = detail::last_socket_error();
                    return tcp_socket();
                }
                detail::set_no_delay(fd);
                ec.clear();
                return socket;
            }
            // The connection went away before we took it, or a signal came:
            // wait again within the same deadline.
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) continue;
            ec = detail::last_socket_error();
            return tcp_socket();
        }
    }
    tcp_socket accept(std::error_code& ec) noexcept { return accept(std::chrono::milliseconds(-1), ec); }
};

} // namespace wsx
