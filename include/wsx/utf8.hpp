// wsx/utf8.hpp - incremental UTF-8 validation (RFC 3629) for text messages
// and close reasons.
//
// RFC 6455 §8.1 fails a connection on invalid UTF-8 as soon as it is seen, and
// a text message may arrive in many fragments, so the validator is fed piece
// by piece, keeps its state between pieces, and feed() answers false for the
// piece holding the first byte that cannot start or continue a valid
// character (ED A0: at A0, a surrogate), not at the end of the message.
//
// How it works: runs of ASCII are skipped 8 bytes at a time (32 with SSE2,
// 64 with AVX2); everything else goes through a 9-state DFA, one table lookup
// and one shift per byte, in blocks of 64 bytes.
#pragma once

#include <wsx/bytes.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace wsx {
namespace detail {

// DFA states. Each is a bit offset (a multiple of 6), so one 64-bit table row
// per input byte holds that byte's transitions from all nine states, and a
// step is `next = utf8_table[byte] >> state`, the low 6 bits kept.
// reject is 0 so that its field is 0 in every row: failure is sticky.
inline constexpr unsigned utf8_reject = 0;
inline constexpr unsigned utf8_accept = 6;    // between characters
inline constexpr unsigned utf8_tail1 = 12;    // one continuation byte (80-BF) to go
inline constexpr unsigned utf8_tail2 = 18;    // two to go
inline constexpr unsigned utf8_tail3 = 24;    // three to go
inline constexpr unsigned utf8_after_e0 = 30; // E0: A0-BF next, else overlong
inline constexpr unsigned utf8_after_ed = 36; // ED: 80-9F next, else a surrogate (U+D800-U+DFFF)
inline constexpr unsigned utf8_after_f0 = 42; // F0: 90-BF next, else overlong
inline constexpr unsigned utf8_after_f4 = 48; // F4: 80-8F next, else above U+10FFFF

// RFC 3629 §4: the syntax of UTF-8 byte sequences.
//   UTF8-1 = %x00-7F
//   UTF8-2 = %xC2-DF UTF8-tail
//   UTF8-3 = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) /
//            %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
//   UTF8-4 = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) /
//            %xF4 %x80-8F 2( UTF8-tail )
//   UTF8-tail = %x80-BF
constexpr unsigned utf8_next(unsigned state, unsigned byte) noexcept {
    const auto in = [byte](unsigned low, unsigned high) { return byte >= low && byte <= high; };
    switch (state) {
    case utf8_accept:
        if (in(0x00, 0x7f)) return utf8_accept;
        if (in(0xc2, 0xdf)) return utf8_tail1;
        if (byte == 0xe0) return utf8_after_e0;
        if (byte == 0xed) return utf8_after_ed;
        if (in(0xe1, 0xef)) return utf8_tail2;
        if (byte == 0xf0) return utf8_after_f0;
        if (byte == 0xf4) return utf8_after_f4;
        if (in(0xf1, 0xf3)) return utf8_tail3;
        // A stray continuation byte; C0-C1 (always overlong); F5-FF (above
        // U+10FFFF, or the old 5- and 6-byte forms).
        return utf8_reject;
    case utf8_tail1: return in(0x80, 0xbf) ? utf8_accept : utf8_reject;
    case utf8_tail2: return in(0x80, 0xbf) ? utf8_tail1 : utf8_reject;
    case utf8_tail3: return in(0x80, 0xbf) ? utf8_tail2 : utf8_reject;
    case utf8_after_e0: return in(0xa0, 0xbf) ? utf8_tail1 : utf8_reject;
    case utf8_after_ed: return in(0x80, 0x9f) ? utf8_tail1 : utf8_reject;
    case utf8_after_f0: return in(0x90, 0xbf) ? utf8_tail2 : utf8_reject;
    case utf8_after_f4: return in(0x80, 0x8f) ? utf8_tail2 : utf8_reject;
    default: return utf8_reject;
    }
}

constexpr std::array<std::uint64_t, 256> make_utf8_table() noexcept {
    std::array<std::uint64_t, 256> table{};
    for (unsigned byte = 0; byte < 256; ++byte) {
        for (unsigned state = utf8_reject; state <= utf8_after_f4; state += 6) {
            table[byte] |= std::uint64_t{utf8_next(state, byte)} << state;
        }
    }
    return table;
}

inline constexpr std::array<std::uint64_t, 256> utf8_table = make_utf8_table();

// How many leading bytes are surely ASCII. It may stop short of the first
// non-ASCII byte (at a block edge); the DFA handles what is left.
inline std::size_t ascii_prefix(const std::uint8_t* p, std::size_t n) noexcept {
    std::size_t i = 0;
#if defined(__AVX2__)
    for (; i + 64 <= n; i += 64) {
        const auto* block = reinterpret_cast<const __m256i*>(p + i);
        const __m256i any = _mm256_or_si256(_mm256_loadu_si256(block), _mm256_loadu_si256(block + 1));
        if (_mm256_movemask_epi8(any) != 0) break;
    }
#elif defined(__SSE2__)
    for (; i + 32 <= n; i += 32) {
        const auto* block = reinterpret_cast<const __m128i*>(p + i);
        const __m128i any = _mm_or_si128(_mm_loadu_si128(block), _mm_loadu_si128(block + 1));
        if (_mm_movemask_epi8(any) != 0) break;
    }
#endif
    for (; i + 8 <= n; i += 8) {
        std::uint64_t word;
        std::memcpy(&word, p + i, sizeof word);
        if ((word & 0x8080808080808080u) != 0) break;
    }
    return i;
}

// Runs the DFA over p[0, n) from `state`, as two chains the CPU can run side
// by side (one chain is bound by the latency of a shift per byte). UTF-8
// resynchronises at any byte that is not a continuation byte (10xxxxxx), so
// the second chain starts there from utf8_accept; the first must then end
// in utf8_accept, or that byte is invalid where it stands.
inline std::uint64_t utf8_run(std::uint64_t state, const std::uint8_t* p, std::size_t n) noexcept {
    std::size_t middle = n / 2;
    while (middle < n && (p[middle] & 0xc0) == 0x80) ++middle;
    const std::uint8_t* q = p + middle;
    const std::size_t q_size = n - middle;
    std::uint64_t q_state = utf8_accept;
    const std::size_t both = middle < q_size ? middle : q_size;
    std::size_t i = 0;
    for (; i < both; ++i) {
        state = utf8_table[p[i]] >> (state & 63);
        q_state = utf8_table[q[i]] >> (q_state & 63);
    }
    for (std::size_t j = i; j < middle; ++j) state = utf8_table[p[j]] >> (state & 63);
    for (std::size_t j = i; j < q_size; ++j) q_state = utf8_table[q[j]] >> (q_state & 63);
    state &= 63;
    if (q_size == 0) return state;
    return state == utf8_accept ? q_state & 63 : utf8_reject;
}

} // namespace detail

