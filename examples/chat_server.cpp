// chat_server - chat rooms on wsx::serve() and wsx::broadcast().
//
//   chat_server [--host 127.0.0.1] [--port 8765] [--threads N]
//               [--origin URL]... [--max-connections N]
//               [--rate MESSAGES_PER_SECOND] [--burst N]
//
// A client joins the room named by its path, ws://HOST:PORT/chat/<room>;
// every text message it sends goes to everyone in that room (itself too),
// and the room hears "* joined" and "* left" notices. Each connection may
// send --rate messages a second on average, in bursts of up to --burst (a
// token bucket); beyond that it is closed with 1008. With --origin only
// those origins are let in (others, and clients that send no Origin, get
// 403); beyond
// --max-connections a client gets 503 with Retry-After. GET /health answers
// 200; other paths 404. Logs to stderr; SIGINT or SIGTERM closes every
// client with 1001 and exits 0.
#include <wsx/asio/broadcast.hpp>
#include <wsx/asio/server.hpp>

#include "example_options.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace net = wsx::net;

namespace {

struct settings {
    example::server_settings server{8765};
    std::vector<std::string> origins;
    std::size_t max_connections = 10000;
    double rate = 10;   // messages per second, on average
    double burst = 20;  // messages at once
};

constexpr example::usage_text chat_usage{
    "chat_server",
    "usage: chat_server [--host 127.0.0.1] [--port 8765] [--threads N] [--origin URL]...\n"
    "                   [--max-connections N] [--rate MESSAGES_PER_SECOND] [--burst N]\n",
    EXAMPLE_SERVER_OPTIONS("8765")
    "  --origin URL       let in only browsers from this origin (repeat for more); clients\n"
    "                     without an Origin are refused then too\n"
    "  --max-connections N  beyond N open connections a client gets 503; default 10000\n"
    "  --rate N           messages a second a connection may send on average; default 10\n"
    "  --burst N          messages it may send at once; default 20 (beyond: closed with 1008)\n"
    "  --help             this text\n"};

settings parse_arguments(int argc, char** argv) {
    settings s;
    for (example::arguments args(argc, argv, chat_usage); args.next();) {
        if (args.server_option(s.server)) continue;
        const std::string_view arg = args.current();
        if (arg == "--origin") s.origins.emplace_back(args.value());
        else if (arg == "--max-connections") s.max_connections = args.number<std::size_t>(1, 1000000);
        else if (arg == "--rate") s.rate = args.number<unsigned>(1, 1000000);
        else if (arg == "--burst") s.burst = args.number<unsigned>(1, 1000000);
        else args.unknown_option();
    }
    return s;
}

// A token bucket: `rate` tokens a second, at most `capacity` saved up.
class token_bucket {
public:
    token_bucket(double rate, double capacity)
        : rate_(rate), capacity_(capacity), tokens_(capacity), last_(std::chrono::steady_clock::now()) {}

    bool take() {
        const auto now = std::chrono::steady_clock::now();
        tokens_ = std::min(capacity_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
        last_ = now;
        if (tokens_ < 1) return false;
        tokens_ -= 1;
        return true;
    }

private:
    double rate_;
    double capacity_;
    double tokens_;
    std::chrono::steady_clock::time_point last_;
};

// The rooms, shared by the server's threads.
class rooms {
public:
    // Joins and returns who is in the room now (to tell them).
    std::set<wsx::websocket> join(const std::string& room, const wsx::websocket& ws) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto& members = rooms_[room];
        members.insert(ws);
        return members;
    }
    std::set<wsx::websocket> leave(const std::string& room, const wsx::websocket& ws) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = rooms_.find(room);
        if (it == rooms_.end()) return {};
        it->second.erase(ws);
        std::set<wsx::websocket> left = it->second;
        if (it->second.empty()) rooms_.erase(it);
        return left;
    }
    std::set<wsx::websocket> members(const std::string& room) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = rooms_.find(room);
        return it == rooms_.end() ? std::set<wsx::websocket>() : it->second;
    }

private:
    std::mutex mutex_;
    std::map<std::string, std::set<wsx::websocket>> rooms_;
};

constexpr std::string_view room_prefix = "/chat/";

} // namespace

int main(int argc, char** argv) {
    const settings s = parse_arguments(argc, argv);
    rooms all_rooms;

    auto chat = [&](wsx::websocket ws) -> net::awaitable<void> {
        const std::string room(ws.path().substr(room_prefix.size()));
        const std::string who = example::endpoint_text(ws.remote_endpoint());
        wsx::broadcast_text(all_rooms.join(room, ws), "* " + who + " joined " + room);
        token_bucket bucket(s.rate, s.burst);
        try {
            while (auto message = co_await ws.receive()) {
                if (!bucket.take()) {
                    co_await ws.close(wsx::close_code::policy_violation, "rate limit exceeded");
                    break;
                }
                if (!message->text) continue; // a chat of text
                wsx::broadcast_text(all_rooms.members(room), who + ": " + message->data);
            }
        } catch (const wsx::connection_closed&) {
            // A client that went away without closing, or a protocol error.
        }
        wsx::broadcast_text(all_rooms.leave(room, ws), "* " + who + " left");
    };

    wsx::server_options options;
    options.threads = s.server.threads;
    options.max_connections = s.max_connections;
    options.connection.origins.allowed = s.origins;
    options.connection.max_message_size = 64 * 1024;
    options.connection.max_frame_size = 64 * 1024;
    options.connection.deflate.emplace();
    options.log = wsx::stderr_logger();
    options.process_request = [](const wsx::server_request& request,
                                 wsx::accept_options&) -> std::optional<wsx::http_reply> {
        const std::string_view target = request.http.target;
        if (target == "/health") return wsx::http_reply{200, "OK\n", {}};
        const std::string_view path = target.substr(0, target.find('?'));
        if (path.size() <= room_prefix.size() || path.substr(0, room_prefix.size()) != room_prefix)
            return wsx::http_reply{404, "rooms are at /chat/<name>\n", {}};
        return std::nullopt;
    };

    try {
        wsx::server server = wsx::serve(chat, s.server.host, s.server.port, options);
        example::print_listening(server.local_endpoint());
        net::signal_set signals(server.get_executor(), SIGINT, SIGTERM);
        signals.async_wait([&](const wsx::net_error_code& ec, int) {
            if (!ec) server.stop();
        });
        server.wait();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "chat_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
