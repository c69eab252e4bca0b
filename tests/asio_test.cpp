// Tests of wsx::async_stream: a client and a server in one process over
// loopback TCP (and TLS), driven by C++20 coroutines, callbacks and futures.
// Built twice: with standalone Asio, and with Boost.Asio (WSX_ASIO_BOOST).
// Every test runs its io_context for a bounded time and checks that it
// finished; nothing waits on a clock to synchronise.
#include <wsx/asio/async_stream.hpp>
#include <wsx/asio/ssl.hpp>

#include "support/asio_test_stream.hpp"
#include "support/test_certificates.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace net = wsx::net;
using tcp = net::ip::tcp;
using wsx::net_error_code;

namespace {

constexpr auto test_time_limit = std::chrono::seconds(60);

auto with_error(net_error_code& ec) { return net::redirect_error(net::use_awaitable, ec); }

// Runs body(io) to completion on one thread, within the time limit.
template <class Body>
void run_coroutine(Body body) {
    net::io_context io;
    bool done = false;
    std::exception_ptr failure;
    net::co_spawn(io, body(io), [&](std::exception_ptr e) {
        done = true;
        failure = e;
    });
    io.run_for(test_time_limit);
    if (failure) std::rethrow_exception(failure);
    REQUIRE(done);
}

// Two connected TCP sockets on 127.0.0.1.
net::awaitable<std::pair<tcp::socket, tcp::socket>> connected_sockets(net::io_context& io) {
    tcp::acceptor acceptor(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    tcp::socket client(io);
    net_error_code connect_error;
    bool connected = false;
    client.async_connect(acceptor.local_endpoint(), [&](const net_error_code& ec) {
        connect_error = ec;
        connected = true;
    });
    tcp::socket server = co_await acceptor.async_accept(net::use_awaitable);
    while (!connected) co_await net::post(io, net::use_awaitable);
    REQUIRE(!connect_error);
    co_return std::make_pair(std::move(client), std::move(server));
}

// TLS contexts with a certificate made for this run.
struct tls_contexts {
    net::ssl::context server{net::ssl::context::tls_server};
    net::ssl::context client{net::ssl::context::tls_client};
    tls_contexts() {
        static const wsx_test::test_pki pki = wsx_test::make_localhost_pki();
        server.use_certificate_chain(net::buffer(pki.server.certificate_pem));
        server.use_private_key(net::buffer(pki.server.private_key_pem), net::ssl::context::pem);
        client.add_certificate_authority(net::buffer(pki.ca.certificate_pem));
        client.set_verify_mode(net::ssl::verify_peer);
    }
};

using plain_stream = wsx::async_stream<tcp::socket>;
using tls_stream = wsx::async_stream<net::ssl::stream<tcp::socket>>;

// A client and a server stream, connected and past the WebSocket handshake.
template <class Stream>
struct stream_pair {
    std::unique_ptr<Stream> client;
    std::unique_ptr<Stream> server;
};

wsx::connection_options big_options(bool deflate) {
    wsx::connection_options options;
    options.max_message_size = options.max_frame_size = 16 * 1024 * 1024;
    if (deflate) options.deflate.emplace();
    return options;
}

template <class Stream>
net::awaitable<stream_pair<Stream>> open_pair(net::io_context& io, wsx::connection_options server_options,
                                              wsx::connection_options client_options, tls_contexts* tls = nullptr) {
    auto [client_socket, server_socket] = co_await connected_sockets(io);
    stream_pair<Stream> pair;
    if constexpr (std::is_same_v<Stream, tls_stream>) {
        pair.client = std::make_unique<Stream>(std::move(client_socket), tls->client);
        pair.server = std::make_unique<Stream>(std::move(server_socket), tls->server);
        pair.client->next_layer().set_verify_callback(net::ssl::host_name_verification("localhost"));
        net_error_code server_error, client_error;
        bool server_done = false;
        pair.server->next_layer().async_handshake(net::ssl::stream_base::server, [&](const net_error_code& ec) {
            server_error = ec;
            server_done = true;
        });
        co_await pair.client->next_layer().async_handshake(net::ssl::stream_base::client, with_error(client_error));
        while (!server_done) co_await net::post(io, net::use_awaitable);
        REQUIRE(!client_error);
        REQUIRE(!server_error);
    } else {
        (void)tls;
        pair.client = std::make_unique<Stream>(std::move(client_socket));
        pair.server = std::make_unique<Stream>(std::move(server_socket));
    }
    pair.server->set_options(std::move(server_options));
    pair.client->set_options(std::move(client_options));
    net_error_code accept_error, handshake_error;
    bool accepted = false;
    pair.server->async_accept([&](const net_error_code& ec) {
        accept_error = ec;
        accepted = true;
    });
    co_await pair.client->async_handshake("localhost", "/echo", with_error(handshake_error));
    while (!accepted) co_await net::post(io, net::use_awaitable);
    REQUIRE(!handshake_error);
    REQUIRE(!accept_error);
    co_return pair;
}

// Echoes until the connection ends.
template <class Stream>
net::awaitable<void> echo_loop(Stream& ws) {
    wsx::message m;
    net_error_code ec;
    for (;;) {
        co_await ws.async_read(m, with_error(ec));
        if (ec) co_return;
        co_await ws.async_write(m.text, m.bytes(), with_error(ec));
        if (ec) co_return;
    }
}

std::string pattern(std::size_t size, bool text) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
        s[i] = text ? static_cast<char>('a' + (i * 7 + i / 26) % 26) : static_cast<char>((i * 31 + i / 256) & 0xff);
    return s;
}

template <class Stream>
void check_echo_sizes(bool deflate, const std::vector<std::size_t>& sizes) {
    tls_contexts tls;
    run_coroutine([&](net::io_context& io) -> net::awaitable<void> {
        auto pair = co_await open_pair<Stream>(io, big_options(deflate), big_options(deflate), &tls);
        CHECK(pair.client->deflate_enabled() == deflate);
        CHECK(pair.server->deflate_enabled() == deflate);
        net::co_spawn(io, echo_loop(*pair.server), net::detached);
        wsx::message reply;
        for (const bool text : {true, false}) {
            for (const std::size_t size : sizes) {
                const std::string payload = pattern(size, text);
                co_await pair.client->async_write(text, wsx::const_bytes(payload), net::use_awaitable);
                co_await pair.client->async_read(reply, net::use_awaitable);
                CHECK(reply.text == text);
                CHECK(reply.data.size() == size);
                CHECK(reply.data == payload);
            }
        }
        co_await pair.client->async_close(wsx::close_code::normal, net::use_awaitable);
        CHECK(pair.client->get_close_status().code == wsx::close_code::normal);
        CHECK(!pair.client->is_open());
    });
}

const std::vector<std::size_t> all_sizes = {0, 1, 125, 126, 65535, 65536, 1024 * 1024, 16 * 1024 * 1024};

} // namespace

