#include <wsx/stream.hpp>

#include <wsx/tcp.hpp>

#include "support/connection_pair.hpp"
#include "support/loopback_server.hpp"
#include "support/stream_echo.hpp"
#include "support/test_stream.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using wsx::test::connect_loopback;
using wsx::test::gather_test_stream;
using wsx::test::io_limit;
using wsx::test::make_test_stream_pair;
using wsx::test::one_connection_server;
using wsx::test::test_stream;

// ---- layers for the compile-time checks -------------------------------------

struct read_only_layer {
    std::size_t read_some(wsx::mutable_bytes, std::error_code&) { return 0; }
};
struct plain_layer {
    std::size_t read_some(wsx::mutable_bytes, std::error_code&) { return 0; }
    std::size_t write_some(wsx::const_bytes, std::error_code&) { return 0; }
};
struct closable_layer : plain_layer {
    int closed = 0;
    void close(std::error_code& ec) {
        ++closed;
        ec.clear();
    }
};

} // namespace

namespace custom {
// A layer in another namespace with its own teardown, found by ADL.
struct layer : plain_layer {
    int torn_down = 0;
    int closed = 0;
    void close(std::error_code&) { ++closed; }
};
inline void teardown(layer& l, std::error_code& ec) {
    ++l.torn_down;
    ec.clear();
}
} // namespace custom

TEST_CASE("stream: the NextLayer concept is checked at compile time") {
    using namespace wsx::detail;
    STATIC_REQUIRE(has_read_some<plain_layer>::value);
    STATIC_REQUIRE(has_write_some<plain_layer>::value);
    STATIC_REQUIRE_FALSE(has_write_some<read_only_layer>::value);
    STATIC_REQUIRE_FALSE(has_gather_write_some<plain_layer>::value);
    STATIC_REQUIRE_FALSE(has_gather_write_some<test_stream>::value);
    STATIC_REQUIRE(has_gather_write_some<gather_test_stream>::value);
    STATIC_REQUIRE(has_gather_write_some<wsx::tcp_socket>::value);
    // A reference is a layer too.
    STATIC_REQUIRE(std::is_same_v<wsx::stream<plain_layer&>::next_layer_type, plain_layer>);
}

TEST_CASE("stream: teardown is the layer's own, else its close(), else nothing") {
    std::error_code ec = std::make_error_code(std::errc::io_error);
    custom::layer own;
    wsx::detail::teardown_layer(own, ec);
    CHECK(own.torn_down == 1);
    CHECK(own.closed == 0);
    CHECK_FALSE(ec);

    closable_layer closable;
    wsx::detail::teardown_layer(closable, ec);
    CHECK(closable.closed == 1);

    plain_layer plain;
    ec = std::make_error_code(std::errc::io_error);
    wsx::detail::teardown_layer(plain, ec);
    CHECK_FALSE(ec);

    auto ends = make_test_stream_pair();
    wsx::detail::teardown_layer(ends.first, ec);
    CHECK(ends.first.torn_down());
}

TEST_CASE("stream: a Host value splits into host and port") {
    std::string host;
    std::uint16_t port = 1;
    CHECK(wsx::detail::split_host_port("example.com", host, port));
    CHECK((host == "example.com" && port == 0));
    CHECK(wsx::detail::split_host_port("example.com:9001", host, port));
    CHECK((host == "example.com" && port == 9001));
    CHECK(wsx::detail::split_host_port("[::1]:65535", host, port));
    CHECK((host == "::1" && port == 65535));
    CHECK(wsx::detail::split_host_port("[::1]", host, port));
    CHECK((host == "::1" && port == 0));
    CHECK(wsx::detail::split_host_port("::1", host, port));
    CHECK((host == "::1" && port == 0));
    CHECK_FALSE(wsx::detail::split_host_port("example.com:65536", host, port));
    CHECK_FALSE(wsx::detail::split_host_port("example.com:0", host, port));
    CHECK_FALSE(wsx::detail::split_host_port("example.com:80x", host, port));
    CHECK_FALSE(wsx::detail::split_host_port(":80", host, port));
    CHECK_FALSE(wsx::detail::split_host_port("[::1", host, port));
    CHECK_FALSE(wsx::detail::split_host_port("[::1]x", host, port));
    CHECK_FALSE(wsx::detail::split_host_port("", host, port));
}

