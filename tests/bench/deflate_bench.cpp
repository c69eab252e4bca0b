// permessage-deflate: memory per connection and throughput, beside raw zlib.
//
// memory/<window bits>/<memLevel>/<message size>: bytes zlib holds for one
//   compressor and one inflater once messages flow (counted through the
//   z_stream's zalloc/zfree hooks; wsx adds one z_stream, 112 bytes, per
//   direction), and the compressed/original ratio of a stream of JSON-like
//   messages with context takeover.
// wsx_compress / zlib_compress, wsx_decompress / zlib_decompress
//   /<level>/<message size>: JSON-like messages in a stream with context
//   takeover, window 12, memLevel 5 (the defaults); raw zlib does the same
//   work into buffers it owns, so the difference is wsx's overhead.
#include <wsx/deflate.hpp>

#include "../support/zlib_counter.hpp"

#include <benchmark/benchmark.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace {

using bytes = std::vector<std::uint8_t>;

using wsx::test::zlib_counter;

// JSON-like messages, distinct from one another but alike in shape.
std::vector<bytes> json_messages(std::size_t count, std::size_t size) {
    static const char* const words[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
                                        "india", "juliet", "kilo", "lima"};
    std::mt19937 engine(1234);
    std::vector<bytes> out;
    for (std::size_t n = 0; n < count; ++n) {
        std::string s = "[";
        while (s.size() < size) {
            s += "{\"id\":" + std::to_string(engine() % 1000000) + ",\"user\":\"" + words[engine() % 12] +
                 std::to_string(engine() % 100) + "\",\"tags\":[\"" + words[engine() % 12] + "\",\"" +
                 words[engine() % 12] + "\"],\"price\":" + std::to_string(engine() % 10000) + "." +
                 std::to_string(engine() % 100) + ",\"in_stock\":" + ((engine() & 1) ? "true" : "false") + "},";
        }
        s.resize(size);
        out.emplace_back(s.begin(), s.end());
    }
    return out;
}

constexpr std::size_t pool_size = 64;
constexpr int window_bits = 12;
constexpr int memory_level = 5;

wsx::deflate_params params() {
    wsx::deflate_params p;
    p.our_max_window_bits = window_bits;
    p.peer_max_window_bits = window_bits;
    return p;
}

wsx::deflate_options options(int level) {
    wsx::deflate_options o;
    o.compression_level = level;
    o.memory_level = memory_level;
    return o;
}

// The pool compressed in order, as a peer would send it.
std::vector<bytes> payloads(const std::vector<bytes>& messages, int level) {
    wsx::deflater d(params(), options(level));
    std::vector<bytes> out;
    for (const bytes& m : messages) {
        bytes p;
        if (d.compress(m, true, p)) std::abort();
        out.push_back(std::move(p));
    }
    return out;
}

