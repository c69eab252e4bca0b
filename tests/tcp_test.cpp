#include <wsx/tcp.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <string>
#include <system_error>
#include <vector>

namespace {

using namespace std::chrono_literals;

// Every blocking call in these tests is bounded by this.
constexpr auto io_limit = 5s;

struct connected_pair {
    wsx::tcp_socket client;
    wsx::tcp_socket server;
};

// Listens on host port 0, connects to it and accepts; the kernel completes
// the connection from its backlog, so no second thread is needed.
bool connect_pair(const char* host, connected_pair& pair, std::string& why) {
    std::error_code ec;
    wsx::tcp_listener listener;
    listener.listen(host, 0, ec);
    if (ec) {
        why = "listen: " + ec.message();
        return false;
    }
    const std::uint16_t port = listener.local_port();
    if (port == 0) {
        why = "no local port";
        return false;
    }
    pair.client.connect(host, port, io_limit, ec);
    if (ec) {
        why = "connect: " + ec.message();
        return false;
    }
    pair.server = listener.accept(io_limit, ec);
    if (ec) {
        why = "accept: " + ec.message();
        return false;
    }
    for (wsx::tcp_socket* s : {&pair.client, &pair.server}) {
        s->set_read_timeout(io_limit, ec);
        if (!ec) s->set_write_timeout(io_limit, ec);
        if (ec) {
            why = "timeouts: " + ec.message();
            return false;
        }
    }
    return true;
}

connected_pair connect_pair(const char* host) {
    connected_pair pair;
    std::string why;
    if (!connect_pair(host, pair, why)) FAIL(why);
    return pair;
}

// Reads exactly n bytes (bounded by n calls and the socket's read timeout).
std::string read_exactly(wsx::tcp_socket& socket, std::size_t n, std::error_code& ec) {
    std::string out(n, '\0');
    std::size_t done = 0;
    for (std::size_t calls = 0; done < n && calls < n; ++calls) {
        done += socket.read_some(wsx::mutable_bytes(out).subspan(done), ec);
        if (ec) break;
    }
    out.resize(done);
    return out;
}

void write_all(wsx::tcp_socket& socket, std::string_view data, std::error_code& ec) {
    std::size_t done = 0;
    for (std::size_t calls = 0; done < data.size() && calls <= data.size(); ++calls) {
        done += socket.write_some(wsx::const_bytes(data).subspan(done), ec);
        if (ec) return;
    }
}

void check_echo(connected_pair& pair) {
    std::error_code ec;
    write_all(pair.client, "hello, server", ec);
    REQUIRE_FALSE(ec);
    CHECK(read_exactly(pair.server, 13, ec) == "hello, server");
    REQUIRE_FALSE(ec);
    write_all(pair.server, "hello, client", ec);
    REQUIRE_FALSE(ec);
    CHECK(read_exactly(pair.client, 13, ec) == "hello, client");
    REQUIRE_FALSE(ec);
}

} // namespace

TEST_CASE("tcp over 127.0.0.1: connect, accept and echo") {
    connected_pair pair = connect_pair("127.0.0.1");
    CHECK(pair.client.is_open());
    CHECK(pair.server.is_open());
    CHECK(pair.client.remote_port() == pair.server.local_port());
    CHECK(pair.server.remote_port() == pair.client.local_port());
    check_echo(pair);
}

TEST_CASE("tcp over ::1: connect, accept and echo") {
    connected_pair pair;
    std::string why;
    if (!connect_pair("::1", pair, why)) {
        WARN("no IPv6 loopback here, skipped: " << why);
        return;
    }
    check_echo(pair);
}

TEST_CASE("tcp connect tries every address a name resolves to") {
    // "localhost" may resolve to ::1 before 127.0.0.1; only the IPv4 one
    // listens, so connecting must move on to the next address.
    std::error_code ec;
    wsx::tcp_listener listener;
    listener.listen("127.0.0.1", 0, ec);
    REQUIRE_FALSE(ec);
    wsx::tcp_socket client;
    client.connect("localhost", listener.local_port(), io_limit, ec);
    if (ec) {
        WARN("localhost does not resolve to 127.0.0.1 here, skipped: " << ec.message());
        return;
    }
    wsx::tcp_socket server = listener.accept(io_limit, ec);
    REQUIRE_FALSE(ec);
    CHECK(server.remote_port() == client.local_port());
}

TEST_CASE("tcp TCP_NODELAY is on for connected and accepted sockets") {
    connected_pair pair = connect_pair("127.0.0.1");
    for (const wsx::tcp_socket* s : {&pair.client, &pair.server}) {
        int value = 0;
        socklen_t length = sizeof value;
        REQUIRE(::getsockopt(s->native_handle(), IPPROTO_TCP, TCP_NODELAY, &value, &length) == 0);
        CHECK(value != 0);
    }
}

TEST_CASE("tcp teardown is seen by the peer as end_of_stream") {
    connected_pair pair = connect_pair("127.0.0.1");
    std::error_code ec;
    write_all(pair.client, "last words", ec);
    REQUIRE_FALSE(ec);
    wsx::tcp_socket& client = pair.client;
    teardown(client, ec); // found by argument-dependent lookup
    CHECK_FALSE(ec);
    CHECK_FALSE(pair.client.is_open());

    // Bytes sent before the shutdown still arrive, then the end of stream.
    CHECK(read_exactly(pair.server, 10, ec) == "last words");
    CHECK_FALSE(ec);
    std::array<std::uint8_t, 16> buffer{};
    CHECK(pair.server.read_some(buffer, ec) == 0);
    CHECK(ec == wsx::error::end_of_stream);
    CHECK(ec.message() == "end of stream");

    // Tearing down a closed socket does nothing.
    teardown(client, ec);
    CHECK_FALSE(ec);
}

