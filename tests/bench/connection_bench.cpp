// wsx::connection beside Boost.Beast's websocket::stream, in memory.
//
// Receive: a buffer of masked client frames, built once, is read by a server
// as a socket would hand it over: wsx copies it in through prepare()/commit()
// in reads of read_size_hint() bytes and pulls events with next_event();
// Beast reads it with ws.read(buffer) from an in-memory stream whose
// read_some copies the same bytes. Both unmask, check every rule of RFC 6455
// and validate UTF-8 for text messages; neither compresses.
//
// Send: a server sends one message at a time and the bytes are written to an
// in-memory sink (a copy, as write() into a socket would make): wsx drains
// pending_output(), Beast writes through write_some.
//
// Items are messages, bytes are payload bytes (frame headers not counted).
#include <wsx/connection.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

using byte_vector = std::vector<std::uint8_t>;

std::string ascii_text(std::size_t size) {
    const std::string words = "{\"type\":\"quote\",\"symbol\":\"ABC\",\"price\":12.5} ";
    std::string text;
    while (text.size() < size) text += words;
    text.resize(size);
    return text;
}

byte_vector binary_payload(std::size_t size) {
    byte_vector data(size);
    std::uint32_t x = 2463534242u; // xorshift32, fixed seed
    for (auto& b : data) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b = static_cast<std::uint8_t>(x);
    }
    return data;
}

byte_vector payload_for(std::size_t size, bool text) {
    if (!text) return binary_payload(size);
    const std::string s = ascii_text(size);
    return byte_vector(s.begin(), s.end());
}

// How many messages one benchmark iteration reads: about 1 MiB of payload, at
// least two messages.
std::size_t batch_for(std::size_t size) {
    const std::size_t n = (std::size_t{1} << 20) / (size == 0 ? 1 : size);
    return n < 2 ? 2 : n;
}

// `count` masked client frames carrying `payload`, each with its own key, cut
// into frames of `fragment` bytes when that is non-zero.
byte_vector client_frames(const byte_vector& payload, bool text, std::size_t count, std::size_t fragment = 0) {
    byte_vector wire;
    std::uint32_t key_seed = 0x9e3779b9u;
    for (std::size_t m = 0; m < count; ++m) {
        std::size_t pos = 0;
        bool first = true;
        do {
            const std::size_t n =
                fragment == 0 ? payload.size() : std::min(fragment, payload.size() - pos);
            wsx::frame_header h;
            h.op = first ? (text ? wsx::opcode::text : wsx::opcode::binary) : wsx::opcode::continuation;
            h.fin = pos + n == payload.size();
            h.masked = true;
            key_seed = key_seed * 1664525u + 1013904223u;
            std::memcpy(h.key.data(), &key_seed, 4);
            h.payload_length = n;
            std::uint8_t header[wsx::max_frame_header_size];
            const std::size_t header_size = wsx::write_frame_header(h, wsx::mutable_bytes(header, sizeof header));
            wire.insert(wire.end(), header, header + header_size);
            const std::size_t at = wire.size();
            wire.insert(wire.end(), payload.begin() + static_cast<std::ptrdiff_t>(pos),
                        payload.begin() + static_cast<std::ptrdiff_t>(pos + n));
            wsx::apply_mask(wsx::mutable_bytes(wire.data() + at, n), h.key);
            pos += n;
            first = false;
        } while (pos < payload.size());
    }
    return wire;
}

// Where written bytes go: a buffer that is reused, as a socket's send buffer.
struct byte_sink {
    byte_vector bytes;
    std::size_t size = 0;
    void write(const void* data, std::size_t n) {
        if (bytes.size() < size + n) bytes.resize(size + n);
        std::memcpy(bytes.data() + size, data, n);
        size += n;
    }
};

// ---- wsx ----------------------------------------------------------------------

wsx::connection_options wsx_options() {
    wsx::connection_options o;
    o.max_message_size = 2u << 20;
    o.max_frame_size = 2u << 20;
    return o;
}

// Reads `wire` into a server as socket reads would, pulling every event.
std::size_t wsx_read_all(wsx::connection& server, const byte_vector& wire) {
    std::size_t messages = 0;
    std::size_t pos = 0;
    while (pos < wire.size()) {
        const wsx::mutable_bytes area = server.prepare(server.read_size_hint());
        const std::size_t n = std::min(area.size(), wire.size() - pos);
        std::memcpy(area.data(), wire.data() + pos, n);
        server.commit(n);
        pos += n;
        while (const wsx::event ev = server.next_event()) {
            if (ev.type != wsx::event_type::message) std::abort();
            benchmark::DoNotOptimize(ev.data.data());
            ++messages;
        }
    }
    return messages;
}

void wsx_receive(benchmark::State& state, bool text, std::size_t fragment) {
    const auto size = static_cast<std::size_t>(state.range(0));
    const std::size_t batch = batch_for(size);
    const byte_vector wire = client_frames(payload_for(size, text), text, batch, fragment);
    wsx::connection server(wsx::role::server, wsx_options());
    server.open_without_handshake();
    for (auto _ : state) {
        if (wsx_read_all(server, wire) != batch) {
            state.SkipWithError("lost messages");
            break;
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * batch * size));
}

void wsx_receive_text(benchmark::State& state) { wsx_receive(state, true, 0); }
void wsx_receive_binary(benchmark::State& state) { wsx_receive(state, false, 0); }
void wsx_receive_text_fragments_4k(benchmark::State& state) { wsx_receive(state, true, 4096); }

