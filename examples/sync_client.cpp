// sync_client - a blocking WebSocket client.
//
//   sync_client [--ca FILE] [--timeout SECONDS] [--deflate] URI [message...]
//
// Connects to a ws:// or wss:// URI, sends each message as a text message,
// prints each reply on its own line, and closes with 1000 (normal closure).
// wss:// checks the server's certificate against the system's trusted
// authorities and its name against the URI's host; --ca FILE also trusts the
// authorities in a PEM file. Every connect, read and write is bounded by the
// timeout (10 seconds unless told). --deflate offers permessage-deflate
// (RFC 7692). Exits 0 on success, 1 with a message on
// stderr on any failure, 2 for bad arguments.
#include <wsx/stream.hpp>
#include <wsx/tcp.hpp>
#include <wsx/tls.hpp>
#include <wsx/uri.hpp>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace {

struct arguments {
    std::string uri;
    std::string ca_file;
    std::chrono::milliseconds timeout{10000};
    bool deflate = false;
    std::vector<std::string> messages;
};

constexpr const char* usage_line = "usage: sync_client [--ca FILE] [--timeout SECONDS] [--deflate] URI [message...]\n";

int usage(const std::string& why) {
    std::cerr << "sync_client: " << why << "\n" << usage_line << "(--help says what each option does)\n";
    return 2;
}

int help() {
    std::cout << usage_line << "\n"
              << "  URI                ws://HOST[:PORT]/PATH or wss://...\n"
              << "  message...         text messages to send, each answer printed; none: read lines\n"
              << "                     from standard input and send each\n"
              << "  --ca FILE          trust the certificates in this PEM file for wss://\n"
              << "  --timeout SECONDS  bound for connecting and for each read; default 10\n"
              << "  --deflate          offer permessage-deflate\n"
              << "  --help             this text\n";
    return 0;
}

// Fails with a message naming the step that went wrong.
struct step_failed {
    std::string step;
    std::error_code ec;
};

void check(const std::error_code& ec, const char* step) {
    if (ec) throw step_failed{step, ec};
}

template <class Layer>
void talk(wsx::stream<Layer>& ws, const wsx::uri& where, const arguments& args) {
    std::error_code ec;
    wsx::connection_options options;
    if (args.deflate) options.deflate.emplace(); // offer permessage-deflate
    ws.set_options(options);
    ws.handshake(where, ec);
    if (ec == wsx::error::unexpected_status && ws.connection() != nullptr) {
        const auto& response = ws.connection()->response().http;
        throw step_failed{"WebSocket handshake (server answered " + std::to_string(response.status) + ")", ec};
    }
    check(ec, "WebSocket handshake");

    wsx::message reply;
    for (const std::string& text : args.messages) {
        ws.write_text(text, ec);
        check(ec, "write");
        ws.read(reply, ec);
        check(ec, "read");
        if (reply.text) {
            std::cout << reply.data << '\n';
        } else {
            std::cout << "[binary message, " << reply.data.size() << " bytes]\n";
        }
        std::cout.flush();
    }
    ws.close(wsx::close_code::normal, {}, ec);
    check(ec, "close");
}

int run(const arguments& args) {
    std::error_code ec;
    const wsx::uri where = wsx::parse_uri(args.uri, ec);
    if (ec) return usage("not a ws:// or wss:// URI: " + args.uri);

    wsx::tcp_socket socket;
    socket.connect(where.host, where.port, args.timeout, ec);
    check(ec, "connect");
    socket.set_read_timeout(args.timeout, ec);
    check(ec, "set read timeout");
    socket.set_write_timeout(args.timeout, ec);
    check(ec, "set write timeout");

    if (!where.secure) {
        wsx::stream<wsx::tcp_socket> ws(std::move(socket));
        talk(ws, where, args);
        return 0;
    }

    wsx::tls_context context(wsx::tls_role::client);
    if (!args.ca_file.empty()) {
        context.load_ca_file(args.ca_file, ec);
        check(ec, "loading the CA file");
    }
    wsx::stream<wsx::tls_stream<wsx::tcp_socket>> ws(std::move(socket), context);
    ws.next_layer().set_hostname(where.host, ec);
    check(ec, "TLS host name");
    // The TLS handshake on its own, so its failures (an untrusted
    // certificate, a name mismatch) are reported as such.
    ws.next_layer().handshake(ec);
    check(ec, "TLS handshake");
    talk(ws, where, args);
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    arguments args;
    int i = 1;
    for (; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            return help();
        } else if (arg == "--deflate") {
            args.deflate = true;
        } else if (arg == "--ca" || arg == "--timeout") {
            if (i + 1 >= argc) return usage(std::string(arg) + " needs a value");
            const std::string value = argv[++i];
            if (arg == "--ca") {
                args.ca_file = value;
            } else {
                char* end = nullptr;
                const double seconds = std::strtod(value.c_str(), &end);
                if (end == value.c_str() || *end != '\0' || !(seconds > 0) || seconds > 86400)
                    return usage("--timeout needs a number of seconds (up to 86400)");
                args.timeout = std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
            }
        } else if (arg == "--") {
            ++i;
            break;
        } else if (arg.size() > 1 && arg.front() == '-') {
            return usage("unknown option " + std::string(arg));
        } else {
            break;
        }
    }
    if (i >= argc) return usage("missing URI");
    args.uri = argv[i++];
    for (; i < argc; ++i) args.messages.emplace_back(argv[i]);

    try {
        return run(args);
    } catch (const step_failed& failure) {
        std::cerr << "sync_client: " << failure.step << " failed: " << failure.ec.message() << '\n';
    } catch (const std::exception& e) {
        std::cerr << "sync_client: " << e.what() << '\n';
    }
    return 1;
}