namespace {

// ---- a scripted exchange over in-memory pipes --------------------------------

const std::string binary_payload("\x00\x01\xfe\xff", 4);

struct client_outcome {
    std::error_code ec; // the first error, if any
    std::vector<std::string> replies;
    std::vector<std::string> pongs;
    wsx::close_status status;
};

struct server_outcome {
    std::error_code accept_ec;
    std::error_code end_ec; // what ended the echo loop: connection_closed when all went well
    std::size_t echoed = 0;
    wsx::close_status status;
};

// Handshake, three messages (text, binary, empty text) with a ping among
// them, then close 1000 "bye".
template <class Layer>
void client_script(wsx::stream<Layer>& ws, client_outcome& out) {
    ws.set_control_callback([&out](wsx::event_type type, wsx::const_bytes payload) {
        if (type == wsx::event_type::pong) out.pongs.emplace_back(wsx::as_string_view(payload));
    });
    std::error_code& ec = out.ec;
    wsx::message reply;
    ws.handshake("localhost", "/chat", ec);
    if (ec) return;
    ws.write_text("hello", ec);
    if (ec) return;
    ws.read(reply, ec);
    if (ec) return;
    out.replies.push_back(reply.data);
    ws.ping(std::string("are you there?"), ec);
    if (ec) return;
    ws.write_binary(binary_payload, ec);
    if (ec) return;
    ws.read(reply, ec);
    if (ec) return;
    out.replies.push_back(reply.data);
    ws.write_text("", ec);
    if (ec) return;
    ws.read(reply, ec);
    if (ec) return;
    out.replies.push_back(reply.data);
    ws.close(wsx::close_code::normal, "bye", ec);
    out.status = ws.get_close_status();
}

// Accepts, then echoes until the connection ends.
template <class Layer>
void echo_server(wsx::stream<Layer>& ws, server_outcome& out) {
    ws.accept(out.accept_ec);
    if (out.accept_ec) return;
    wsx::test::echo_messages(ws, out.end_ec, out.echoed);
    out.status = ws.get_close_status();
}

struct pipe_settings {
    std::size_t max_read = test_stream::never;
    std::size_t client_fail_at = test_stream::never;
    std::size_t server_fail_at = test_stream::never;
    std::chrono::milliseconds wait_limit{io_limit};
};

struct pipe_run {
    client_outcome client;
    server_outcome server;
    std::size_t client_calls = 0;
    std::size_t server_calls = 0;
    bool client_torn_down = false;
    bool server_torn_down = false;
    std::size_t client_gather_calls = 0;
};

template <class End>
pipe_run run_over_pipes(const pipe_settings& settings) {
    auto ends = make_test_stream_pair<End>();
    for (End* end : {&ends.first, &ends.second}) {
        end->max_read = settings.max_read;
        end->wait_limit = settings.wait_limit;
    }
    ends.first.fail_at = settings.client_fail_at;
    ends.second.fail_at = settings.server_fail_at;
    wsx::connection_options options = wsx::test::fixed_options();
    wsx::stream<End> client(std::move(ends.first));
    wsx::stream<End> server(std::move(ends.second));
    client.set_options(options);
    server.set_options(options);

    pipe_run run;
    std::thread server_thread([&] { echo_server(server, run.server); });
    client_script(client, run.client);
    server_thread.join();
    run.client_calls = client.next_layer().calls();
    run.server_calls = server.next_layer().calls();
    run.client_torn_down = client.next_layer().torn_down();
    run.server_torn_down = server.next_layer().torn_down();
    if constexpr (std::is_same_v<End, gather_test_stream>) run.client_gather_calls = client.next_layer().gather_calls();
    return run;
}

void check_clean_run(const pipe_run& run) {
    REQUIRE_FALSE(run.client.ec);
    CHECK(run.client.replies == std::vector<std::string>{"hello", binary_payload, ""});
    CHECK(run.client.pongs == std::vector<std::string>{"are you there?"});
    CHECK(run.client.status.code == wsx::close_code::normal);
    CHECK_FALSE(run.client.status.closed_by_peer);
    CHECK_FALSE(run.client.status.ec);
    CHECK_FALSE(run.server.accept_ec);
    CHECK(run.server.end_ec == wsx::error::connection_closed);
    CHECK(run.server.echoed == 3);
    CHECK(run.server.status.code == wsx::close_code::normal);
    CHECK(run.server.status.reason == "bye");
    CHECK(run.server.status.closed_by_peer);
    CHECK(run.client_torn_down);
    CHECK(run.server_torn_down);
}

// The run of `settings` with one side's layer failing from its I/O call `n`
// on: `side` is &pipe_settings::client_fail_at or ::server_fail_at.
pipe_run run_failing_at(pipe_settings settings, std::size_t pipe_settings::*side, std::size_t n) {
    settings.*side = n;
    return run_over_pipes<test_stream>(settings);
}

// After a failing layer, whichever side it was: both layers were torn down
// and neither side ended by waiting out its time limit.
void check_ended_without_hanging(const pipe_run& run) {
    CHECK(run.client_torn_down);
    CHECK(run.server_torn_down);
    CHECK(run.client.ec != std::errc::timed_out);
    CHECK(run.server.end_ec != std::errc::timed_out);
}

} // namespace