TEST_CASE("ws echo of text and binary from 0 B to 16 MiB, without deflate") {
    check_echo_sizes<plain_stream>(false, all_sizes);
}

TEST_CASE("ws echo of text and binary from 0 B to 16 MiB, with permessage-deflate") {
    check_echo_sizes<plain_stream>(true, all_sizes);
}

TEST_CASE("wss echo of text and binary from 0 B to 16 MiB, with and without deflate") {
    check_echo_sizes<tls_stream>(false, all_sizes);
    check_echo_sizes<tls_stream>(true, {0, 1, 65536, 16 * 1024 * 1024});
}

TEST_CASE("fragmented messages are echoed whole") {
    run_coroutine([](net::io_context& io) -> net::awaitable<void> {
        wsx::connection_options client_options = big_options(false);
        client_options.fragment_size = 1000;
        auto pair = co_await open_pair<plain_stream>(io, big_options(false), client_options);
        net::co_spawn(io, echo_loop(*pair.server), net::detached);
        const std::string payload = pattern(100000, true);
        co_await pair.client->async_write_text(payload, net::use_awaitable);
        wsx::message reply;
        co_await pair.client->async_read(reply, net::use_awaitable);
        CHECK(reply.text);
        CHECK(reply.data == payload);
        co_await pair.client->async_close(wsx::close_code::normal, net::use_awaitable);
    });
}

