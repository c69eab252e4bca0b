// echo_server - a WebSocket echo server on wsx::async_stream and C++20
// coroutines.
//
//   echo_server [--host 127.0.0.1] [--port 9001] [--threads N]
//               [--tls CERT KEY] [--no-deflate] [--max-size BYTES]
//               [--max-fragments N] [--max-connections N]
//               [--open-timeout MS] [--close-timeout MS]
//               [--ping-interval MS] [--ping-timeout MS] [--quiet]
//
// Limits (each maps onto wsx::connection_options, whose defaults it keeps
// unless given): --max-size is the largest message and frame (16 MiB unless
// given), --max-fragments the most frames in one message (close 1009 past
// it); --open-timeout, --close-timeout, --ping-interval and --ping-timeout
// are in milliseconds, 0 turning that timer off. --max-connections N counts
// open connections, handshakes in progress included, across all threads:
// beyond N a request is answered 503 Service Unavailable with Retry-After and
// closed (0, the default: no limit).
//
// Echoes every message with its type (text as text, binary as binary),
// fragmented or not; offers permessage-deflate unless --no-deflate. A browser
// that opens http://HOST:PORT/ (or https:// with --tls) gets a page that
// talks to the server over ws:// (or wss://); other plain requests get 404.
// Logs each connection's open and close to stderr (unless --quiet, as for a
// benchmark), prints "listening on HOST:PORT" to stdout once it accepts, and
// on SIGINT or SIGTERM closes every client with 1001 (going away) and exits 0.
#include <wsx/asio/async_stream.hpp>
#include <wsx/asio/ssl.hpp>

#include "example_options.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace net = wsx::net;
using tcp = net::ip::tcp;

namespace {

// The page served at "/": it opens a WebSocket back to the server it came
// from (wss:// when it was served over https://) and shows what goes each way.
constexpr std::string_view echo_page = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>wsx echo</title>
<style>
body { font-family: sans-serif; max-width: 40em; margin: 2em auto; }
#log { border: 1px solid #ccc; height: 20em; overflow-y: auto; padding: .5em; font-family: monospace; }
.sent { color: #036; } .received { color: #060; } .info { color: #777; }
</style>
</head>
<body>
<h1>wsx echo</h1>
<p id="status">connecting...</p>
<form id="form"><input id="text" size="50" autocomplete="off" autofocus> <button>Send</button></form>
<div id="log"></div>
<script>
const log = document.getElementById("log");
function show(kind, text) {
  const line = document.createElement("div");
  line.className = kind;
  line.textContent = (kind === "sent" ? "> " : kind === "received" ? "< " : "") + text;
  log.appendChild(line);
  log.scrollTop = log.scrollHeight;
}
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(scheme + "//" + location.host + "/");
ws.onopen = () => { document.getElementById("status").textContent = "connected to " + ws.url; };
ws.onmessage = (e) => show("received", typeof e.data === "string" ? e.data : "(binary)");
ws.onclose = (e) => { document.getElementById("status").textContent = "closed (" + e.code + ")"; show("info", "closed with code " + e.code); };
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  if (ws.readyState === WebSocket.OPEN) { ws.send(input.value); show("sent", input.value); }
  input.value = "";
};
</script>
</body>
</html>
)html";

struct settings {
    example::server_settings server{9001};
    std::string certificate;
    std::string key;
    bool deflate = true;
    std::size_t max_size = 16 * 1024 * 1024;
    std::size_t max_fragments = wsx::connection_options{}.max_fragments;
    std::size_t max_connections = 0; // 0: no limit
    bool quiet = false;               // no line per connection
    wsx::duration open_timeout = wsx::connection_options{}.open_timeout;
    wsx::duration close_timeout = wsx::connection_options{}.close_timeout;
    wsx::duration ping_interval = wsx::connection_options{}.ping_interval;
    wsx::duration ping_timeout = wsx::connection_options{}.ping_timeout;
};

