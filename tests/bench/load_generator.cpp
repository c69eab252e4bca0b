// load_generator - drives a WebSocket echo server from many connections.
//
// Echo mode (the default): opens C connections, performs the opening
// handshake on each, then keeps P messages of S bytes in flight on every
// connection (pipelined), checks every echo byte for byte and in order, and
// reports messages per second, payload MB/s and round-trip latency.
//
// Handshake mode (--handshakes): C connections in parallel, each one a loop of
// connect, opening handshake, closing handshake, repeat; reports completed
// cycles per second and the handshake time (connect to 101).
//
// Every wait is bounded (connect, handshake, drain and close timeouts, and a
// hard overall deadline); any mismatch, refused handshake or early close is
// an error, and the program then exits non-zero.
//
// The protocol is wsx::connection in the client role; this file owns only the
// sockets (non-blocking, one edge-triggered epoll loop on one thread).
//
// Output: a readable summary, then one line of key=value pairs starting with
// "result" for scripts (`total` counts the warm-up too, for CPU accounting).
#include <wsx/connection.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using steady = std::chrono::steady_clock;
using time_point = steady::time_point;
using nanoseconds = std::chrono::nanoseconds;

struct settings {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    std::string target = "/";
    std::size_t connections = 10;
    std::size_t in_flight = 1;
    std::size_t size = 16;
    double seconds = 5.0;
    double warmup = 1.0;
    std::uint64_t messages = 0; // echo: total messages, handshakes: total cycles; 0 = run for `seconds`
    bool binary = false;
    bool handshakes = false;
    bool deflate = false;
    double connect_timeout = 5.0; // connect, and then the opening handshake
    double close_timeout = 5.0;   // the closing handshake and the server's TCP close
    double drain_timeout = 10.0;  // in-flight echoes after the run
    bool quiet = false;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "load_generator: %s\n"
                 "usage: load_generator --port N [--host 127.0.0.1] [--target /] [--connections C]\n"
                 "         [--in-flight P] [--size S[K|M]] [--seconds T] [--warmup W] [--messages N]\n"
                 "         [--binary] [--handshakes] [--deflate] [--connect-timeout T] [--quiet]\n",
                 why);
    std::exit(2);
}

double parse_double(const char* text, const char* what) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= 0)) usage(what);
    return v;
}

// A count, with an optional binary suffix: 16, 64K, 1M.
std::uint64_t parse_count(const char* text, const char* what) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(text, &end, 10);
    if (errno != 0 || end == text || text[0] == '-') usage(what);
    std::uint64_t scale = 1;
    if (*end == 'K' || *end == 'k') scale = 1024, ++end;
    else if (*end == 'M' || *end == 'm') scale = 1024 * 1024, ++end;
    if (*end != '\0') usage(what);
    return static_cast<std::uint64_t>(v) * scale;
}

settings parse_arguments(int argc, char** argv) {
    settings s;
    bool have_port = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) usage("an option lacks its value");
            return argv[++i];
        };
        if (arg == "--host") s.host = value();
        else if (arg == "--port") {
            const auto p = parse_count(value(), "bad --port");
            if (p == 0 || p > 65535) usage("bad --port");
            s.port = static_cast<std::uint16_t>(p);
            have_port = true;
        } else if (arg == "--target") s.target = value();
        else if (arg == "--connections") s.connections = parse_count(value(), "bad --connections");
        else if (arg == "--in-flight") s.in_flight = parse_count(value(), "bad --in-flight");
        else if (arg == "--size") s.size = parse_count(value(), "bad --size");
        else if (arg == "--seconds") s.seconds = parse_double(value(), "bad --seconds");
        else if (arg == "--warmup") s.warmup = parse_double(value(), "bad --warmup");
        else if (arg == "--messages") s.messages = parse_count(value(), "bad --messages");
        else if (arg == "--connect-timeout") s.connect_timeout = parse_double(value(), "bad --connect-timeout");
        else if (arg == "--binary") s.binary = true;
        else if (arg == "--handshakes") s.handshakes = true;
        else if (arg == "--deflate") s.deflate = true;
        else if (arg == "--quiet") s.quiet = true;
        else if (arg == "--help" || arg == "-h") usage("help");
        else usage(("unknown option " + std::string(arg)).c_str());
    }
    if (!have_port) usage("--port is required");
    if (s.connections == 0 || s.connections > 100000) usage("--connections must be 1..100000");
    if (!s.handshakes && (s.in_flight == 0 || s.in_flight > 100000)) usage("--in-flight must be 1..100000");
    if (s.size > 256u * 1024 * 1024) usage("--size must be at most 256M");
    if (s.messages == 0 && s.seconds <= 0) usage("--seconds must be positive");
    if (s.messages > 0) s.warmup = 0; // a fixed count is measured whole
    return s;
}