namespace {

// An AsyncStream that counts the writes handed to the socket: any Asio
// stream works, and frames queued together leave in one write.
struct counting_socket {
    tcp::socket socket;
    std::shared_ptr<std::size_t> writes = std::make_shared<std::size_t>(0);
    // Where the bytes of each write came from.
    std::shared_ptr<std::vector<const void*>> sources = std::make_shared<std::vector<const void*>>();

    explicit counting_socket(tcp::socket s) : socket(std::move(s)) {}
    using executor_type = tcp::socket::executor_type;
    executor_type get_executor() { return socket.get_executor(); }
    tcp::socket& lowest_layer() { return socket; }
    template <class Buffers, class Token>
    auto async_read_some(const Buffers& buffers, Token&& token) {
        return socket.async_read_some(buffers, std::forward<Token>(token));
    }
    template <class Buffers, class Token>
    auto async_write_some(const Buffers& buffers, Token&& token) {
        ++*writes;
        for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it)
            sources->push_back(net::const_buffer(*it).data());
        return socket.async_write_some(buffers, std::forward<Token>(token));
    }
};

// A server over a counting_socket and a plain client, past the handshake.
struct counted_pair {
    std::unique_ptr<wsx::async_stream<counting_socket>> server;
    std::unique_ptr<plain_stream> client;
};

net::awaitable<counted_pair> open_counted_pair(net::io_context& io) {
    auto [client_socket, server_socket] = co_await connected_sockets(io);
    counted_pair pair;
    pair.server = std::make_unique<wsx::async_stream<counting_socket>>(counting_socket(std::move(server_socket)));
    pair.client = std::make_unique<plain_stream>(std::move(client_socket));
    bool accepted = false;
    pair.server->async_accept([&](const net_error_code& ec) {
        CHECK(!ec);
        accepted = true;
    });
    co_await pair.client->async_handshake("localhost", "/", net::use_awaitable);
    while (!accepted) co_await net::post(io, net::use_awaitable);
    co_return pair;
}

} // namespace

TEST_CASE("many writers on one connection: every frame arrives, each writer's in order") {
    run_coroutine([](net::io_context& io) -> net::awaitable<void> {
        auto pair = co_await open_pair<plain_stream>(io, big_options(true), big_options(true));
        constexpr int writers = 40;
        constexpr int per_writer = 50;
        int finished = 0;
        for (int w = 0; w < writers; ++w) {
            net::co_spawn(
                io,
                [&, w]() -> net::awaitable<void> {
                    for (int i = 0; i < per_writer; ++i) {
                        const std::string text = std::to_string(w) + ":" + std::to_string(i) + ":" +
                                                 pattern(static_cast<std::size_t>(i * 97), true);
                        co_await pair.server->async_write_text(text, net::use_awaitable);
                    }
                    ++finished;
                },
                net::detached);
        }
        std::map<int, int> next_index;
        wsx::message m;
        for (int n = 0; n < writers * per_writer; ++n) {
            co_await pair.client->async_read(m, net::use_awaitable);
            const std::size_t first = m.data.find(':');
            const std::size_t second = m.data.find(':', first + 1);
            const int w = std::stoi(m.data.substr(0, first));
            const int i = std::stoi(m.data.substr(first + 1, second - first - 1));
            CHECK(i == next_index[w]);
            next_index[w] = i + 1;
            CHECK(m.data.substr(second + 1) == pattern(static_cast<std::size_t>(i * 97), true));
        }
        CHECK(finished == writers);
        CHECK(next_index.size() == static_cast<std::size_t>(writers));
        net::co_spawn(io, echo_loop(*pair.server), net::detached); // to answer the close
        co_await pair.client->async_close(wsx::close_code::normal, net::use_awaitable);
    });
}

