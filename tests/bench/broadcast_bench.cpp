// Fan-out: one 100-byte message to N connections of a wsx::serve() server,
// timed until the last client has it, with wsx::broadcast_text() (framed
// once, queued on each connection without waiting) beside a loop of
// individual sends (co_await ws.send_text() on each connection in turn).
//
//   wsx_bench_broadcast [--connections 10000] [--rounds 20] [--size 100] [--deflate]
//
// The server runs in a child process on one thread. The parent holds the
// clients (one thread) and a control connection: it sends "broadcast" or
// "loop" on it and times until every client received the message. Prints
// the median and best of the rounds for each way.
#include <wsx/asio/broadcast.hpp>
#include <wsx/asio/client.hpp>
#include <wsx/asio/server.hpp>

#include "bench_support.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace net = wsx::net;
using namespace std::chrono_literals;

namespace {

struct settings {
    std::size_t connections = 10000;
    std::size_t rounds = 20;
    std::size_t size = 100;
    bool deflate = false;
};

settings parse_arguments(int argc, char** argv) {
    settings s;
    const char* usage = "wsx_bench_broadcast [--connections N] [--rounds N] [--size BYTES] [--deflate]";
    wsx::bench::parse_command_line(argc, argv, usage, {{"--deflate", s.deflate}},
                                   {{"--connections", s.connections}, {"--rounds", s.rounds}, {"--size", s.size}});
    return s;
}

[[noreturn]] void run_server(const settings& s, int port_pipe) {
    std::vector<wsx::websocket> room;
    const std::string payload(s.size, 'b');
    wsx::server_options options;
    options.backlog = 4096;
    options.connection.ping_interval = wsx::duration(0);
    if (s.deflate) {
        options.connection.deflate.emplace();
        options.connection.deflate->server_no_context_takeover = true;
    }
    auto handler = [&](wsx::websocket ws) -> net::awaitable<void> {
        if (ws.path() != "/control") {
            room.push_back(ws);
            while (co_await ws.receive()) {
            }
            co_return;
        }
        while (auto command = co_await ws.receive()) {
            if (command->data == "broadcast") {
                wsx::broadcast_text(room, payload);
            } else {
                for (auto& member : room) co_await member.send_text(payload);
            }
        }
    };
    wsx::server server = wsx::serve(handler, "127.0.0.1", 0, options);
    wsx::bench::serve_until_terminated(server, port_pipe);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

void run_clients(std::uint16_t port, const settings& s) {
    net::io_context io;
    std::vector<wsx::websocket> clients;
    wsx::websocket control;
    std::size_t received = 0;
    std::size_t expected = 0;
    std::chrono::steady_clock::time_point started, last;
    std::vector<double> broadcast_ms, loop_ms;

    net::co_spawn(io, [&]() -> net::awaitable<void> {
        const std::string base = "ws://127.0.0.1:" + std::to_string(port);
        wsx::client_options options;
        options.connection.ping_interval = wsx::duration(0);
        if (s.deflate) options.connection.deflate.emplace();
        for (std::size_t i = 0; i < s.connections; ++i) clients.push_back(co_await wsx::connect(base + "/member", options));
        for (auto& ws : clients) {
            net::co_spawn(io, [&ws, &received, &expected, &last]() -> net::awaitable<void> {
                wsx::message m;
                while (co_await ws.receive(m)) {
                    if (++received == expected) last = std::chrono::steady_clock::now();
                }
            }, net::detached);
        }
        control = co_await wsx::connect(base + "/control");
        net::steady_timer pause(io);
        for (std::size_t round = 0; round < 2 * s.rounds + 2; ++round) {
            const bool broadcast = round % 2 == 0;
            expected += s.connections;
            started = std::chrono::steady_clock::now();
            co_await control.send_text(broadcast ? "broadcast" : "loop");
            while (received < expected) {
                pause.expires_after(1ms);
                co_await pause.async_wait(net::use_awaitable);
            }
            const double ms = std::chrono::duration<double, std::milli>(last - started).count();
            if (round >= 2) (broadcast ? broadcast_ms : loop_ms).push_back(ms); // the first two warm up
        }
        co_await control.close();
        for (auto& ws : clients) ws.backend()->abort();
        io.stop();
    }, net::detached);
    io.run();

    std::printf("connections=%zu size=%zu deflate=%s rounds=%zu\n", s.connections, s.size, s.deflate ? "yes" : "no",
                s.rounds);
    std::printf("%-28s %10s %10s\n", "way", "median_ms", "best_ms");
    std::printf("%-28s %10.2f %10.2f\n", "broadcast_text (framed once)", median(broadcast_ms),
                *std::min_element(broadcast_ms.begin(), broadcast_ms.end()));
    std::printf("%-28s %10.2f %10.2f\n", "loop of co_await send_text", median(loop_ms),
                *std::min_element(loop_ms.begin(), loop_ms.end()));
}

} // namespace

int main(int argc, char** argv) {
    const settings s = parse_arguments(argc, argv);
    return wsx::bench::run_beside_child_server(
        [&](int port_pipe) { run_server(s, port_pipe); },
        [&](const wsx::bench::child_server& child) { run_clients(child.port, s); });
}