void memory(benchmark::State& state) {
    const auto bits = static_cast<std::uint8_t>(state.range(0));
    const int level = static_cast<int>(state.range(1));
    // A stream of JSON-like messages, compressed with context takeover.
    const auto messages = json_messages(pool_size, static_cast<std::size_t>(state.range(2)));
    std::size_t compressor = 0;
    std::size_t inflater_bytes = 0;
    std::size_t original = 0;
    std::size_t compressed = 0;
    for (auto _ : state) {
        zlib_counter deflate_memory;
        zlib_counter inflate_memory;
        wsx::deflate_params p;
        p.our_max_window_bits = bits;
        p.peer_max_window_bits = bits;
        wsx::deflate_options o;
        o.memory_level = level;
        o.allocator = deflate_memory.hooks();
        wsx::deflater d(p, o);
        o.allocator = inflate_memory.hooks();
        wsx::inflater i(p, o);
        bytes payload;
        bytes plain;
        for (const bytes& m : messages) {
            payload.clear();
            plain.clear();
            if (d.compress(m, true, payload)) std::abort();
            if (i.decompress(payload, true, plain, SIZE_MAX) || plain != m) std::abort();
            original += m.size();
            compressed += payload.size();
        }
        compressor = deflate_memory.live;
        inflater_bytes = inflate_memory.live;
    }
    state.counters["compressor_bytes"] =
        benchmark::Counter(static_cast<double>(compressor), benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
    state.counters["inflater_bytes"] =
        benchmark::Counter(static_cast<double>(inflater_bytes), benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
    state.counters["ratio"] = static_cast<double>(compressed) / static_cast<double>(original);
}
BENCHMARK(memory)->ArgsProduct({{9, 10, 11, 12, 15}, {1, 4, 5, 8}, {1024, 65536}})->Iterations(1);

void wsx_compress(benchmark::State& state) {
    const int level = static_cast<int>(state.range(0));
    const auto messages = json_messages(pool_size, static_cast<std::size_t>(state.range(1)));
    wsx::deflater d(params(), options(level));
    bytes out;
    std::size_t n = 0;
    std::size_t compressed = 0;
    for (auto _ : state) {
        out.clear();
        if (d.compress(messages[n++ % pool_size], true, out)) std::abort();
        compressed += out.size();
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * messages[0].size()));
    state.counters["ratio"] =
        static_cast<double>(compressed) / static_cast<double>(state.iterations() * messages[0].size());
}

void zlib_compress(benchmark::State& state) {
    const int level = static_cast<int>(state.range(0));
    const auto messages = json_messages(pool_size, static_cast<std::size_t>(state.range(1)));
    z_stream s{};
    if (deflateInit2(&s, level, Z_DEFLATED, -window_bits, memory_level, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
    bytes out(deflateBound(&s, messages[0].size()) + 64);
    std::size_t n = 0;
    std::size_t compressed = 0;
    for (auto _ : state) {
        const bytes& m = messages[n++ % pool_size];
        s.next_in = const_cast<std::uint8_t*>(m.data());
        s.avail_in = static_cast<uInt>(m.size());
        s.next_out = out.data();
        s.avail_out = static_cast<uInt>(out.size());
        if (deflate(&s, Z_SYNC_FLUSH) != Z_OK || s.avail_out == 0) std::abort();
        compressed += out.size() - s.avail_out - 4;
        benchmark::DoNotOptimize(out.data());
    }
    deflateEnd(&s);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * messages[0].size()));
    state.counters["ratio"] =
        static_cast<double>(compressed) / static_cast<double>(state.iterations() * messages[0].size());
}

void wsx_decompress(benchmark::State& state) {
    const int level = static_cast<int>(state.range(0));
    const auto messages = json_messages(pool_size, static_cast<std::size_t>(state.range(1)));
    const auto compressed = payloads(messages, level);
    wsx::inflater i(params(), options(level));
    bytes out;
    std::size_t n = 0;
    for (auto _ : state) {
        out.clear();
        if (i.decompress(compressed[n++ % pool_size], true, out, std::size_t{1} << 20)) std::abort();
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * messages[0].size()));
}

void zlib_decompress(benchmark::State& state) {
    const int level = static_cast<int>(state.range(0));
    const auto messages = json_messages(pool_size, static_cast<std::size_t>(state.range(1)));
    const auto compressed = payloads(messages, level);
    z_stream s{};
    if (inflateInit2(&s, -window_bits) != Z_OK) std::abort();
    bytes out(messages[0].size() + 64);
    static const std::uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    std::size_t n = 0;
    for (auto _ : state) {
        const bytes& p = compressed[n++ % pool_size];
        s.next_out = out.data();
        s.avail_out = static_cast<uInt>(out.size());
        s.next_in = const_cast<std::uint8_t*>(p.data());
        s.avail_in = static_cast<uInt>(p.size());
        if (inflate(&s, Z_SYNC_FLUSH) != Z_OK) std::abort();
        s.next_in = const_cast<std::uint8_t*>(tail);
        s.avail_in = 4;
        const int rc = inflate(&s, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_BUF_ERROR) std::abort();
        benchmark::DoNotOptimize(out.data());
    }
    inflateEnd(&s);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * messages[0].size()));
}

#define WSX_DEFLATE_BENCH(name) BENCHMARK(name)->ArgsProduct({{1, 6}, {1024, 65536}})
WSX_DEFLATE_BENCH(wsx_compress);
WSX_DEFLATE_BENCH(zlib_compress);
WSX_DEFLATE_BENCH(wsx_decompress);
WSX_DEFLATE_BENCH(zlib_decompress);

} // namespace
