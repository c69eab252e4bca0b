#include <wsx/deflate.hpp>

#include "support/zlib_counter.hpp"

#include <catch2/catch.hpp>

#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

// Counts heap allocations made through operator new, to check that a message
// in steady state allocates nothing.
namespace {
std::size_t operator_new_count = 0;
}

// These replacements use malloc and free. Once GCC 12 inlines them into the
// standard library at -O2 it reports the pair as a new/free mismatch, which
// it is not: every pointer these operators free came from their own malloc.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t size) {
    ++operator_new_count;
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    ++operator_new_count;
    return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

using wsx::deflate_options;
using wsx::deflate_params;
using wsx::error;

namespace {

using bytes = std::vector<std::uint8_t>;

bytes hex(std::string_view text) {
    bytes out;
    auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
    for (std::size_t i = 0; i + 1 < text.size(); i += 3) {
        out.push_back(static_cast<std::uint8_t>(nibble(text[i]) * 16 + nibble(text[i + 1])));
    }
    return out;
}

bytes to_bytes(std::string_view text) { return bytes(text.begin(), text.end()); }

constexpr std::size_t no_limit = SIZE_MAX;

deflate_params agreed(std::uint8_t our_bits = 15, std::uint8_t peer_bits = 15, bool our_reset = false,
                      bool peer_reset = false) {
    deflate_params p;
    p.our_max_window_bits = our_bits;
    p.peer_max_window_bits = peer_bits;
    p.our_no_context_takeover = our_reset;
    p.peer_no_context_takeover = peer_reset;
    return p;
}

// The params the peer holds when we hold `p`.
deflate_params mirrored(const deflate_params& p) {
    return agreed(p.peer_max_window_bits, p.our_max_window_bits, p.peer_no_context_takeover, p.our_no_context_takeover);
}

// Compresses a whole message, given in parts of `part_size` bytes.
bytes compress(wsx::deflater& d, const bytes& message, std::size_t part_size = SIZE_MAX) {
    bytes out;
    std::size_t offset = 0;
    do {
        const std::size_t n = std::min(part_size, message.size() - offset);
        const bool last = offset + n == message.size();
        REQUIRE_FALSE(d.compress(wsx::const_bytes(message.data() + offset, n), last, out));
        offset += n;
    } while (offset < message.size());
    return out;
}

// Inflates one message payload given as fragments ending at `cuts`.
std::error_code decompress(wsx::inflater& i, const bytes& payload, bytes& out, std::size_t limit = no_limit,
                           const std::vector<std::size_t>& cuts = {}) {
    std::size_t offset = 0;
    for (std::size_t cut : cuts) {
        if (auto ec = i.decompress(wsx::const_bytes(payload.data() + offset, cut - offset), false, out, limit))
            return ec;
        offset = cut;
    }
    return i.decompress(wsx::const_bytes(payload.data() + offset, payload.size() - offset), true, out, limit);
}

bytes decompress_ok(wsx::inflater& i, const bytes& payload, const std::vector<std::size_t>& cuts = {}) {
    bytes out;
    const std::error_code ec = decompress(i, payload, out, no_limit, cuts);
    REQUIRE_FALSE(ec);
    return out;
}

// Deterministic data: the raw engine output is fixed by the standard.
bytes noise_data(std::size_t size, std::uint32_t seed) {
    std::mt19937 engine(seed);
    bytes out(size);
    for (auto& b : out) b = static_cast<std::uint8_t>(engine() >> 24);
    return out;
}

// JSON-like text: repeated keys, varying numbers and words.
bytes text_data(std::size_t size, std::uint32_t seed) {
    static const char* const words[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"};
    std::mt19937 engine(seed);
    std::string s;
    while (s.size() < size) {
        s += "{\"id\":" + std::to_string(engine() % 100000) + ",\"name\":\"" + words[engine() % 8] + "\",\"tags\":[\"" +
             words[engine() % 8] + "\",\"" + words[engine() % 8] + "\"],\"score\":" + std::to_string(engine() % 1000) +
             "." + std::to_string(engine() % 100) + ",\"active\":" + ((engine() & 1) ? "true" : "false") + "}\n";
    }
    s.resize(size);
    return to_bytes(s);
}

// Inflates payload + tail with plain zlib and a raw window of exactly
// `window_bits`: proves the stream fits the window the peer was promised.
// zlib lets a match reach into output of the same call whatever the window,
// so the output goes one byte per call: every match then reads the window.
std::optional<bytes> strict_inflate(const bytes& payload, int window_bits) {
    z_stream s{};
    if (inflateInit2(&s, -window_bits) != Z_OK) return std::nullopt;
    bytes input = payload;
    input.insert(input.end(), {0x00, 0x00, 0xff, 0xff});
    bytes out;
    s.next_in = input.data();
    s.avail_in = static_cast<uInt>(input.size());
    int rc = Z_OK;
    for (;;) {
        std::uint8_t byte = 0;
        s.next_out = &byte;
        s.avail_out = 1;
        rc = inflate(&s, Z_SYNC_FLUSH);
        if (s.avail_out == 0) out.push_back(byte);
        if (rc != Z_OK || (s.avail_in == 0 && s.avail_out != 0)) break;
    }
    inflateEnd(&s);
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) return std::nullopt;
    if (s.avail_in != 0) return std::nullopt;
    return out;
}

using wsx::test::zlib_counter;

} // namespace