nanoseconds to_duration(double seconds) {
    return std::chrono::duration_cast<nanoseconds>(std::chrono::duration<double>(seconds));
}

double to_seconds(nanoseconds d) { return std::chrono::duration<double>(d).count(); }

// Messages carry their sequence number in their first bytes (hex digits, so
// text stays valid UTF-8); the rest is a fixed pattern. An echo that comes
// back reordered, truncated, or with any byte changed is caught.
constexpr std::size_t stamp_size = 16;

void stamp(std::uint8_t* out, std::size_t size, std::uint64_t sequence) {
    static const char digits[] = "0123456789abcdef";
    const std::size_t n = std::min(size, stamp_size);
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(digits[(sequence >> (4 * i)) & 0xf]);
}

std::vector<std::uint8_t> make_pattern(std::size_t size, bool binary) {
    std::vector<std::uint8_t> pattern(size);
    std::uint64_t x = 0x9e3779b97f4a7c15ull; // fixed seed: every run sends the same bytes
    for (std::size_t i = 0; i < size; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pattern[i] = binary ? static_cast<std::uint8_t>(x) : static_cast<std::uint8_t>('a' + x % 26);
    }
    return pattern;
}

struct failure_counter {
    std::size_t count = 0;
    void report(std::size_t client, const std::string& what) {
        if (++count <= 10) std::fprintf(stderr, "load_generator: connection %zu: %s\n", client, what.c_str());
    }
};

enum class phase : std::uint8_t { idle, connecting, handshaking, open, closing, done };

struct client {
    int fd = -1;
    std::uint32_t generation = 0; // tells events for an earlier socket of this slot apart
    phase state = phase::idle;
    std::optional<wsx::connection> ws;
    time_point deadline{};       // of the current connecting/handshaking/closing phase
    time_point started{};        // this cycle's connect
    bool close_event_seen = false;

    // Echo mode: the send times of the messages in flight, oldest first.
    std::vector<time_point> sent_at; // ring of capacity in_flight
    std::size_t ring_head = 0;
    std::size_t ring_count = 0;
    std::uint64_t next_send = 0;
    std::uint64_t next_receive = 0;
    std::vector<std::uint8_t> outgoing;
};

class load_generator {
public:
    explicit load_generator(settings s) : s_(std::move(s)), pattern_(make_pattern(s_.size, s_.binary)) {
        // Ample room for the echoes, and no backpressure: the in-flight count
        // bounds what is queued.
        connection_options_.max_message_size = std::max<std::size_t>(s_.size, 16 * 1024 * 1024);
        connection_options_.max_frame_size = connection_options_.max_message_size;
        connection_options_.max_pending_output = std::numeric_limits<std::size_t>::max() / 2;
        connection_options_.ping_interval = wsx::duration{0}; // the run's own deadlines bound every wait
        if (s_.deflate) connection_options_.deflate.emplace();
    }

    int run();

private:
    bool resolve();
    void start_connect(std::size_t index, time_point now);
    void on_event(std::size_t index, std::uint32_t events, time_point now);
    void on_connected(std::size_t index, time_point now);
    void read_available(std::size_t index, time_point now);
    void process_events(std::size_t index, time_point now);
    void on_message(std::size_t index, const wsx::event& ev, time_point now);
    void on_open(std::size_t index, time_point now);
    void send_one(std::size_t index, time_point now);
    void flush(std::size_t index);
    void begin_close(std::size_t index, time_point now);
    void finish(std::size_t index, time_point now);
    void fail(std::size_t index, const std::string& what);
    void close_socket(client& c);
    void check_deadlines(time_point now);
    void start_echo(time_point now);
    bool may_send() const;
    bool in_window(time_point t) const { return t >= measure_start_ && t < measure_end_; }
    void print_results(time_point now);

    settings s_;
    std::vector<std::uint8_t> pattern_;
    wsx::connection_options connection_options_;
    sockaddr_storage address_{};
    socklen_t address_size_ = 0;
    int epoll_fd_ = -1;
    std::vector<client> clients_;
    failure_counter failures_;

