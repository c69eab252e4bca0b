// A slow, obviously correct UTF-8 validator, for tests and fuzzers to check
// wsx::utf8_validator against. It decodes each code point arithmetically
// (Unicode's definition) instead of following RFC 3629's byte table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace wsx_test {

enum class utf8_verdict { valid, invalid, truncated };

// Decodes the whole input. truncated: every character is fine but the last
// one is cut short (its lead byte and only continuation bytes after it).
inline utf8_verdict reference_utf8(const std::uint8_t* p, std::size_t n) {
    std::size_t i = 0;
    while (i < n) {
        const std::uint8_t lead = p[i];
        std::size_t length;
        std::uint32_t code_point;
        std::uint32_t smallest; // below this, the encoding is overlong
        if (lead < 0x80) { length = 1; code_point = lead; smallest = 0; }
        else if ((lead & 0xe0) == 0xc0) { length = 2; code_point = lead & 0x1f; smallest = 0x80; }
        else if ((lead & 0xf0) == 0xe0) { length = 3; code_point = lead & 0x0f; smallest = 0x800; }
        else if ((lead & 0xf8) == 0xf0) { length = 4; code_point = lead & 0x07; smallest = 0x10000; }
        else return utf8_verdict::invalid; // a continuation byte, or a 5/6-byte lead
        for (std::size_t k = 1; k < length; ++k) {
            if (i + k == n) return utf8_verdict::truncated;
            if ((p[i + k] & 0xc0) != 0x80) return utf8_verdict::invalid;
            code_point = (code_point << 6) | (p[i + k] & 0x3f);
        }
        if (code_point < smallest) return utf8_verdict::invalid;
        if (code_point > 0x10ffff) return utf8_verdict::invalid;
        if (code_point >= 0xd800 && code_point <= 0xdfff) return utf8_verdict::invalid;
        i += length;
    }
    return utf8_verdict::valid;
}

inline bool reference_is_valid(const std::uint8_t* p, std::size_t n) {
    return reference_utf8(p, n) == utf8_verdict::valid;
}

// Can some bytes appended to p[0, n) make it valid? Only a truncated last
// character needs a search: its missing bytes are continuation bytes, and
// 80, 90 and A0 stand for every range the rules distinguish (80-8F, 90-9F,
// A0-BF).
inline bool reference_is_completable(const std::uint8_t* p, std::size_t n) {
    const utf8_verdict verdict = reference_utf8(p, n);
    if (verdict != utf8_verdict::truncated) return verdict == utf8_verdict::valid;
    std::size_t start = n;
    while ((p[start - 1] & 0xc0) == 0x80) --start;
    std::vector<std::uint8_t> character(p + start - 1, p + n);
    const std::uint8_t stand_ins[] = {0x80, 0x90, 0xa0};
    // Depth-first over at most 3 missing bytes: 3 + 9 + 27 candidates.
    struct search {
        static bool from(std::vector<std::uint8_t>& c, const std::uint8_t* choices) {
            const utf8_verdict v = reference_utf8(c.data(), c.size());
            if (v != utf8_verdict::truncated) return v == utf8_verdict::valid;
            for (int k = 0; k < 3; ++k) {
                c.push_back(choices[k]);
                const bool found = from(c, choices);
                c.pop_back();
                if (found) return true;
            }
            return false;
        }
    };
    return search::from(character, stand_ins);
}

} // namespace wsx_test