// ---------------------------------------------------------------------------
// RFC 7692 §7.2.3 examples, byte for byte.

TEST_CASE("RFC 7692 §7.2.3.1 and §7.2.3.2: Hello, then Hello sharing the window") {
    wsx::deflater d(agreed(), deflate_options{});
    CHECK(compress(d, to_bytes("Hello")) == hex("f2 48 cd c9 c9 07 00"));
    CHECK(compress(d, to_bytes("Hello")) == hex("f2 00 11 00 00"));

    wsx::inflater i(agreed(), deflate_options{});
    CHECK(decompress_ok(i, hex("f2 48 cd c9 c9 07 00")) == to_bytes("Hello"));
    CHECK(decompress_ok(i, hex("f2 00 11 00 00")) == to_bytes("Hello"));
}

TEST_CASE("without context takeover each Hello compresses alike") {
    wsx::deflater d(agreed(15, 15, true), deflate_options{});
    CHECK(compress(d, to_bytes("Hello")) == hex("f2 48 cd c9 c9 07 00"));
    CHECK(compress(d, to_bytes("Hello")) == hex("f2 48 cd c9 c9 07 00"));
}

TEST_CASE("without context takeover the inflater forgets the previous message") {
    // The second payload refers back into the first message's window.
    wsx::inflater keeps(agreed(15, 15, false, false), deflate_options{});
    CHECK(decompress_ok(keeps, hex("f2 48 cd c9 c9 07 00")) == to_bytes("Hello"));
    CHECK(decompress_ok(keeps, hex("f2 00 11 00 00")) == to_bytes("Hello"));

    wsx::inflater forgets(agreed(15, 15, false, true), deflate_options{});
    CHECK(decompress_ok(forgets, hex("f2 48 cd c9 c9 07 00")) == to_bytes("Hello"));
    bytes out;
    CHECK(decompress(forgets, hex("f2 00 11 00 00"), out) == error::inflate_failed);
}

TEST_CASE("RFC 7692 §7.2.3 payloads inflate to Hello, fed whole, byte by byte and split at every point") {
    const char* const payloads[] = {
        "f2 48 cd c9 c9 07 00",                         // §7.2.3.1
        "00 05 00 fa ff 48 65 6c 6c 6f 00",             // §7.2.3.3 stored block
        "f3 48 cd c9 c9 07 00 00",                      // §7.2.3.4 BFINAL set
        "f3 48 cd c9 c9 07 00",                         // BFINAL without the extra 00
        "f2 48 05 00 00 00 ff ff ca c9 c9 07 00",       // §7.2.3.5 two blocks
    };
    for (const char* text : payloads) {
        const bytes payload = hex(text);
        INFO("payload: " << text);
        wsx::inflater i(agreed(), deflate_options{});
        CHECK(decompress_ok(i, payload) == to_bytes("Hello"));
        std::vector<std::size_t> every_byte;
        for (std::size_t n = 1; n < payload.size(); ++n) every_byte.push_back(n);
        CHECK(decompress_ok(i, payload, every_byte) == to_bytes("Hello"));
        for (std::size_t n = 0; n <= payload.size(); ++n) {
            CHECK(decompress_ok(i, payload, {n}) == to_bytes("Hello"));
        }
        // Whatever the last message was, the window still works for the next.
        CHECK(decompress_ok(i, hex("f2 48 cd c9 c9 07 00")) == to_bytes("Hello"));
    }
}

TEST_CASE("RFC 7692 §7.2.3.1: the fragmented Hello") {
    wsx::inflater i(agreed(), deflate_options{});
    bytes out;
    REQUIRE_FALSE(i.decompress(hex("f2 48 cd"), false, out, no_limit));
    REQUIRE_FALSE(i.decompress(hex("c9 c9 07 00"), true, out, no_limit));
    CHECK(out == to_bytes("Hello"));
}