    // Echo mode's progress.
    std::size_t opened_ = 0;
    std::size_t finished_ = 0;
    bool started_ = false;
    bool stopping_ = false; // no more messages; draining, then closing
    bool closing_all_ = false;
    std::uint64_t sent_total_ = 0;
    time_point run_start_{};
    time_point measure_start_{};
    time_point measure_end_ = time_point::max();
    time_point last_echo_{};
    time_point phase_deadline_ = time_point::max(); // drain or close of the whole run
    time_point hard_deadline_{};

    // Results.
    std::uint64_t counted_messages_ = 0;
    std::uint64_t counted_bytes_ = 0;
    std::uint64_t echoed_total_ = 0; // warm-up included
    std::uint64_t cycles_ = 0;       // in the measured window
    std::uint64_t cycles_total_ = 0; // warm-up included
    std::uint64_t cycles_started_ = 0;
    std::vector<std::int64_t> latencies_ns_;
};

bool load_generator::resolve() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(s_.port);
    if (int rc = getaddrinfo(s_.host.c_str(), port.c_str(), &hints, &found); rc != 0 || !found) {
        std::fprintf(stderr, "load_generator: cannot resolve %s: %s\n", s_.host.c_str(), gai_strerror(rc));
        return false;
    }
    std::memcpy(&address_, found->ai_addr, found->ai_addrlen);
    address_size_ = found->ai_addrlen;
    freeaddrinfo(found);
    return true;
}

void load_generator::close_socket(client& c) {
    if (c.fd >= 0) ::close(c.fd); // also removes it from the epoll set
    c.fd = -1;
}

void load_generator::fail(std::size_t index, const std::string& what) {
    failures_.report(index, what);
    client& c = clients_[index];
    close_socket(c);
    c.state = phase::done;
}

void load_generator::start_connect(std::size_t index, time_point now) {
    client& c = clients_[index];
    c.fd = ::socket(address_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return fail(index, std::string("socket: ") + std::strerror(errno));
    const int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ++c.generation;
    c.state = phase::connecting;
    c.started = now;
    c.deadline = now + to_duration(s_.connect_timeout);
    c.close_event_seen = false;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = (static_cast<std::uint64_t>(c.generation) << 32) | index;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.fd, &ev) != 0)
        return fail(index, std::string("epoll_ctl: ") + std::strerror(errno));
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&address_), address_size_) == 0) {
        on_connected(index, now);
    } else if (errno != EINPROGRESS) {
        fail(index, std::string("connect: ") + std::strerror(errno));
    }
}

void load_generator::on_connected(std::size_t index, time_point now) {
    client& c = clients_[index];
    c.ws.emplace(wsx::role::client, connection_options_);
    wsx::client_request_options request;
    request.host = s_.host;
    request.port = s_.port;
    request.target = s_.target;
    if (auto ec = c.ws->start_handshake(std::move(request))) return fail(index, "start_handshake: " + ec.message());
    c.state = phase::handshaking;
    c.deadline = now + to_duration(s_.connect_timeout);
    flush(index);
}

void load_generator::flush(std::size_t index) {
    client& c = clients_[index];
    while (c.fd >= 0 && c.ws && c.ws->pending_output_size() > 0) {
        const wsx::const_bytes out = c.ws->pending_output();
        const ssize_t n = ::send(c.fd, out.data(), out.size(), MSG_NOSIGNAL);
        if (n > 0) {
            c.ws->consume_output(static_cast<std::size_t>(n));
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return; // EPOLLOUT (edge-triggered) tells when to go on
        } else {
            return fail(index, std::string("send: ") + std::strerror(errno));
        }
    }
}

bool load_generator::may_send() const {
    if (stopping_) return false;
    if (s_.messages > 0) return sent_total_ < s_.messages;
    return true;
}

void load_generator::send_one(std::size_t index, time_point now) {
    client& c = clients_[index];
    stamp(c.outgoing.data(), c.outgoing.size(), c.next_send);
    const std::error_code ec = s_.binary ? c.ws->send_binary(c.outgoing)
                                         : c.ws->send_text(wsx::as_string_view(wsx::const_bytes(c.outgoing)));
    if (ec) return fail(index, "send: " + ec.message());
    c.sent_at[(c.ring_head + c.ring_count) % c.sent_at.size()] = now;
    ++c.ring_count;
    ++c.next_send;
    ++sent_total_;
}

