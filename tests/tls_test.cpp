#include <wsx/tls.hpp>

#include <wsx/tcp.hpp>

#include "support/test_certificates.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

using namespace std::chrono_literals;

// Every blocking call on either side is bounded by this.
constexpr auto io_limit = 5s;

const wsx_test::test_pki& pki() {
    static const wsx_test::test_pki instance = wsx_test::make_localhost_pki();
    return instance;
}

wsx::tls_context server_context() {
    wsx::tls_context context(wsx::tls_role::server);
    std::error_code ec;
    context.use_certificate_chain_pem(pki().server.certificate_pem, ec);
    if (!ec) context.use_private_key_pem(pki().server.private_key_pem, ec);
    if (ec) FAIL("server context: " << ec.message());
    return context;
}

// A client that trusts only the test CA.
wsx::tls_context client_context() {
    wsx::tls_context context(wsx::tls_role::client, wsx::tls_ca_store::none);
    std::error_code ec;
    context.add_ca_pem(pki().ca.certificate_pem, ec);
    if (ec) FAIL("client context: " << ec.message());
    return context;
}

template <class Stream>
void write_all(Stream& stream, wsx::const_bytes data, std::error_code& ec) {
    for (std::size_t calls = 0; !data.empty() && calls < 1'000'000; ++calls) {
        data = data.subspan(stream.write_some(data, ec));
        if (ec) return;
    }
}

template <class Stream>
std::string read_exactly(Stream& stream, std::size_t n, std::error_code& ec) {
    std::string out(n, '\0');
    std::size_t done = 0;
    for (std::size_t calls = 0; done < n && calls <= n; ++calls) {
        done += stream.read_some(wsx::mutable_bytes(out).subspan(done), ec);
        if (ec) break;
    }
    out.resize(done);
    return out;
}

// A NextLayer from elsewhere that moves one byte per call, with its own
// teardown found by argument-dependent lookup.
namespace trickle {
struct layer {
    wsx::tcp_socket& socket;
    std::size_t read_some(wsx::mutable_bytes buffer, std::error_code& ec) {
        return socket.read_some(buffer.first(std::min<std::size_t>(buffer.size(), 1)), ec);
    }
    std::size_t write_some(wsx::const_bytes buffer, std::error_code& ec) {
        return socket.write_some(buffer.first(std::min<std::size_t>(buffer.size(), 1)), ec);
    }
};
int teardowns = 0;
void teardown(layer& l, std::error_code& ec) {
    ++teardowns;
    teardown(l.socket, ec);
}
} // namespace trickle

enum class server_mode {
    echo,                // echo until the stream ends, then tear down
    bye_then_teardown,   // send "bye", then tear down (close_notify)
    echo_once_then_drop, // echo one read, then close TCP without close_notify
    nested_echo,         // TLS inside TLS, echo until the inner stream ends
};

struct server_outcome {
    std::error_code handshake;
    std::error_code last;    // what ended the echo loop
    std::size_t echoed = 0;
    std::string sni;         // the name the client sent, if any
};

// A TLS server on a loopback port that serves one connection on its own
// thread. Its accept and every read and write are bounded by io_limit, so
// it always ends; the destructor waits for it.
class test_server {
public:
    test_server(wsx::tls_context& context, server_mode mode, const char* host = "127.0.0.1")
        : context_(context), mode_(mode) {
        std::error_code ec;
        listener_.listen(host, 0, ec);
        if (ec) {
            listen_error_ = ec;
            return;
        }
        thread_ = std::thread([this] { run(); });
    }
    ~test_server() {
        if (thread_.joinable()) thread_.join();
    }
    test_server(const test_server&) = delete;
    test_server& operator=(const test_server&) = delete;

    std::error_code listen_error() const { return listen_error_; }
    std::uint16_t port() const { return listener_.local_port(); }
    server_outcome finish() {
        if (thread_.joinable()) thread_.join();
        return outcome_;
    }

private:
    template <class Stream>
    void echo(Stream& stream) {
        std::array<std::uint8_t, 4096> buffer{};
        for (int i = 0; i < 100'000; ++i) {
            const std::size_t n = stream.read_some(buffer, outcome_.last);
            if (outcome_.last) return;
            write_all(stream, wsx::const_bytes(buffer.data(), n), outcome_.last);
            if (outcome_.last) return;
            outcome_.echoed += n;
        }
    }

