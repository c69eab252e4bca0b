#include <wsx/utf8.hpp>

#include "support/utf8_reference.hpp"

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using bytes = std::vector<std::uint8_t>;
constexpr std::size_t never = static_cast<std::size_t>(-1);

bytes operator+(bytes a, const bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

bytes ascii(std::size_t n) {
    bytes out;
    for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>('a' + i % 26));
    return out;
}

// Feeds `input` one byte at a time; returns the index of the first byte
// feed() rejects, or `never`. Checks that failure is sticky.
std::size_t fail_position_byte_by_byte(const bytes& input, bool& complete) {
    wsx::utf8_validator v;
    std::size_t first = never;
    for (std::size_t i = 0; i < input.size(); ++i) {
        const bool ok = v.feed(wsx::const_bytes(&input[i], 1));
        if (first != never) CHECK_FALSE(ok);
        if (!ok && first == never) first = i;
        CHECK(v.failed() == (first != never));
    }
    complete = v.complete();
    return first;
}

// Checks one input every way: whole, byte by byte, split at every point.
// `valid`: the whole input is UTF-8. `fails_at`: the index of the first byte
// that makes it invalid, or `never` (valid, or cut short at the end).
void check(const bytes& input, bool valid, std::size_t fails_at) {
    INFO("input size " << input.size() << ", fails at " << fails_at);
    CHECK(wsx::is_valid_utf8(input) == valid);

    wsx::utf8_validator whole;
    CHECK(whole.feed(input) == (fails_at == never));
    CHECK(whole.complete() == valid);
    CHECK(whole.failed() == (fails_at != never));

    bool complete = false;
    CHECK(fail_position_byte_by_byte(input, complete) == fails_at);
    CHECK(complete == valid);

    for (std::size_t split = 0; split <= input.size(); ++split) {
        INFO("split at " << split);
        wsx::utf8_validator v;
        const wsx::const_bytes all(input.data(), input.size());
        const bool first_ok = v.feed(all.first(split));
        CHECK(first_ok == (fails_at == never || fails_at >= split));
        const bool second_ok = v.feed(all.subspan(split));
        CHECK(second_ok == (fails_at == never));
        CHECK(v.complete() == valid);
    }
}

void check_valid(const bytes& input) { check(input, true, never); }
void check_truncated(const bytes& input) { check(input, false, never); }
void check_fails_at(const bytes& input, std::size_t position) { check(input, false, position); }

} // namespace

TEST_CASE("utf8: the empty string and ASCII are valid") {
    check_valid({});
    for (unsigned b = 0; b <= 0x7f; ++b) check_valid({static_cast<std::uint8_t>(b)});
    check_valid(ascii(1000));
}

TEST_CASE("utf8: every single byte") {
    for (unsigned b = 0; b <= 0xff; ++b) {
        INFO("byte " << b);
        const bytes input{static_cast<std::uint8_t>(b)};
        if (b <= 0x7f) check_valid(input);
        // RFC 3629 §4: lead bytes C2-F4 open a sequence.
        else if (b >= 0xc2 && b <= 0xf4) check_truncated(input);
        // A stray continuation byte (80-BF), C0-C1, F5-FF: invalid at once.
        else check_fails_at(input, 0);
    }
}

TEST_CASE("utf8: first and last code points of each length") {
    check_valid({0x00});
    check_valid({0x7f});                   // U+007F
    check_valid({0xc2, 0x80});             // U+0080
    check_valid({0xdf, 0xbf});             // U+07FF
    check_valid({0xe0, 0xa0, 0x80});       // U+0800
    check_valid({0xef, 0xbf, 0xbf});       // U+FFFF
    check_valid({0xf0, 0x90, 0x80, 0x80}); // U+10000
    check_valid({0xf4, 0x8f, 0xbf, 0xbf}); // U+10FFFF
    // RFC 3629 §3: nothing above U+10FFFF.
    check_fails_at({0xf4, 0x90, 0x80, 0x80}, 1); // U+110000
    check_fails_at({0xf7, 0xbf, 0xbf, 0xbf}, 0); // U+1FFFFF
    // "κόσμε", the classic first line of the decoder stress test.
    check_valid({0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5});
}

TEST_CASE("utf8: overlong forms fail at the first byte that proves them overlong") {
    // RFC 3629 §3 and §10: overlong forms are invalid.
    // '/' (U+002F) in 2, 3, 4, 5 and 6 bytes.
    check_fails_at({0xc0, 0xaf}, 0);
    check_fails_at({0xe0, 0x80, 0xaf}, 1);
    check_fails_at({0xf0, 0x80, 0x80, 0xaf}, 1);
    check_fails_at({0xf8, 0x80, 0x80, 0x80, 0xaf}, 0);
    check_fails_at({0xfc, 0x80, 0x80, 0x80, 0x80, 0xaf}, 0);
    // The largest overlong of each length.
    check_fails_at({0xc1, 0xbf}, 0);                         // U+007F
    check_fails_at({0xe0, 0x9f, 0xbf}, 1);                   // U+07FF
    check_fails_at({0xf0, 0x8f, 0xbf, 0xbf}, 1);             // U+FFFF
    check_fails_at({0xf8, 0x87, 0xbf, 0xbf, 0xbf}, 0);       // U+1FFFFF
    check_fails_at({0xfc, 0x83, 0xbf, 0xbf, 0xbf, 0xbf}, 0); // U+3FFFFFF
    // NUL in 2, 3 and 4 bytes.
    check_fails_at({0xc0, 0x80}, 0);
    check_fails_at({0xe0, 0x80, 0x80}, 1);
    check_fails_at({0xf0, 0x80, 0x80, 0x80}, 1);
}