TEST_CASE("frames queued together leave in one write") {
    run_coroutine([](net::io_context& io) -> net::awaitable<void> {
        auto pair = co_await open_counted_pair(io);
        auto& server = *pair.server;
        auto& client = *pair.client;

        const std::size_t before = *server.next_layer().writes;
        for (int i = 0; i < 100; ++i) REQUIRE(!server.try_write_text("frame " + std::to_string(i)));
        wsx::message m;
        for (int i = 0; i < 100; ++i) {
            co_await client.async_read(m, net::use_awaitable);
            CHECK(m.data == "frame " + std::to_string(i));
        }
        CHECK(*server.next_layer().writes - before == 1);
        net::co_spawn(io, echo_loop(server), net::detached); // to answer the close
        co_await client.async_close(wsx::close_code::normal, net::use_awaitable);
    });
}

TEST_CASE("a server's large message leaves from the caller's memory, in order with other frames") {
    run_coroutine([](net::io_context& io) -> net::awaitable<void> {
        auto pair = co_await open_counted_pair(io);
        auto& server = *pair.server;
        auto& client = *pair.client;

        const std::string big = pattern(300000, false);
        const std::string big_text = pattern(200000, true);
        bool written = false;
        REQUIRE(!server.try_write_text("before"));
        net::co_spawn(
            io,
            [&]() -> net::awaitable<void> {
                co_await server.async_write_binary(wsx::const_bytes(big), net::use_awaitable);
                CHECK(!server.try_write_text("after"));
                co_await server.async_write_text(big_text, net::use_awaitable);
                written = true;
            },
            net::detached);
        // Another writer at the same time.
        net::co_spawn(
            io,
            [&]() -> net::awaitable<void> {
                for (int i = 0; i < 20; ++i) co_await server.async_write_text("w" + std::to_string(i), net::use_awaitable);
            },
            net::detached);

        std::vector<std::string> order;
        int next_w = 0;
        wsx::message m;
        for (int n = 0; n < 24; ++n) {
            co_await client.async_read(m, net::use_awaitable);
            if (m.data.size() > 1000) {
                CHECK(m.text == (m.data.size() == big_text.size()));
                CHECK(m.data == (m.text ? big_text : big));
                order.push_back(m.text ? "big text" : "big");
            } else if (m.data[0] == 'w') {
                CHECK(m.data == "w" + std::to_string(next_w++));
            } else {
                order.push_back(m.data);
            }
        }
        CHECK(order == std::vector<std::string>{"before", "big", "after", "big text"});
        CHECK(next_w == 20);
        CHECK(written);
        // Written from `big` itself, not from a copy of it.
        const auto& from = *server.next_layer().sources;
        CHECK(std::find(from.begin(), from.end(), static_cast<const void*>(big.data())) != from.end());
        CHECK(std::find(from.begin(), from.end(), static_cast<const void*>(big_text.data())) != from.end());
        net::co_spawn(io, echo_loop(server), net::detached); // to answer the close
        co_await client.async_close(wsx::close_code::normal, net::use_awaitable);
    });
}

TEST_CASE("backpressure: try_write answers would_block and async_write waits while the peer does not read") {
    run_coroutine([](net::io_context& io) -> net::awaitable<void> {
        wsx::connection_options options = big_options(false);
        options.max_pending_output = 64 * 1024; // the high water mark
        auto pair = co_await open_pair<plain_stream>(io, big_options(false), options);
        pair.client->set_low_water_mark(16 * 1024);
        pair.client->next_layer().set_option(net::socket_base::send_buffer_size(4096));
        pair.server->next_layer().set_option(net::socket_base::receive_buffer_size(4096));

        // The server does not read: the queue fills once the kernel's
        // buffers are full. Each try_write lets the writer run once.
        const std::string chunk = pattern(16 * 1024, false);
        std::size_t sent = 0;
        std::error_code refused;
        for (int i = 0; i < 20000 && !refused; ++i) {
            refused = pair.client->try_write_binary(chunk);
            if (!refused) ++sent;
            co_await net::post(io, net::use_awaitable);
        }
        REQUIRE(refused == wsx::error::would_block);
        CHECK(pair.client->queued_bytes() > options.max_pending_output);

        // An awaiting writer is held until the queue drains below the low
        // water mark, which needs the server to read.
        bool server_reading = false;
        bool write_done_before_server_read = false;
        bool write_done = false;
        const std::string last = "last";
        pair.client->async_write_text(last, [&](const net_error_code& ec) {
            CHECK(!ec);
            write_done_before_server_read = !server_reading;
            write_done = true;
        });
        for (int i = 0; i < 10; ++i) co_await net::post(io, net::use_awaitable);
        CHECK(!write_done);

        server_reading = true;
        wsx::message m;
        for (std::size_t i = 0; i < sent; ++i) {
            co_await pair.server->async_read(m, net::use_awaitable);
            CHECK(m.data.size() == chunk.size());
        }
        co_await pair.server->async_read(m, net::use_awaitable);
        CHECK(m.data == "last");
        CHECK(write_done);
        CHECK(!write_done_before_server_read);
        net::co_spawn(io, echo_loop(*pair.server), net::detached);
        co_await pair.client->async_close(wsx::close_code::normal, net::use_awaitable);
    });
}

