#include <wsx/stream.hpp>

#include <wsx/tcp.hpp>
#include <wsx/tls.hpp>

#include "support/loopback_server.hpp"
#include "support/stream_echo.hpp"
#include "support/test_certificates.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

namespace {

using wsx::test::connect_loopback;
using wsx::test::one_connection_server;
using tls_ws = wsx::stream<wsx::tls_stream<wsx::tcp_socket>>;

struct server_outcome {
    std::error_code accept_ec;
    std::error_code end_ec;
    std::size_t echoed = 0;
    bool deflate = false;
};

// A wss:// echo server for one connection.
void tls_echo(wsx::tcp_socket socket, wsx::tls_context& context, const wsx::connection_options& options,
              server_outcome& out) {
    tls_ws ws(std::move(socket), context);
    ws.set_options(options);
    ws.accept(out.accept_ec);
    if (out.accept_ec) return;
    out.deflate = ws.deflate_enabled();
    wsx::test::echo_messages(ws, out.end_ec, out.echoed);
}

wsx::tls_context server_context(const wsx_test::test_pki& pki) {
    wsx::tls_context context(wsx::tls_role::server);
    std::error_code ec;
    context.use_certificate_chain_pem(pki.server.certificate_pem, ec);
    if (!ec) context.use_private_key_pem(pki.server.private_key_pem, ec);
    if (ec) throw std::system_error(ec, "server certificate");
    return context;
}

wsx::tls_context client_context(const std::string& trusted_ca_pem) {
    wsx::tls_context context(wsx::tls_role::client, wsx::tls_ca_store::none);
    std::error_code ec;
    context.add_ca_pem(trusted_ca_pem, ec);
    if (ec) throw std::system_error(ec, "client CA");
    return context;
}

const wsx_test::test_pki& localhost_pki() {
    static const wsx_test::test_pki pki = wsx_test::make_localhost_pki();
    return pki;
}

} // namespace

TEST_CASE("stream over TLS: the server's certificate decides") {
    const wsx_test::test_pki& pki = localhost_pki();
    wsx::tls_context server_tls = server_context(pki);
    server_outcome seen;
    one_connection_server server(
        [&](wsx::tcp_socket socket) { tls_echo(std::move(socket), server_tls, wsx::connection_options{}, seen); });
    REQUIRE_FALSE(server.listen_error());

    SECTION("the right CA and host name") {
        wsx::tls_context client_tls = client_context(pki.ca.certificate_pem);
        tls_ws ws(connect_loopback(server.port()), client_tls);
        std::error_code ec;
        ws.next_layer().set_hostname("localhost", ec);
        REQUIRE_FALSE(ec);
        ws.handshake("localhost", "/secure");
        ws.write_text("over TLS");
        wsx::message reply;
        ws.read(reply);
        CHECK(reply.data == "over TLS");
        ws.close(wsx::close_code::normal, "done");
        CHECK(ws.get_close_status().code == wsx::close_code::normal);
        server.join();
        CHECK_FALSE(seen.accept_ec);
        CHECK(seen.echoed == 1);
        CHECK(seen.end_ec == wsx::error::connection_closed);
    }
    SECTION("a wrong host name") {
        wsx::tls_context client_tls = client_context(pki.ca.certificate_pem);
        tls_ws ws(connect_loopback(server.port()), client_tls);
        std::error_code ec;
        ws.next_layer().set_hostname("example.com", ec);
        REQUIRE_FALSE(ec);
        ws.handshake("example.com", "/", ec);
        CHECK(ec.category() == wsx::tls_verify_category());
        CHECK(ec.value() == X509_V_ERR_HOSTNAME_MISMATCH);
        CHECK_FALSE(ws.is_open());
        server.join();
        CHECK(seen.accept_ec);
    }
    SECTION("a CA the client does not trust") {
        const wsx_test::test_certificate other_ca = wsx_test::make_test_ca("some other CA");
        wsx::tls_context client_tls = client_context(other_ca.certificate_pem);
        tls_ws ws(connect_loopback(server.port()), client_tls);
        std::error_code ec;
        ws.next_layer().set_hostname("localhost", ec);
        REQUIRE_FALSE(ec);
        ws.handshake("localhost", "/", ec);
        CHECK(ec.category() == wsx::tls_verify_category());
        CHECK(ec.value() == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
        CHECK_THROWS_AS(ws.write_text("never sent"), std::system_error);
        server.join();
        CHECK(seen.accept_ec);
    }
}

TEST_CASE("stream over TLS: wss with permessage-deflate on both sides") {
    const wsx_test::test_pki& pki = localhost_pki();
    wsx::tls_context server_tls = server_context(pki);
    wsx::connection_options server_options;
    server_options.deflate = wsx::deflate_options{};
    server_options.max_message_size = 2 * 1024 * 1024;
    server_outcome seen;
    one_connection_server server(
        [&](wsx::tcp_socket socket) { tls_echo(std::move(socket), server_tls, server_options, seen); });
    REQUIRE_FALSE(server.listen_error());

    wsx::tls_context client_tls = client_context(pki.ca.certificate_pem);
    tls_ws ws(connect_loopback(server.port()), client_tls);
    wsx::connection_options client_options;
    client_options.max_message_size = 2 * 1024 * 1024;
    client_options.deflate = wsx::deflate_options{};
    ws.set_options(client_options);
    std::error_code ec;
    ws.next_layer().set_hostname("127.0.0.1", ec);
    REQUIRE_FALSE(ec);
    ws.handshake("127.0.0.1:" + std::to_string(server.port()), "/");
    CHECK(ws.deflate_enabled());

    std::vector<std::string> messages = {"", "short", std::string(1000, 'a'), std::string(1024 * 1024, 'z')};
    std::string mixed;
    for (int i = 0; i < 200000; ++i) mixed += static_cast<char>("WebSocket"[i % 9] + (i / 1000) % 3);
    messages.push_back(mixed);
    wsx::message reply;
    for (const std::string& text : messages) {
        ws.write_text(text);
        ws.read(reply);
        CHECK(reply.text);
        CHECK(reply.data == text);
    }
    ws.write_binary(mixed);
    ws.read(reply);
    CHECK_FALSE(reply.text);
    CHECK(reply.data == mixed);
    ws.close(wsx::close_code::normal);
    server.join();
    CHECK_FALSE(seen.accept_ec);
    CHECK(seen.deflate);
    CHECK(seen.echoed == messages.size() + 1);
    CHECK(seen.end_ec == wsx::error::connection_closed);
}
