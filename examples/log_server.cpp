// log_server - a live data feed: pushes a line a second to every client.
//
//   log_server [--host 127.0.0.1] [--port 8766] [--threads N] [--interval-ms 1000]
//
// Clients connect to ws://HOST:PORT/ (any path) and receive one text line
// per interval ("tick N at <time since start> ms, C clients"); what they send
// is ignored. The line is framed once and queued on every connection
// (wsx::broadcast_text); a client that does not keep up - its send queue
// above 64 KiB - misses lines rather than holding memory. Logs to stderr;
// SIGINT or SIGTERM closes every client with 1001 and exits 0.
#include <wsx/asio/broadcast.hpp>
#include <wsx/asio/server.hpp>

#include "example_options.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

namespace net = wsx::net;

namespace {

struct settings {
    example::server_settings server{8766};
    unsigned interval_ms = 1000;
};

constexpr example::usage_text log_usage{
    "log_server",
    "usage: log_server [--host 127.0.0.1] [--port 8766] [--threads N] [--interval-ms 1000]\n",
    EXAMPLE_SERVER_OPTIONS("8766")
    "  --interval-ms MS   time between two log lines sent to every subscriber; default 1000\n"
    "  --help             this text\n"};

settings parse_arguments(int argc, char** argv) {
    settings s;
    for (example::arguments args(argc, argv, log_usage); args.next();) {
        if (args.server_option(s.server)) continue;
        const std::string_view arg = args.current();
        if (arg == "--interval-ms") s.interval_ms = args.number<unsigned>(1, 3600000);
        else args.unknown_option();
    }
    return s;
}

// The subscribers, shared by the server's threads.
class subscribers {
public:
    void add(const wsx::websocket& ws) {
        std::lock_guard<std::mutex> lock(mutex_);
        all_.insert(ws);
    }
    void remove(const wsx::websocket& ws) {
        std::lock_guard<std::mutex> lock(mutex_);
        all_.erase(ws);
    }
    std::set<wsx::websocket> snapshot() {
        std::lock_guard<std::mutex> lock(mutex_);
        return all_;
    }

private:
    std::mutex mutex_;
    std::set<wsx::websocket> all_;
};

// Every interval, one line to everyone, until `stopping` (then the timer
// is cancelled on its strand).
net::awaitable<void> publish(subscribers& feed, net::steady_timer& timer, std::chrono::milliseconds interval,
                             const std::atomic<bool>& stopping) {
    const auto start = std::chrono::steady_clock::now();
    wsx::broadcast_options policy;
    policy.high_water_mark = 64 * 1024;
    for (std::uint64_t tick = 1;; ++tick) {
        timer.expires_at(start + tick * interval);
        wsx::net_error_code ec;
        co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        if (ec || stopping) co_return;
        const auto clients = feed.snapshot();
        const auto since = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
        wsx::broadcast_text(clients, "tick " + std::to_string(tick) + " at " + std::to_string(since.count()) + " ms, " +
                                         std::to_string(clients.size()) + " clients",
                            policy);
    }
}

} // namespace

int main(int argc, char** argv) {
    const settings s = parse_arguments(argc, argv);
    subscribers feed;

    auto subscriber = [&](wsx::websocket ws) -> net::awaitable<void> {
        feed.add(ws);
        try {
            // Reading keeps the connection healthy: pongs, the closing handshake.
            while (co_await ws.receive()) {
            }
        } catch (const wsx::connection_closed&) {
        }
        feed.remove(ws);
    };

    wsx::server_options options;
    options.threads = s.server.threads;
    options.log = wsx::stderr_logger();
    try {
        wsx::server server = wsx::serve(subscriber, s.server.host, s.server.port, options);
        example::print_listening(server.local_endpoint());
        // The publisher has a strand of its own: the signal handler, on any
        // of the server's threads, reaches its timer through it.
        const auto publisher = net::make_strand(server.get_executor());
        net::steady_timer timer(publisher);
        std::atomic<bool> stopping{false};
        net::co_spawn(publisher, publish(feed, timer, std::chrono::milliseconds(s.interval_ms), stopping),
                      net::detached);
        net::signal_set signals(server.get_executor(), SIGINT, SIGTERM);
        signals.async_wait([&](const wsx::net_error_code& ec, int) {
            if (ec) return;
            stopping = true;
            net::post(publisher, [&timer] { timer.cancel(); });
            server.stop();
        });
        server.wait();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "log_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