TEST_CASE("compressing in parts: the tail comes off only at the end") {
    wsx::deflater d(agreed(), deflate_options{});
    bytes out;
    REQUIRE_FALSE(d.compress(to_bytes("Hel"), false, out));
    REQUIRE_FALSE(d.compress(to_bytes("lo"), false, out));
    REQUIRE_FALSE(d.compress({}, false, out));
    REQUIRE_FALSE(d.compress({}, true, out));
    CHECK(out == hex("f2 48 cd c9 c9 07 00"));
}

TEST_CASE("compress appends to what the vector holds") {
    wsx::deflater d(agreed(), deflate_options{});
    bytes out = hex("aa bb");
    REQUIRE_FALSE(d.compress(to_bytes("Hello"), true, out));
    CHECK(out == hex("aa bb f2 48 cd c9 c9 07 00"));
    wsx::inflater i(agreed(), deflate_options{});
    bytes plain = to_bytes("> ");
    REQUIRE_FALSE(i.decompress(hex("f2 48 cd c9 c9 07 00"), true, plain, no_limit));
    CHECK(plain == to_bytes("> Hello"));
}

TEST_CASE("an empty message is the single byte 00, and an empty payload inflates to nothing") {
    for (bool reset : {false, true}) {
        wsx::deflater d(agreed(15, 15, reset), deflate_options{});
        wsx::inflater i(agreed(15, 15, false, reset), deflate_options{});
        CHECK(compress(d, {}) == hex("00"));
        CHECK(decompress_ok(i, hex("00")).empty());
        const bytes hello = compress(d, to_bytes("Hello"));
        CHECK(decompress_ok(i, hello) == to_bytes("Hello"));
        CHECK(compress(d, {}) == hex("00"));
        CHECK(decompress_ok(i, hex("00")).empty());
        CHECK(decompress_ok(i, {}).empty());
        CHECK(decompress_ok(i, compress(d, to_bytes("Hello"))) == to_bytes("Hello"));
    }
}

// ---------------------------------------------------------------------------
// Round trips.

TEST_CASE("round trips under every combination of the four parameters and several windows") {
    const std::size_t sizes[] = {0, 1, 2, 100, 4095, 4096, 70000};
    for (std::uint8_t bits : {8, 9, 12, 15}) {
        for (int combination = 0; combination < 16; ++combination) {
            // The four parameters, as the client holds them.
            const std::uint8_t server_bits = (combination & 1) ? bits : 15;
            const std::uint8_t client_bits = (combination & 2) ? bits : 15;
            const bool server_reset = (combination & 4) != 0;
            const bool client_reset = (combination & 8) != 0;
            const deflate_params client = agreed(client_bits, server_bits, client_reset, server_reset);
            const deflate_params server = mirrored(client);
            deflate_options options;
            options.compression_level = 1 + combination % 9;
            options.memory_level = 1 + combination % 9;
            wsx::deflater client_deflater(client, options);
            wsx::inflater server_inflater(server, options);
            wsx::deflater server_deflater(server, options);
            wsx::inflater client_inflater(client, options);
            INFO("bits " << int(bits) << " combination " << combination);
            std::uint32_t seed = 1;
            for (std::size_t size : sizes) {
                for (int kind = 0; kind < 2; ++kind) {
                    const bytes message = kind == 0 ? noise_data(size, seed++) : text_data(size, seed++);
                    INFO("size " << size << " kind " << kind);
                    // Client to server, whole; server to client, in parts.
                    const bytes up = compress(client_deflater, message);
                    CHECK(decompress_ok(server_inflater, up) == message);
                    const bytes down = compress(server_deflater, message, 1000);
                    CHECK(decompress_ok(client_inflater, down, {down.size() / 3, down.size() / 2}) == message);
                    // Each stream fits the window promised to its receiver.
                    const auto strict = strict_inflate(down, server.our_max_window_bits);
                    if (server.our_no_context_takeover && size <= 4096) {
                        REQUIRE(strict.has_value());
                        CHECK(*strict == message);
                    }
                }
            }
        }
    }
}

TEST_CASE("round trips of large messages") {
    // A few sizes at the top, with the defaults and with level 1.
    const std::size_t sizes[] = {1 << 20, 16 << 20};
    for (int level : {1, 6}) {
        deflate_options options;
        options.compression_level = level;
        const deflate_params params = agreed(12, 12);
        wsx::deflater d(params, options);
        wsx::inflater i(mirrored(params), options);
        for (std::size_t size : sizes) {
            if (level == 6 && size > (1 << 20)) continue;
            const bytes text = text_data(size, 7);
            bytes payload = compress(d, text, size / 3);
            CHECK(payload.size() < size / 3);
            CHECK(decompress_ok(i, payload, {payload.size() / 2}) == text);
        }
        const bytes noise = noise_data(1 << 20, 8);
        CHECK(decompress_ok(i, compress(d, noise)) == noise);
    }
}