void load_generator::on_open(std::size_t index, time_point now) {
    client& c = clients_[index];
    c.state = phase::open;
    if (s_.handshakes) {
        if (s_.messages > 0 || in_window(now))
            latencies_ns_.push_back(std::chrono::duration_cast<nanoseconds>(now - c.started).count());
        begin_close(index, now);
        return;
    }
    c.sent_at.assign(s_.in_flight, time_point{});
    c.outgoing = pattern_;
    if (++opened_ == clients_.size()) start_echo(now);
}

// Every connection is open: the clock starts and every connection fills
// its pipeline.
void load_generator::start_echo(time_point now) {
    started_ = true;
    run_start_ = now;
    measure_start_ = now + to_duration(s_.warmup);
    if (s_.messages == 0) measure_end_ = measure_start_ + to_duration(s_.seconds);
    for (std::size_t i = 0; i < clients_.size(); ++i) {
        if (clients_[i].state != phase::open) continue;
        for (std::size_t k = 0; k < s_.in_flight && may_send(); ++k) send_one(i, now);
        flush(i);
    }
}

void load_generator::on_message(std::size_t index, const wsx::event& ev, time_point now) {
    client& c = clients_[index];
    if (s_.handshakes || c.state != phase::open) return fail(index, "a message arrived that was never sent");
    if (c.ring_count == 0) return fail(index, "an echo arrived with no message in flight");
    if (ev.text == s_.binary) return fail(index, std::string("echo of a ") + (s_.binary ? "binary" : "text") +
                                                     " message came back as " + (ev.text ? "text" : "binary"));
    if (ev.data.size() != s_.size)
        return fail(index, "echo of " + std::to_string(s_.size) + " bytes came back with " +
                               std::to_string(ev.data.size()));
    std::uint8_t expected[stamp_size];
    const std::size_t stamped = std::min(s_.size, stamp_size);
    stamp(expected, stamped, c.next_receive);
    if (std::memcmp(ev.data.data(), expected, stamped) != 0)
        return fail(index, "echo out of order or corrupted: expected message #" + std::to_string(c.next_receive));
    if (s_.size > stamped &&
        std::memcmp(ev.data.data() + stamped, pattern_.data() + stamped, s_.size - stamped) != 0)
        return fail(index, "echo of message #" + std::to_string(c.next_receive) + " differs from what was sent");

    const time_point sent = c.sent_at[c.ring_head];
    c.ring_head = (c.ring_head + 1) % c.sent_at.size();
    --c.ring_count;
    ++c.next_receive;
    ++echoed_total_;
    last_echo_ = now;
    if (s_.messages > 0 || in_window(now)) {
        ++counted_messages_;
        counted_bytes_ += s_.size;
        latencies_ns_.push_back(std::chrono::duration_cast<nanoseconds>(now - sent).count());
    }
    if (may_send()) send_one(index, now);
}

void load_generator::begin_close(std::size_t index, time_point now) {
    client& c = clients_[index];
    c.state = phase::closing;
    c.deadline = now + to_duration(s_.close_timeout);
    c.ws->close(wsx::close_code::normal);
    flush(index);
}

// The closing handshake is over and the server closed TCP: the slot is done,
// or in handshake mode starts its next cycle.
void load_generator::finish(std::size_t index, time_point now) {
    client& c = clients_[index];
    close_socket(c);
    c.ws.reset();
    c.state = phase::done;
    if (!s_.handshakes) {
        ++finished_;
        return;
    }
    ++cycles_total_;
    if (s_.messages > 0 || in_window(now)) ++cycles_;
    const bool more = s_.messages > 0 ? cycles_started_ < s_.messages : now < measure_end_;
    if (more) {
        ++cycles_started_;
        start_connect(index, now);
    }
}

void load_generator::process_events(std::size_t index, time_point now) {
    client& c = clients_[index];
    while (c.ws && c.state != phase::done) {
        const wsx::event ev = c.ws->next_event();
        if (!ev) break;
        switch (ev.type) {
        case wsx::event_type::response:
            if (c.ws->get_state() != wsx::state::open) {
                const int status = c.ws->response().http.status;
                return fail(index, "handshake refused: HTTP " + std::to_string(status) + ": " +
                                       c.ws->error().message());
            }
            on_open(index, now);
            break;
        case wsx::event_type::message:
            on_message(index, ev, now);
            break;
        case wsx::event_type::close:
            if (c.state != phase::closing || ev.closed_by_peer)
                return fail(index, "connection closed by the server: code " +
                                       std::to_string(static_cast<int>(ev.code)) +
                                       (ev.ec ? " (" + ev.ec.message() + ")" : std::string()));
            if (ev.code != wsx::close_code::normal)
                return fail(index, "close answered with code " + std::to_string(static_cast<int>(ev.code)));
            c.close_event_seen = true;
            break;
        default: // pings are answered inside; pongs need nothing
            break;
        }
    }
    flush(index);
}