void wsx_send(benchmark::State& state, wsx::role role) {
    const auto size = static_cast<std::size_t>(state.range(0));
    const std::string message = ascii_text(size);
    wsx::connection conn(role, wsx_options());
    conn.open_without_handshake();
    byte_sink sink;
    for (auto _ : state) {
        if (conn.send_text(message)) {
            state.SkipWithError("send failed");
            break;
        }
        const wsx::const_bytes out = conn.pending_output();
        sink.size = 0;
        sink.write(out.data(), out.size());
        conn.consume_output(out.size());
        benchmark::DoNotOptimize(sink.bytes.data());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
}

void wsx_server_send_text(benchmark::State& state) { wsx_send(state, wsx::role::server); }
void wsx_client_send_text(benchmark::State& state) { wsx_send(state, wsx::role::client); }

// ---- Boost.Beast ------------------------------------------------------------------

// A SyncReadStream / SyncWriteStream over memory: reads copy from a byte
// range, writes copy into a sink.
class memory_stream {
public:
    using executor_type = net::io_context::executor_type;

    explicit memory_stream(net::io_context& context) : executor_(context.get_executor()) {}

    executor_type get_executor() noexcept { return executor_; }

    void set_input(const std::uint8_t* data, std::size_t size) noexcept {
        input_ = data;
        input_size_ = size;
    }
    byte_sink& sink() noexcept { return sink_; }

    template <class MutableBufferSequence>
    std::size_t read_some(const MutableBufferSequence& buffers, beast::error_code& ec) {
        if (input_size_ == 0) {
            ec = net::error::eof;
            return 0;
        }
        ec = {};
        const std::size_t n = net::buffer_copy(buffers, net::const_buffer(input_, input_size_));
        input_ += n;
        input_size_ -= n;
        return n;
    }
    template <class MutableBufferSequence>
    std::size_t read_some(const MutableBufferSequence& buffers) {
        beast::error_code ec;
        const std::size_t n = read_some(buffers, ec);
        if (ec) throw beast::system_error(ec);
        return n;
    }

    template <class ConstBufferSequence>
    std::size_t write_some(const ConstBufferSequence& buffers, beast::error_code& ec) {
        ec = {};
        std::size_t n = 0;
        for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it) {
            const net::const_buffer b = *it;
            sink_.write(b.data(), b.size());
            n += b.size();
        }
        return n;
    }
    template <class ConstBufferSequence>
    std::size_t write_some(const ConstBufferSequence& buffers) {
        beast::error_code ec;
        return write_some(buffers, ec);
    }

private:
    executor_type executor_;
    const std::uint8_t* input_ = nullptr;
    std::size_t input_size_ = 0;
    byte_sink sink_;
};

// Closing a memory stream has nothing to tear down.
void teardown(beast::role_type, memory_stream&, beast::error_code& ec) { ec = {}; }

// A Beast server stream after a real opening handshake.
struct beast_server {
    net::io_context context;
    websocket::stream<memory_stream> ws{context};

    beast_server() {
        ws.auto_fragment(false);
        ws.read_message_max(4u << 20);
        static const std::string request =
            "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        ws.next_layer().set_input(reinterpret_cast<const std::uint8_t*>(request.data()), request.size());
        ws.accept();
        ws.next_layer().sink().size = 0;
    }
};

void beast_receive(benchmark::State& state, bool text, std::size_t fragment) {
    const auto size = static_cast<std::size_t>(state.range(0));
    const std::size_t batch = batch_for(size);
    const byte_vector wire = client_frames(payload_for(size, text), text, batch, fragment);
    beast_server server;
    beast::flat_buffer buffer;
    beast::error_code ec;
    for (auto _ : state) {
        server.ws.next_layer().set_input(wire.data(), wire.size());
        for (std::size_t m = 0; m < batch; ++m) {
            server.ws.read(buffer, ec);
            if (ec || buffer.size() != size) {
                state.SkipWithError("read failed");
                return;
            }
            benchmark::DoNotOptimize(buffer.data().data());
            buffer.consume(buffer.size());
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * batch * size));
}

void beast_receive_text(benchmark::State& state) { beast_receive(state, true, 0); }
void beast_receive_binary(benchmark::State& state) { beast_receive(state, false, 0); }
void beast_receive_text_fragments_4k(benchmark::State& state) { beast_receive(state, true, 4096); }

void beast_server_send_text(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    const std::string message = ascii_text(size);
    beast_server server;
    server.ws.text(true);
    byte_sink& sink = server.ws.next_layer().sink();
    beast::error_code ec;
    for (auto _ : state) {
        sink.size = 0;
        server.ws.write(net::buffer(message), ec);
        if (ec) {
            state.SkipWithError("write failed");
            break;
        }
        benchmark::DoNotOptimize(sink.bytes.data());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
}

// ---- registration ------------------------------------------------------------------

void sizes(benchmark::internal::Benchmark* b) {
    for (std::int64_t size : {16, 1024, 64 * 1024, 1024 * 1024}) b->Arg(size);
}

BENCHMARK(wsx_receive_text)->Apply(sizes);
BENCHMARK(beast_receive_text)->Apply(sizes);
BENCHMARK(wsx_receive_binary)->Apply(sizes);
BENCHMARK(beast_receive_binary)->Apply(sizes);
BENCHMARK(wsx_receive_text_fragments_4k)->Arg(64 * 1024)->Arg(1024 * 1024);
BENCHMARK(beast_receive_text_fragments_4k)->Arg(64 * 1024)->Arg(1024 * 1024);
BENCHMARK(wsx_server_send_text)->Apply(sizes);
BENCHMARK(beast_server_send_text)->Apply(sizes);
BENCHMARK(wsx_client_send_text)->Apply(sizes);

} // namespace