TEST_CASE("context takeover makes a repeated message shorter; no context takeover makes it independent") {
    const bytes message = text_data(2000, 3);
    wsx::deflater keeps(agreed(15, 15, false), deflate_options{});
    const bytes first = compress(keeps, message);
    const bytes second = compress(keeps, message);
    CHECK(second.size() < first.size() / 4);

    wsx::deflater resets(agreed(15, 15, true), deflate_options{});
    const bytes a = compress(resets, message);
    const bytes b = compress(resets, message);
    CHECK(a == b);
    // A fresh inflater reads each one alone.
    CHECK(strict_inflate(b, 15) == message);
    CHECK_FALSE(strict_inflate(second, 15).has_value());
}

TEST_CASE("window bits 8: output stays within a 256-byte window") {
    // Text that repeats every 300 bytes: a 9-bit compressor reaches back.
    bytes message;
    const bytes block = text_data(300, 11);
    for (int n = 0; n < 20; ++n) message.insert(message.end(), block.begin(), block.end());

    wsx::deflater eight(agreed(8, 15, true), deflate_options{});
    const bytes payload = compress(eight, message);
    CHECK(strict_inflate(payload, 8) == message);
    CHECK(payload.size() < message.size()); // still some compression (runs, Huffman)

    // The same data compressed with a wider window reaches back 300 bytes,
    // which an 8-bit window refuses (so the strict check above can fail).
    wsx::deflater wide(agreed(10, 15, true), deflate_options{});
    const bytes wider = compress(wide, message);
    CHECK_FALSE(strict_inflate(wider, 8).has_value());
    CHECK(strict_inflate(wider, 9) == message);
    CHECK(wider.size() < payload.size());

    // Our inflater, told the peer uses 8 bits, reads with 9: both pass.
    wsx::inflater i(agreed(15, 8, false, true), deflate_options{});
    CHECK(decompress_ok(i, payload) == message);
    CHECK(decompress_ok(i, wider) == message);
}

TEST_CASE("decompression fed in every two-fragment split and byte by byte") {
    const bytes first = text_data(600, 21);
    const bytes second = text_data(600, 22);
    wsx::deflater d(agreed(), deflate_options{});
    const bytes p1 = compress(d, first);
    const bytes p2 = compress(d, second); // refers back into the first
    for (std::size_t cut = 0; cut <= p2.size(); ++cut) {
        wsx::inflater i(agreed(), deflate_options{});
        CHECK(decompress_ok(i, p1, {cut * p1.size() / p2.size()}) == first);
        CHECK(decompress_ok(i, p2, {cut}) == second);
    }
    wsx::inflater i(agreed(), deflate_options{});
    std::vector<std::size_t> every_byte;
    for (std::size_t n = 1; n < p1.size(); ++n) every_byte.push_back(n);
    CHECK(decompress_ok(i, p1, every_byte) == first);
    every_byte.clear();
    for (std::size_t n = 1; n < p2.size(); ++n) every_byte.push_back(n);
    CHECK(decompress_ok(i, p2, every_byte) == second);
}

// ---------------------------------------------------------------------------
// Limits and bad input.

TEST_CASE("the message size limit at N and N+1, across fragments") {
    const bytes message = text_data(5000, 31);
    wsx::deflater d(agreed(), deflate_options{});
    const bytes payload = compress(d, message);
    for (std::size_t cuts : {0, 1, 3}) {
        std::vector<std::size_t> at;
        for (std::size_t n = 1; n <= cuts; ++n) at.push_back(n * payload.size() / (cuts + 1));
        wsx::inflater fits(agreed(), deflate_options{});
        bytes out;
        CHECK_FALSE(decompress(fits, payload, out, message.size(), at));
        CHECK(out == message);

        wsx::inflater over(agreed(), deflate_options{});
        out.clear();
        CHECK(decompress(over, payload, out, message.size() - 1, at) == error::message_too_big);
        CHECK(out.size() <= message.size());
    }
    // A limit of 0 allows only empty messages.
    wsx::inflater zero(agreed(), deflate_options{});
    bytes out;
    CHECK_FALSE(decompress(zero, hex("00"), out, 0));
    CHECK(decompress(zero, hex("f2 48 cd c9 c9 07 00"), out, 0) == error::message_too_big);
}

