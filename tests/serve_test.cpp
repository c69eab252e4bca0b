// Tests of serve(), connect(), reconnector and broadcast() over real
// loopback TCP (port 0). Every test runs its io_context for a bounded time;
// timers appear only as the timeouts under test (tens to hundreds of ms)
// and as bounds that fail a test, never to wait for something to happen.
#include <wsx/asio/server.hpp>

#include <wsx/asio/async_stream.hpp> // detail::deadline_guard
#include <wsx/asio/broadcast.hpp>
#include <wsx/asio/client.hpp>

#include "support/test_certificates.hpp"

#ifdef WSX_ASIO_BOOST
#include <boost/asio/experimental/awaitable_operators.hpp>
#else
#include <asio/experimental/awaitable_operators.hpp>
#endif

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace net = wsx::net;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

namespace {

// Generous: sanitizer builds run the 1,000-connection tests 10-20 times slower.
constexpr auto test_time_limit = std::chrono::seconds(180);

// Runs body() on io to completion (and whatever it leaves behind, briefly).
template <class Body>
void run(net::io_context& io, Body body, std::chrono::seconds limit = test_time_limit) {
    bool done = false;
    std::exception_ptr failure;
    net::co_spawn(io, body(), [&](std::exception_ptr e) {
        done = true;
        failure = e;
    });
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done && std::chrono::steady_clock::now() < deadline) io.run_one_for(100ms);
    if (failure) std::rethrow_exception(failure);
    REQUIRE(done);
}

net::awaitable<void> pause(std::chrono::milliseconds d) {
    net::steady_timer t(co_await net::this_coro::executor);
    t.expires_after(d);
    co_await t.async_wait(net::use_awaitable);
}

// Waits until condition() holds, checking at each turn of the event loop
// (and every few ms), up to `limit`; returns whether it held.
template <class Condition>
net::awaitable<bool> eventually(Condition condition, std::chrono::milliseconds limit = 20000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline) co_return false;
        co_await pause(2ms);
    }
    co_return true;
}

std::string uri_for(const wsx::server& server, const std::string& path = "/") {
    return "ws://127.0.0.1:" + std::to_string(server.port()) + path;
}

net::awaitable<void> echo(wsx::websocket ws) {
    while (auto message = co_await ws.receive()) co_await ws.send(*message);
}

// A raw TCP peer: writes `request`, reads everything until the server ends
// the connection (or `limit` runs out).
net::awaitable<std::string> raw_exchange(std::uint16_t port, std::string request,
                                         std::chrono::milliseconds limit = 10000ms) {
    auto executor = co_await net::this_coro::executor;
    tcp::socket socket(executor);
    co_await socket.async_connect({net::ip::make_address("127.0.0.1"), port}, net::use_awaitable);
    co_await net::async_write(socket, net::buffer(request), net::use_awaitable);
    wsx::detail::deadline_guard guard(executor, limit, [&socket] { socket.close(); });
    std::string response;
    char buffer[4096];
    for (;;) {
        wsx::net_error_code ec;
        const std::size_t n = co_await socket.async_read_some(net::buffer(buffer), net::redirect_error(net::use_awaitable, ec));
        response.append(buffer, n);
        if (ec) break;
    }
    co_return response;
}

std::string upgrade_request(const std::string& path, const std::string& extra = {}) {
    return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
           extra + "\r\n";
}

// A raw WebSocket client that completes the handshake and then does only
// what the test tells it (e.g. never answers a ping).
struct raw_client {
    tcp::socket socket;
    std::string received; // bytes after the handshake response

    static net::awaitable<raw_client> open(std::uint16_t port, int receive_buffer = 0) {
        const auto executor = co_await net::this_coro::executor;
        raw_client c{tcp::socket(executor), {}};
        c.socket.open(tcp::v4());
        if (receive_buffer > 0) c.socket.set_option(net::socket_base::receive_buffer_size(receive_buffer));
        co_await c.socket.async_connect({net::ip::make_address("127.0.0.1"), port}, net::use_awaitable);
        const std::string request = upgrade_request("/raw");
        co_await net::async_write(c.socket, net::buffer(request), net::use_awaitable);
        std::string head;
        char buffer[1024];
        while (head.find("\r\n\r\n") == std::string::npos) {
            const std::size_t n = co_await c.socket.async_read_some(net::buffer(buffer), net::use_awaitable);
            head.append(buffer, n);
        }
        REQUIRE(head.rfind("HTTP/1.1 101", 0) == 0);
        c.received = head.substr(head.find("\r\n\r\n") + 4);
        co_return c;
    }

    // Reads until the server ends the connection; returns when that happened.
    net::awaitable<void> read_to_end() {
        char buffer[4096];
        for (;;) {
            wsx::net_error_code ec;
            const std::size_t n = co_await socket.async_read_some(net::buffer(buffer), net::redirect_error(net::use_awaitable, ec));
            received.append(buffer, n);
            if (ec) co_return;
        }
    }

    // The close frame's payload among the frames received, found by walking
    // the frames (a byte like 0x88 may appear inside a ping's random
    // payload); empty if there is none.
    std::string close_payload_received() const {
        std::size_t at = 0;
        while (at + 2 <= received.size()) {
            const auto b0 = static_cast<unsigned char>(received[at]);
            std::size_t length = static_cast<unsigned char>(received[at + 1]) & 0x7f;
            std::size_t header = 2;
            if (length >= 126) { // RFC 6455 §5.2: 16- or 64-bit extended length
                header = length == 126 ? 4 : 10;
                if (at + header > received.size()) break;
                length = 0;
                for (std::size_t i = 2; i < header; ++i) length = (length << 8) | static_cast<unsigned char>(received[at + i]);
            }
            if (length > received.size() || at + header + length > received.size()) break;
            if ((b0 & 0x0f) == 0x8) return received.substr(at + header, length);
            at += header + length;
        }
        return {};
    }
    // Its code (0 if none) and reason.
    unsigned close_code_received() const {
        const std::string payload = close_payload_received();
        if (payload.size() < 2) return 0;
        return (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1]);
    }
    std::string close_reason_received() const {
        const std::string payload = close_payload_received();
        return payload.size() < 2 ? std::string() : payload.substr(2);
    }
};

// No keepalive pings unless a test asks for them: a ping must not wake up
// a connection that stalled (that would pass after 20 s, not fail).
wsx::server_options quick_options() {
    wsx::server_options options;
    options.shutdown_timeout = 2000ms;
    options.connection.ping_interval = wsx::duration(0);
    return options;
}
wsx::client_options quiet_client() {
    wsx::client_options options;
    options.connection.ping_interval = wsx::duration(0);
    return options;
}
// What a stalled test waits before it fails, where a run takes well under a second.
constexpr auto stall_limit = std::chrono::seconds(30);

} // namespace

