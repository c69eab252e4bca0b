// client - a WebSocket client on wsx::async_stream and C++20 coroutines.
//
// Interactive (like `python -m websockets URI`):
//   client [--no-deflate] [--ca FILE] URI
// sends each line read from stdin as a text message and prints what arrives
// ("< text", or "< (binary N bytes) 01 02 ..."). "/ping" sends a ping,
// "/close [code] [reason]" closes; the end of stdin closes with 1000.
//
// Scripted, for tests against an echo server:
//   client [--send MSG | --size BYTES [--binary]] [--count N] [--fragment BYTES]
//          [--no-deflate] [--ca FILE] [--expect-deflate yes|no] [--timeout SECONDS] URI
// sends N messages (MSG, or BYTES bytes of a fixed pattern), waits for each
// echo and exits 0 only if every one came back the same, with its type.
// Exit codes: 0 all echoed, 1 a failure or a mismatch, 2 bad usage,
// 3 the timeout ran out.
#include <wsx/asio/async_stream.hpp>
#include <wsx/asio/ssl.hpp>

#include "example_options.hpp"

#include <openssl/ssl.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <variant>

namespace net = wsx::net;
using tcp = net::ip::tcp;

namespace {

struct settings {
    std::string uri_text;
    bool deflate = true;
    std::string ca_file;
    std::optional<std::string> send;
    std::optional<std::size_t> size;
    bool binary = false;
    std::size_t count = 1;
    std::size_t fragment = 0;
    std::optional<bool> expect_deflate;
    unsigned timeout_seconds = 60;
    bool scripted() const { return send || size; }
};

constexpr example::usage_text client_usage{
    "client",
    "usage: client [--no-deflate] [--ca FILE] URI                        (interactive)\n"
    "       client [--send MSG | --size BYTES [--binary]] [--count N] [--fragment BYTES]\n"
    "              [--no-deflate] [--ca FILE] [--expect-deflate yes|no] [--timeout SECONDS] URI\n",
    "  URI                ws://HOST[:PORT]/PATH or wss://...; without --send or --size, lines\n"
    "                     typed are sent as text and messages received are printed\n"
    "  --send MSG         send MSG as a text message, print the answer, and exit\n"
    "  --size BYTES       send a message of BYTES bytes instead (text, or --binary)\n"
    "  --binary           make --size's message binary\n"
    "  --count N          send it N times, each after the previous answer; default 1\n"
    "  --fragment BYTES   send it in frames of at most BYTES (0: one frame); default 0\n"
    "  --no-deflate       do not offer permessage-deflate\n"
    "  --ca FILE          trust the certificates in this PEM file for wss://\n"
    "  --expect-deflate yes|no  exit 1 unless permessage-deflate was (yes) or was not (no) agreed\n"
    "  --timeout SECONDS  give up after this long; default 60\n"
    "  --help             this text\n"};

settings parse_arguments(int argc, char** argv) {
    constexpr std::size_t any_size = std::numeric_limits<std::size_t>::max();
    settings s;
    example::arguments args(argc, argv, client_usage);
    while (args.next()) {
        const std::string_view arg = args.current();
        if (arg == "--no-deflate") s.deflate = false;
        else if (arg == "--ca") s.ca_file = std::string(args.value());
        else if (arg == "--send") s.send = std::string(args.value());
        else if (arg == "--size") s.size = args.number<std::size_t>(0, any_size);
        else if (arg == "--binary") s.binary = true;
        else if (arg == "--count") s.count = args.number<std::size_t>(0, any_size);
        else if (arg == "--fragment") s.fragment = args.number<std::size_t>(0, any_size);
        else if (arg == "--timeout") s.timeout_seconds = static_cast<unsigned>(args.number<std::size_t>(0, any_size));
        else if (arg == "--expect-deflate") {
            const std::string_view v = args.value();
            if (v != "yes" && v != "no") args.fail("--expect-deflate takes yes or no");
            s.expect_deflate = v == "yes";
        } else if (arg.empty() || arg.front() != '-') {
            if (!s.uri_text.empty()) args.fail("more than one URI");
            s.uri_text = std::string(arg);
        } else args.unknown_option();
    }
    if (s.uri_text.empty()) args.fail("missing URI");
    if (s.send && s.size) args.fail("--send and --size exclude each other");
    return s;
}

// BYTES bytes of a pattern that is valid UTF-8 (printable ASCII) for text,
// and every byte value for binary.
std::string make_payload(std::size_t size, bool binary) {
    std::string payload(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
        payload[i] = binary ? static_cast<char>((i * 7 + i / 251) & 0xff) : static_cast<char>(' ' + (i * 7 + i / 95) % 95);
    return payload;
}

void print_message(const wsx::message& m) {
    if (m.text) {
        std::printf("< %s\n", m.data.c_str());
    } else {
        std::printf("< (binary %zu bytes)", m.data.size());
        for (std::size_t i = 0; i < m.data.size() && i < 16; ++i)
            std::printf(" %02x", static_cast<unsigned>(static_cast<unsigned char>(m.data[i])));
        std::printf("%s\n", m.data.size() > 16 ? " ..." : "");
    }
    std::fflush(stdout);
}

template <class Layer>
net::awaitable<int> scripted(wsx::async_stream<Layer>& ws, const settings& s) {
    const std::string payload = s.send ? *s.send : make_payload(*s.size, s.binary);
    wsx::message reply;
    wsx::net_error_code ec;
    for (std::size_t i = 0; i < s.count; ++i) {
        co_await ws.async_write(!s.binary, wsx::const_bytes(payload), net::redirect_error(net::use_awaitable, ec));
        if (!ec) co_await ws.async_read(reply, net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            std::fprintf(stderr, "client: message %zu: %s\n", i + 1, ec.message().c_str());
            co_return 1;
        }
        if (reply.text == s.binary || reply.data != payload) {
            std::fprintf(stderr, "client: message %zu: the echo differs (%s, %zu bytes)\n", i + 1,
                         reply.text ? "text" : "binary", reply.data.size());
            co_return 1;
        }
    }
    co_await ws.async_close(wsx::close_code::normal, net::redirect_error(net::use_awaitable, ec));
    if (ec) {
        std::fprintf(stderr, "client: close: %s\n", ec.message().c_str());
        co_return 1;
    }
    std::printf("%zu messages of %zu bytes echoed\n", s.count, payload.size());
    co_return 0;
}

// Lines from stdin, read on their own thread and handed to the stream's
// executor.
template <class Layer>
void read_stdin(std::shared_ptr<wsx::async_stream<Layer>> ws) {
    std::thread([ws] {
        std::string line;
        while (std::getline(std::cin, line)) {
            net::post(ws->get_executor(), [ws, line] {
                if (line == "/ping") {
                    ws->async_ping({}, net::detached);
                } else if (line.rfind("/close", 0) == 0) {
                    std::string_view rest = std::string_view(line).substr(6);
                    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
                    unsigned code = 1000;
                    const auto parsed = std::from_chars(rest.data(), rest.data() + rest.size(), code);
                    rest = rest.substr(static_cast<std::size_t>(parsed.ptr - rest.data()));
                    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
                    ws->async_close(static_cast<wsx::close_code>(code), rest, net::detached);
                } else {
                    auto text = std::make_shared<std::string>(line);
                    ws->async_write_text(*text, [text](const wsx::net_error_code& ec) {
                        if (ec) std::fprintf(stderr, "client: send: %s\n", ec.message().c_str());
                    });
                }
            });
        }
        net::post(ws->get_executor(),
                  [ws] { ws->async_close(wsx::close_code::normal, net::detached); });
    }).detach();
}

template <class Layer>
net::awaitable<int> interactive(std::shared_ptr<wsx::async_stream<Layer>> ws) {
    ws->set_control_callback([](wsx::event_type type, wsx::const_bytes payload) {
        if (type == wsx::event_type::pong) std::printf("< (pong %zu bytes)\n", payload.size());
        std::fflush(stdout);
    });
    read_stdin(ws);
    wsx::message m;
    wsx::net_error_code ec;
    for (;;) {
        co_await ws->async_read(m, net::redirect_error(net::use_awaitable, ec));
        if (ec) break;
        print_message(m);
    }
    const wsx::close_status& status = ws->get_close_status();
    std::printf("closed %u%s%s\n", static_cast<unsigned>(status.code), status.reason.empty() ? "" : " ",
                status.reason.c_str());
    std::fflush(stdout);
    co_return status.ec && status.ec != wsx::error::connection_closed ? 1 : 0;
}

template <class Layer>
net::awaitable<int> run(std::shared_ptr<wsx::async_stream<Layer>> ws, const wsx::uri& where, const settings& s) {
    wsx::connection_options options;
    options.max_message_size = options.max_frame_size = std::max<std::size_t>(64 * 1024 * 1024, s.size.value_or(0));
    options.fragment_size = s.fragment;
    if (s.deflate) options.deflate.emplace();
    ws->set_options(options);

    wsx::net_error_code ec;
    tcp::resolver resolver(ws->get_executor());
    const auto endpoints = co_await resolver.async_resolve(where.host, std::to_string(where.port),
                                                           net::redirect_error(net::use_awaitable, ec));
    if (!ec) co_await net::async_connect(ws->next_layer().lowest_layer(), endpoints,
                                          net::redirect_error(net::use_awaitable, ec));
    if (ec) {
        std::fprintf(stderr, "client: cannot connect to %s:%u: %s\n", where.host.c_str(), where.port,
                     ec.message().c_str());
        co_return 1;
    }
    if constexpr (!std::is_same_v<Layer, tcp::socket>) {
        // SNI and the name the certificate must carry.
        if (where.host_kind == wsx::uri_host_kind::name)
            SSL_set_tlsext_host_name(ws->next_layer().native_handle(), where.host.c_str());
        ws->next_layer().set_verify_callback(net::ssl::host_name_verification(where.host));
        co_await ws->next_layer().async_handshake(net::ssl::stream_base::client,
                                                  net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            std::fprintf(stderr, "client: TLS handshake failed: %s\n", ec.message().c_str());
            co_return 1;
        }
    }
    co_await ws->async_handshake(where, net::redirect_error(net::use_awaitable, ec));
    if (ec) {
        std::fprintf(stderr, "client: handshake failed: %s\n", ec.message().c_str());
        if (wsx::connection* c = ws->connection(); c && c->response().http.status != 0)
            std::fprintf(stderr, "client: the server answered %d\n", c->response().http.status);
        co_return 1;
    }
    std::fprintf(stderr, "connected to %s%s\n", s.uri_text.c_str(),
                 ws->deflate_enabled() ? " (permessage-deflate)" : "");
    if (s.expect_deflate && *s.expect_deflate != ws->deflate_enabled()) {
        std::fprintf(stderr, "client: permessage-deflate was %s\n", ws->deflate_enabled() ? "agreed" : "not agreed");
        co_return 1;
    }
    if (s.scripted()) co_return co_await scripted(*ws, s);
    co_return co_await interactive(ws);
}

} // namespace

int main(int argc, char** argv) {
    const settings s = parse_arguments(argc, argv);
    std::error_code uri_error;
    const wsx::uri where = wsx::parse_uri(s.uri_text, uri_error);
    if (uri_error) example::usage(client_usage, "not a ws:// or wss:// URI");

    int status = 1;
    try {
        net::io_context io;
        const auto done = [&](std::exception_ptr e, int result) {
            if (e) std::rethrow_exception(e);
            status = result;
            io.stop();
        };
        std::unique_ptr<net::ssl::context> tls;
        if (where.secure) {
            tls = std::make_unique<net::ssl::context>(net::ssl::context::tls_client);
            if (s.ca_file.empty()) tls->set_default_verify_paths();
            else tls->load_verify_file(s.ca_file);
            tls->set_verify_mode(net::ssl::verify_peer);
            using layer = net::ssl::stream<tcp::socket>;
            auto ws = std::make_shared<wsx::async_stream<layer>>(io, *tls);
            net::co_spawn(io, run(ws, where, s), done);
        } else {
            auto ws = std::make_shared<wsx::async_stream<tcp::socket>>(io);
            net::co_spawn(io, run(ws, where, s), done);
        }
        // Scripted runs are bounded, so a test cannot hang on them.
        net::steady_timer limit(io);
        if (s.scripted()) {
            limit.expires_after(std::chrono::seconds(s.timeout_seconds));
            limit.async_wait([&](const wsx::net_error_code& ec) {
                if (ec) return;
                std::fprintf(stderr, "client: timed out after %u s\n", s.timeout_seconds);
                status = 3;
                io.stop();
            });
        }
        io.run();
        // The stdin thread may still be blocked reading: leave without
        // waiting for it (or destroying what it may still use).
        std::fflush(stdout);
        std::_Exit(status);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "client: %s\n", e.what());
        status = 1;
    }
    return status;
}