TEST_CASE("ping, pong and the control callback") {
    run_coroutine([](net::io_context& io) -> net::awaitable<void> {
        auto pair = co_await open_pair<plain_stream>(io, big_options(false), big_options(false));
        std::vector<std::string> client_saw, server_saw;
        pair.client->set_control_callback([&](wsx::event_type type, wsx::const_bytes payload) {
            client_saw.push_back((type == wsx::event_type::pong ? "pong " : "ping ") +
                                 std::string(wsx::as_string_view(payload)));
        });
        pair.server->set_control_callback([&](wsx::event_type type, wsx::const_bytes payload) {
            server_saw.push_back((type == wsx::event_type::pong ? "pong " : "ping ") +
                                 std::string(wsx::as_string_view(payload)));
        });
        net::co_spawn(io, echo_loop(*pair.server), net::detached);
        co_await pair.client->async_ping(wsx::const_bytes(std::string_view("are you there")), net::use_awaitable);
        co_await pair.client->async_write_text("after the ping", net::use_awaitable);
        wsx::message m;
        co_await pair.client->async_read(m, net::use_awaitable);
        CHECK(m.data == "after the ping");
        CHECK(server_saw == std::vector<std::string>{"ping are you there"});
        CHECK(client_saw == std::vector<std::string>{"pong are you there"});
        co_await pair.client->async_close(wsx::close_code::normal, net::use_awaitable);
    });
}

TEST_CASE("closing: the other side's read reports connection_closed with the code and reason") {
    run_coroutine([](net::io_context& io) -> net::awaitable<void> {
        auto pair = co_await open_pair<plain_stream>(io, big_options(false), big_options(false));
        net_error_code read_error;
        bool read_done = false;
        wsx::message m;
        pair.server->async_read(m, [&](const net_error_code& ec) {
            read_error = ec;
            read_done = true;
        });
        co_await pair.client->async_close(wsx::close_code::going_away, "bye", net::use_awaitable);
        while (!read_done) co_await net::post(io, net::use_awaitable);
        CHECK(wsx::to_std_error(read_error) == wsx::error::connection_closed);
        CHECK(pair.server->get_close_status().code == wsx::close_code::going_away);
        CHECK(pair.server->get_close_status().reason == "bye");
        CHECK(pair.server->get_close_status().closed_by_peer);
        CHECK(pair.client->get_close_status().code == wsx::close_code::going_away);
        CHECK(!pair.client->get_close_status().closed_by_peer);
        // Once closed, every operation says so.
        net_error_code ec;
        co_await pair.client->async_write_text("late", with_error(ec));
        CHECK(wsx::to_std_error(ec) == wsx::error::connection_closed);
        CHECK(pair.client->try_write_text("late") == wsx::error::connection_closed);
    });
}