TEST_CASE("utf8: surrogates are invalid, their neighbours valid") {
    // RFC 3629 §3: "The definition of UTF-8 prohibits encoding character
    // numbers between U+D800 and U+DFFF".
    check_valid({0xed, 0x9f, 0xbf});          // U+D7FF
    check_fails_at({0xed, 0xa0, 0x80}, 1);    // U+D800
    check_fails_at({0xed, 0xad, 0xbf}, 1);    // U+DB7F
    check_fails_at({0xed, 0xae, 0x80}, 1);    // U+DB80
    check_fails_at({0xed, 0xaf, 0xbf}, 1);    // U+DBFF
    check_fails_at({0xed, 0xb0, 0x80}, 1);    // U+DC00
    check_fails_at({0xed, 0xbf, 0xbf}, 1);    // U+DFFF
    check_valid({0xee, 0x80, 0x80});          // U+E000
    // A surrogate pair (U+D83D U+DE00, CESU-8 style) is invalid too.
    check_fails_at({0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80}, 1);
    // Noncharacters are valid UTF-8.
    check_valid({0xef, 0xbf, 0xbe});          // U+FFFE
    check_valid({0xef, 0xb7, 0x90});          // U+FDD0
}

TEST_CASE("utf8: 5- and 6-byte forms are invalid") {
    check_fails_at({0xf8, 0x88, 0x80, 0x80, 0x80}, 0);       // U+200000
    check_fails_at({0xfb, 0xbf, 0xbf, 0xbf, 0xbf}, 0);       // U+3FFFFFF
    check_fails_at({0xfc, 0x84, 0x80, 0x80, 0x80, 0x80}, 0); // U+4000000
    check_fails_at({0xfd, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf}, 0); // U+7FFFFFFF
    check_fails_at({0xfe}, 0);
    check_fails_at({0xff}, 0);
}

TEST_CASE("utf8: truncated sequences") {
    // Cut short at the end: not failed, but not complete.
    check_truncated({0xc2});
    check_truncated({0xe0, 0xa0});
    check_truncated({0xe1});
    check_truncated({0xf0, 0x90, 0x80});
    check_truncated({0xf4, 0x8f});
    check_truncated(ascii(100) + bytes{0xf1, 0x80, 0x80});
    // Cut short by a byte that is not a continuation: fails at that byte.
    check_fails_at({0xc2, 0x41}, 1);
    check_fails_at({0xe1, 0x80, 0x41}, 2);
    check_fails_at({0xf1, 0x80, 0x80, 0x41}, 3);
    check_fails_at({0xdf, 0xc2, 0x80}, 1);
    check_fails_at({0xef, 0xbf, 0xef, 0xbf, 0xbf}, 2);
    // Too many continuation bytes.
    check_fails_at({0xc2, 0x80, 0x80}, 2);
    check_fails_at({0x41, 0xbf}, 1);
    check_fails_at({0xf4, 0x80, 0x80, 0x80, 0x80}, 4);
}

TEST_CASE("utf8: the failing byte is found at every position of a long text") {
    // Long enough to cross the block paths (SIMD ASCII skip, 64-byte DFA
    // blocks split in two), with the error at every position.
    const bytes text = ascii(70) + bytes{0xd0, 0x9f, 0xe4, 0xbd, 0xa0, 0xf0, 0x9f, 0x98, 0x80} + ascii(60) +
                       bytes{0xce, 0xba, 0xce, 0xba} + ascii(40);
    REQUIRE(wsx::is_valid_utf8(text));
    for (std::size_t position = 0; position <= text.size(); ++position) {
        INFO("bad byte at " << position);
        bytes broken = text;
        broken.insert(broken.begin() + static_cast<std::ptrdiff_t>(position), 0xff);
        bool complete = true;
        CHECK(fail_position_byte_by_byte(broken, complete) == position);
        CHECK_FALSE(complete);
        CHECK_FALSE(wsx::is_valid_utf8(broken));
        wsx::utf8_validator whole;
        CHECK_FALSE(whole.feed(broken));
    }
}

