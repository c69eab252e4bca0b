#include <wsx/close_code.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using bytes = std::vector<std::uint8_t>;

bytes payload(std::uint16_t code, const std::string& reason = {}) {
    // Sized once and filled in place (GCC 12 at -O2 mistakes an insert into a
    // two-byte vector for an out-of-bounds copy).
    bytes out(2 + reason.size());
    out[0] = static_cast<std::uint8_t>(code >> 8);
    out[1] = static_cast<std::uint8_t>(code & 0xff);
    std::copy(reason.begin(), reason.end(), out.begin() + 2);
    return out;
}

} // namespace

TEST_CASE("close_code: which codes may be sent, at every range edge") {
    using wsx::is_valid_on_wire;
    // RFC 6455 §7.4.2: 0-999 are not used.
    CHECK_FALSE(is_valid_on_wire(std::uint16_t{0}));
    CHECK_FALSE(is_valid_on_wire(std::uint16_t{999}));
    CHECK(is_valid_on_wire(std::uint16_t{1000}));
    CHECK(is_valid_on_wire(std::uint16_t{1003}));
    // RFC 6455 §7.4.1: 1004 is reserved; 1005, 1006 and 1015 are never sent.
    CHECK_FALSE(is_valid_on_wire(std::uint16_t{1004}));
    CHECK_FALSE(is_valid_on_wire(std::uint16_t{1005}));
    CHECK_FALSE(is_valid_on_wire(std::uint16_t{1006}));
    CHECK(is_valid_on_wire(std::uint16_t{1007}));
    CHECK(is_valid_on_wire(std::uint16_t{1014}));
    CHECK_FALSE(is_valid_on_wire(std::uint16_t{1015}));
    // RFC 6455 §7.4.2: 1016-2999 are reserved; 3000-4999 are for use.
    CHECK_FALSE(is_valid_on_wire(std::uint16_t{1016}));
    CHECK_FALSE(is_valid_on_wire(std::uint16_t{2999}));
    CHECK(is_valid_on_wire(std::uint16_t{3000}));
    CHECK(is_valid_on_wire(std::uint16_t{4999}));
    CHECK_FALSE(is_valid_on_wire(std::uint16_t{5000}));
    CHECK_FALSE(is_valid_on_wire(std::uint16_t{65535}));

    CHECK(is_valid_on_wire(wsx::close_code::normal));
    CHECK(is_valid_on_wire(wsx::close_code::invalid_payload));
    CHECK_FALSE(is_valid_on_wire(wsx::close_code::no_status));
    CHECK_FALSE(is_valid_on_wire(wsx::close_code::abnormal));
    CHECK_FALSE(is_valid_on_wire(wsx::close_code::tls_handshake));
    CHECK(is_valid_on_wire(wsx::close_code{4000}));
    static_assert(wsx::is_valid_on_wire(wsx::close_code::normal), "usable in constant expressions");
}

TEST_CASE("close_code: all 65536 values against the list of valid ranges") {
    const std::array<std::array<unsigned, 2>, 3> valid_ranges{{{1000, 1003}, {1007, 1014}, {3000, 4999}}};
    for (unsigned code = 0; code <= 0xffff; ++code) {
        bool expected = false;
        for (const auto& range : valid_ranges) expected = expected || (code >= range[0] && code <= range[1]);
        INFO("code " << code);
        CHECK(wsx::is_valid_on_wire(static_cast<std::uint16_t>(code)) == expected);
    }
}