constexpr example::usage_text echo_usage{
    "echo_server",
    "usage: echo_server [--host 127.0.0.1] [--port 9001] [--threads N] [--tls CERT KEY]\n"
    "                   [--no-deflate] [--max-size BYTES] [--max-fragments N]\n"
    "                   [--max-connections N] [--open-timeout MS] [--close-timeout MS]\n"
    "                   [--ping-interval MS] [--ping-timeout MS] [--quiet]\n"
    "(timeouts in milliseconds, 0 turns one off; --max-connections 0: no limit)\n",
    EXAMPLE_SERVER_OPTIONS("9001")
    "  --tls CERT KEY     serve wss:// (and the page over https://) with these PEM files\n"
    "  --no-deflate       do not accept permessage-deflate\n"
    "  --max-size BYTES   the largest message (and frame) taken; default 16777216\n"
    "  --max-fragments N  the most frames one message may have; default 100000\n"
    "  --max-connections N  beyond N open connections a client gets 503; default 0 (no limit)\n"
    "  --open-timeout MS  time for the opening handshake; default 10000\n"
    "  --close-timeout MS time for the closing handshake; default 10000\n"
    "  --ping-interval MS a keepalive ping after this long without a frame; default 20000\n"
    "  --ping-timeout MS  close with 1011 when the ping gets no answer in time; default 20000\n"
    "  --quiet            no line per connection on standard error\n"
    "  --help             this text\n"};

settings parse_arguments(int argc, char** argv) {
    settings s;
    for (example::arguments args(argc, argv, echo_usage); args.next();) {
        if (args.server_option(s.server)) continue;
        const std::string_view arg = args.current();
        if (arg == "--no-deflate") s.deflate = false;
        else if (arg == "--quiet") s.quiet = true;
        else if (arg == "--max-size") s.max_size = args.number<std::size_t>(1, std::size_t(1) << 40);
        else if (arg == "--max-fragments") s.max_fragments = args.number<std::size_t>(1, std::size_t(1) << 40);
        else if (arg == "--max-connections") s.max_connections = args.number<std::size_t>(0, 1000000000);
        else if (arg == "--open-timeout") s.open_timeout = args.milliseconds();
        else if (arg == "--close-timeout") s.close_timeout = args.milliseconds();
        else if (arg == "--ping-interval") s.ping_interval = args.milliseconds();
        else if (arg == "--ping-timeout") s.ping_timeout = args.milliseconds();
        else if (arg == "--tls") {
            s.certificate = std::string(args.value());
            s.key = std::string(args.value());
        } else args.unknown_option();
    }
    return s;
}

// Every open session, so that a signal can close them all.
class session_registry {
public:
    std::uint64_t add(std::function<void()> close) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (closing_) {
            close();
            return 0;
        }
        sessions_.emplace(++next_id_, std::move(close));
        return next_id_;
    }
    void remove(std::uint64_t id) {
        std::lock_guard<std::mutex> lock(mutex_);
        sessions_.erase(id);
    }
    void close_all() {
        std::lock_guard<std::mutex> lock(mutex_);
        closing_ = true;
        for (auto& entry : sessions_) entry.second();
    }

private:
    std::mutex mutex_;
    std::map<std::uint64_t, std::function<void()>> sessions_;
    std::uint64_t next_id_ = 0;
    bool closing_ = false;
};

// Counts connections (a handshake in progress is one) for --max-connections;
// the io_context may run on several threads, so the counts are atomic.
struct connection_counter {
    std::size_t limit = 0; // 0: no limit
    std::atomic<std::size_t> open{0};
    std::atomic<std::size_t> refusing{0};
};

// One connection's place in the count, held while it lives. Over the limit it
// is counted apart, among the refusals, which are bounded too: past as many
// again (at least 16) the connection is dropped without an answer, so a flood
// cannot hold a coroutine per socket until the open timeout.
class admission {
public:
    explicit admission(connection_counter& counter) : counter_(counter) {
        const std::size_t before = counter_.open.fetch_add(1);
        over_limit_ = counter_.limit > 0 && before >= counter_.limit;
        if (over_limit_) {
            counter_.open.fetch_sub(1);
            refusals_ = counter_.refusing.fetch_add(1) + 1;
        }
    }
    admission(const admission&) = delete;
    admission& operator=(const admission&) = delete;
    ~admission() {
        if (over_limit_) counter_.refusing.fetch_sub(1);
        else counter_.open.fetch_sub(1);
    }
    bool over_limit() const noexcept { return over_limit_; }
    bool answer() const noexcept { return !over_limit_ || refusals_ <= std::max<std::size_t>(counter_.limit, 16); }

private:
    connection_counter& counter_;
    bool over_limit_ = false;
    std::size_t refusals_ = 0;
};