class utf8_validator {
public:
    // Validates the next piece of the text. Returns false once the text so far
    // cannot be a prefix of valid UTF-8, and keeps returning false until
    // reset().
    bool feed(const_bytes input) noexcept {
        const std::uint8_t* p = input.data();
        const std::size_t n = input.size();
        std::uint64_t state = state_;
        std::size_t i = 0;
        while (i < n && state != detail::utf8_reject) {
            if (state == detail::utf8_accept) i += detail::ascii_prefix(p + i, n - i);
            // Run the DFA over a block, looking for failure once per block.
            const std::size_t block = n - i < 64 ? n - i : 64;
            state = detail::utf8_run(state, p + i, block);
            i += block;
        }
        state_ = static_cast<std::uint8_t>(state);
        return state != detail::utf8_reject;
    }

    // True when the text fed so far ends between characters. Check it at the
    // end of a message: a character cut short there is invalid.
    bool complete() const noexcept { return state_ == detail::utf8_accept; }

    bool failed() const noexcept { return state_ == detail::utf8_reject; }

    void reset() noexcept { state_ = detail::utf8_accept; }

private:
    std::uint8_t state_ = detail::utf8_accept;
};

// Is this whole string valid UTF-8?
inline bool is_valid_utf8(const_bytes text) noexcept {
    utf8_validator validator;
    return validator.feed(text) && validator.complete();
}

} // namespace wsx