    void run() {
        std::error_code ec;
        wsx::tcp_socket socket = listener_.accept(io_limit, ec);
        if (!ec) socket.set_read_timeout(io_limit, ec);
        if (!ec) socket.set_write_timeout(io_limit, ec);
        if (ec) {
            outcome_.handshake = ec;
            return;
        }
        wsx::tls_stream<wsx::tcp_socket> tls(std::move(socket), context_);
        tls.handshake(outcome_.handshake);
        if (const char* name = SSL_get_servername(tls.native_handle(), TLSEXT_NAMETYPE_host_name)) outcome_.sni = name;
        std::error_code ignored;
        if (outcome_.handshake) {
            teardown(tls, ignored);
            return;
        }
        switch (mode_) {
        case server_mode::echo:
            echo(tls);
            teardown(tls, ignored);
            break;
        case server_mode::bye_then_teardown:
            write_all(tls, std::string("bye"), outcome_.last);
            teardown(tls, outcome_.last);
            break;
        case server_mode::echo_once_then_drop: {
            std::array<std::uint8_t, 4096> buffer{};
            const std::size_t n = tls.read_some(buffer, outcome_.last);
            if (!outcome_.last) write_all(tls, wsx::const_bytes(buffer.data(), n), outcome_.last);
            tls.next_layer().close();
            break;
        }
        case server_mode::nested_echo: {
            wsx::tls_stream<wsx::tls_stream<wsx::tcp_socket>&> inner(tls, context_);
            inner.handshake(outcome_.handshake);
            if (!outcome_.handshake) echo(inner);
            teardown(inner, ignored);
            break;
        }
        }
    }

    wsx::tls_context& context_;
    server_mode mode_;
    wsx::tcp_listener listener_;
    std::error_code listen_error_;
    std::thread thread_;
    server_outcome outcome_;
};

wsx::tcp_socket connect_to(const char* host, std::uint16_t port) {
    std::error_code ec;
    wsx::tcp_socket socket;
    socket.connect(host, port, io_limit, ec);
    if (!ec) socket.set_read_timeout(io_limit, ec);
    if (!ec) socket.set_write_timeout(io_limit, ec);
    if (ec) FAIL("connect: " << ec.message());
    return socket;
}

// What most tests below start from: contexts from the test PKI, and a
// server on a loopback port with a TCP connection to it, over which the
// test runs TLS. Members are destroyed in reverse: the socket closes before
// the server is joined, and the contexts outlive both.
struct tls_fixture {
    wsx::tls_context server_ctx = server_context();
    wsx::tls_context client_ctx = client_context();
    std::optional<test_server> server;
    wsx::tcp_socket socket;

    // Starts the server in `mode` with server_ctx as it is now, and connects.
    void connect(server_mode mode, const char* host = "127.0.0.1") {
        server.emplace(server_ctx, mode, host);
        REQUIRE_FALSE(server->listen_error());
        socket = connect_to(host, server->port());
    }
};

// Names the server to verify, then runs the client's handshake into `ec`.
template <class Stream>
void client_handshake(Stream& client, const char* hostname, std::error_code& ec) {
    client.set_hostname(hostname, ec);
    REQUIRE_FALSE(ec);
    client.handshake(ec);
}

} // namespace