TEST_CASE("a client done with the closing handshake shuts down writing; the server sees its end of stream") {
    // RFC 6455 §7.1.1: the server closes TCP first, so the client waits for
    // it; it has nothing more to write, and says so with a half-close. This
    // server (the sans-I/O core on a raw socket) waits for that end of
    // stream before it closes, for at most 5 s; the client's close timeout
    // is 30 s, so only the half-close ends the wait in time.
    run_coroutine([](net::io_context& io) -> net::awaitable<void> {
        auto sockets = co_await connected_sockets(io);
        tcp::socket& raw = sockets.second;
        wsx::connection_options client_options;
        client_options.close_timeout = std::chrono::seconds(30);
        plain_stream client(std::move(sockets.first));
        client.set_options(client_options);
        net_error_code client_result;
        bool client_done = false;
        net::co_spawn(io, [&]() -> net::awaitable<void> {
            co_await client.async_handshake("127.0.0.1", "/", with_error(client_result));
            if (client_result) co_return;
            wsx::message m;
            co_await client.async_read(m, with_error(client_result));
        }, [&](std::exception_ptr) { client_done = true; });

        wsx::connection server(wsx::role::server);
        std::uint8_t buffer[4096];
        auto write_output = [&]() -> net::awaitable<void> {
            const wsx::const_bytes out = server.pending_output();
            co_await net::async_write(raw, net::buffer(out.data(), out.size()), net::use_awaitable);
            server.consume_output(out.size());
        };
        bool closed = false;
        while (!closed) {
            const std::size_t n = co_await raw.async_read_some(net::buffer(buffer), net::use_awaitable);
            server.receive(wsx::const_bytes(buffer, n));
            while (wsx::event ev = server.next_event()) {
                if (ev.type == wsx::event_type::request) {
                    REQUIRE_FALSE(server.accept());
                    REQUIRE_FALSE(server.close(wsx::close_code::going_away, "done"));
                }
                if (ev.type == wsx::event_type::close) closed = true;
            }
            co_await write_output();
        }
        CHECK(server.transport_action() == wsx::transport_action::close); // the server may close now; it waits
        net::steady_timer limit(io);
        limit.expires_after(std::chrono::seconds(5));
        limit.async_wait([&](const net_error_code& ec) {
            if (!ec) raw.close();
        });
        net_error_code ec;
        while (!ec) co_await raw.async_read_some(net::buffer(buffer), with_error(ec));
        limit.cancel();
        CHECK(ec == net::error::eof); // not operation_aborted: the client's FIN came
        raw.close();
        while (!client_done) co_await net::post(io, net::use_awaitable);
        CHECK(wsx::to_std_error(client_result) == wsx::error::connection_closed);
        CHECK(client.get_close_status().code == wsx::close_code::going_away);
        CHECK(client.get_close_status().sent == wsx::close_code::going_away);
        CHECK(client.get_close_status().received == wsx::close_code::going_away);
    });
}