TEST_CASE("serve and connect: echo, path, the handler's return closes with 1000") {
    net::io_context io;
    std::string seen_path;
    tcp::endpoint seen_peer;
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            seen_path = std::string(ws.path());
            seen_peer = ws.remote_endpoint();
            CHECK(ws.request() != nullptr);
            CHECK(ws.query() == "room=1");
            auto message = co_await ws.receive();
            REQUIRE(message);
            co_await ws.send(*message);
            CHECK(ws.request() == nullptr); // freed by the first receive()
        },
        "127.0.0.1", 0, quick_options());
    run(io, [&]() -> net::awaitable<void> {
        wsx::websocket ws = co_await wsx::connect(uri_for(server, "/chat/lobby?room=1"));
        CHECK(ws.response() != nullptr);
        co_await ws.send_text("hello");
        auto reply = co_await ws.receive();
        REQUIRE(reply);
        CHECK(reply->text);
        CHECK(reply->data == "hello");
        // The handler returned: a normal close, so the iteration just ends.
        const auto after_return = co_await ws.receive();
        CHECK(!after_return);
        CHECK(ws.get_close_status().code == wsx::close_code::normal);
        CHECK(seen_path == "/chat/lobby");
        // The peer the server saw is this client's end of the connection.
        CHECK(seen_peer.address() == net::ip::make_address("127.0.0.1"));
        CHECK(seen_peer.port() != 0);
        CHECK(seen_peer.port() != server.port());
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("serve() listens on a host name; a host that cannot be listened on is named in the error") {
    net::io_context io;
    // "localhost" comes from the hosts file, never from DNS.
    auto server = wsx::serve(io.get_executor(), echo, "localhost", 0, quick_options());
    CHECK(server.local_endpoint().address().is_loopback());
    run(io, [&]() -> net::awaitable<void> {
        wsx::websocket ws = co_await wsx::connect("ws://localhost:" + std::to_string(server.port()) + "/");
        co_await ws.send_text("by name");
        auto reply = co_await ws.receive();
        REQUIRE(reply);
        CHECK(reply->data == "by name");
        co_await ws.close();
        // The port is taken now: a second server there fails, saying where.
        try {
            auto second = wsx::serve(io.get_executor(), echo, "127.0.0.1", server.port(), quick_options());
            FAIL("a second server listened on a port in use");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::address_in_use);
            CHECK_THAT(e.what(), Catch::Contains("127.0.0.1:" + std::to_string(server.port())));
        }
        co_await server.async_stop(net::use_awaitable);
    });
    // An address this machine does not have (TEST-NET-1, RFC 5737).
    try {
        auto nowhere = wsx::serve(io.get_executor(), echo, "192.0.2.1", 0, quick_options());
        FAIL("listened on an address this machine does not have");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::address_not_available);
        CHECK_THAT(e.what(), Catch::Contains("192.0.2.1"));
    }
}

