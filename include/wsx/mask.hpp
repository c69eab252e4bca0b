// wsx/mask.hpp - masking and unmasking of frame payloads (RFC 6455 §5.3).
//
// One XOR both masks and unmasks. apply_mask works a 64-bit word at a time,
// or 16 / 32 bytes at a time when the compiler targets SSE2 (the x86-64
// default) / AVX2 (-mavx2 or -march=native). It takes any length, any
// alignment and any starting position within the payload, so a payload that
// arrives in several buffers can be unmasked piece by piece, in place.
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

using mask_key = std::array<std::uint8_t, 4>;

namespace detail {

// The key repeated over 8 bytes (in memory order), starting with the key byte
// that applies at payload position `offset`.
inline std::uint64_t mask_word(mask_key key, std::size_t offset) noexcept {
    std::uint8_t bytes[8];
    for (std::size_t i = 0; i < 8; ++i) bytes[i] = key[(offset + i) % 4];
    std::uint64_t word;
    std::memcpy(&word, bytes, sizeof word);
    return word;
}

} // namespace detail

// XORs data in place with the masking key. `offset` is the position of
// data[0] within the frame payload, so that consecutive pieces of one payload
// continue the key rotation.
// RFC 6455 §5.3: "Octet i of the transformed data ("transformed-octet-i") is
// the XOR of octet i of the original data ("original-octet-i") with octet at
// index i modulo 4 of the masking key ("masking-key-octet-j")".
inline void apply_mask(mutable_bytes data, mask_key key, std::size_t offset = 0) noexcept {
    std::uint8_t* p = data.data();
    std::size_t n = data.size();
    // Every block width below (32, 16, 8) is a multiple of 4, so one rotated
    // key word serves the whole buffer.
    const std::uint64_t word = detail::mask_word(key, offset);

#if defined(__AVX2__)
    const __m256i wide = _mm256_set1_epi64x(static_cast<long long>(word));
    for (; n >= 64; p += 64, n -= 64) {
        auto* block = reinterpret_cast<__m256i*>(p);
        const __m256i a = _mm256_loadu_si256(block);
        const __m256i b = _mm256_loadu_si256(block + 1);
        _mm256_storeu_si256(block, _mm256_xor_si256(a, wide));
        _mm256_storeu_si256(block + 1, _mm256_xor_si256(b, wide));
    }
    if (n >= 32) {
        auto* block = reinterpret_cast<__m256i*>(p);
        _mm256_storeu_si256(block, _mm256_xor_si256(_mm256_loadu_si256(block), wide));
        p += 32;
        n -= 32;
    }
#elif defined(__SSE2__)
    const __m128i wide = _mm_set1_epi64x(static_cast<long long>(word));
    for (; n >= 32; p += 32, n -= 32) {
        auto* block = reinterpret_cast<__m128i*>(p);
        const __m128i a = _mm_loadu_si128(block);
        const __m128i b = _mm_loadu_si128(block + 1);
        _mm_storeu_si128(block, _mm_xor_si128(a, wide));
        _mm_storeu_si128(block + 1, _mm_xor_si128(b, wide));
    }
#endif

    // memcpy, not a cast: the buffer may be unaligned and is not a uint64_t.
    for (; n >= 8; p += 8, n -= 8) {
        std::uint64_t chunk;
        std::memcpy(&chunk, p, sizeof chunk);
        chunk ^= word;
        std::memcpy(p, &chunk, sizeof chunk);
    }
    std::uint8_t tail[8];
    std::memcpy(tail, &word, sizeof tail);
    for (std::size_t i = 0; i < n; ++i) p[i] ^= tail[i];
}

} // namespace wsx