TEST_CASE("a deflate bomb stops at the limit, and the output vector never grows past it") {
    // 8 MiB of zeros compress to about 8 KiB.
    wsx::deflater d(agreed(), deflate_options{});
    const bytes bomb = compress(d, bytes(8 << 20, 0));
    REQUIRE(bomb.size() < 10000);
    constexpr std::size_t limit = 1 << 20;
    for (std::size_t fragment : {bomb.size(), std::size_t{100}, std::size_t{1}}) {
        wsx::inflater i(agreed(), deflate_options{});
        bytes out;
        std::error_code ec;
        for (std::size_t offset = 0; offset < bomb.size() && !ec; offset += fragment) {
            const std::size_t n = std::min(fragment, bomb.size() - offset);
            ec = i.decompress(wsx::const_bytes(bomb.data() + offset, n), offset + n == bomb.size(), out, limit);
            CHECK(out.capacity() <= limit + 1);
        }
        INFO("fragment " << fragment);
        CHECK(ec == error::message_too_big);
        CHECK(out.size() <= limit + 1);
        CHECK(out.capacity() <= limit + 1);
        // The inflater is usable again for the next message.
        CHECK(decompress_ok(i, hex("f2 48 cd c9 c9 07 00")) == to_bytes("Hello"));
    }
}

TEST_CASE("corrupt streams fail with inflate_failed, and the next message starts clean") {
    const char* const corrupt[] = {
        "07",                                // BTYPE 11 (reserved)
        "ff ff ff ff",                       // BTYPE 11 too
        "00 05 00 00 00 48 65 6c 6c 6f",     // stored block with a wrong NLEN
        "f2 48",                             // truncated: ends inside a block
        "f2 48 cd c9 c9 07",                 // ends before the block ends
        "f2 48 cd c9 c9 07 00 00 00 ff ff",  // the tail left on: ends inside a stored block
        "02 02",                             // fixed block reaching back before the start
        "04 00",                             // dynamic block header cut short
    };
    for (const char* text : corrupt) {
        INFO("payload: " << text);
        wsx::inflater i(agreed(), deflate_options{});
        bytes out;
        CHECK(decompress(i, hex(text), out) == error::inflate_failed);
        CHECK(decompress_ok(i, hex("f2 48 cd c9 c9 07 00")) == to_bytes("Hello"));
    }
}

// ---------------------------------------------------------------------------
// Memory and allocations.

TEST_CASE("z_streams are made on first use only, and a message in steady state allocates nothing") {
    zlib_counter deflate_memory;
    zlib_counter inflate_memory;
    deflate_options options;
    wsx::deflater d(agreed(12, 12), [&] {
        deflate_options o = options;
        o.allocator = deflate_memory.hooks();
        return o;
    }());
    wsx::inflater i(agreed(12, 12), [&] {
        deflate_options o = options;
        o.allocator = inflate_memory.hooks();
        return o;
    }());
    CHECK_FALSE(d.started());
    CHECK_FALSE(i.started());
    CHECK(deflate_memory.calls == 0);

    const bytes message = text_data(3000, 41);
    bytes payload;
    bytes plain;
    payload.reserve(4096);
    plain.reserve(4096);
    // Warm up: the first message makes the z_streams.
    REQUIRE_FALSE(d.compress(message, true, payload));
    REQUIRE_FALSE(i.decompress(payload, true, plain, no_limit));
    CHECK(d.started());
    CHECK(i.started());
    // RFC-default memory figures for window 12, memLevel 5 (see deflate.hpp).
    CHECK(deflate_memory.live > 30000);
    CHECK(deflate_memory.live < 45000);
    CHECK(inflate_memory.live > 4096);
    CHECK(inflate_memory.live < 16000);

    const std::size_t zlib_calls = deflate_memory.calls + inflate_memory.calls;
    // No test macros inside the counted loop: they may allocate themselves.
    int failures = 0;
    const std::size_t news = operator_new_count;
    for (int n = 0; n < 50; ++n) {
        payload.clear();
        plain.clear();
        failures += static_cast<bool>(d.compress(message, true, payload));
        const wsx::const_bytes whole = payload;
        const std::size_t half = payload.size() / 2;
        failures += static_cast<bool>(i.decompress(whole.first(half), false, plain, no_limit));
        failures += static_cast<bool>(i.decompress(whole.subspan(half), true, plain, no_limit));
        failures += plain != message;
    }
    const std::size_t news_after = operator_new_count;
    CHECK(failures == 0);
    CHECK(news_after == news);
    CHECK(deflate_memory.calls + inflate_memory.calls == zlib_calls);
}

