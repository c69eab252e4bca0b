// Memory per idle connection of a wsx::serve() server, measured as the
// growth of the server process's resident set (VmRSS in /proc/PID/status)
// while N clients connect, finish the handshake and then stay idle.
//
//   wsx_bench_idle_memory [--connections 10000] [--deflate] [--threads 1] [--message-size 5] [--callbacks]
//
// Each connection exchanges one message of --message-size bytes first (at
// 64 bytes or more it is compressed with --deflate, so the connection then
// keeps its zlib streams).
//
// The server runs in a child process (so the clients' memory is not
// counted): an echo handler waiting in receive(), or with --callbacks an
// echo through wsx::message_handler (no coroutine per connection). The parent raises
// RLIMIT_NOFILE, opens the connections over 127.0.0.1, waits for the server
// to settle and reads its VmRSS before and after. Prints one line:
//   connections=10000 deflate=no rss_before_kib=... rss_after_kib=... bytes_per_connection=...
#include <wsx/asio/client.hpp>
#include <wsx/asio/server.hpp>

#include "bench_support.hpp"

#include <sys/types.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace net = wsx::net;
using namespace std::chrono_literals;

namespace {

struct settings {
    std::size_t connections = 10000;
    bool deflate = false;
    std::size_t threads = 1;
    std::size_t message_size = 5;
    bool callbacks = false;
};

settings parse_arguments(int argc, char** argv) {
    settings s;
    const char* usage =
        "wsx_bench_idle_memory [--connections N] [--deflate] [--threads N] [--message-size N] [--callbacks]";
    wsx::bench::parse_command_line(
        argc, argv, usage, {{"--deflate", s.deflate}, {"--callbacks", s.callbacks}},
        {{"--connections", s.connections}, {"--threads", s.threads}, {"--message-size", s.message_size}});
    return s;
}

long rss_kib(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    }
    return -1;
}

[[noreturn]] void run_server(const settings& s, int port_pipe) {
    wsx::server_options options;
    options.threads = static_cast<unsigned>(s.threads);
    options.backlog = 4096;
    if (s.deflate) options.connection.deflate.emplace();
    if (s.callbacks) {
        wsx::message_handler echo;
        echo.on_message = [](wsx::websocket& ws, wsx::message& m) {
            (void)(m.text ? ws.try_send_text(m.view()) : ws.try_send_binary(m.bytes()));
        };
        wsx::server server = wsx::serve(echo, "127.0.0.1", 0, options);
        wsx::bench::serve_until_terminated(server, port_pipe);
    }
    auto idle = [](wsx::websocket ws) -> net::awaitable<void> {
        while (auto message = co_await ws.receive()) co_await ws.send(*message);
    };
    wsx::server server = wsx::serve(idle, "127.0.0.1", 0, options);
    wsx::bench::serve_until_terminated(server, port_pipe);
}

// Opens `count` connections, at most `in_flight` handshakes at a time.
net::awaitable<void> open_all(std::uint16_t port, std::size_t count, bool deflate, std::vector<wsx::websocket>& out,
                              std::size_t& failures) {
    const std::string uri = "ws://127.0.0.1:" + std::to_string(port) + "/idle";
    wsx::client_options options;
    options.connection.ping_interval = wsx::duration(0); // idle means idle: no keepalive traffic
    if (deflate) options.connection.deflate.emplace();
    std::error_code ec;
    for (std::size_t i = 0; i < count; ++i) {
        wsx::websocket ws = co_await wsx::connect(uri, options, ec);
        if (ec) ++failures;
        else out.push_back(std::move(ws));
    }
}

// Runs `work` on io until it is done (the clients' timers keep io busy forever).
template <class Work>
void run_until_done(net::io_context& io, Work work) {
    bool done = false;
    net::co_spawn(io, std::move(work), [&](std::exception_ptr e) {
        done = true;
        if (e) std::rethrow_exception(e);
    });
    while (!done) io.run_one();
}

void measure(std::uint16_t port, pid_t server, const settings& s, std::size_t warm_up) {
    net::io_context io;
    std::vector<wsx::websocket> clients;
    std::size_t failures = 0;
    // A few connections first, so that what every server allocates once
    // (thread pools, the buffer pool, first-use tables) is not counted.
    run_until_done(io, open_all(port, warm_up, s.deflate, clients, failures));
    // Exchange one message on each, so buffers were used and given back.
    run_until_done(io, [&]() -> net::awaitable<void> {
        for (auto& ws : clients) {
            co_await ws.send_text("warm");
            co_await ws.receive();
        }
    });
    std::this_thread::sleep_for(500ms);
    const long before = rss_kib(server);

    const std::size_t first_new = clients.size();
    const auto start = std::chrono::steady_clock::now();
    run_until_done(io, open_all(port, s.connections, s.deflate, clients, failures));
    // One message each too: an idle connection that has worked holds no buffer.
    const std::string hello(s.message_size, 'h');
    run_until_done(io, [&]() -> net::awaitable<void> {
        for (std::size_t i = first_new; i < clients.size(); ++i) {
            co_await clients[i].send_text(hello);
            co_await clients[i].receive();
        }
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::this_thread::sleep_for(1000ms); // let the server settle
    const long after = rss_kib(server);
    const std::size_t opened = clients.size() - first_new;
    std::printf("connections=%zu handler=%s deflate=%s threads=%zu message=%zuB failures=%zu rss_before_kib=%ld "
                "rss_after_kib=%ld bytes_per_connection=%.0f (opened and exercised in %.1f s)\n",
                opened, s.callbacks ? "callbacks" : "coroutine", s.deflate ? "yes" : "no", s.threads, s.message_size,
                failures, before, after,
                opened > 0 ? (after - before) * 1024.0 / static_cast<double>(opened) : 0.0, seconds);
    std::fflush(stdout);
    for (auto& ws : clients) ws.backend()->abort();
    clients.clear();
    io.poll();
}

} // namespace

int main(int argc, char** argv) {
    const settings s = parse_arguments(argc, argv);
    return wsx::bench::run_beside_child_server(
        [&](int port_pipe) { run_server(s, port_pipe); },
        [&](const wsx::bench::child_server& child) { measure(child.port, child.pid, s, 16); });
}