TEST_CASE("plain HTTP requests go to the HTTP handler; the upgrade handler can refuse") {
    run_coroutine([](net::io_context& io) -> net::awaitable<void> {
        {
            auto [client, server_socket] = co_await connected_sockets(io);
            plain_stream server(std::move(server_socket));
            server.set_http_handler([](const wsx::server_request& request) {
                wsx::http_reply reply;
                reply.status = request.http.target == "/health" ? 200 : 404;
                reply.body = "ok\n";
                return reply;
            });
            net_error_code accept_error;
            bool accepted = false;
            server.async_accept([&](const net_error_code& ec) {
                accept_error = ec;
                accepted = true;
            });
            const std::string request = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
            co_await net::async_write(client, net::buffer(request), net::use_awaitable);
            std::string response;
            net_error_code ec;
            co_await net::async_read(client, net::dynamic_buffer(response), with_error(ec));
            CHECK(ec == net::error::eof);
            CHECK(response.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
            CHECK(response.find("\r\n\r\nok\n") != std::string::npos);
            while (!accepted) co_await net::post(io, net::use_awaitable);
            CHECK(wsx::to_std_error(accept_error) == wsx::error::handshake_rejected);
        }
        {
            auto [client_socket, server_socket] = co_await connected_sockets(io);
            plain_stream server(std::move(server_socket));
            plain_stream client(std::move(client_socket));
            server.set_upgrade_handler([](const wsx::server_request& request, wsx::accept_options&) {
                std::optional<wsx::http_reply> refusal;
                if (request.path != "/allowed") refusal = wsx::http_reply{403, "no\n", {}};
                return refusal;
            });
            net_error_code accept_error, handshake_error;
            bool accepted = false;
            server.async_accept([&](const net_error_code& ec) {
                accept_error = ec;
                accepted = true;
            });
            co_await client.async_handshake("localhost", "/other", with_error(handshake_error));
            while (!accepted) co_await net::post(io, net::use_awaitable);
            CHECK(wsx::to_std_error(accept_error) == wsx::error::handshake_rejected);
            CHECK(wsx::to_std_error(handshake_error) == wsx::error::unexpected_status);
            REQUIRE(client.connection() != nullptr);
            CHECK(client.connection()->response().http.status == 403);
        }
    });
}

TEST_CASE("timeouts: open timeout and keepalive ping timeout") {
    run_coroutine([](net::io_context& io) -> net::awaitable<void> {
        {
            // A peer that connects and says nothing.
            auto [client, server_socket] = co_await connected_sockets(io);
            plain_stream server(std::move(server_socket));
            wsx::connection_options options;
            options.open_timeout = std::chrono::milliseconds(50);
            server.set_options(options);
            net_error_code ec;
            co_await server.async_accept(with_error(ec));
            CHECK(wsx::to_std_error(ec) == wsx::error::open_timeout);
        }
        {
            // A client that never reads never answers pings: the server
            // gives up with 1011 after ping interval + pong timeout.
            wsx::connection_options server_options;
            server_options.ping_interval = std::chrono::milliseconds(30);
            server_options.ping_timeout = std::chrono::milliseconds(30);
            auto pair = co_await open_pair<plain_stream>(io, server_options, wsx::connection_options{});
            wsx::message m;
            net_error_code ec;
            co_await pair.server->async_read(m, with_error(ec));
            CHECK(wsx::to_std_error(ec) == wsx::error::ping_timeout);
            CHECK(pair.server->get_close_status().code == wsx::close_code::internal_error);
        }
        {
            // A client that reads answers the pings: the connection stays up.
            wsx::connection_options server_options;
            server_options.ping_interval = std::chrono::milliseconds(20);
            server_options.ping_timeout = std::chrono::milliseconds(2000);
            auto pair = co_await open_pair<plain_stream>(io, server_options, wsx::connection_options{});
            // A timer that never expires serves as an event: cancelled on
            // the third pong or when the read ends.
            net::steady_timer event(io, net::steady_timer::time_point::max());
            int pongs = 0;
            pair.server->set_control_callback([&](wsx::event_type type, wsx::const_bytes) {
                if (type == wsx::event_type::pong && ++pongs == 3) event.cancel();
            });
            net::co_spawn(io, echo_loop(*pair.client), net::detached);
            bool server_read_done = false;
            wsx::message m;
            pair.server->async_read(m, [&](const net_error_code&) {
                server_read_done = true;
                event.cancel();
            });
            net_error_code ignored;
            co_await event.async_wait(with_error(ignored));
            CHECK(pongs == 3);
            CHECK(!server_read_done);
            pair.server.reset(); // destroying the stream ends its pending read
            while (!server_read_done) co_await net::post(io, net::use_awaitable);
        }
    });
}

TEST_CASE("callbacks and use_future as completion tokens") {
    net::io_context io;
    auto work = net::make_work_guard(io);
    std::thread runner([&] { io.run_for(test_time_limit); });
    std::unique_ptr<plain_stream> client, server;
    {
        auto pair = net::co_spawn(
                        io,
                        [&]() -> net::awaitable<void> {
                            auto p = co_await open_pair<plain_stream>(io, big_options(true), big_options(true));
                            client = std::move(p.client);
                            server = std::move(p.server);
                            net::co_spawn(io, echo_loop(*server), net::detached);
                        },
                        net::use_future);
        REQUIRE(pair.wait_for(test_time_limit) == std::future_status::ready);
        pair.get();
    }
    // Futures, from another thread.
    const std::string text = "through a future";
    std::future<void> written = client->async_write_text(text, net::use_future);
    REQUIRE(written.wait_for(test_time_limit) == std::future_status::ready);
    written.get();
    wsx::message m;
    std::future<void> read = client->async_read(m, net::use_future);
    REQUIRE(read.wait_for(test_time_limit) == std::future_status::ready);
    read.get();
    CHECK(m.data == text);

    // Plain callbacks.
    std::promise<net_error_code> callback_result;
    const std::string binary = pattern(1000, false);
    net::post(io, [&] {
        client->async_write_binary(binary, [&](const net_error_code& ec) {
            CHECK(!ec);
            client->async_read(m, [&](const net_error_code& ec2) { callback_result.set_value(ec2); });
        });
    });
    auto callback_future = callback_result.get_future();
    REQUIRE(callback_future.wait_for(test_time_limit) == std::future_status::ready);
    CHECK(!callback_future.get());
    CHECK(!m.text);
    CHECK(m.data == binary);

    // A failed operation raises through the future.
    std::future<void> closed = client->async_close(wsx::close_code::normal, net::use_future);
    REQUIRE(closed.wait_for(test_time_limit) == std::future_status::ready);
    closed.get();
    std::future<void> late = client->async_write_text(text, net::use_future);
    REQUIRE(late.wait_for(test_time_limit) == std::future_status::ready);
    CHECK_THROWS(late.get());

    work.reset();
    net::post(io, [&] {
        client.reset();
        server.reset();
    });
    runner.join();
}

TEST_CASE("every operation failing in turn, on either end: reported, and nothing hangs") {
    // A whole conversation over the in-memory stream: handshake, a text and
    // a 100 KiB binary echo, a ping, the closing handshake. Run N makes the
    // Nth read or write (of either end) fail; once N passes the last one,
    // the conversation runs clean.
    using memory_ws = wsx::async_stream<wsx_test::memory_stream>;
    wsx::connection_options options;
    options.ping_interval = wsx::duration(0);
    options.close_timeout = wsx::duration(2000);
    const std::string text = pattern(1000, true);
    const std::string binary = pattern(100 * 1024, false);
    std::size_t runs = 0;
    std::size_t client_saw_error = 0;
    for (std::size_t fail_at = 1; fail_at < 500; ++fail_at) {
        CAPTURE(fail_at);
        auto counter = std::make_shared<wsx_test::failure_counter>();
        counter->fail_at = fail_at;
        net::io_context io;
        auto ends = wsx_test::memory_stream::pair(io.get_executor(), counter);
        memory_ws client(std::move(ends.first));
        memory_ws server(std::move(ends.second));
        client.set_options(options);
        server.set_options(options);
        bool server_done = false;
        bool client_done = false;
        net_error_code client_error;
        net::co_spawn(io, [&]() -> net::awaitable<void> {
            net_error_code ec;
            co_await server.async_accept(with_error(ec));
            if (!ec) co_await echo_loop(server);
            server_done = true;
        }, net::detached);
        net::co_spawn(io, [&]() -> net::awaitable<void> {
            net_error_code ec;
            wsx::message reply;
            bool echoed = true;
            co_await client.async_handshake("localhost", "/", with_error(ec));
            for (const auto& [is_text, payload] : {std::pair<bool, const std::string*>{true, &text},
                                                   std::pair<bool, const std::string*>{false, &binary}}) {
                if (!ec) co_await client.async_write(is_text, wsx::const_bytes(*payload), with_error(ec));
                if (!ec) co_await client.async_read(reply, with_error(ec));
                if (!ec) echoed = echoed && reply.text == is_text && reply.data == *payload;
            }
            if (!ec) co_await client.async_ping(wsx::const_bytes(), with_error(ec));
            if (!ec) co_await client.async_close(wsx::close_code::normal, with_error(ec));
            CHECK(echoed); // what arrived is never wrong
            client_error = ec;
            client_done = true;
        }, net::detached);
        io.run_for(std::chrono::seconds(20));
        REQUIRE(client_done);
        REQUIRE(server_done);
        ++runs;
        if (!counter->failed) {
            // N is past the last operation: the clean run.
            CHECK_FALSE(client_error);
            CHECK(client.get_close_status().code == wsx::close_code::normal);
            break;
        }
        if (client_error) ++client_saw_error;
    }
    INFO("runs " << runs << ", client errors " << client_saw_error);
    CHECK(runs > 10);
    CHECK(client_saw_error > 0);
}