void load_generator::read_available(std::size_t index, time_point now) {
    client& c = clients_[index];
    while (c.fd >= 0 && c.ws && c.state != phase::done) {
        const wsx::mutable_bytes area = c.ws->prepare(c.ws->read_size_hint());
        const ssize_t n = ::recv(c.fd, area.data(), area.size(), 0);
        if (n > 0) {
            c.ws->commit(static_cast<std::size_t>(n));
            process_events(index, now);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n == 0) {
            // RFC 6455 §7.1.1: the server closes TCP once the closing
            // handshake is over; before that, EOF is a failure.
            c.ws->receive_eof();
            process_events(index, now);
            if (c.state == phase::done) return;
            if (c.state == phase::closing && c.close_event_seen) return finish(index, now);
            return fail(index, "the server closed TCP without a closing handshake");
        }
        return fail(index, std::string("recv: ") + std::strerror(errno));
    }
}

void load_generator::on_event(std::size_t index, std::uint32_t events, time_point now) {
    client& c = clients_[index];
    if (c.state == phase::connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int error = 0;
        socklen_t size = sizeof error;
        ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &size);
        if (error != 0) return fail(index, std::string("connect: ") + std::strerror(error));
        on_connected(index, now);
        if (c.state == phase::done) return;
    }
    if (events & EPOLLOUT) flush(index);
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_available(index, now);
}

void load_generator::check_deadlines(time_point now) {
    for (std::size_t i = 0; i < clients_.size(); ++i) {
        client& c = clients_[i];
        if (c.state == phase::connecting && now >= c.deadline) fail(i, "connect timed out");
        else if (c.state == phase::handshaking && now >= c.deadline) fail(i, "opening handshake timed out");
        else if (c.state == phase::closing && now >= c.deadline) fail(i, "closing handshake timed out");
    }
}

int load_generator::run() {
    if (!resolve()) return 1;
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) {
        std::perror("load_generator: epoll_create1");
        return 1;
    }
    const time_point begin = steady::now();
    // Generous but finite: connects, warm-up, the run, the drain and the close.
    const double budget = 2 * s_.connect_timeout + s_.warmup + (s_.messages > 0 ? 120.0 : s_.seconds) +
                          s_.drain_timeout + s_.close_timeout + 5.0;
    hard_deadline_ = begin + to_duration(budget);
    // A last resort should the loop itself wedge: SIGALRM ends the process.
    ::alarm(static_cast<unsigned>(budget) + 10);

    clients_.resize(s_.connections);
    if (s_.handshakes) {
        started_ = true;
        run_start_ = begin;
        measure_start_ = begin + to_duration(s_.warmup);
        if (s_.messages == 0) measure_end_ = measure_start_ + to_duration(s_.seconds);
    }
    for (std::size_t i = 0; i < clients_.size(); ++i) {
        if (s_.handshakes && s_.messages > 0 && cycles_started_ >= s_.messages) break;
        ++cycles_started_;
        start_connect(i, begin);
    }

    std::vector<epoll_event> ready(1024);
    time_point last_scan = begin;
    for (;;) {
        const int n = ::epoll_wait(epoll_fd_, ready.data(), static_cast<int>(ready.size()), 5);
        if (n < 0 && errno != EINTR) {
            std::perror("load_generator: epoll_wait");
            return 1;
        }
        const time_point now = steady::now();
        for (int k = 0; k < n; ++k) {
            const std::size_t index = static_cast<std::size_t>(ready[k].data.u64 & 0xffffffffu);
            const auto generation = static_cast<std::uint32_t>(ready[k].data.u64 >> 32);
            client& c = clients_[index];
            if (c.generation != generation || c.fd < 0) continue; // an earlier socket of this slot
            on_event(index, ready[k].events, now);
        }
        if (failures_.count > 0) break;
        if (now - last_scan >= std::chrono::milliseconds(50)) {
            check_deadlines(now);
            last_scan = now;
            if (failures_.count > 0) break;
        }
        if (now >= hard_deadline_) {
            std::fprintf(stderr, "load_generator: the overall deadline of %.0f s passed\n", budget);
            return 1;
        }

        if (s_.handshakes) {
            const bool active = std::any_of(clients_.begin(), clients_.end(),
                                            [](const client& c) { return c.state != phase::done; });
            if (!active) break;
            continue;
        }
        if (!started_) continue;
        // The run is over: stop sending, wait for the echoes in flight, then
        // close every connection.
        const bool all_sent = s_.messages > 0 && sent_total_ >= s_.messages;
        if (!stopping_ && (now >= measure_end_ || all_sent)) {
            stopping_ = true;
            phase_deadline_ = now + to_duration(s_.drain_timeout);
        }
        if (stopping_ && !closing_all_) {
            const bool drained = std::all_of(clients_.begin(), clients_.end(),
                                             [](const client& c) { return c.ring_count == 0; });
            if (drained) {
                if (s_.messages > 0) measure_end_ = last_echo_;
                closing_all_ = true;
                for (std::size_t i = 0; i < clients_.size(); ++i)
                    if (clients_[i].state == phase::open) begin_close(i, now);
            } else if (now >= phase_deadline_) {
                std::fprintf(stderr, "load_generator: echoes still missing %.0f s after the run\n",
                             s_.drain_timeout);
                return 1;
            }
        }
        if (closing_all_ && finished_ == clients_.size()) break;
    }
    ::alarm(0);
    if (failures_.count > 0) {
        std::fprintf(stderr, "load_generator: FAILED (%zu error%s)\n", failures_.count,
                     failures_.count == 1 ? "" : "s");
        return 1;
    }
    print_results(steady::now());
    return 0;
}