TEST_CASE("close_code: parse_close_payload") {
    wsx::close_payload out;

    SECTION("empty: no status code (1005)") {
        out.code = wsx::close_code::normal;
        CHECK_FALSE(wsx::parse_close_payload(bytes{}, out));
        CHECK(out.code == wsx::close_code::no_status);
        CHECK(out.reason.empty());
    }
    SECTION("one byte is malformed") {
        // RFC 6455 §5.5.1: a body starts with a 2-byte code.
        CHECK(wsx::parse_close_payload(bytes{0x03}, out) == wsx::error::bad_close_payload);
        CHECK(out.code == wsx::close_code::no_status);
    }
    SECTION("a code without a reason") {
        CHECK_FALSE(wsx::parse_close_payload(payload(1000), out));
        CHECK(out.code == wsx::close_code::normal);
        CHECK(out.reason.empty());
    }
    SECTION("a code and a reason") {
        const bytes p = payload(4321, "going to lunch");
        CHECK_FALSE(wsx::parse_close_payload(p, out));
        CHECK(static_cast<std::uint16_t>(out.code) == 4321);
        CHECK(out.reason == "going to lunch");
        // The reason is a view into the payload, not a copy.
        CHECK(reinterpret_cast<const std::uint8_t*>(out.reason.data()) == p.data() + 2);
    }
    SECTION("codes that must not be on the wire") {
        for (std::uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535}) {
            INFO("code " << code);
            out.code = wsx::close_code::normal;
            CHECK(wsx::parse_close_payload(payload(code, "x"), out) == wsx::error::bad_close_code);
            CHECK(out.code == wsx::close_code::no_status);
        }
    }
    SECTION("a reason that is not UTF-8") {
        CHECK(wsx::parse_close_payload(payload(1000, "bad \xff"), out) == wsx::error::invalid_utf8);
        CHECK(wsx::parse_close_payload(payload(1000, "\xed\xa0\x80"), out) == wsx::error::invalid_utf8);
        // A character cut short at the end of the reason.
        CHECK(wsx::parse_close_payload(payload(1000, "euro \xe2\x82"), out) == wsx::error::invalid_utf8);
        CHECK(out.code == wsx::close_code::no_status);
        const bytes p = payload(1000, "euro \xe2\x82\xac");
        CHECK_FALSE(wsx::parse_close_payload(p, out));
        CHECK(out.reason == "euro \xe2\x82\xac");
    }
    SECTION("the largest payload a control frame can carry: 125 bytes") {
        const bytes p = payload(1001, std::string(wsx::max_close_reason, 'r'));
        REQUIRE(p.size() == 125);
        CHECK_FALSE(wsx::parse_close_payload(p, out));
        CHECK(out.code == wsx::close_code::going_away);
        CHECK(out.reason.size() == 123);
    }
}

TEST_CASE("close_code: format_close_payload") {
    std::array<std::uint8_t, wsx::max_close_payload> out{};

    SECTION("no_status sends an empty payload") {
        CHECK(wsx::format_close_payload(wsx::close_code::no_status, "ignored", out) == 0);
    }
    SECTION("code and reason, in network byte order") {
        const std::size_t n = wsx::format_close_payload(wsx::close_code::normal, "bye", out);
        REQUIRE(n == 5);
        CHECK(bytes(out.begin(), out.begin() + 5) == bytes{0x03, 0xe8, 'b', 'y', 'e'});
    }
    SECTION("an output smaller than 125 bytes is refused") {
        std::array<std::uint8_t, wsx::max_close_payload - 1> small{};
        CHECK(wsx::format_close_payload(wsx::close_code::normal, "bye", small) == 0);
    }
    SECTION("a reason of 123 bytes fits; 124 is cut to 123") {
        CHECK(wsx::format_close_payload(wsx::close_code::normal, std::string(123, 'a'), out) == 125);
        CHECK(wsx::format_close_payload(wsx::close_code::normal, std::string(124, 'a'), out) == 125);
        CHECK(out[124] == 'a');
    }
    SECTION("the cut never splits a UTF-8 character") {
        // 122 ASCII bytes + "é" (2 bytes) = 124: the é goes, 122 remain.
        CHECK(wsx::format_close_payload(wsx::close_code::normal, std::string(122, 'a') + "\xc3\xa9", out) ==
              2 + 122);
        // 121 + an emoji (4 bytes) = 125: the emoji goes.
        CHECK(wsx::format_close_payload(wsx::close_code::normal, std::string(121, 'a') + "\xf0\x9f\x98\x80", out) ==
              2 + 121);
        // 120 + "€" (3 bytes) ends exactly at 123: it stays, the rest goes.
        CHECK(wsx::format_close_payload(wsx::close_code::normal, std::string(120, 'a') + "\xe2\x82\xac" + "xyz",
                                        out) == 2 + 123);
        CHECK(out[122] == 0xe2);
        CHECK(out[124] == 0xac);
    }
    SECTION("what is formatted parses back") {
        const std::string reason = std::string(100, 'a') + "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82" +
                                   "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c";
        const std::size_t n = wsx::format_close_payload(wsx::close_code{4000}, reason, out);
        REQUIRE(n > 2);
        REQUIRE(n <= 125);
        wsx::close_payload parsed;
        CHECK_FALSE(wsx::parse_close_payload(wsx::const_bytes(out.data(), n), parsed));
        CHECK(static_cast<std::uint16_t>(parsed.code) == 4000);
        CHECK(reason.compare(0, parsed.reason.size(), parsed.reason) == 0);
        CHECK(parsed.reason.size() == n - 2);
    }
}