TEST_CASE("no context takeover resets rather than recreates the z_stream") {
    zlib_counter memory;
    deflate_options options;
    options.allocator = memory.hooks();
    wsx::deflater d(agreed(12, 12, true, true), options);
    wsx::inflater i(agreed(12, 12, true, true), options);
    const bytes message = text_data(3000, 42);
    CHECK(decompress_ok(i, compress(d, message)) == message);
    const std::size_t calls = memory.calls;
    for (int n = 0; n < 10; ++n) CHECK(decompress_ok(i, compress(d, message)) == message);
    CHECK(memory.calls == calls);
}

// ---------------------------------------------------------------------------
// Negotiation.

namespace {

std::vector<wsx::extension> extensions(std::string_view header) {
    std::vector<wsx::extension> out;
    REQUIRE_FALSE(wsx::parse_extensions(header, out));
    return out;
}

deflate_options policy(std::uint8_t server_bits, std::uint8_t client_bits, bool server_reset = false,
                       bool client_reset = false) {
    deflate_options o;
    o.server_max_window_bits = server_bits;
    o.client_max_window_bits = client_bits;
    o.server_no_context_takeover = server_reset;
    o.client_no_context_takeover = client_reset;
    return o;
}

// Not inlined: GCC 12 at -O2 otherwise reports members of a checked
// std::optional<deflate_params> as maybe uninitialized.
[[gnu::noinline]] bool same_params(const deflate_params& a, const deflate_params& b) {
    return a.our_max_window_bits == b.our_max_window_bits && a.peer_max_window_bits == b.peer_max_window_bits &&
           a.our_no_context_takeover == b.our_no_context_takeover &&
           a.peer_no_context_takeover == b.peer_no_context_takeover;
}

} // namespace