TEST_CASE("tcp read timeout fails quickly with timed_out") {
    connected_pair pair = connect_pair("127.0.0.1");
    std::error_code ec;
    pair.server.set_read_timeout(50ms, ec);
    REQUIRE_FALSE(ec);
    std::array<std::uint8_t, 16> buffer{};
    const auto start = std::chrono::steady_clock::now();
    CHECK(pair.server.read_some(buffer, ec) == 0);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(ec == std::errc::timed_out);
    CHECK(elapsed >= 40ms);
    CHECK(elapsed < 2s);

    // The socket is still usable after a timeout.
    write_all(pair.client, "late", ec);
    REQUIRE_FALSE(ec);
    CHECK(read_exactly(pair.server, 4, ec) == "late");
}

TEST_CASE("tcp write timeout fails with timed_out once the peer stops reading") {
    connected_pair pair = connect_pair("127.0.0.1");
    std::error_code ec;
    pair.client.set_write_timeout(50ms, ec);
    REQUIRE_FALSE(ec);
    const std::vector<std::uint8_t> chunk(64 * 1024, 0x5a);
    std::size_t total = 0;
    // The loopback buffers hold a few MiB at most; 2048 chunks is 128 MiB.
    for (int i = 0; i < 2048; ++i) {
        total += pair.client.write_some(chunk, ec);
        if (ec) break;
    }
    CHECK(ec == std::errc::timed_out);
    CHECK(total > 0);
}

TEST_CASE("tcp accept timeout fails with timed_out") {
    std::error_code ec;
    wsx::tcp_listener listener;
    listener.listen("127.0.0.1", 0, ec);
    REQUIRE_FALSE(ec);
    const auto start = std::chrono::steady_clock::now();
    wsx::tcp_socket socket = listener.accept(50ms, ec);
    CHECK(ec == std::errc::timed_out);
    CHECK_FALSE(socket.is_open());
    CHECK(std::chrono::steady_clock::now() - start < 2s);
}

TEST_CASE("tcp connect to a closed port is refused") {
    std::error_code ec;
    std::uint16_t port = 0;
    {
        wsx::tcp_listener listener;
        listener.listen("127.0.0.1", 0, ec);
        REQUIRE_FALSE(ec);
        port = listener.local_port();
    }
    wsx::tcp_socket client;
    client.connect("127.0.0.1", port, io_limit, ec);
    CHECK(ec == std::errc::connection_refused);
    CHECK_FALSE(client.is_open());
}

TEST_CASE("tcp connect and listen refuse bad arguments") {
    std::error_code ec;
    wsx::tcp_socket client;
    client.connect("", 80, io_limit, ec);
    CHECK(ec == std::errc::invalid_argument);
    client.connect("127.0.0.1", 0, io_limit, ec);
    CHECK(ec == std::errc::invalid_argument);

    wsx::tcp_listener first;
    first.listen("127.0.0.1", 0, ec);
    REQUIRE_FALSE(ec);
    wsx::tcp_listener second;
    second.listen("127.0.0.1", first.local_port(), ec);
    CHECK(ec == std::errc::address_in_use);
    CHECK_FALSE(second.is_open());
}

TEST_CASE("tcp gathers several buffers into one write") {
    connected_pair pair = connect_pair("127.0.0.1");
    std::error_code ec;
    const std::string header = "HEAD";
    const std::string empty;
    const std::string payload = "payload";
    const wsx::const_bytes buffers[] = {header, empty, payload};
    const std::size_t written = pair.client.write_some(buffers, 3, ec);
    REQUIRE_FALSE(ec);
    CHECK(written == 11);
    CHECK(read_exactly(pair.server, 11, ec) == "HEADpayload");

    // Nothing to write is not an error.
    CHECK(pair.client.write_some(buffers + 1, 1, ec) == 0);
    CHECK_FALSE(ec);
    CHECK(pair.client.write_some(wsx::const_bytes(empty), ec) == 0);
    CHECK_FALSE(ec);
    std::uint8_t none = 0;
    CHECK(pair.server.read_some(wsx::mutable_bytes(&none, 0), ec) == 0);
    CHECK_FALSE(ec);
}

TEST_CASE("tcp writing to a closed peer fails without SIGPIPE") {
    connected_pair pair = connect_pair("127.0.0.1");
    pair.server.close();
    std::error_code ec;
    const std::string data(1024, 'x');
    // The first write may still succeed (the peer answers it with a reset);
    // a later one must fail. SIGPIPE would kill the test binary instead.
    for (int i = 0; i < 1000 && !ec; ++i) pair.client.write_some(data, ec);
    CHECK((ec == std::errc::broken_pipe || ec == std::errc::connection_reset));
}

TEST_CASE("tcp sockets are move-only owners of their descriptor") {
    static_assert(!std::is_copy_constructible_v<wsx::tcp_socket>, "one owner per descriptor");
    static_assert(std::is_nothrow_move_constructible_v<wsx::tcp_socket>, "cheap to move");
    connected_pair pair = connect_pair("127.0.0.1");
    const int fd = pair.client.native_handle();
    wsx::tcp_socket moved = std::move(pair.client);
    CHECK_FALSE(pair.client.is_open()); // NOLINT: checking the moved-from state
    CHECK(moved.native_handle() == fd);

    wsx::tcp_socket assigned;
    assigned = std::move(moved);
    CHECK(assigned.native_handle() == fd);

    const int released = assigned.release();
    CHECK(released == fd);
    CHECK_FALSE(assigned.is_open());
    wsx::tcp_socket adopted(released);
    std::error_code ec;
    adopted.close(ec);
    CHECK_FALSE(ec);
    CHECK_FALSE(adopted.is_open());
}