TEST_CASE("receive: other close codes throw connection_closed_error with code and reason; error_code form") {
    net::io_context io;
    auto server = wsx::serve(
        io.get_executor(),
        [](wsx::websocket ws) -> net::awaitable<void> { co_await ws.close(wsx::close_code(4000), "custom reason"); },
        "127.0.0.1", 0, quick_options());
    run(io, [&]() -> net::awaitable<void> {
        wsx::websocket ws = co_await wsx::connect(uri_for(server));
        bool thrown = false;
        try {
            co_await ws.receive();
        } catch (const wsx::connection_closed_error& e) {
            thrown = true;
            CHECK(static_cast<unsigned>(e.code()) == 4000);
            CHECK(e.reason() == "custom reason");
        }
        CHECK(thrown);
        // Sending afterwards throws too.
        bool send_thrown = false;
        try {
            co_await ws.send_text("late");
        } catch (const wsx::connection_closed&) {
            send_thrown = true;
        }
        CHECK(send_thrown);

        wsx::websocket second = co_await wsx::connect(uri_for(server));
        std::error_code ec;
        auto none = co_await second.receive(ec);
        CHECK(!none);
        CHECK(ec);
        CHECK(static_cast<unsigned>(second.get_close_status().code) == 4000);
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("a handler that throws closes with 1011; one that stops closes with 1000 (error_code form clear)") {
    net::io_context io;
    auto server = wsx::serve(
        io.get_executor(),
        [](wsx::websocket ws) -> net::awaitable<void> {
            if (ws.path() == "/fail") throw std::runtime_error("handler bug");
            co_return;
        },
        "127.0.0.1", 0, quick_options());
    run(io, [&]() -> net::awaitable<void> {
        wsx::websocket failing = co_await wsx::connect(uri_for(server, "/fail"));
        std::error_code ec;
        const auto failed_message = co_await failing.receive(ec);
        CHECK(!failed_message);
        CHECK(ec);
        CHECK(failing.get_close_status().code == wsx::close_code::internal_error);
        wsx::websocket fine = co_await wsx::connect(uri_for(server, "/fine"));
        const auto fine_message = co_await fine.receive(ec);
        CHECK(!fine_message);
        CHECK(!ec);
        CHECK(fine.get_close_status().code == wsx::close_code::normal);
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("callbacks: on_open, on_message (echo with try_send), on_close; a throwing callback closes with 1011") {
    net::io_context io;
    int opened = 0;
    std::vector<std::string> received;
    std::vector<unsigned> close_codes;
    wsx::message_handler callbacks;
    callbacks.on_open = [&](wsx::websocket& ws) {
        ++opened;
        CHECK(ws.path() != "");
    };
    callbacks.on_message = [&](wsx::websocket& ws, wsx::message& m) {
        received.push_back(m.data);
        if (m.data == "throw") throw std::runtime_error("callback bug");
        const std::error_code sent = m.text ? ws.try_send_text(m.view()) : ws.try_send_binary(m.bytes());
        CHECK_FALSE(sent);
    };
    callbacks.on_close = [&](wsx::websocket&, const wsx::close_status& status) {
        close_codes.push_back(static_cast<unsigned>(status.code));
    };
    auto server = wsx::serve(io.get_executor(), callbacks, "127.0.0.1", 0, quick_options());
    run(io, [&]() -> net::awaitable<void> {
        wsx::websocket ws = co_await wsx::connect(uri_for(server, "/echo"), quiet_client());
        // Several at once: the ones already read are handed out without waiting.
        for (int i = 0; i < 40; ++i) co_await ws.send_text("m" + std::to_string(i));
        co_await ws.send_binary(wsx::const_bytes(reinterpret_cast<const std::uint8_t*>("\x01\x02"), 2));
        for (int i = 0; i < 40; ++i) {
            auto reply = co_await ws.receive();
            REQUIRE(reply);
            CHECK(reply->text);
            CHECK(reply->data == "m" + std::to_string(i));
        }
        auto binary = co_await ws.receive();
        REQUIRE(binary);
        CHECK_FALSE(binary->text);
        CHECK(binary->data == "\x01\x02");
        co_await ws.close(wsx::close_code(4001), "bye");
        {
            const bool held = co_await eventually([&] { return close_codes.size() == 1; });
            REQUIRE(held);
        }
        CHECK(close_codes[0] == 4001);

        wsx::websocket failing = co_await wsx::connect(uri_for(server, "/fail"), quiet_client());
        co_await failing.send_text("throw");
        co_await failing.send_text("after the failure: not handed out");
        std::error_code ec;
        CHECK_FALSE(co_await failing.receive(ec));
        CHECK(failing.get_close_status().code == wsx::close_code::internal_error);

        // stop(): the callbacks' connections are closed with 1001 too.
        wsx::websocket third = co_await wsx::connect(uri_for(server, "/third"), quiet_client());
        bool third_ended = false;
        net::co_spawn(io, [&]() -> net::awaitable<void> {
            std::error_code ignored;
            while (co_await third.receive(ignored)) {
            }
            third_ended = true;
        }, net::detached);
        co_await server.async_stop(net::use_awaitable);
        {
            const bool held = co_await eventually([&] { return third_ended; });
            CHECK(held);
        }
        CHECK(third.get_close_status().code == wsx::close_code::going_away);
        CHECK(server.connections() == 0);
    }, stall_limit);
    CHECK(opened == 3);
    CHECK(received.size() == 42);
    CHECK(received.back() == "throw");
    REQUIRE(close_codes.size() == 3);
    CHECK(close_codes[1] == 1011);
    CHECK(close_codes[2] == 1001);
}

TEST_CASE("an origin not allowed is refused with 403") {
    net::io_context io;
    wsx::server_options options = quick_options();
    options.connection.origins.allowed = {"https://good.example"};
    auto server = wsx::serve(io.get_executor(), echo, "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        wsx::client_options bad;
        bad.handshake.origin = "https://evil.example";
        int status = 0;
        try {
            co_await wsx::connect(uri_for(server), bad);
        } catch (const wsx::handshake_failed& e) {
            status = e.status();
        }
        CHECK(status == 403);
        // No Origin at all: refused too once origins are listed, as Python
        // websockets does (origins.allow_missing lets such clients in).
        status = 0;
        try {
            co_await wsx::connect(uri_for(server));
        } catch (const wsx::handshake_failed& e) {
            status = e.status();
        }
        CHECK(status == 403);
        wsx::client_options good;
        good.handshake.origin = "https://good.example";
        wsx::websocket ws = co_await wsx::connect(uri_for(server), good);
        CHECK(ws.is_open());
        co_await ws.close();
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("subprotocols: the first the client offers that the server supports, or the selector's choice") {
    net::io_context io;
    wsx::server_options options = quick_options();
    options.subprotocols = {"chat.v2", "chat.v1"};
    std::string server_saw;
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            server_saw = std::string(ws.subprotocol());
            co_await echo(ws);
        },
        "127.0.0.1", 0, options);

    wsx::server_options selecting = quick_options();
    selecting.select_subprotocol = [](const wsx::server_request& request) -> std::string_view {
        std::string_view last;
        request.for_each_subprotocol([&](std::string_view offered) {
            last = offered;
            return true;
        });
        return last;
    };
    auto server2 = wsx::serve(io.get_executor(), echo, "127.0.0.1", 0, selecting);

    run(io, [&]() -> net::awaitable<void> {
        wsx::client_options client;
        client.handshake.subprotocols = {"chat.v0", "chat.v1", "chat.v2"};
        wsx::websocket ws = co_await wsx::connect(uri_for(server), client);
        CHECK(ws.subprotocol() == "chat.v1");
        co_await ws.send_text("x");
        co_await ws.receive();
        CHECK(server_saw == "chat.v1");
        co_await ws.close();

        client.handshake.subprotocols = {"nothing.known"};
        wsx::websocket none = co_await wsx::connect(uri_for(server), client);
        CHECK(none.subprotocol().empty());
        co_await none.close();

        client.handshake.subprotocols = {"a", "b", "c"};
        wsx::websocket chosen = co_await wsx::connect(uri_for(server2), client);
        CHECK(chosen.subprotocol() == "c");
        co_await chosen.close();
        co_await server.async_stop(net::use_awaitable);
        co_await server2.async_stop(net::use_awaitable);
    });
}

TEST_CASE("process_request answers plain HTTP (200 health) and refuses upgrades (401 + WWW-Authenticate)") {
    net::io_context io;
    wsx::server_options options = quick_options();
    options.process_request = [](const wsx::server_request& request,
                                 wsx::accept_options& answer) -> std::optional<wsx::http_reply> {
        if (request.http.target == "/health") {
            wsx::http_reply ok;
            ok.status = 200;
            ok.body = "OK\n";
            return ok;
        }
        if (request.path == "/chat" &&
            request.http.headers.find("Authorization") != std::optional<std::string_view>("Bearer secret")) {
            wsx::http_reply refused;
            refused.status = 401;
            refused.body = "who are you?\n";
            refused.headers.push_back({"WWW-Authenticate", "Bearer realm=\"chat\""});
            return refused;
        }
        answer.headers.push_back({"Set-Cookie", "session=1"});
        return std::nullopt;
    };
    auto server = wsx::serve(io.get_executor(), echo, "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        const std::string health =
            co_await raw_exchange(server.port(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        CHECK(health.rfind("HTTP/1.1 200", 0) == 0);
        CHECK(health.find("\r\n\r\nOK\n") != std::string::npos);

        const std::string other = co_await raw_exchange(server.port(), "GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        INFO(other);
        CHECK(other.rfind("HTTP/1.1 426", 0) == 0);

        const std::string refused = co_await raw_exchange(server.port(), upgrade_request("/chat"));
        CHECK(refused.rfind("HTTP/1.1 401", 0) == 0);
        CHECK(refused.find("WWW-Authenticate: Bearer realm=\"chat\"\r\n") != std::string::npos);

        int status = 0;
        try {
            co_await wsx::connect(uri_for(server, "/chat"));
        } catch (const wsx::handshake_failed& e) {
            status = e.status();
        }
        CHECK(status == 401);

        wsx::client_options authorized;
        authorized.handshake.headers.push_back({"Authorization", "Bearer secret"});
        wsx::websocket ws = co_await wsx::connect(uri_for(server, "/chat"), authorized);
        REQUIRE(ws.response() != nullptr);
        CHECK(ws.response()->http.headers.find("Set-Cookie") == std::optional<std::string_view>("session=1"));
        co_await ws.close();
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("beyond max_connections: 503 with Retry-After; a freed place is taken again") {
    net::io_context io;
    wsx::server_options options = quick_options();
    options.max_connections = 2;
    options.retry_after = std::chrono::seconds(7);
    auto server = wsx::serve(io.get_executor(), echo, "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        wsx::websocket first = co_await wsx::connect(uri_for(server));
        wsx::websocket second = co_await wsx::connect(uri_for(server));
        CHECK(server.connections() == 2);
        const std::string third = co_await raw_exchange(server.port(), upgrade_request("/"));
        CHECK(third.rfind("HTTP/1.1 503", 0) == 0);
        CHECK(third.find("Retry-After: 7\r\n") != std::string::npos);
        int status = 0;
        try {
            co_await wsx::connect(uri_for(server));
        } catch (const wsx::handshake_failed& e) {
            status = e.status();
        }
        CHECK(status == 503);
        co_await first.close();
        {
            const bool held = co_await eventually([&] { return server.connections() == 1; });
            CHECK(held);
        }
        wsx::websocket again = co_await wsx::connect(uri_for(server));
        CHECK(again.is_open());
        co_await again.close();
        co_await second.close();
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("keepalive: a peer that never answers pings is closed with 1011 within interval + timeout") {
    net::io_context io;
    wsx::server_options options = quick_options();
    options.connection.ping_interval = 100ms;
    options.connection.ping_timeout = 100ms;
    wsx::close_status handler_saw;
    bool handler_threw = false;
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            try {
                while (co_await ws.receive()) {
                }
            } catch (const wsx::connection_closed_error& e) {
                handler_threw = true;
                handler_saw = e.status();
            }
        },
        "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        // From before the connection opens: its timers start once it has.
        const auto start = std::chrono::steady_clock::now();
        raw_client peer = co_await raw_client::open(server.port());
        co_await peer.read_to_end(); // it reads, but never writes a pong
        const auto elapsed = std::chrono::steady_clock::now() - start;
        CHECK(elapsed >= 190ms);
        CHECK(elapsed < 3000ms);
        CHECK(peer.close_code_received() == 1011);
        CHECK(peer.close_reason_received() == "keepalive ping timeout");
        {
            const bool held = co_await eventually([&] { return handler_threw; });
            CHECK(held);
        }
        CHECK(handler_saw.code == wsx::close_code::internal_error);
        CHECK(handler_saw.ec == wsx::error::ping_timeout);
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("keepalive: a peer that never reads is dropped; the handler blocked in send learns 1011") {
    net::io_context io;
    wsx::server_options options = quick_options();
    options.connection.ping_interval = 100ms;
    options.connection.ping_timeout = 100ms;
    options.connection.close_timeout = 100ms;
    wsx::close_status handler_saw;
    bool handler_threw = false;
    std::size_t sent = 0;
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            const std::string chunk(64 * 1024, 'x');
            try {
                for (;;) { // until backpressure holds it: the peer reads nothing
                    co_await ws.send_text(chunk);
                    ++sent;
                }
            } catch (const wsx::connection_closed_error& e) {
                handler_threw = true;
                handler_saw = e.status();
            }
        },
        "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        // From before the connection opens: its timers start once it has.
        const auto start = std::chrono::steady_clock::now();
        raw_client peer = co_await raw_client::open(server.port(), 4096);
        const bool ended = co_await eventually([&] { return handler_threw; });
        const auto elapsed = std::chrono::steady_clock::now() - start;
        CHECK(ended);
        CHECK(sent > 0);
        CHECK(elapsed >= 290ms); // ping interval + pong timeout + close timeout
        CHECK(elapsed < 3000ms);
        CHECK(handler_saw.code == wsx::close_code::internal_error);
        CHECK(handler_saw.ec == wsx::error::ping_timeout);
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("keepalive: a peer that answers stays connected, and latency() is measured") {
    // Any frame received counts as activity, so only the side whose timer
    // runs out first pings: each side is tried alone.
    for (const bool server_pings : {true, false}) {
        net::io_context io;
        wsx::server_options options = quick_options();
        options.connection.ping_interval = server_pings ? wsx::duration(50) : wsx::duration(0);
        options.connection.ping_timeout = 200ms;
        std::optional<wsx::duration> server_latency;
        bool got_message = false;
        auto server = wsx::serve(
            io.get_executor(),
            [&](wsx::websocket ws) -> net::awaitable<void> {
                while (auto m = co_await ws.receive()) {
                    got_message = true;
                    server_latency = ws.latency();
                    co_await ws.send(*m);
                }
            },
            "127.0.0.1", 0, options);
        run(io, [&]() -> net::awaitable<void> {
            wsx::client_options client;
            client.connection.ping_interval = server_pings ? wsx::duration(0) : wsx::duration(50);
            client.connection.ping_timeout = 200ms;
            wsx::websocket ws = co_await wsx::connect(uri_for(server), client);
            // The client reads (and so answers pings) while 8 intervals pass.
            bool reader_done = false;
            net::co_spawn(io, [&]() -> net::awaitable<void> {
                while (co_await ws.receive()) {
                }
            }, [&](std::exception_ptr) { reader_done = true; });
            co_await pause(400ms);
            CHECK(ws.is_open());
            co_await ws.send_text("still here");
            const bool arrived = co_await eventually([&] { return got_message; });
            CHECK(arrived);
            if (server_pings) CHECK(server_latency.has_value());
            else CHECK(ws.latency().has_value());
            co_await ws.close();
            const bool ended = co_await eventually([&] { return reader_done; });
            CHECK(ended);
            co_await server.async_stop(net::use_awaitable);
        });
    }
}

TEST_CASE("reading in the background: a handler that only sends stays open, and closes cleanly with its client") {
    // Python websockets' log feed: the handler never calls receive(), the
    // client answers pings without calling receive() either. Both sides read
    // in the background, so pongs and the closing handshake go through.
    net::io_context io;
    wsx::server_options options = quick_options();
    options.connection.ping_interval = 50ms;
    options.connection.ping_timeout = 100ms;
    std::optional<wsx::close_status> handler_saw;
    int sent = 0;
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            try {
                for (;;) {
                    co_await ws.send_text("tick " + std::to_string(sent++));
                    co_await pause(10ms);
                }
            } catch (const wsx::connection_closed& e) {
                handler_saw = e.status();
            }
        },
        "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        wsx::client_options client = quiet_client();
        client.max_queue = 1000; // keeps every tick while the client does not receive
        wsx::websocket ws = co_await wsx::connect(uri_for(server), client);
        const auto opened = std::chrono::steady_clock::now();
        // Past three ping intervals and a timeout, nobody calling receive().
        const bool pinged_enough = co_await eventually([&] {
            return std::chrono::steady_clock::now() - opened > 250ms;
        });
        CHECK(pinged_enough);
        CHECK(ws.is_open());
        auto first = co_await ws.receive();
        REQUIRE(first);
        CHECK(first->data == "tick 0");
        const auto closing = std::chrono::steady_clock::now();
        co_await ws.close();
        CHECK(std::chrono::steady_clock::now() - closing < 2000ms); // not the close timeout
        CHECK(ws.get_close_status().code == wsx::close_code::normal);
        const bool ended = co_await eventually([&] { return handler_saw.has_value(); });
        REQUIRE(ended);
        CHECK(handler_saw->code == wsx::close_code::normal);
        CHECK(sent > 5);
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("receive() raced against a timer loses no message") {
    using namespace net::experimental::awaitable_operators;
    net::io_context io;
    constexpr int count = 200;
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            for (int i = 0; i < count; ++i) {
                co_await ws.send_text(std::to_string(i));
                if (i % 3 == 0) co_await pause(std::chrono::milliseconds(i % 4));
            }
            co_await ws.receive(); // until the client closes
        },
        "127.0.0.1", 0, quick_options());
    run(io, [&]() -> net::awaitable<void> {
        wsx::websocket ws = co_await wsx::connect(uri_for(server), quiet_client());
        std::vector<std::string> got;
        int timer_won = 0;
        net::steady_timer timer(co_await net::this_coro::executor);
        const auto deadline = std::chrono::steady_clock::now() + stall_limit;
        while (got.size() < static_cast<std::size_t>(count) && std::chrono::steady_clock::now() < deadline) {
            timer.expires_after(std::chrono::microseconds(500));
            auto winner = co_await (ws.receive() || timer.async_wait(net::use_awaitable));
            if (winner.index() == 1) {
                ++timer_won;
                continue;
            }
            auto& message = std::get<0>(winner);
            REQUIRE(message);
            got.push_back(message->data);
        }
        REQUIRE(got.size() == static_cast<std::size_t>(count));
        for (int i = 0; i < count; ++i) CHECK(got[static_cast<std::size_t>(i)] == std::to_string(i));
        CHECK(timer_won > 0); // the race was run
        co_await ws.close();
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("a receive with a timeout returns on time, and the message that comes later is kept") {
    net::io_context io;
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            auto go = co_await ws.receive();
            if (!go) co_return;
            co_await pause(300ms);
            co_await ws.send_text("late");
            co_await ws.receive(); // until the client closes
        },
        "127.0.0.1", 0, quick_options());
    run(io, [&]() -> net::awaitable<void> {
        wsx::websocket ws = co_await wsx::connect(uri_for(server), quiet_client());
        co_await ws.send_text("go");
        wsx::message m;
        std::error_code ec;
        const auto start = std::chrono::steady_clock::now();
        // (co_await outside Catch's macros, which may expand it twice)
        const bool got_early = co_await ws.receive(m, 50ms, ec);
        CHECK_FALSE(got_early);
        const auto waited = std::chrono::steady_clock::now() - start;
        CHECK(ec == std::errc::timed_out);
        CHECK(waited >= 50ms);
        CHECK(waited < 250ms); // on time, not when the message comes
        CHECK(ws.is_open());
        // The throwing form says the same.
        bool threw_timeout = false;
        try {
            co_await ws.receive(10ms);
        } catch (const std::system_error& e) {
            threw_timeout = e.code() == std::errc::timed_out;
        }
        CHECK(threw_timeout);
        // The message that comes after the timeouts is the next one received.
        const bool got_late = co_await ws.receive(m, 5000ms, ec);
        CHECK(got_late);
        CHECK_FALSE(ec);
        CHECK(m.data == "late");
        co_await ws.close();
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("keepalive can be turned off: no ping is sent") {
    net::io_context io;
    wsx::server_options options = quick_options();
    options.connection.ping_interval = wsx::duration(0);
    auto server = wsx::serve(io.get_executor(), echo, "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        raw_client peer = co_await raw_client::open(server.port());
        char buffer[64];
        wsx::net_error_code ec;
        wsx::detail::deadline_guard guard(io.get_executor(), 300ms, [&] { peer.socket.cancel(); });
        co_await peer.socket.async_read_some(net::buffer(buffer), net::redirect_error(net::use_awaitable, ec));
        CHECK(ec == net::error::operation_aborted); // nothing arrived in 300 ms
        peer.socket.close();
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("the close timeout drops a peer that never answers our close") {
    net::io_context io;
    wsx::server_options options = quick_options();
    options.connection.close_timeout = 150ms;
    std::chrono::steady_clock::duration close_took{};
    wsx::close_status status;
    bool closed = false;
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            const auto start = std::chrono::steady_clock::now();
            co_await ws.close(wsx::close_code::normal, "bye");
            close_took = std::chrono::steady_clock::now() - start;
            status = ws.get_close_status();
            closed = true;
        },
        "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        raw_client peer = co_await raw_client::open(server.port());
        co_await peer.read_to_end(); // reads the close frame, never answers
        {
            const bool held = co_await eventually([&] { return closed; });
            CHECK(held);
        }
        CHECK(close_took >= 140ms);
        CHECK(close_took < 3000ms);
        CHECK(status.ec == wsx::error::close_timeout);
        CHECK(peer.close_code_received() == 1000);
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("the open timeout drops a client that connects and sends nothing") {
    net::io_context io;
    wsx::server_options options = quick_options();
    options.connection.open_timeout = 150ms;
    bool handler_ran = false;
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket) -> net::awaitable<void> {
            handler_ran = true;
            co_return;
        },
        "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        const auto start = std::chrono::steady_clock::now();
        const std::string got = co_await raw_exchange(server.port(), "", 5000ms);
        const auto elapsed = std::chrono::steady_clock::now() - start;
        CHECK(got.empty());
        CHECK(elapsed >= 140ms);
        CHECK(elapsed < 3000ms);
        CHECK(!handler_ran);
        {
            const bool held = co_await eventually([&] { return server.connections() == 0; });
            CHECK(held);
        }
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("connect: the open timeout bounds a server that never answers the handshake") {
    net::io_context io;
    tcp::acceptor silent(io, {net::ip::make_address("127.0.0.1"), 0});
    tcp::socket accepted(io);
    silent.async_accept(accepted, [](const wsx::net_error_code&) {});
    run(io, [&]() -> net::awaitable<void> {
        wsx::client_options client;
        client.connection.open_timeout = 150ms;
        std::error_code ec;
        const auto start = std::chrono::steady_clock::now();
        wsx::websocket ws = co_await wsx::connect("ws://127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/",
                                                 client, ec);
        CHECK(!ws);
        CHECK(ec == wsx::error::open_timeout);
        CHECK(std::chrono::steady_clock::now() - start < 3000ms);
    });
}

TEST_CASE("redirects are followed when asked, up to max_redirects") {
    net::io_context io;
    std::string landed;
    auto target = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            landed = std::string(ws.target());
            co_await echo(ws);
        },
        "127.0.0.1", 0, quick_options());
    wsx::server_options redirecting = quick_options();
    const std::uint16_t target_port = target.port();
    redirecting.process_request = [target_port](const wsx::server_request& request,
                                                wsx::accept_options&) -> std::optional<wsx::http_reply> {
        wsx::http_reply reply;
        if (request.path == "/old") {
            reply.status = 301;
            reply.headers.push_back({"Location", "/moved"}); // same server
        } else if (request.path == "/moved") {
            reply.status = 307;
            reply.headers.push_back({"Location", "ws://127.0.0.1:" + std::to_string(target_port) + "/new?x=1"});
        } else if (request.path == "/loop") {
            reply.status = 302;
            reply.headers.push_back({"Location", "/loop"});
        } else {
            return std::nullopt;
        }
        return reply;
    };
    auto origin = wsx::serve(io.get_executor(), echo, "127.0.0.1", 0, redirecting);
    run(io, [&]() -> net::awaitable<void> {
        int status = 0;
        std::string location;
        try {
            co_await wsx::connect(uri_for(origin, "/old"));
        } catch (const wsx::handshake_failed& e) {
            status = e.status();
            location = e.location();
        }
        CHECK(status == 301);
        CHECK(location == "/moved");

        wsx::client_options follow;
        follow.max_redirects = 2;
        wsx::websocket ws = co_await wsx::connect(uri_for(origin, "/old"), follow);
        co_await ws.send_text("there");
        const auto echoed = co_await ws.receive();
        CHECK(echoed->data == "there");
        CHECK(landed == "/new?x=1");
        co_await ws.close();

        status = 0;
        try {
            co_await wsx::connect(uri_for(origin, "/loop"), follow);
        } catch (const wsx::handshake_failed& e) {
            status = e.status();
        }
        CHECK(status == 302);
        co_await origin.async_stop(net::use_awaitable);
        co_await target.async_stop(net::use_awaitable);
    });
}

TEST_CASE("reconnector: connects again after the server restarts; stops on a 4xx") {
    net::io_context io;
    std::atomic<int> served{0};
    auto handler = [&](wsx::websocket ws) -> net::awaitable<void> {
        ++served;
        co_await ws.send_text("welcome");
        co_await echo(ws);
    };
    auto server = std::make_unique<wsx::server>(wsx::serve(io.get_executor(), handler, "127.0.0.1", 0, quick_options()));
    const std::uint16_t port = server->port();
    run(io, [&]() -> net::awaitable<void> {
        wsx::backoff_options backoff;
        backoff.min_delay = 10ms;
        backoff.max_delay = 50ms;
        wsx::reconnector feed("ws://127.0.0.1:" + std::to_string(port) + "/feed", {}, backoff);

        wsx::websocket ws = co_await feed.next();
        const auto welcome = co_await ws.receive();
        CHECK(welcome->data == "welcome");
        // The client reads while the server stops, so it answers the close.
        bool ended_normally = false;
        net::co_spawn(io, [&]() -> net::awaitable<void> {
            const auto after_stop = co_await ws.receive();
            ended_normally = !after_stop; // 1001 going away: a normal end
        }, net::detached);
        co_await server->async_stop(net::use_awaitable);
        CHECK(ended_normally);
        CHECK(ws.get_close_status().code == wsx::close_code::going_away);

        // Nothing listens now; the next attempts fail until a new server
        // comes up on the same port.
        auto restart = [&]() -> net::awaitable<void> {
            {
                const bool held = co_await eventually([&] { return feed.failures() >= 2; });
                CHECK(held);
            }
            server = std::make_unique<wsx::server>(wsx::serve(io.get_executor(), handler, "127.0.0.1", port, quick_options()));
        };
        net::co_spawn(io, restart(), net::detached);
        wsx::websocket again = co_await feed.next();
        CHECK(feed.attempts() >= 3);
        const auto welcome_again = co_await again.receive();
        CHECK(welcome_again->data == "welcome");
        CHECK(served == 2);
        co_await again.close();
        co_await server->async_stop(net::use_awaitable);

        // A 4xx is not retried.
        wsx::server_options refusing = quick_options();
        refusing.process_request = [](const wsx::server_request&, wsx::accept_options&) -> std::optional<wsx::http_reply> {
            wsx::http_reply reply;
            reply.status = 403;
            return reply;
        };
        server = std::make_unique<wsx::server>(wsx::serve(io.get_executor(), handler, "127.0.0.1", 0, refusing));
        wsx::reconnector refused(uri_for(*server), {}, backoff);
        int status = 0;
        try {
            co_await refused.next();
        } catch (const wsx::handshake_failed& e) {
            status = e.status();
        }
        CHECK(status == 403);
        CHECK(refused.attempts() == 1);
        co_await server->async_stop(net::use_awaitable);
    });
}

TEST_CASE("reconnector: the backoff grows by the factor up to the maximum, with jitter below it") {
    wsx::backoff_options backoff;
    backoff.min_delay = 100ms;
    backoff.max_delay = 1000ms;
    backoff.factor = 2.0;
    backoff.jitter = 0.0;
    wsx::reconnector r("ws://127.0.0.1:1/", {}, backoff);
    CHECK(r.delay() == 100ms); // no failure yet: the minimum
    backoff.jitter = 0.5;
    wsx::reconnector jittered("ws://127.0.0.1:1/", {}, backoff);
    for (int i = 0; i < 100; ++i) {
        const wsx::duration d = jittered.delay();
        CHECK(d >= 50ms);
        CHECK(d <= 100ms);
    }
}

TEST_CASE("graceful shutdown closes every client with 1001 and waits for the handlers") {
    net::io_context io;
    std::atomic<int> handlers_running{0};
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            ++handlers_running;
            try {
                co_await echo(ws);
            } catch (...) {
                --handlers_running;
                throw;
            }
            --handlers_running;
        },
        "127.0.0.1", 0, quick_options());
    run(io, [&]() -> net::awaitable<void> {
        constexpr int clients = 20;
        std::vector<wsx::websocket> sockets;
        for (int i = 0; i < clients; ++i) sockets.push_back(co_await wsx::connect(uri_for(server)));
        {
            const bool held = co_await eventually([&] { return handlers_running == clients; });
            CHECK(held);
        }
        int ended = 0;
        for (auto& ws : sockets) {
            net::co_spawn(io, [&]() -> net::awaitable<void> {
                while (co_await ws.receive()) {
                }
                if (ws.get_close_status().code == wsx::close_code::going_away) ++ended;
            }, net::detached);
        }
        co_await server.async_stop(net::use_awaitable);
        CHECK(handlers_running == 0);
        {
            const bool held = co_await eventually([&] { return ended == clients; });
            CHECK(held);
        }
        CHECK(server.connections() == 0);
        // Not accepting any more.
        std::error_code ec;
        co_await wsx::connect(uri_for(server), {}, ec);
        CHECK(ec);
    });
}

TEST_CASE("logging hook: told of open and close; silent by default") {
    net::io_context io;
    std::vector<std::string> lines;
    wsx::server_options options = quick_options();
    options.log = [&](wsx::log_level, std::string_view message) { lines.emplace_back(message); };
    auto server = wsx::serve(io.get_executor(), echo, "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        wsx::websocket ws = co_await wsx::connect(uri_for(server, "/logged"));
        co_await ws.close();
        {
            const bool held = co_await eventually([&] { return server.connections() == 0; });
            CHECK(held);
        }
        co_await server.async_stop(net::use_awaitable);
    });
    const auto has = [&](std::string_view part) {
        return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(part) != std::string::npos; });
    };
    CHECK(has(" open /logged"));
    CHECK(has(" close 1000"));
}

TEST_CASE("wss: serve with a TLS context, connect with the CA") {
    static const wsx_test::test_pki pki = wsx_test::make_localhost_pki();
    net::io_context io;
    wsx::server_options options = quick_options();
    options.tls = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
    options.tls->use_certificate_chain(net::buffer(pki.server.certificate_pem));
    options.tls->use_private_key(net::buffer(pki.server.private_key_pem), net::ssl::context::pem);
    options.connection.deflate.emplace();
    auto server = wsx::serve(io.get_executor(), echo, "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        wsx::client_options client;
        client.tls = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
        client.tls->add_certificate_authority(net::buffer(pki.ca.certificate_pem));
        client.tls->set_verify_mode(net::ssl::verify_peer);
        client.connection.deflate.emplace();
        wsx::websocket ws = co_await wsx::connect("wss://localhost:" + std::to_string(server.port()) + "/secure", client);
        CHECK(ws.deflate_enabled());
        const std::string big(100000, 'z');
        co_await ws.send_text(big);
        const auto big_echo = co_await ws.receive();
        CHECK(big_echo->data == big);
        co_await ws.close();
        // Without the CA the certificate is refused.
        std::error_code ec;
        wsx::client_options untrusting;
        untrusting.tls = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
        untrusting.tls->set_verify_mode(net::ssl::verify_peer);
        co_await wsx::connect("wss://localhost:" + std::to_string(server.port()) + "/", untrusting, ec);
        CHECK(ec == wsx::error::tls_failed);
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("broadcast: one frame to many, with and without shared compression") {
    net::io_context io;
    std::vector<wsx::websocket> room;
    wsx::server_options options = quick_options();
    options.connection.deflate.emplace();
    options.connection.deflate->server_no_context_takeover = true;
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            room.push_back(ws);
            co_await echo(ws);
        },
        "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        std::vector<wsx::websocket> clients;
        wsx::client_options plain;
        wsx::client_options deflating;
        deflating.connection.deflate.emplace();
        for (int i = 0; i < 6; ++i) clients.push_back(co_await wsx::connect(uri_for(server), i % 2 ? deflating : plain));
        {
            const bool held = co_await eventually([&] { return room.size() == 6; });
            CHECK(held);
        }
        const std::string text(1000, 'b');
        for (int round = 0; round < 3; ++round) {
            const wsx::broadcast_result r = wsx::broadcast_text(room, text);
            INFO("skipped " << r.skipped << " closed " << r.closed << " not open " << r.not_open << " posted " << r.posted);
            CHECK(r.queued == 6);
            for (auto& c : clients) {
                auto m = co_await c.receive();
                REQUIRE(m);
                CHECK(m->text);
                CHECK(m->data == text);
            }
        }
        const std::string bytes = "\x01\x02\x03";
        CHECK(wsx::broadcast_binary(room, wsx::const_bytes(bytes)).queued == 6);
        for (auto& c : clients) {
            const auto m = co_await c.receive();
            CHECK(m->data == bytes);
        }
        for (auto& c : clients) co_await c.close();
        CHECK(wsx::broadcast_text(room, "late").not_open == 6);
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("broadcast to 1,000 connections with 10 slow readers: the others get every message, queues stay bounded") {
    net::io_context io;
    std::vector<wsx::websocket> room;
    std::vector<wsx::websocket> slow_side; // the server's ends of the slow readers
    wsx::server_options options = quick_options();
    options.backlog = 2048;
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            room.push_back(ws);
            if (ws.path() == "/raw") slow_side.push_back(ws);
            while (co_await ws.receive()) {
            }
        },
        "127.0.0.1", 0, options);
    constexpr std::size_t fast_count = 990;
    constexpr std::size_t slow_count = 10;
    constexpr std::size_t rounds = 100;
    constexpr std::size_t message_size = 1024;
    constexpr std::size_t high_water_mark = 8 * 1024;
    std::size_t delivered = 0;
    run(io, [&]() -> net::awaitable<void> {
        std::vector<wsx::websocket> fast;
        for (std::size_t i = 0; i < fast_count; ++i) fast.push_back(co_await wsx::connect(uri_for(server)));
        std::vector<raw_client> slow;
        for (std::size_t i = 0; i < slow_count; ++i) slow.push_back(co_await raw_client::open(server.port(), 4096));
        {
            const bool held = co_await eventually([&] { return room.size() == fast_count + slow_count; });
            REQUIRE(held);
        }
        for (auto& ws : fast) {
            net::co_spawn(io, [&]() -> net::awaitable<void> {
                wsx::message m;
                while (co_await ws.receive(m)) ++delivered;
            }, net::detached);
        }
        // The slow readers' kernel buffers fill up first, so that their
        // queues stay above the mark.
        const std::string filler(64 * 1024, 'f');
        for (auto& ws : slow_side) {
            for (int i = 0; i < 200 && ws.queued_bytes() <= high_water_mark; ++i) {
                CHECK(!ws.try_send_binary(wsx::const_bytes(filler)));
                for (int turn = 0; turn < 20; ++turn) co_await net::post(io, net::use_awaitable);
            }
            REQUIRE(ws.queued_bytes() > high_water_mark);
        }
        const std::string message(message_size, 'm');
        wsx::broadcast_options policy;
        policy.high_water_mark = high_water_mark;
        std::size_t skipped = 0;
        const auto start = std::chrono::steady_clock::now();
        for (std::size_t round = 1; round <= rounds; ++round) {
            const wsx::broadcast_result r = wsx::broadcast_text(room, message, policy);
            CHECK(r.queued + r.skipped == fast_count + slow_count);
            skipped += r.skipped;
            // Promptly: every fast reader has this round within the bound.
            {
                const bool held = co_await eventually([&] { return delivered == round * fast_count; }, 10000ms);
                REQUIRE(held);
            }
        }
        const auto elapsed = std::chrono::steady_clock::now() - start;
        CHECK(elapsed < 90s); // about 5 s in a Debug build, 40 s under ThreadSanitizer
        CHECK(skipped == slow_count * rounds); // the slow readers were left out, not waited for
        // Bounded: the fast queues are empty, the slow ones hold what they
        // held before the broadcasts (the filler) and nothing more.
        std::size_t queued = 0;
        for (const auto& ws : room) queued += ws.queued_bytes();
        CHECK(queued <= slow_count * (high_water_mark + filler.size() + 14));
        for (auto& ws : fast) co_await ws.close();
        for (auto& s : slow) s.socket.close();
        co_await server.async_stop(net::use_awaitable);
    });
    CHECK(delivered == rounds * fast_count);
}

TEST_CASE("broadcast overflow policy close: a slow reader is closed with 1013") {
    net::io_context io;
    std::vector<wsx::websocket> room;
    wsx::server_options options = quick_options();
    options.connection.close_timeout = 200ms; // the raw peer never answers the close
    auto server = wsx::serve(
        io.get_executor(),
        [&](wsx::websocket ws) -> net::awaitable<void> {
            room.push_back(ws);
            while (co_await ws.receive()) {
            }
        },
        "127.0.0.1", 0, options);
    run(io, [&]() -> net::awaitable<void> {
        raw_client slow = co_await raw_client::open(server.port(), 4096);
        {
            const bool held = co_await eventually([&] { return room.size() == 1; });
            REQUIRE(held);
        }
        wsx::broadcast_options policy;
        policy.high_water_mark = 4096;
        policy.on_overflow = wsx::overflow_policy::close;
        const std::string message(4096, 'x');
        std::size_t closed = 0;
        for (int i = 0; i < 1000 && closed == 0; ++i) {
            closed += wsx::broadcast_text(room, message, policy).closed;
            co_await net::post(io, net::use_awaitable);
        }
        CHECK(closed == 1);
        co_await slow.read_to_end();
        CHECK(slow.close_code_received() == 1013);
        co_await server.async_stop(net::use_awaitable);
    });
}

TEST_CASE("threads: a chat on 4 server threads, clients on 2 more; broadcast across strands; clean stop") {
    std::mutex room_mutex;
    std::set<wsx::websocket> room;
    std::atomic<int> in_room{0};
    wsx::server_options options = quick_options();
    options.threads = 4;
    auto server = wsx::serve(
        [&](wsx::websocket ws) -> net::awaitable<void> {
            {
                std::lock_guard<std::mutex> lock(room_mutex);
                room.insert(ws);
            }
            ++in_room;
            try {
                while (auto m = co_await ws.receive()) {
                    std::set<wsx::websocket> everyone;
                    {
                        std::lock_guard<std::mutex> lock(room_mutex);
                        everyone = room;
                    }
                    wsx::broadcast(everyone, *m);
                }
            } catch (const wsx::connection_closed&) {
            }
            std::lock_guard<std::mutex> lock(room_mutex);
            room.erase(ws);
        },
        "127.0.0.1", 0, options);

    constexpr int clients = 16;
    constexpr int messages_each = 20;
    constexpr int expected = clients * clients * messages_each;
    std::atomic<int> received{0};
    std::atomic<int> finished{0};
    std::promise<void> all_received;
    net::io_context client_io;
    const std::string uri = uri_for(server, "/chat");
    for (int c = 0; c < clients; ++c) {
        net::co_spawn(net::make_strand(client_io), [&, c]() -> net::awaitable<void> {
            wsx::websocket ws = co_await wsx::connect(uri);
            // Everyone is in the room before anyone speaks.
            while (in_room < clients) co_await pause(1ms);
            // The lambda itself goes to co_spawn, which keeps it (and its
            // copy of the websocket) alive while the reader runs.
            net::co_spawn(ws.get_executor(), [ws, &received, &all_received]() mutable -> net::awaitable<void> {
                while (co_await ws.receive())
                    if (++received == expected) all_received.set_value();
            }, net::detached);
            for (int i = 0; i < messages_each; ++i) co_await ws.send_text("client " + std::to_string(c) + " says " + std::to_string(i));
            ++finished;
        }, net::detached);
    }
    std::thread t1([&] { client_io.run_for(test_time_limit); });
    std::thread t2([&] { client_io.run_for(test_time_limit); });
    CHECK(all_received.get_future().wait_for(test_time_limit) == std::future_status::ready);
    CHECK(finished == clients);
    CHECK(received == expected);
    server.stop(); // closes everyone with 1001, joins the server threads
    client_io.stop();
    t1.join();
    t2.join();
    CHECK(room.empty());
}

TEST_CASE("threads: callbacks on 3 server threads echo every message in order; clean stop") {
    std::atomic<int> open_now{0};
    std::atomic<int> closed{0};
    std::atomic<int> send_failures{0}; // (Catch's checks are for one thread only)
    wsx::message_handler echo;
    echo.on_open = [&](wsx::websocket&) { ++open_now; };
    echo.on_message = [&](wsx::websocket& ws, wsx::message& m) {
        if (ws.try_send_text(m.view())) ++send_failures;
    };
    echo.on_close = [&](wsx::websocket&, const wsx::close_status&) {
        --open_now;
        ++closed;
    };
    wsx::server_options options = quick_options();
    options.threads = 3;
    auto server = wsx::serve(echo, "127.0.0.1", 0, options);

    constexpr int clients = 12;
    constexpr int messages_each = 50;
    std::atomic<int> in_order{0};
    std::atomic<int> finished{0};
    std::promise<void> all_done;
    net::io_context client_io;
    const std::string uri = uri_for(server, "/echo");
    for (int c = 0; c < clients; ++c) {
        net::co_spawn(net::make_strand(client_io), [&, c]() -> net::awaitable<void> {
            wsx::websocket ws = co_await wsx::connect(uri, quiet_client());
            // All sent first, so that the server finds several already read.
            for (int i = 0; i < messages_each; ++i) co_await ws.send_text(std::to_string(c) + ":" + std::to_string(i));
            for (int i = 0; i < messages_each; ++i) {
                auto reply = co_await ws.receive();
                if (reply && reply->data == std::to_string(c) + ":" + std::to_string(i)) ++in_order;
            }
            co_await ws.close();
            if (++finished == clients) all_done.set_value();
        }, net::detached);
    }
    std::thread t1([&] { client_io.run_for(test_time_limit); });
    std::thread t2([&] { client_io.run_for(test_time_limit); });
    CHECK(all_done.get_future().wait_for(stall_limit) == std::future_status::ready);
    CHECK(in_order == clients * messages_each);
    server.stop();
    client_io.stop();
    t1.join();
    t2.join();
    CHECK(send_failures == 0);
    CHECK(closed == clients);
    CHECK(open_now == 0);
    CHECK(server.connections() == 0);
}