// RFC 9110 §15.6.4 and §10.2.3: 503 with Retry-After (seconds) for a client
// that should come back later.
wsx::http_reply service_unavailable() {
    wsx::http_reply reply;
    reply.status = 503;
    reply.body = "too many connections\n";
    reply.headers.push_back({"Retry-After", "1"});
    return reply;
}

wsx::http_reply answer_plain_request(const wsx::server_request& request) {
    std::string_view target = request.http.target;
    target = target.substr(0, target.find('?'));
    wsx::http_reply reply;
    if (request.http.method == "GET" && target == "/") {
        reply.status = 200;
        reply.body = std::string(echo_page);
        reply.headers.push_back({"Content-Type", "text/html; charset=utf-8"});
        reply.headers.push_back({"Cache-Control", "no-store"});
    } else {
        reply.status = 404;
        reply.body = "not found\n";
    }
    return reply;
}

template <class Layer>
net::awaitable<void> echo(std::shared_ptr<wsx::async_stream<Layer>> ws, const settings& s,
                          session_registry& registry, std::string peer, bool over_limit) {
    wsx::connection_options options;
    options.max_message_size = s.max_size;
    options.max_frame_size = s.max_size;
    options.max_fragments = s.max_fragments;
    options.open_timeout = s.open_timeout;
    options.close_timeout = s.close_timeout;
    options.ping_interval = s.ping_interval;
    options.ping_timeout = s.ping_timeout;
    if (s.deflate) options.deflate.emplace();
    ws->set_options(options);
    if (over_limit) {
        ws->set_upgrade_handler([](const wsx::server_request&, wsx::accept_options&) -> std::optional<wsx::http_reply> {
            return service_unavailable();
        });
    }
    ws->set_http_handler([&peer, &s, over_limit](const wsx::server_request& request) {
        wsx::http_reply reply = over_limit ? service_unavailable() : answer_plain_request(request);
        if (!s.quiet)
            std::fprintf(stderr, "%s http %.*s %.*s -> %d\n", peer.c_str(), static_cast<int>(request.http.method.size()),
                     request.http.method.data(), static_cast<int>(request.http.target.size()),
                     request.http.target.data(), reply.status);
        return reply;
    });

    // Registered before the handshake, so that a shutdown also ends
    // connections that are still opening (they are dropped, not closed).
    const std::uint64_t id = registry.add([weak = std::weak_ptr<wsx::async_stream<Layer>>(ws)] {
        if (auto stream = weak.lock()) {
            net::post(stream->get_executor(), [stream] {
                if (stream->is_open())
                    stream->async_close(wsx::close_code::going_away, "server shutting down", net::detached);
                else
                    stream->abort();
            });
        }
    });
    wsx::net_error_code ec;
    ec = co_await ws->co_accept();
    if (ec) {
        registry.remove(id);
        if (s.quiet) co_return;
        if (over_limit) std::fprintf(stderr, "%s refused: too many connections (503)\n", peer.c_str());
        else if (wsx::to_std_error(ec) != wsx::error::handshake_rejected)
            std::fprintf(stderr, "%s refused: %s\n", peer.c_str(), ec.message().c_str());
        co_return;
    }
    if (!s.quiet) {
        const std::string path(ws->connection()->request().path);
        std::fprintf(stderr, "%s open %s%s\n", peer.c_str(), path.c_str(),
                     ws->deflate_enabled() ? " (permessage-deflate)" : "");
    }

    // The coroutine forms of async_read and async_write: they run inside
    // this coroutine instead of spawning one per operation.
    wsx::message message;
    for (;;) {
        ec = co_await ws->co_read(message);
        if (ec) break;
        ec = co_await ws->co_write(message.text, message.bytes());
        if (ec) break;
    }
    registry.remove(id);
    if (s.quiet) co_return;
    const wsx::close_status& status = ws->get_close_status();
    std::string why;
    if (!status.reason.empty()) why += " " + status.reason;
    if (status.ec && status.ec != wsx::error::connection_closed) why += " (" + status.ec.message() + ")";
    std::fprintf(stderr, "%s close %u%s\n", peer.c_str(), static_cast<unsigned>(status.code), why.c_str());
}