TEST_CASE("server negotiation: offers against policy") {
    struct row {
        const char* offers;
        deflate_options options;
        const char* response; // nullptr: declined
        deflate_params params;
    };
    const row rows[] = {
        {"permessage-deflate", policy(15, 15), "permessage-deflate", agreed(15, 15)},
        {"permessage-deflate", policy(12, 12), "permessage-deflate; server_max_window_bits=12", agreed(12, 15)},
        {"permessage-deflate; client_max_window_bits", policy(15, 15), "permessage-deflate", agreed(15, 15)},
        {"permessage-deflate; client_max_window_bits", policy(12, 12),
         "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", agreed(12, 12)},
        {"permessage-deflate; client_max_window_bits=10", policy(12, 12),
         "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10", agreed(12, 10)},
        {"permessage-deflate; client_max_window_bits=\"10\"", policy(15, 15),
         "permessage-deflate; client_max_window_bits=10", agreed(15, 10)},
        {"permessage-deflate; client_max_window_bits=15", policy(15, 15), "permessage-deflate", agreed(15, 15)},
        {"permessage-deflate; server_max_window_bits=10", policy(12, 12),
         "permessage-deflate; server_max_window_bits=10", agreed(10, 15)},
        {"permessage-deflate; server_max_window_bits=15", policy(15, 15),
         "permessage-deflate; server_max_window_bits=15", agreed(15, 15)},
        {"permessage-deflate; server_max_window_bits=13", policy(12, 12),
         "permessage-deflate; server_max_window_bits=12", agreed(12, 15)},
        {"permessage-deflate; server_max_window_bits=8", policy(15, 15),
         "permessage-deflate; server_max_window_bits=8", agreed(8, 15)},
        {"permessage-deflate; server_no_context_takeover", policy(15, 15),
         "permessage-deflate; server_no_context_takeover", agreed(15, 15, true, false)},
        {"permessage-deflate; client_no_context_takeover", policy(15, 15),
         "permessage-deflate; client_no_context_takeover", agreed(15, 15, false, true)},
        {"permessage-deflate", policy(15, 15, true, true),
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover", agreed(15, 15, true, true)},
        {"PERMESSAGE-DEFLATE; Server_No_Context_Takeover; CLIENT_MAX_WINDOW_BITS", policy(9, 9),
         "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9",
         agreed(9, 9, true, false)},
        // Other extensions are skipped.
        {"x-webkit-deflate-frame, permessage-deflate", policy(15, 15), "permessage-deflate", agreed(15, 15)},
        // Offers to decline, then the next acceptable one.
        {"permessage-deflate; x=1, permessage-deflate", policy(15, 15), "permessage-deflate", agreed(15, 15)},
        {"permessage-deflate; server_no_context_takeover; server_no_context_takeover, permessage-deflate; "
         "client_no_context_takeover",
         policy(15, 15), "permessage-deflate; client_no_context_takeover", agreed(15, 15, false, true)},
        {"permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=9",
         policy(15, 15), "permessage-deflate; server_max_window_bits=9", agreed(9, 15)},
        // Every offer invalid: declined.
        {"permessage-deflate; foo", policy(15, 15), nullptr, {}},
        {"permessage-deflate; server_max_window_bits", policy(15, 15), nullptr, {}},
        {"permessage-deflate; server_max_window_bits=16", policy(15, 15), nullptr, {}},
        {"permessage-deflate; server_max_window_bits=08", policy(15, 15), nullptr, {}},
        {"permessage-deflate; server_max_window_bits=0", policy(15, 15), nullptr, {}},
        {"permessage-deflate; server_max_window_bits=+9", policy(15, 15), nullptr, {}},
        {"permessage-deflate; server_max_window_bits=1O", policy(15, 15), nullptr, {}},
        {"permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", policy(15, 15), nullptr, {}},
        {"permessage-deflate; client_max_window_bits=7", policy(15, 15), nullptr, {}},
        {"permessage-deflate; client_max_window_bits=016", policy(15, 15), nullptr, {}},
        {"permessage-deflate; client_max_window_bits; client_max_window_bits=10", policy(15, 15), nullptr, {}},
        {"permessage-deflate; client_no_context_takeover=1", policy(15, 15), nullptr, {}},
        {"permessage-deflate; server_no_context_takeover=\"x\"", policy(15, 15), nullptr, {}},
        {"x-other", policy(15, 15), nullptr, {}},
        {"", policy(15, 15), nullptr, {}},
    };
    for (const row& r : rows) {
        INFO("offers: " << r.offers);
        const auto agreement = wsx::negotiate_deflate_server(extensions(r.offers), r.options);
        if (r.response == nullptr) {
            CHECK_FALSE(agreement.has_value());
            continue;
        }
        REQUIRE(agreement.has_value());
        CHECK(agreement->response == r.response);
        CHECK(same_params(agreement->params, r.params));
    }
}

TEST_CASE("client offers made from the options") {
    CHECK(wsx::make_deflate_offer(deflate_options{}) ==
          "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12, "
          "permessage-deflate; client_max_window_bits=12");
    CHECK(wsx::make_deflate_offer(policy(15, 15)) == "permessage-deflate; client_max_window_bits");
    deflate_options quiet = policy(15, 15);
    quiet.offer_client_max_window_bits = false;
    CHECK(wsx::make_deflate_offer(quiet) == "permessage-deflate");
    CHECK(wsx::make_deflate_offer(policy(15, 10, true, true)) ==
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10");
    deflate_options listed;
    wsx::deflate_offer a;
    a.server_max_window_bits = 9;
    wsx::deflate_offer b;
    b.has_client_max_window_bits = true;
    listed.client_offers = {a, b};
    CHECK(wsx::make_deflate_offer(listed) ==
          "permessage-deflate; server_max_window_bits=9, permessage-deflate; client_max_window_bits");
    // What the client offers, a server with any policy accepts.
    for (const auto& options : {deflate_options{}, policy(15, 15), quiet, policy(8, 8, true, true), listed}) {
        const std::string offer = wsx::make_deflate_offer(options);
        INFO("offer: " << offer);
        for (const auto& server : {deflate_options{}, policy(15, 15), policy(9, 9, true, true)}) {
            const auto agreement = wsx::negotiate_deflate_server(extensions(offer), server);
            REQUIRE(agreement.has_value());
            std::optional<deflate_params> client;
            CHECK_FALSE(wsx::check_deflate_response(extensions(agreement->response), options, client));
            REQUIRE(client.has_value());
            // Each side's compressor fits the other's inflater.
            CHECK(client->our_max_window_bits <= agreement->params.peer_max_window_bits);
            CHECK(agreement->params.our_max_window_bits <= client->peer_max_window_bits);
            CHECK(client->peer_no_context_takeover == agreement->params.our_no_context_takeover);
            CHECK((client->our_no_context_takeover || !agreement->params.peer_no_context_takeover));
        }
    }
}

TEST_CASE("client validation of the server's response") {
    struct row {
        deflate_options options;
        const char* response;
        std::error_code ec;
        std::optional<deflate_params> params;
    };
    const deflate_options defaults;
    deflate_options no_client_bits = policy(15, 15);
    no_client_bits.offer_client_max_window_bits = false;
    const row rows[] = {
        {defaults, "", {}, std::nullopt},
        {defaults, "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", {}, agreed(12, 12)},
        {defaults, "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10", {}, agreed(10, 9)},
        {defaults, "permessage-deflate; server_max_window_bits=\"10\"", {}, agreed(12, 10)},
        {defaults, "permessage-deflate", {}, agreed(12, 15)},                           // the fallback offer
        {defaults, "permessage-deflate; server_max_window_bits=13", {}, agreed(12, 13)}, // unsolicited, fallback
        {defaults, "permessage-deflate; client_max_window_bits=15", {}, agreed(12, 15)},
        {defaults, "permessage-deflate; client_no_context_takeover", {}, agreed(12, 15, true, false)},
        {defaults, "permessage-deflate; server_no_context_takeover", {}, agreed(12, 15, false, true)},
        {policy(15, 15), "permessage-deflate; client_max_window_bits=10", {}, agreed(10, 15)},
        {policy(15, 15), "permessage-deflate; client_max_window_bits=8", {}, agreed(8, 15)},
        {policy(15, 15, false, true), "permessage-deflate", {}, agreed(15, 15, true, false)},
        {policy(15, 15, true, false), "permessage-deflate; server_no_context_takeover", {},
         agreed(15, 15, false, true)},
        // Failures.
        {policy(15, 15, true, false), "permessage-deflate", error::bad_extension_response, std::nullopt},
        {policy(10, 15), "permessage-deflate; server_max_window_bits=11", {}, agreed(15, 11)}, // fallback accepts
        {no_client_bits, "permessage-deflate; client_max_window_bits=10", error::bad_extension_response, std::nullopt},
        {defaults, "permessage-deflate; client_max_window_bits", error::bad_extension_response, std::nullopt},
        {defaults, "permessage-deflate; server_max_window_bits", error::bad_extension_response, std::nullopt},
        {defaults, "permessage-deflate; server_max_window_bits=16", error::bad_extension_response, std::nullopt},
        {defaults, "permessage-deflate; server_max_window_bits=7", error::bad_extension_response, std::nullopt},
        {defaults, "permessage-deflate; server_max_window_bits=010", error::bad_extension_response, std::nullopt},
        {defaults, "permessage-deflate; client_max_window_bits=09", error::bad_extension_response, std::nullopt},
        {defaults, "permessage-deflate; foo", error::bad_extension_response, std::nullopt},
        {defaults, "permessage-deflate; server_no_context_takeover=1", error::bad_extension_response, std::nullopt},
        {defaults, "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
         error::bad_extension_response, std::nullopt},
        {defaults, "permessage-deflate, permessage-deflate", error::bad_extension_response, std::nullopt},
        {defaults, "x-other", error::unexpected_extension, std::nullopt},
        {defaults, "permessage-deflate, x-other", error::unexpected_extension, std::nullopt},
    };
    for (const row& r : rows) {
        INFO("response: " << r.response);
        std::optional<deflate_params> params = agreed(1, 1); // overwritten either way
        const std::error_code ec = wsx::check_deflate_response(extensions(r.response), r.options, params);
        CHECK(ec == r.ec);
        REQUIRE(params.has_value() == r.params.has_value());
        if (params) CHECK(same_params(*params, *r.params));
    }
}

TEST_CASE("client validation when the server asks for more than the only offer allows") {
    // One offer asking server_max_window_bits=10: a larger answer, or none,
    // does not accept it.
    deflate_options options;
    wsx::deflate_offer only;
    only.server_max_window_bits = 10;
    options.client_offers = {only};
    std::optional<deflate_params> params;
    CHECK(wsx::check_deflate_response(extensions("permessage-deflate; server_max_window_bits=11"), options, params) ==
          error::bad_extension_response);
    CHECK(wsx::check_deflate_response(extensions("permessage-deflate"), options, params) ==
          error::bad_extension_response);
    CHECK_FALSE(params.has_value());
    CHECK_FALSE(
        wsx::check_deflate_response(extensions("permessage-deflate; server_max_window_bits=10"), options, params));
    REQUIRE(params.has_value());
    CHECK(same_params(*params, agreed(12, 10)));
}

TEST_CASE("parse_deflate_offer and to_extension round trip") {
    wsx::deflate_offer offer;
    const auto parsed = extensions(
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits");
    REQUIRE_FALSE(wsx::parse_deflate_offer(parsed[0], offer));
    CHECK(offer.client_no_context_takeover);
    CHECK_FALSE(offer.server_no_context_takeover);
    CHECK(offer.server_max_window_bits == 9);
    CHECK(offer.has_client_max_window_bits);
    CHECK(offer.client_max_window_bits == 0);
    CHECK(wsx::format_extensions({wsx::to_extension(offer)}) ==
          "permessage-deflate; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits");
    CHECK(wsx::parse_deflate_offer(extensions("other")[0], offer) == error::bad_extension_offer);
    for (int bits = 0; bits < 20; ++bits) {
        const std::string header = "permessage-deflate; server_max_window_bits=" + std::to_string(bits);
        const bool valid = bits >= 8 && bits <= 15;
        CHECK(static_cast<bool>(wsx::parse_deflate_offer(extensions(header)[0], offer)) == !valid);
    }
}