TEST_CASE("utf8: failure is sticky until reset") {
    wsx::utf8_validator v;
    CHECK(v.complete());
    CHECK_FALSE(v.failed());
    CHECK_FALSE(v.feed(bytes{0xc0}));
    CHECK(v.failed());
    CHECK_FALSE(v.complete());
    CHECK_FALSE(v.feed(ascii(100)));
    CHECK_FALSE(v.feed({}));
    CHECK(v.failed());
    v.reset();
    CHECK_FALSE(v.failed());
    CHECK(v.complete());
    CHECK(v.feed(ascii(100)));
    // reset() also drops a character left open.
    CHECK(v.feed(bytes{0xe2, 0x82}));
    CHECK_FALSE(v.complete());
    v.reset();
    CHECK(v.complete());
    CHECK(v.feed(bytes{0x41}));
    CHECK(v.complete());
}

TEST_CASE("utf8: a character may span many fragments") {
    wsx::utf8_validator v;
    const bytes euro{0xe2, 0x82, 0xac};
    for (int round = 0; round < 3; ++round) {
        for (std::uint8_t b : euro) {
            CHECK(v.feed(bytes{b}));
            CHECK(v.complete() == (b == 0xac));
        }
        CHECK(v.feed({}));
        CHECK(v.complete());
    }
}

TEST_CASE("utf8: agrees with a reference validator on generated inputs") {
    std::mt19937 random(6455); // fixed seed: the same inputs on every run
    const auto pick = [&](std::uint32_t n) { return static_cast<std::uint32_t>(random() % n); };
    // Bytes a decoder must tell apart: range edges of RFC 3629's table.
    const std::uint8_t interesting[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2,
                                        0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5,
                                        0xf7, 0xf8, 0xfb, 0xfc, 0xfd, 0xfe, 0xff};
    const auto append_code_point = [](bytes& out, std::uint32_t c) {
        if (c < 0x80) {
            out.push_back(static_cast<std::uint8_t>(c));
        } else if (c < 0x800) {
            out.push_back(static_cast<std::uint8_t>(0xc0 | (c >> 6)));
            out.push_back(static_cast<std::uint8_t>(0x80 | (c & 0x3f)));
        } else if (c < 0x10000) {
            out.push_back(static_cast<std::uint8_t>(0xe0 | (c >> 12)));
            out.push_back(static_cast<std::uint8_t>(0x80 | ((c >> 6) & 0x3f)));
            out.push_back(static_cast<std::uint8_t>(0x80 | (c & 0x3f)));
        } else {
            out.push_back(static_cast<std::uint8_t>(0xf0 | (c >> 18)));
            out.push_back(static_cast<std::uint8_t>(0x80 | ((c >> 12) & 0x3f)));
            out.push_back(static_cast<std::uint8_t>(0x80 | ((c >> 6) & 0x3f)));
            out.push_back(static_cast<std::uint8_t>(0x80 | (c & 0x3f)));
        }
    };
    int valid_count = 0;
    for (int round = 0; round < 3000; ++round) {
        bytes input;
        const std::uint32_t pieces = pick(40);
        // One round in three uses only pieces that are valid on their own.
        const bool clean = pick(3) == 0;
        for (std::uint32_t k = 0; k < pieces; ++k) {
            if (clean) {
                std::uint32_t c = pick(0x110000 - 0x800);
                append_code_point(input, c < 0xd800 ? c : c + 0x800); // skip the surrogates
                continue;
            }
            switch (pick(6)) {
            case 0: input.push_back(static_cast<std::uint8_t>(pick(256))); break;
            case 1: input.push_back(interesting[pick(sizeof interesting)]); break;
            case 2: append_code_point(input, pick(0x110000)); break; // may be a surrogate
            case 3: append_code_point(input, pick(0x800)); break;
            case 4: append_code_point(input, 0xd000 + pick(0x2000)); break; // near the surrogates
            default: { const bytes run = ascii(pick(70)); input.insert(input.end(), run.begin(), run.end()); }
            }
        }
        INFO("round " << round);
        const bool valid = wsx_test::reference_is_valid(input.data(), input.size());
        valid_count += valid;
        CHECK(wsx::is_valid_utf8(input) == valid);
        // The first byte fed one at a time that fails is the first byte after
        // which the text can no longer be completed.
        bool complete = false;
        const std::size_t fails_at = fail_position_byte_by_byte(input, complete);
        CHECK(complete == valid);
        if (fails_at == never) {
            CHECK(wsx_test::reference_is_completable(input.data(), input.size()));
        } else {
            CHECK(wsx_test::reference_is_completable(input.data(), fails_at));
            CHECK_FALSE(wsx_test::reference_is_completable(input.data(), fails_at + 1));
        }
        const std::size_t split = input.empty() ? 0 : pick(static_cast<std::uint32_t>(input.size()));
        wsx::utf8_validator v;
        const bool first_ok = v.feed(wsx::const_bytes(input.data(), split));
        const bool second_ok = v.feed(wsx::const_bytes(input.data() + split, input.size() - split));
        CHECK((first_ok && second_ok) == (fails_at == never));
        CHECK(v.complete() == valid);
    }
    // The generator makes both kinds of input, not just one.
    CHECK(valid_count > 1000);
    CHECK(valid_count < 2000);
}
