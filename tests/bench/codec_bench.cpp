// Byte-level codec primitives: apply_mask, UTF-8 validation and frame header
// parsing, with memcpy of the same sizes as the physical reference (a pass
// that reads and writes every byte once).
//
// SIMD: mask.hpp and utf8.hpp use SSE2 or AVX2 when the compiler targets
// them. x86-64 always has SSE2; configure with -DWSX_BENCH_NATIVE=ON (the
// default) to build this benchmark with -march=native and measure AVX2 too.
#include <wsx/frame.hpp>
#include <wsx/mask.hpp>
#include <wsx/utf8.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

// Characters of several scripts, cycled to build a text of an exact size.
// Latin with accents (2 bytes), Cyrillic (2), Greek (2), CJK (3), kana (3),
// emoji (4), and the spaces and punctuation of real text (1).
const std::string_view mixed_characters[] = {
    "C", "a", "f", "\xc3\xa9", " ", "n", "a", "\xc3\xaf", "v", "e", ",", " ",          // café naïve
    "\xd0\x9f", "\xd1\x80", "\xd0\xb8", "\xd0\xb2", "\xd0\xb5", "\xd1\x82", " ",          // Привет
    "\xce\xba", "\xcf\x8c", "\xcf\x83", "\xce\xbc", "\xce\xbf", "\xcf\x82", " ",          // κόσμος
    "\xe4\xbd\xa0", "\xe5\xa5\xbd", "\xe4\xb8\x96", "\xe7\x95\x8c", "\xe3\x80\x82",      // 你好世界。
    "\xe3\x81\x93", "\xe3\x82\x93", "\xe3\x81\xab", "\xe3\x81\xa1", "\xe3\x81\xaf", " ", // こんにちは
    "\xf0\x9f\x98\x80", "\xf0\x9f\x8e\x89", "!", " ",                                     // 😀🎉
};

std::string mixed_text(std::size_t size) {
    std::string text;
    for (std::size_t i = 0;; i = (i + 1) % std::size(mixed_characters)) {
        const std::string_view c = mixed_characters[i];
        if (text.size() + c.size() > size) break;
        text += c;
    }
    text.resize(size, ' ');
    return text;
}

std::string ascii_text(std::size_t size) {
    std::string text;
    const std::string_view words = "The quick brown fox jumps over the lazy dog. ";
    while (text.size() < size) text += words;
    text.resize(size);
    return text;
}

void bench_memcpy(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    std::vector<std::uint8_t> from(size, 0x5a), to(size);
    for (auto _ : state) {
        std::memcpy(to.data(), from.data(), size);
        benchmark::DoNotOptimize(to.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
}

void bench_apply_mask(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    std::vector<std::uint8_t> data(size, 0x5a);
    const wsx::mask_key key{0x37, 0xfa, 0x21, 0x3d};
    for (auto _ : state) {
        wsx::apply_mask(data, key);
        benchmark::DoNotOptimize(data.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
}

void bench_utf8(benchmark::State& state, const std::string& text) {
    for (auto _ : state) {
        bool valid = wsx::is_valid_utf8(text);
        benchmark::DoNotOptimize(valid);
        if (!valid) state.SkipWithError("benchmark text is not valid UTF-8");
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}

void bench_utf8_ascii(benchmark::State& state) {
    bench_utf8(state, ascii_text(static_cast<std::size_t>(state.range(0))));
}

void bench_utf8_mixed(benchmark::State& state) {
    bench_utf8(state, mixed_text(static_cast<std::size_t>(state.range(0))));
}

// Headers as a server receives them: masked, with 7-, 16- and 64-bit lengths.
void bench_parse_frame_header(benchmark::State& state) {
    std::vector<std::vector<std::uint8_t>> headers;
    for (std::uint64_t length : {100u, 1000u, 100000u}) {
        wsx::frame_header h;
        h.op = wsx::opcode::binary;
        h.masked = true;
        h.key = {1, 2, 3, 4};
        h.payload_length = length;
        std::vector<std::uint8_t> bytes(wsx::max_frame_header_size);
        bytes.resize(wsx::write_frame_header(h, bytes));
        headers.push_back(bytes);
    }
    std::size_t bytes_parsed = 0;
    for (auto _ : state) {
        for (const auto& bytes : headers) {
            wsx::frame_header h;
            auto result = wsx::parse_frame_header(bytes, wsx::role::server, h);
            benchmark::DoNotOptimize(result);
            benchmark::DoNotOptimize(h);
            bytes_parsed += bytes.size();
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * headers.size()));
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes_parsed));
}

void sizes(benchmark::internal::Benchmark* b) {
    for (std::int64_t size : {16, 1024, 64 * 1024, 1024 * 1024}) b->Arg(size);
}

} // namespace

BENCHMARK(bench_memcpy)->Apply(sizes);
BENCHMARK(bench_apply_mask)->Apply(sizes);
BENCHMARK(bench_utf8_ascii)->Apply(sizes);
BENCHMARK(bench_utf8_mixed)->Apply(sizes);
BENCHMARK(bench_parse_frame_header);