double percentile(std::vector<std::int64_t>& samples, double p) {
    if (samples.empty()) return 0;
    const auto rank = static_cast<std::size_t>(p * static_cast<double>(samples.size() - 1) + 0.5);
    std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(rank), samples.end());
    return static_cast<double>(samples[rank]) / 1000.0; // microseconds
}

void load_generator::print_results(time_point now) {
    if (s_.messages > 0 && measure_end_ == time_point::max()) measure_end_ = now;
    const double window = to_seconds(measure_end_ - measure_start_);
    const double p50 = percentile(latencies_ns_, 0.50);
    const double p99 = percentile(latencies_ns_, 0.99);
    const double max = latencies_ns_.empty() ? 0 : static_cast<double>(*std::max_element(
                                                        latencies_ns_.begin(), latencies_ns_.end())) / 1000.0;
    if (s_.handshakes) {
        const double rate = window > 0 ? static_cast<double>(cycles_) / window : 0;
        if (!s_.quiet)
            std::printf("handshakes: %zu parallel connections, %" PRIu64 " cycles in %.2f s: %.0f handshakes/s, "
                        "connect-to-101 p50 %.0f us, p99 %.0f us, max %.0f us\n",
                        s_.connections, cycles_, window, rate, p50, p99, max);
        std::printf("result mode=handshakes connections=%zu seconds=%.3f handshakes=%" PRIu64
                    " handshakes_per_s=%.1f p50_us=%.1f p99_us=%.1f max_us=%.1f total=%" PRIu64 "\n",
                    s_.connections, window, cycles_, rate, p50, p99, max, cycles_total_);
        return;
    }
    const double rate = window > 0 ? static_cast<double>(counted_messages_) / window : 0;
    const double megabytes = window > 0 ? static_cast<double>(counted_bytes_) / window / 1e6 : 0;
    if (!s_.quiet)
        std::printf("echo: %zu connections x %zu in flight x %zu B %s, %" PRIu64 " echoes in %.2f s "
                    "(%" PRIu64 " in all): %.0f msgs/s, %.2f MB/s each way, round trip p50 %.0f us, "
                    "p99 %.0f us, max %.0f us\n",
                    s_.connections, s_.in_flight, s_.size, s_.binary ? "binary" : "text", counted_messages_,
                    window, echoed_total_, rate, megabytes, p50, p99, max);
    std::printf("result mode=echo connections=%zu in_flight=%zu size=%zu binary=%d seconds=%.3f messages=%" PRIu64
                " msgs_per_s=%.1f mb_per_s=%.3f p50_us=%.1f p99_us=%.1f max_us=%.1f total=%" PRIu64 "\n",
                s_.connections, s_.in_flight, s_.size, s_.binary ? 1 : 0, window, counted_messages_, rate,
                megabytes, p50, p99, max, echoed_total_);
}

} // namespace

int main(int argc, char** argv) {
    ::signal(SIGPIPE, SIG_IGN);
    settings s = parse_arguments(argc, argv);
    try {
        load_generator generator(std::move(s));
        return generator.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "load_generator: %s\n", e.what());
        return 1;
    }
}