TEST_CASE("stream: client and server over in-memory pipes") {
    SECTION("whole reads") { check_clean_run(run_over_pipes<test_stream>({})); }
    SECTION("one byte per read") {
        pipe_settings settings;
        settings.max_read = 1;
        check_clean_run(run_over_pipes<test_stream>(settings));
    }
    SECTION("a layer with gather writes gets them") {
        const pipe_run run = run_over_pipes<gather_test_stream>({});
        check_clean_run(run);
        CHECK(run.client_gather_calls > 0);
    }
}

TEST_CASE("stream: every failing I/O call ends both sides with an error, and nothing hangs") {
    pipe_settings settings;
    settings.max_read = 1;
    const pipe_run clean = run_over_pipes<test_stream>(settings);
    check_clean_run(clean);
    REQUIRE(clean.client_calls > 100);
    REQUIRE(clean.server_calls > 100);

    SECTION("the client's layer fails") {
        // The client's last call reads the end of the stream after the
        // closing handshake is complete: its failure changes nothing.
        for (std::size_t n = 0; n < clean.client_calls; ++n) {
            INFO("client fails at I/O call " << n << " of " << clean.client_calls);
            const pipe_run run = run_failing_at(settings, &pipe_settings::client_fail_at, n);
            check_ended_without_hanging(run);
            if (n + 1 < clean.client_calls) {
                CHECK(run.client.ec == std::errc::connection_reset);
                // The server's loop ended too: the stream ended under a
                // read or a write, or (when the client failed reading the
                // answer to its close frame) the closing handshake was
                // complete on the server's side.
                CHECK((run.server.accept_ec || run.server.end_ec));
            } else {
                CHECK_FALSE(run.client.ec);
                CHECK(run.server.end_ec == wsx::error::connection_closed);
            }
            if (run.client.ec) CHECK(run.client_calls == n + 1); // no I/O after the failure
        }
    }
    SECTION("the server's layer fails") {
        for (std::size_t n = 0; n < clean.server_calls; ++n) {
            INFO("server fails at I/O call " << n << " of " << clean.server_calls);
            const pipe_run run = run_failing_at(settings, &pipe_settings::server_fail_at, n);
            check_ended_without_hanging(run);
            CHECK(run.client.ec);
            CHECK(run.server_calls == n + 1);
            // The server's last call sends its close frame: failing it
            // still leaves the client without a clean close.
            CHECK((run.server.accept_ec == std::errc::connection_reset ||
                   run.server.end_ec == std::errc::connection_reset ||
                   (n + 1 == clean.server_calls && run.server.end_ec == wsx::error::connection_closed)));
        }
    }
}

