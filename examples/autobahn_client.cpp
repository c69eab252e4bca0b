// autobahn_client - the client that the Autobahn|Testsuite's fuzzingserver
// mode drives, written on the blocking wsx::stream.
//
//   autobahn_client [--agent NAME] [--no-deflate] ws://HOST:PORT
//
// Asks /getCaseCount, runs every case (/runCase?case=N&agent=NAME), echoing
// each message with its type, then asks for /updateReports?agent=NAME.
// permessage-deflate is offered unless --no-deflate; messages up to 16 MiB
// are allowed. Exits 0 once the reports are updated, 1 with a message on
// stderr when the suite cannot be reached, 2 for bad arguments.
#include <wsx/stream.hpp>
#include <wsx/tcp.hpp>
#include <wsx/uri.hpp>

#include <charconv>
#include <chrono>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>

namespace {

struct arguments {
    std::string agent = "wsx";
    bool deflate = true;
    std::string base; // ws://HOST:PORT
};

int usage(std::string_view why) {
    std::cerr << "autobahn_client: " << why << "\n"
              << "usage: autobahn_client [--agent NAME] [--no-deflate] ws://HOST:PORT\n";
    return 2;
}

// Connects to base + target and opens a WebSocket on it.
bool open(wsx::stream<wsx::tcp_socket>& ws, const arguments& args, const std::string& target,
          std::error_code& ec) {
    const wsx::uri where = wsx::parse_uri(args.base + target, ec);
    if (ec) return false;
    wsx::tcp_socket& socket = ws.next_layer();
    socket.connect(where.host, where.port, std::chrono::seconds(5), ec);
    if (!ec) socket.set_read_timeout(std::chrono::seconds(60), ec); // nothing hangs
    if (ec) return false;

    wsx::connection_options options;
    options.max_message_size = 16 * 1024 * 1024; // a message, after inflation
    options.max_frame_size = 16 * 1024 * 1024;   // and one frame of it
    options.ping_interval = std::chrono::milliseconds(0); // the suite pings; we only answer
    if (args.deflate) options.deflate.emplace();
    ws.set_options(options);
    ws.handshake(where, ec);
    return !ec;
}

// Echoes every message until the connection ends; true when it ended with
// a closing handshake (whatever its code).
bool echo_until_closed(wsx::stream<wsx::tcp_socket>& ws) {
    std::error_code ec;
    wsx::message m;
    for (;;) {
        ws.read(m, ec);
        if (!ec) m.text ? ws.write_text(m.data, ec) : ws.write_binary(m.data, ec);
        // Once the peer's close has been read, reads and writes both report
        // connection_closed; a write may also meet a peer that failed the
        // connection and left.
        if (ec) return ec == wsx::error::connection_closed;
    }
}

} // namespace

int main(int argc, char** argv) {
    arguments args;
    int i = 1;
    for (; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--agent" && i + 1 < argc) {
            args.agent = argv[++i];
        } else if (arg == "--no-deflate") {
            args.deflate = false;
        } else if (arg == "--help" || arg == "-h") {
            std::cout << "usage: autobahn_client [--agent NAME] [--no-deflate] ws://HOST:PORT\n\n"
                         "  ws://HOST:PORT the fuzzing server to run every case against\n"
                         "  --agent NAME   the name the reports are filed under (default wsx)\n"
                         "  --no-deflate   do not offer permessage-deflate\n";
            return 0;
        } else if (!arg.empty() && arg.front() == '-') {
            return usage("unknown option " + std::string(arg));
        } else {
            break;
        }
    }
    if (i + 1 != argc) return usage("give one ws://HOST:PORT");
    args.base = argv[i];
    while (!args.base.empty() && args.base.back() == '/') args.base.pop_back();

    std::error_code ec;
    int cases = 0;
    {
        wsx::stream<wsx::tcp_socket> ws;
        wsx::message count;
        if (open(ws, args, "/getCaseCount", ec)) ws.read(count, ec);
        const auto parsed = std::from_chars(count.data.data(), count.data.data() + count.data.size(), cases);
        if (ec || parsed.ec != std::errc() || cases <= 0) {
            std::cerr << "autobahn_client: no case count from " << args.base << ": "
                      << (ec ? ec.message() : "'" + count.data + "'") << '\n';
            return 1;
        }
        ws.close(wsx::close_code::normal, {}, ec);
    }
    std::cout << cases << " cases\n";

    for (int n = 1; n <= cases; ++n) {
        wsx::stream<wsx::tcp_socket> ws;
        const std::string target = "/runCase?case=" + std::to_string(n) + "&agent=" + args.agent;
        if (!open(ws, args, target, ec)) {
            std::cout << "case " << n << ": " << ec.message() << '\n';
            continue;
        }
        if (!echo_until_closed(ws)) {
            const wsx::close_status& status = ws.get_close_status();
            std::cout << "case " << n << ": ended with " << static_cast<int>(status.code) << " ("
                      << status.ec.message() << ")\n";
        }
    }

    wsx::stream<wsx::tcp_socket> ws;
    if (open(ws, args, "/updateReports?agent=" + args.agent, ec)) ws.close(wsx::close_code::normal, {}, ec);
    if (ec) {
        std::cerr << "autobahn_client: updating the reports: " << ec.message() << '\n';
        return 1;
    }
    std::cout << "reports updated for agent " << args.agent << '\n';
    return 0;
}
