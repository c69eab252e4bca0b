// beast_echo_server - the benchmark's baseline: a Boost.Beast WebSocket echo
// server that behaves as wsx's echo server does, so that the load generator
// can compare the two side by side.
//
//   beast_echo_server [--port 9001] [--threads 1] [--deflate]
//
// Listens on 127.0.0.1 (port 0: one the system picks), prints
// "listening on 127.0.0.1:PORT", echoes text as text and binary as binary,
// refuses messages above 16 MiB (close 1009), negotiates permessage-deflate
// only with --deflate, and exits on SIGINT or SIGTERM.
//
// Written the way Beast's own asynchronous examples are: one session object
// per connection, kept alive by shared_from_this through a chain of
// async_accept, async_read into a flat_buffer and async_write.
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr std::size_t max_message_size = 16 * 1024 * 1024;

struct settings {
    unsigned short port = 9001;
    unsigned threads = 1;
    bool deflate = false;
};

class session : public std::enable_shared_from_this<session> {
public:
    session(tcp::socket&& socket, const settings& s) : ws_(std::move(socket)) {
        ws_.read_message_max(max_message_size);
        ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
        websocket::permessage_deflate pmd;
        pmd.server_enable = s.deflate;
        ws_.set_option(pmd);
        // An echo leaves as one frame, as wsx's server sends it; Beast would
        // otherwise cut unmasked messages into write-buffer-sized frames.
        ws_.auto_fragment(false);
    }

    void start() {
        // Run on the session's strand (a no-op with one thread).
        net::dispatch(ws_.get_executor(), [self = shared_from_this()] {
            self->ws_.async_accept([self](beast::error_code ec) { self->on_accept(ec); });
        });
    }

private:
    void on_accept(beast::error_code ec) {
        if (ec) return;
        read();
    }

    void read() {
        ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            self->on_read(ec);
        });
    }

    void on_read(beast::error_code ec) {
        // websocket::error::closed: the peer closed; Beast has answered the
        // close frame and shuts the socket down itself.
        if (ec) return;
        ws_.text(ws_.got_text());
        ws_.async_write(buffer_.data(), [self = shared_from_this()](beast::error_code ec, std::size_t) {
            self->on_write(ec);
        });
    }

    void on_write(beast::error_code ec) {
        if (ec) return;
        buffer_.consume(buffer_.size());
        read();
    }

    websocket::stream<beast::tcp_stream> ws_;
    beast::flat_buffer buffer_;
};

class listener : public std::enable_shared_from_this<listener> {
public:
    listener(net::io_context& io, tcp::endpoint endpoint, const settings& s)
        : io_(io), acceptor_(net::make_strand(io)), settings_(s) {
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(net::socket_base::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(net::socket_base::max_listen_connections);
    }

    unsigned short port() const { return acceptor_.local_endpoint().port(); }

    void accept() {
        acceptor_.async_accept(net::make_strand(io_),
                               [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
                                   self->on_accept(ec, std::move(socket));
                               });
    }

    void stop() { acceptor_.close(); }

private:
    void on_accept(beast::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted) return; // stop()
        if (!ec) {
            socket.set_option(tcp::no_delay(true));
            std::make_shared<session>(std::move(socket), settings_)->start();
        }
        accept();
    }

    net::io_context& io_;
    tcp::acceptor acceptor_;
    settings settings_;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "beast_echo_server: %s\nusage: beast_echo_server [--port N] [--threads N] [--deflate]\n",
                 why);
    std::exit(2);
}

settings parse_arguments(int argc, char** argv) {
    settings s;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto number = [&](long max) -> long {
            if (i + 1 >= argc) usage("an option lacks its value");
            char* end = nullptr;
            const long v = std::strtol(argv[++i], &end, 10);
            if (*end != '\0' || v < 0 || v > max) usage("bad number");
            return v;
        };
        if (arg == "--port") s.port = static_cast<unsigned short>(number(65535));
        else if (arg == "--threads") s.threads = static_cast<unsigned>(number(256));
        else if (arg == "--deflate") s.deflate = true;
        else usage(("unknown option " + std::string(arg)).c_str());
    }
    if (s.threads == 0) usage("--threads must be at least 1");
    return s;
}

} // namespace

int main(int argc, char** argv) {
    const settings s = parse_arguments(argc, argv);
    try {
        net::io_context io(static_cast<int>(s.threads));
        auto server = std::make_shared<listener>(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), s.port), s);
        server->accept();

        // SIGINT/SIGTERM: stop the event loop; open sessions end with it.
        net::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&](beast::error_code, int) {
            server->stop();
            io.stop();
        });

        std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(server->port()));
        std::fflush(stdout);

        std::vector<std::thread> threads;
        for (unsigned i = 1; i < s.threads; ++i) threads.emplace_back([&io] { io.run(); });
        io.run();
        for (auto& t : threads) t.join();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "beast_echo_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