namespace {

// A raw peer's helpers: what a test writes and reads on its end by hand.
void write_raw(test_stream& end, std::string_view bytes) {
    std::error_code ec;
    REQUIRE(end.write_some(wsx::const_bytes(bytes), ec) == bytes.size());
    REQUIRE_FALSE(ec);
}

std::string read_until_end(test_stream& end) {
    std::string all;
    std::array<std::uint8_t, 4096> buffer{};
    for (int i = 0; i < 10000; ++i) {
        std::error_code ec;
        const std::size_t n = end.read_some(buffer, ec);
        all.append(reinterpret_cast<const char*>(buffer.data()), n);
        if (ec) break;
    }
    return all;
}

std::string read_head(test_stream& end) {
    std::string head;
    std::uint8_t byte = 0;
    while (head.size() < 65536 && head.find("\r\n\r\n") == std::string::npos) {
        std::error_code ec;
        if (end.read_some(wsx::mutable_bytes(&byte, 1), ec) != 1 || ec) break;
        head.push_back(static_cast<char>(byte));
    }
    return head;
}

std::string header_value(const std::string& head, const std::string& name) {
    const std::size_t at = head.find(name + ": ");
    if (at == std::string::npos) return {};
    const std::size_t start = at + name.size() + 2;
    return head.substr(start, head.find("\r\n", start) - start);
}

// What a server stream did with a request it failed to accept: the error,
// every byte it answered until the end, and whether it tore its layer down.
struct failed_accept {
    std::error_code ec;
    std::string answer;
    bool torn_down = false;
};

failed_accept accept_from_raw_peer(std::string_view request, const wsx::request_handler& handler) {
    auto ends = make_test_stream_pair();
    wsx::stream<test_stream&> server(ends.second);
    write_raw(ends.first, request);
    failed_accept out;
    server.accept(handler, out.ec);
    out.answer = read_until_end(ends.first);
    out.torn_down = ends.second.torn_down();
    return out;
}

std::string as_text(const wsx::test::bytes& b) { return std::string(b.begin(), b.end()); }
wsx::test::bytes as_bytes(std::string_view s) { return wsx::test::bytes(s.begin(), s.end()); }

const std::string upgrade_request = "GET /chat HTTP/1.1\r\n"
                                    "Host: localhost\r\n"
                                    "Upgrade: websocket\r\n"
                                    "Connection: Upgrade\r\n"
                                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                    "Sec-WebSocket-Version: 13\r\n"
                                    "\r\n";

} // namespace