TEST_CASE_METHOD(tls_fixture, "tls handshake and echo with the right CA, then close_notify") {
    const char* version = GENERATE("TLS 1.2", "TLS 1.3");
    INFO(version);
    if (std::string(version) == "TLS 1.2") SSL_CTX_set_max_proto_version(server_ctx.native_handle(), TLS1_2_VERSION);

    connect(server_mode::echo);
    wsx::tls_stream<wsx::tcp_socket&> client(socket, client_ctx);
    std::error_code ec;
    client_handshake(client, "localhost", ec);
    INFO(ec.message());
    REQUIRE_FALSE(ec);
    CHECK(SSL_version(client.native_handle()) ==
          (std::string(version) == "TLS 1.2" ? TLS1_2_VERSION : TLS1_3_VERSION));

    write_all(client, std::string("hello over TLS"), ec);
    REQUIRE_FALSE(ec);
    CHECK(read_exactly(client, 14, ec) == "hello over TLS");
    REQUIRE_FALSE(ec);

    // Several records per write and reads split across records.
    std::string big(100'000, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    for (std::size_t offset = 0; offset < big.size(); offset += 40'000) {
        const std::string chunk = big.substr(offset, 40'000);
        write_all(client, chunk, ec);
        REQUIRE_FALSE(ec);
        CHECK(read_exactly(client, chunk.size(), ec) == chunk);
        REQUIRE_FALSE(ec);
    }

    teardown(client, ec); // close_notify, then the TCP teardown below
    CHECK_FALSE(ec);
    CHECK_FALSE(socket.is_open());

    const server_outcome outcome = server->finish();
    CHECK_FALSE(outcome.handshake);
    CHECK(outcome.sni == "localhost");
    CHECK(outcome.echoed == 14 + big.size());
    // The server saw our close_notify as a clean end of stream.
    CHECK(outcome.last == wsx::error::end_of_stream);
}

TEST_CASE_METHOD(tls_fixture, "tls close_notify from the server reads as end_of_stream") {
    connect(server_mode::bye_then_teardown);
    wsx::tls_stream<wsx::tcp_socket&> client(socket, client_ctx);
    std::error_code ec;
    client_handshake(client, "localhost", ec);
    REQUIRE_FALSE(ec);
    CHECK(read_exactly(client, 3, ec) == "bye");
    REQUIRE_FALSE(ec);
    std::array<std::uint8_t, 16> buffer{};
    CHECK(client.read_some(buffer, ec) == 0);
    CHECK(ec == wsx::error::end_of_stream);
    CHECK_FALSE(wsx::is_stream_truncated(ec));
    // Answering with our own close_notify to a peer that may be gone is fine.
    teardown(client, ec);
    CHECK_FALSE(ec);
    const server_outcome outcome = server->finish();
    CHECK_FALSE(outcome.handshake);
    CHECK_FALSE(outcome.last);
}

TEST_CASE_METHOD(tls_fixture, "tls end of the TCP stream without close_notify is a truncation") {
    connect(server_mode::echo_once_then_drop);
    wsx::tls_stream<wsx::tcp_socket&> client(socket, client_ctx);
    std::error_code ec;
    client_handshake(client, "localhost", ec);
    REQUIRE_FALSE(ec);
    write_all(client, std::string("once"), ec);
    REQUIRE_FALSE(ec);
    CHECK(read_exactly(client, 4, ec) == "once");
    REQUIRE_FALSE(ec);
    std::array<std::uint8_t, 16> buffer{};
    CHECK(client.read_some(buffer, ec) == 0);
    INFO(ec.message());
    CHECK(ec);
    CHECK(ec != wsx::error::end_of_stream);
    CHECK(wsx::is_stream_truncated(ec));
    CHECK(ec.message().find("unexpected eof") != std::string::npos);
    // After a fatal error no close_notify is sent; the TCP layer still closes.
    teardown(client, ec);
    CHECK_FALSE(socket.is_open());
    CHECK_FALSE(server->finish().handshake);
}

TEST_CASE_METHOD(tls_fixture, "tls verification fails on a wrong hostname") {
    connect(server_mode::echo);
    wsx::tls_stream<wsx::tcp_socket&> client(socket, client_ctx);
    std::error_code ec;
    client_handshake(client, "wrong.example", ec);
    CHECK(ec.category() == wsx::tls_verify_category());
    CHECK(ec.value() == X509_V_ERR_HOSTNAME_MISMATCH);
    CHECK(ec.message() == "hostname mismatch");
    // The stream is dead: no more I/O, and teardown sends no close_notify.
    std::array<std::uint8_t, 4> buffer{};
    CHECK(client.read_some(buffer, ec) == 0);
    CHECK(ec);
    teardown(client, ec);
    CHECK_FALSE(socket.is_open());
    // The client's alert told the server why.
    const server_outcome outcome = server->finish();
    CHECK(outcome.handshake);
    CHECK(outcome.sni == "wrong.example");
}

TEST_CASE_METHOD(tls_fixture, "tls verification checks IP addresses") {
    const char* name = GENERATE("127.0.0.1", "127.0.0.2");
    INFO(name);
    connect(server_mode::echo);
    wsx::tls_stream<wsx::tcp_socket&> client(socket, client_ctx);
    std::error_code ec;
    client_handshake(client, name, ec);
    if (std::string(name) == "127.0.0.1") {
        CHECK_FALSE(ec);
    } else {
        CHECK(ec.category() == wsx::tls_verify_category());
        CHECK(ec.value() == X509_V_ERR_IP_ADDRESS_MISMATCH);
    }
    teardown(client, ec);
    // RFC 6066 §3: no SNI for an IP address.
    CHECK(server->finish().sni.empty());
}

TEST_CASE_METHOD(tls_fixture, "tls over ::1 verifies the bracketed IPv6 address") {
    server.emplace(server_ctx, server_mode::echo, "::1");
    if (server->listen_error()) {
        WARN("no IPv6 loopback here, skipped: " << server->listen_error().message());
        return;
    }
    socket = connect_to("::1", server->port());
    wsx::tls_stream<wsx::tcp_socket&> client(socket, client_ctx);
    std::error_code ec;
    client_handshake(client, "[::1]", ec);
    INFO(ec.message());
    CHECK_FALSE(ec);
    teardown(client, ec);
    CHECK_FALSE(ec);
    CHECK(server->finish().last == wsx::error::end_of_stream);
}

TEST_CASE_METHOD(tls_fixture, "tls verification fails with an unknown CA") {
    // The system store, or only some other CA: neither knows the test CA.
    const bool system_store = GENERATE(true, false);
    INFO("system store: " << system_store);
    client_ctx = wsx::tls_context(wsx::tls_role::client,
                                  system_store ? wsx::tls_ca_store::system : wsx::tls_ca_store::none);
    if (!system_store) {
        std::error_code ec;
        client_ctx.add_ca_pem(wsx_test::make_test_ca("another CA").certificate_pem, ec);
        REQUIRE_FALSE(ec);
    }
    connect(server_mode::echo);
    wsx::tls_stream<wsx::tcp_socket&> client(socket, client_ctx);
    std::error_code ec;
    client_handshake(client, "localhost", ec);
    CHECK(ec.category() == wsx::tls_verify_category());
    CHECK(ec.value() == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    CHECK(ec.message() == "unable to get local issuer certificate");
    teardown(client, ec);
    CHECK(server->finish().handshake);
}

TEST_CASE_METHOD(tls_fixture, "tls client refuses to handshake without a hostname unless told not to verify") {
    connect(server_mode::echo);
    std::error_code ec;
    {
        wsx::tls_stream<wsx::tcp_socket&> client(socket, client_ctx);
        client.handshake(ec);
        CHECK(ec == std::errc::invalid_argument);
        // read_some and write_some run the handshake first, with the same check.
        CHECK(client.write_some(std::string("x"), ec) == 0);
        CHECK(ec == std::errc::invalid_argument);
        client.set_hostname("", ec);
        CHECK(ec == std::errc::invalid_argument);
        client.set_hostname(std::string("local\0host", 10), ec);
        CHECK(ec == std::errc::invalid_argument);
    }
    // Nothing was sent yet, so the same connection can still carry TLS.
    client_ctx.set_verify_peer(false);
    wsx::tls_stream<wsx::tcp_socket&> unverified(socket, client_ctx);
    unverified.handshake(ec);
    CHECK_FALSE(ec);
    teardown(unverified, ec);
    CHECK_FALSE(ec);
    CHECK(server->finish().last == wsx::error::end_of_stream);
}

TEST_CASE_METHOD(tls_fixture, "tls works over any NextLayer: one byte per call, with its own teardown") {
    connect(server_mode::echo);
    wsx::tls_stream<trickle::layer> client(trickle::layer{socket}, client_ctx);
    std::error_code ec;
    client_handshake(client, "localhost", ec);
    REQUIRE_FALSE(ec);
    write_all(client, std::string("drip"), ec);
    REQUIRE_FALSE(ec);
    CHECK(read_exactly(client, 4, ec) == "drip");
    REQUIRE_FALSE(ec);
    const int before = trickle::teardowns;
    teardown(client, ec);
    CHECK_FALSE(ec);
    CHECK(trickle::teardowns == before + 1);
    CHECK_FALSE(socket.is_open());
    CHECK(server->finish().last == wsx::error::end_of_stream);
}

TEST_CASE_METHOD(tls_fixture, "tls works inside tls") {
    connect(server_mode::nested_echo);
    wsx::tls_stream<wsx::tcp_socket&> outer(socket, client_ctx);
    wsx::tls_stream<wsx::tls_stream<wsx::tcp_socket&>&> inner(outer, client_ctx);
    std::error_code ec;
    outer.set_hostname("localhost", ec);
    client_handshake(inner, "localhost", ec); // runs the outer handshake on the way
    INFO(ec.message());
    REQUIRE_FALSE(ec);
    write_all(inner, std::string("nested"), ec);
    REQUIRE_FALSE(ec);
    CHECK(read_exactly(inner, 6, ec) == "nested");
    REQUIRE_FALSE(ec);
    teardown(inner, ec); // inner close_notify, outer close_notify, TCP
    CHECK_FALSE(ec);
    CHECK_FALSE(socket.is_open());
    const server_outcome outcome = server->finish();
    CHECK_FALSE(outcome.handshake);
    CHECK(outcome.echoed == 6);
    CHECK(outcome.last == wsx::error::end_of_stream);
}

TEST_CASE("tls contexts report bad PEM and mismatched keys with OpenSSL's reason") {
    std::error_code ec;
    wsx::tls_context server(wsx::tls_role::server);
    server.use_certificate_chain_pem("not a certificate", ec);
    CHECK(ec.category() == wsx::tls_category());
    CHECK(ec.message().find("no start line") != std::string::npos);
    server.use_private_key_pem("not a key", ec);
    CHECK(ec.category() == wsx::tls_category());
    CHECK_FALSE(ec.message().empty());

    server.use_certificate_chain_pem(pki().server.certificate_pem, ec);
    CHECK_FALSE(ec);
    server.use_private_key_pem(pki().ca.private_key_pem, ec); // the wrong key
    CHECK(ec.category() == wsx::tls_category());
    CHECK(ec.message().find("key values mismatch") != std::string::npos);
    server.use_private_key_pem(pki().server.private_key_pem, ec);
    CHECK_FALSE(ec);

    wsx::tls_context client(wsx::tls_role::client);
    client.add_ca_pem("", ec);
    CHECK(ec.category() == wsx::tls_category());
    client.load_ca_file("/nonexistent/wsx-ca.pem", ec);
    CHECK(ec.category() == wsx::tls_category());
    CHECK(SSL_CTX_get_min_proto_version(client.native_handle()) == TLS1_2_VERSION);
    CHECK(SSL_CTX_get_min_proto_version(server.native_handle()) == TLS1_2_VERSION);
    CHECK(SSL_CTX_get_verify_mode(client.native_handle()) == SSL_VERIFY_PEER);
}

TEST_CASE_METHOD(tls_fixture, "tls contexts load certificates, keys and CAs from files") {
    std::string directory = (std::filesystem::temp_directory_path() / "wsx-tls-test-XXXXXX").string();
    REQUIRE(::mkdtemp(&directory[0]) != nullptr);
    const std::string base = directory;
    const auto write_file = [&](const std::string& name, const std::string& text) {
        std::ofstream(base + "/" + name, std::ios::binary) << text;
        return base + "/" + name;
    };
    const std::string chain = write_file("chain.pem", pki().server.certificate_pem + pki().ca.certificate_pem);
    const std::string key = write_file("key.pem", pki().server.private_key_pem);
    const std::string ca = write_file("ca.pem", pki().ca.certificate_pem);

    // Fresh contexts that get everything from the files.
    std::error_code ec;
    server_ctx = wsx::tls_context(wsx::tls_role::server);
    server_ctx.use_certificate_chain_file(chain, ec);
    CHECK_FALSE(ec);
    server_ctx.use_private_key_file(key, ec);
    CHECK_FALSE(ec);
    client_ctx = wsx::tls_context(wsx::tls_role::client, wsx::tls_ca_store::none);
    client_ctx.load_ca_file(ca, ec);
    CHECK_FALSE(ec);
    for (const std::string& path : {chain, key, ca}) std::remove(path.c_str());
    ::rmdir(directory.c_str());

    connect(server_mode::echo);
    wsx::tls_stream<wsx::tcp_socket&> client(socket, client_ctx);
    client_handshake(client, "localhost", ec);
    INFO(ec.message());
    CHECK_FALSE(ec);
    teardown(client, ec);
    CHECK(server->finish().last == wsx::error::end_of_stream);
}

TEST_CASE_METHOD(tls_fixture, "tls streams are movable and keep their context alive") {
    connect(server_mode::echo);
    auto short_lived_ctx = std::make_unique<wsx::tls_context>(client_context());
    wsx::tls_stream<wsx::tcp_socket> first(std::move(socket), *short_lived_ctx);
    short_lived_ctx.reset(); // the stream holds its own reference on the SSL_CTX
    wsx::tls_stream<wsx::tcp_socket> client(std::move(first));
    std::error_code ec;
    client_handshake(client, "localhost", ec);
    REQUIRE_FALSE(ec);
    write_all(client, std::string("moved"), ec);
    CHECK(read_exactly(client, 5, ec) == "moved");
    teardown(client, ec);
    CHECK_FALSE(ec);
    CHECK_FALSE(client.next_layer().is_open());
    CHECK(server->finish().last == wsx::error::end_of_stream);
}