net::awaitable<void> serve_plain(tcp::socket socket, const settings& s, session_registry& registry,
                                 connection_counter& counter) {
    const admission admitted(counter);
    if (!admitted.answer()) co_return; // the socket closes unanswered
    wsx::net_error_code ec;
    const std::string peer = s.quiet ? std::string() : example::endpoint_text(socket.remote_endpoint(ec));
    auto ws = std::make_shared<wsx::async_stream<tcp::socket>>(std::move(socket));
    co_await echo(ws, s, registry, peer, admitted.over_limit());
}

net::awaitable<void> serve_tls(tcp::socket socket, net::ssl::context& tls, const settings& s,
                               session_registry& registry, connection_counter& counter) {
    const admission admitted(counter);
    if (!admitted.answer()) co_return;
    wsx::net_error_code ec;
    const std::string peer = s.quiet ? std::string() : example::endpoint_text(socket.remote_endpoint(ec));
    using layer = net::ssl::stream<tcp::socket>;
    auto ws = std::make_shared<wsx::async_stream<layer>>(std::move(socket), tls);
    // The TLS handshake gets the same bound as the WebSocket one.
    net::steady_timer guard(ws->get_executor());
    if (s.open_timeout.count() > 0) {
        guard.expires_after(s.open_timeout);
        guard.async_wait([ws](const wsx::net_error_code& error) {
            if (!error) ws->next_layer().lowest_layer().close();
        });
    }
    co_await ws->next_layer().async_handshake(net::ssl::stream_base::server,
                                              net::redirect_error(net::use_awaitable, ec));
    guard.cancel();
    if (ec) {
        if (!s.quiet) std::fprintf(stderr, "%s TLS handshake failed: %s\n", peer.c_str(), ec.message().c_str());
        co_return;
    }
    co_await echo(ws, s, registry, peer, admitted.over_limit());
}

net::awaitable<void> accept_loop(tcp::acceptor& acceptor, net::ssl::context* tls, const settings& s,
                                 session_registry& registry, connection_counter& counter) {
    for (;;) {
        // With several threads each connection gets a strand, so that its
        // operations never run at once; one thread needs none.
        tcp::socket socket(s.server.threads > 1 ? net::any_io_executor(net::make_strand(acceptor.get_executor()))
                                         : acceptor.get_executor());
        wsx::net_error_code ec;
        co_await acceptor.async_accept(socket, net::redirect_error(net::use_awaitable, ec));
        if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
        if (ec) continue; // e.g. too many open files: try the next one
        const auto executor = socket.get_executor();
        if (tls != nullptr)
            net::co_spawn(executor, serve_tls(std::move(socket), *tls, s, registry, counter), net::detached);
        else net::co_spawn(executor, serve_plain(std::move(socket), s, registry, counter), net::detached);
    }
}

} // namespace

int main(int argc, char** argv) {
    const settings s = parse_arguments(argc, argv);
    try {
        net::io_context io(static_cast<int>(s.server.threads));

        std::unique_ptr<net::ssl::context> tls;
        if (!s.certificate.empty()) {
            tls = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
            tls->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                             net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                             net::ssl::context::no_tlsv1_1);
            tls->use_certificate_chain_file(s.certificate);
            tls->use_private_key_file(s.key, net::ssl::context::pem);
        }

        // A name ("localhost") listens on each of its addresses.
        std::vector<tcp::acceptor> acceptors = wsx::open_acceptors(io.get_executor(), s.server.host, s.server.port);

        session_registry registry;
        connection_counter counter;
        counter.limit = s.max_connections;
        net::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&](const wsx::net_error_code& ec, int) {
            if (ec) return;
            std::fprintf(stderr, "shutting down\n");
            wsx::net_error_code ignored;
            for (tcp::acceptor& acceptor : acceptors) acceptor.close(ignored);
            registry.close_all();
        });

        for (tcp::acceptor& acceptor : acceptors)
            net::co_spawn(io, accept_loop(acceptor, tls.get(), s, registry, counter), net::detached);

        example::print_listening(acceptors.front().local_endpoint());

        std::vector<std::thread> threads;
        for (unsigned i = 1; i < s.server.threads; ++i) threads.emplace_back([&io] { io.run(); });
        io.run();
        for (std::thread& t : threads) t.join();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "echo_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