TEST_CASE("stream: accept takes a request the caller already read, with the bytes after it") {
    auto ends = make_test_stream_pair();
    test_stream& peer = ends.first;
    wsx::stream<test_stream&> server(ends.second);
    server.set_options(wsx::test::fixed_options());
    const std::string frame = as_text(wsx::test::frame(wsx::role::client, wsx::opcode::text, as_bytes("early")));

    // The request and the first frame were read by someone else; half a
    // second frame is still in the layer.
    const std::string second = as_text(wsx::test::frame(wsx::role::client, wsx::opcode::text, as_bytes("later")));
    write_raw(peer, second.substr(3));
    const std::string already_read = upgrade_request + frame + second.substr(0, 3);
    server.accept(wsx::const_bytes(already_read));
    REQUIRE(server.is_open());
    CHECK(server.connection()->request().path == "/chat");

    const std::string head = read_head(peer);
    CHECK(head.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0) == 0);
    // RFC 6455 §1.3's example key and its answer.
    CHECK(header_value(head, "Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    wsx::message m;
    server.read(m);
    CHECK(m.text);
    CHECK(m.data == "early");
    server.read(m);
    CHECK(m.data == "later");
}

TEST_CASE("stream: a bad upgrade request is answered with an HTTP error") {
    struct bad_request {
        std::string request;
        std::string status_line;
        wsx::error cause;
    };
    const bad_request cases[] = {
        {"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "HTTP/1.1 426 ", wsx::error::missing_upgrade},
        {"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
         "HTTP/1.1 426 ", wsx::error::unsupported_version},
        {"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
         "HTTP/1.1 400 ", wsx::error::bad_sec_key},
        {"POST / HTTP/1.1\r\nHost: localhost\r\n\r\n", "HTTP/1.1 405 ", wsx::error::bad_method},
    };
    for (const bad_request& c : cases) {
        INFO(c.request);
        auto ends = make_test_stream_pair();
        ends.second.max_read = 1;
        wsx::stream<test_stream&> server(ends.second);
        write_raw(ends.first, c.request);
        std::error_code ec;
        server.accept(ec);
        CHECK(ec == c.cause);
        CHECK(ec == wsx::condition::handshake_failed);
        CHECK_FALSE(server.is_open());
        CHECK(ends.second.torn_down());
        const std::string answer = read_until_end(ends.first);
        CHECK(answer.rfind(c.status_line, 0) == 0);
        if (c.cause == wsx::error::unsupported_version) CHECK(header_value(answer, "Sec-WebSocket-Version") == "13");
        // Every later call reports the connection closed.
        server.write_text("x", ec);
        CHECK(ec == wsx::error::connection_closed);
        CHECK_THROWS_AS(server.write_text("x"), std::system_error);
    }
}

TEST_CASE("stream: a request handler chooses the subprotocol or refuses") {
    const wsx::request_handler handler = [](const wsx::server_request& request, wsx::accept_options& answer) {
        if (request.path == "/forbidden") {
            answer.headers.push_back({"X-Reason", "not here"});
            return 404;
        }
        if (request.path == "/bad-answer") {
            answer.subprotocol = "never-offered";
            return 101;
        }
        answer.subprotocol = std::string(wsx::select_subprotocol(request, {"superchat", "chat"}));
        return 101;
    };
    const auto request_for = [](const std::string& path) {
        std::string request = upgrade_request;
        request.replace(request.find("/chat"), 5, path);
        return request.insert(request.size() - 2, "Sec-WebSocket-Protocol: chat, superchat\r\n");
    };
    SECTION("accepted with the server's preferred subprotocol") {
        auto ends = make_test_stream_pair();
        wsx::stream<test_stream&> server(ends.second);
        write_raw(ends.first, request_for("/chat"));
        server.accept(handler);
        CHECK(server.subprotocol() == "superchat");
        CHECK(header_value(read_head(ends.first), "Sec-WebSocket-Protocol") == "superchat");
    }
    SECTION("refused with the handler's status and headers") {
        const failed_accept refused = accept_from_raw_peer(request_for("/forbidden"), handler);
        CHECK(refused.ec == wsx::error::handshake_rejected);
        CHECK(refused.ec == wsx::condition::handshake_failed);
        CHECK(refused.answer.rfind("HTTP/1.1 404 ", 0) == 0);
        CHECK(header_value(refused.answer, "X-Reason") == "not here");
        CHECK(refused.torn_down);
    }
    SECTION("an answer that cannot be sent gives 500 and invalid_argument") {
        const failed_accept refused = accept_from_raw_peer(request_for("/bad-answer"), handler);
        CHECK(refused.ec == std::errc::invalid_argument);
        CHECK(refused.answer.rfind("HTTP/1.1 500 ", 0) == 0);
        CHECK(refused.torn_down);
    }
}

TEST_CASE("stream: a refused handshake reports the server's status") {
    auto ends = make_test_stream_pair();
    wsx::stream<test_stream&> client(ends.second);
    write_raw(ends.first, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    ends.first.shutdown_write();
    std::error_code ec;
    client.handshake("localhost:9001", "/", ec);
    CHECK(ec == wsx::error::unexpected_status);
    REQUIRE(client.connection() != nullptr);
    CHECK(client.connection()->response().http.status == 403);
    CHECK(ends.second.torn_down());
    const std::string request = read_head(ends.first);
    CHECK(header_value(request, "Host") == "localhost:9001");
    CHECK_THROWS_AS(client.read_some(wsx::mutable_bytes()), std::system_error);
}

TEST_CASE("stream: bad handshake arguments fail with invalid_argument") {
    auto ends = make_test_stream_pair();
    wsx::stream<test_stream&> client(ends.second);
    std::error_code ec;
    client.handshake("localhost:99999", "/", ec);
    CHECK(ec == std::errc::invalid_argument);
    client.handshake("local host", "/", ec);
    CHECK(ec == std::errc::invalid_argument);
    client.handshake("localhost", "no-slash", ec);
    CHECK(ec == std::errc::invalid_argument);
    CHECK_THROWS_AS(client.handshake("localhost", "no-slash"), std::system_error);
    CHECK(ends.first.calls() == 0);
    CHECK(ends.second.calls() == 0); // nothing was sent
}

TEST_CASE("stream: a protocol violation fails the read and sends close 1002") {
    auto ends = make_test_stream_pair();
    wsx::stream<test_stream> client(std::move(ends.first));
    wsx::stream<test_stream> server(std::move(ends.second));
    client.set_options(wsx::test::fixed_options());

    server_outcome seen;
    std::thread server_thread([&] {
        server.accept(seen.accept_ec);
        if (seen.accept_ec) return;
        // A text frame with RSV1 set, but no extension was agreed.
        const auto bad = wsx::test::frame(wsx::role::server, wsx::opcode::text, as_bytes("x"), true, wsx::rsv1_bit);
        std::error_code ec;
        server.next_layer().write_some(wsx::const_bytes(bad), ec);
        wsx::message m;
        server.read(m, seen.end_ec);
        seen.status = server.get_close_status();
    });
    std::error_code ec;
    client.handshake("localhost", "/", ec);
    REQUIRE_FALSE(ec);
    wsx::message m;
    client.read(m, ec);
    server_thread.join();
    CHECK(ec == wsx::error::reserved_bits_set);
    CHECK(ec == wsx::condition::protocol_violation);
    CHECK(client.get_close_status().code == wsx::close_code::protocol_error);
    CHECK(client.get_close_status().ec == wsx::error::reserved_bits_set);
    CHECK(client.next_layer().torn_down());
    REQUIRE_FALSE(seen.accept_ec);
    CHECK(seen.end_ec == wsx::error::connection_closed);
    CHECK(seen.status.code == wsx::close_code::protocol_error);
    CHECK(seen.status.closed_by_peer);
    // close() after the end has nothing left to do.
    client.close(wsx::close_code::normal, "", ec);
    CHECK_FALSE(ec);
}

TEST_CASE("stream: read_some streams a large message through a small buffer") {
    auto ends = make_test_stream_pair();
    wsx::connection_options options = wsx::test::fixed_options();
    options.max_message_size = 4 * 1024 * 1024;
    options.max_frame_size = 64 * 1024;
    options.fragment_size = 64 * 1024;
    wsx::stream<test_stream> client(std::move(ends.first));
    wsx::stream<test_stream> server(std::move(ends.second));
    options.streaming = true;
    client.set_options(options);
    options.streaming = false;
    server.set_options(options);

    std::string big(3 * 1024 * 1024 + 17, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7) % 26);

    std::error_code server_ec;
    std::string server_got;
    std::thread server_thread([&] {
        server.accept(server_ec);
        if (server_ec) return;
        server.write_text(big, server_ec);
        if (server_ec) return;
        // A message written in parts arrives whole through read().
        wsx::message m;
        server.read(m, server_ec);
        server_got = m.data;
        if (!server_ec) server.read(m, server_ec);
    });

    client.handshake("localhost", "/", [] {
        wsx::handshake_options o;
        o.subprotocols = {"chat"};
        return o;
    }());
    CHECK(client.subprotocol().empty()); // the server chose none
    std::string got;
    std::array<std::uint8_t, 1000> buffer{};
    std::size_t reads = 0;
    do {
        const std::size_t n = client.read_some(buffer);
        got.append(reinterpret_cast<const char*>(buffer.data()), n);
        ++reads;
        CHECK(client.last_message_text());
    } while (!client.message_done() && reads < 100000);
    CHECK(got == big);
    CHECK(reads >= big.size() / buffer.size());

    client.write_part(false, std::string("one "), false);
    client.ping();
    client.write_part(false, std::string("two "), false);
    client.write_part(true, std::string("three"), true); // `text` counts on the first part only
    client.close(wsx::close_code::going_away, "done");
    server_thread.join();
    CHECK(server_got == "one two three");
    CHECK(server_ec == wsx::error::connection_closed);
    CHECK(server.get_close_status().code == wsx::close_code::going_away);
    CHECK(server.get_close_status().reason == "done");
}

TEST_CASE("stream: read after a partial read_some returns the rest of the message") {
    auto ends = make_test_stream_pair();
    wsx::stream<test_stream&> server(ends.second);
    server.set_options(wsx::test::fixed_options());
    write_raw(ends.first, upgrade_request);
    write_raw(ends.first, as_text(wsx::test::frame(wsx::role::client, wsx::opcode::binary, as_bytes("0123456789"))));
    write_raw(ends.first, as_text(wsx::test::frame(wsx::role::client, wsx::opcode::text, as_bytes("next"))));
    server.accept();
    std::array<std::uint8_t, 4> buffer{};
    CHECK(server.read_some(buffer) == 4);
    CHECK_FALSE(server.message_done());
    CHECK_FALSE(server.last_message_text());
    wsx::message m;
    server.read(m);
    CHECK_FALSE(m.text);
    CHECK(m.data == "456789");
    CHECK(server.message_done());
    server.read(m);
    CHECK(m.text);
    CHECK(m.data == "next");
}

namespace {

// ---- loopback TCP -------------------------------------------------------------

wsx::connection_options large_message_options() {
    wsx::connection_options options;
    options.max_message_size = 4 * 1024 * 1024;
    options.max_frame_size = 4 * 1024 * 1024;
    return options;
}

// Echoes until the connection ends; "close please" makes it close with
// 1001 "server going away" instead.
void tcp_echo(wsx::tcp_socket socket, server_outcome& out) {
    wsx::stream<wsx::tcp_socket> ws(std::move(socket));
    ws.set_options(large_message_options());
    ws.accept(out.accept_ec);
    if (out.accept_ec) return;
    wsx::message m;
    for (;;) {
        ws.read(m, out.end_ec);
        if (out.end_ec) break;
        if (m.text && m.data == "close please") {
            ws.close(wsx::close_code::going_away, "server going away", out.end_ec);
            break;
        }
        wsx::test::write_back(ws, m, out.end_ec);
        if (out.end_ec) break;
        ++out.echoed;
    }
    out.status = ws.get_close_status();
}

// A tcp_echo server for one connection, reporting into `seen`.
one_connection_server start_tcp_echo(server_outcome& seen) {
    return one_connection_server([&seen](wsx::tcp_socket socket) { tcp_echo(std::move(socket), seen); });
}

// A client socket connected to `server`, which must be listening.
wsx::tcp_socket connect_to(const one_connection_server& server) {
    REQUIRE_FALSE(server.listen_error());
    return connect_loopback(server.port());
}

} // namespace

TEST_CASE("stream: loopback TCP, text and binary from 0 B to 3 MiB") {
    server_outcome seen;
    one_connection_server server = start_tcp_echo(seen);
    wsx::stream<wsx::tcp_socket> ws(connect_to(server));
    ws.set_options(large_message_options());
    ws.handshake("127.0.0.1:" + std::to_string(server.port()), "/echo?size=all");

    const std::size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 65537, 1024 * 1024, 3 * 1024 * 1024};
    std::size_t sent = 0;
    wsx::message reply;
    for (std::size_t size : sizes) {
        std::string payload(size, '\0');
        for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<char>('A' + i % 23);
        ws.write_text(payload);
        ws.read(reply);
        CHECK(reply.text);
        CHECK(reply.data == payload);
        for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<char>(i * 131 % 256);
        ws.write_binary(payload);
        ws.read(reply);
        CHECK_FALSE(reply.text);
        CHECK(reply.data == payload);
        sent += 2;
    }
    ws.close(wsx::close_code::normal);
    server.join();
    CHECK_FALSE(server.accept_error());
    CHECK(seen.echoed == sent);
    CHECK(seen.end_ec == wsx::error::connection_closed);
    CHECK(seen.status.code == wsx::close_code::normal);
    CHECK_FALSE(ws.next_layer().is_open());
}

TEST_CASE("stream: loopback TCP, ping and pong") {
    server_outcome seen;
    one_connection_server server = start_tcp_echo(seen);
    wsx::stream<wsx::tcp_socket> ws(connect_to(server));
    std::vector<std::string> pongs;
    ws.set_control_callback([&](wsx::event_type type, wsx::const_bytes payload) {
        if (type == wsx::event_type::pong) pongs.emplace_back(wsx::as_string_view(payload));
    });
    ws.handshake("localhost", "/");
    ws.ping(std::string("first"));
    ws.ping();
    ws.write_text("after the pings");
    wsx::message reply;
    ws.read(reply);
    CHECK(reply.data == "after the pings");
    CHECK(pongs == std::vector<std::string>{"first", ""});
    std::error_code ec;
    ws.ping(std::string(126, 'x'), ec);
    CHECK(ec == wsx::error::control_frame_too_long);
    ws.close(wsx::close_code::normal);
    server.join();
    CHECK(seen.end_ec == wsx::error::connection_closed);
}

TEST_CASE("stream: loopback TCP, close codes and reasons both ways") {
    SECTION("the client closes") {
        server_outcome seen;
        one_connection_server server = start_tcp_echo(seen);
        wsx::stream<wsx::tcp_socket> ws(connect_to(server));
        ws.handshake("localhost", "/");
        ws.close(static_cast<wsx::close_code>(4000), "client is done");
        CHECK_FALSE(ws.is_open());
        // The server echoes the code (RFC 6455 §5.5.1).
        CHECK(ws.get_close_status().code == static_cast<wsx::close_code>(4000));
        CHECK_FALSE(ws.get_close_status().closed_by_peer);
        server.join();
        CHECK(seen.end_ec == wsx::error::connection_closed);
        CHECK(seen.status.code == static_cast<wsx::close_code>(4000));
        CHECK(seen.status.reason == "client is done");
        CHECK(seen.status.closed_by_peer);
        // Closing again, or writing, after the end.
        std::error_code ec;
        ws.close(wsx::close_code::normal, "", ec);
        CHECK_FALSE(ec);
        ws.write_text("late", ec);
        CHECK(ec == wsx::error::connection_closed);
    }
    SECTION("the server closes") {
        server_outcome seen;
        one_connection_server server = start_tcp_echo(seen);
        wsx::stream<wsx::tcp_socket> ws(connect_to(server));
        ws.handshake("localhost", "/");
        ws.write_text("close please");
        wsx::message m;
        std::error_code ec;
        ws.read(m, ec);
        CHECK(ec == wsx::error::connection_closed);
        CHECK(ws.get_close_status().code == wsx::close_code::going_away);
        CHECK(ws.get_close_status().reason == "server going away");
        CHECK(ws.get_close_status().closed_by_peer);
        CHECK_FALSE(ws.get_close_status().ec);
        CHECK_THROWS_AS(ws.read(m), std::system_error);
        server.join();
        CHECK_FALSE(seen.end_ec); // the server's close() completed cleanly
        CHECK(seen.status.code == wsx::close_code::going_away);
        CHECK_FALSE(seen.status.closed_by_peer);
    }
}
