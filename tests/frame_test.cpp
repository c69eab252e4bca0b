#include <wsx/frame.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

using wsx::error;
using wsx::frame_header;
using wsx::opcode;
using wsx::parse_status;
using wsx::role;

namespace {

using bytes = std::vector<std::uint8_t>;

// Parses `input` whole, then every prefix, and checks that each prefix shorter
// than the answer's header asks for more, and that no prefix disagrees.
wsx::header_parse_result parse_all_ways(const bytes& input, role receiver, frame_header& out,
                                        std::uint8_t allowed_rsv = 0) {
    const auto whole = wsx::parse_frame_header(input, receiver, out, allowed_rsv);
    for (std::size_t n = 0; n < input.size(); ++n) {
        frame_header h;
        const auto part = wsx::parse_frame_header(wsx::const_bytes(input.data(), n), receiver, h, allowed_rsv);
        if (whole.status == parse_status::complete && n >= whole.size) {
            CHECK(part.status == parse_status::complete);
        } else if (part.status == parse_status::error) {
            // An error is final: it must be the one the whole input gives.
            CHECK(whole.status == parse_status::error);
            CHECK(part.ec == whole.ec);
        } else {
            CHECK(part.status == parse_status::need_more);
            CHECK(part.size > n);
        }
    }
    return whole;
}

frame_header parse_ok(const bytes& input, role receiver, std::size_t expected_size,
                      std::uint8_t allowed_rsv = 0) {
    frame_header h;
    const auto r = parse_all_ways(input, receiver, h, allowed_rsv);
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.size == expected_size);
    CHECK_FALSE(r.ec);
    return h;
}

std::error_code parse_error(const bytes& input, role receiver, std::uint8_t allowed_rsv = 0) {
    frame_header h;
    const auto r = parse_all_ways(input, receiver, h, allowed_rsv);
    CHECK(r.status == parse_status::error);
    return r.ec;
}

bytes write(const frame_header& h) {
    bytes out(wsx::max_frame_header_size);
    out.resize(wsx::write_frame_header(h, out));
    return out;
}

frame_header header(opcode op, std::uint64_t length, bool fin = true) {
    frame_header h;
    h.op = op;
    h.fin = fin;
    h.payload_length = length;
    return h;
}

frame_header masked(frame_header h, wsx::mask_key key) {
    h.masked = true;
    h.key = key;
    return h;
}

constexpr wsx::mask_key rfc_key{0x37, 0xfa, 0x21, 0x3d};

} // namespace

TEST_CASE("RFC 6455 §5.7 examples parse and write byte for byte") {
    SECTION("a single-frame unmasked text message") {
        const bytes frame{0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
        const auto h = parse_ok(frame, role::client, 2);
        CHECK(h.fin);
        CHECK(h.op == opcode::text);
        CHECK_FALSE(h.masked);
        CHECK(h.payload_length == 5);
        CHECK(write(h) == bytes(frame.begin(), frame.begin() + 2));
        CHECK(std::string(frame.begin() + 2, frame.end()) == "Hello");
    }
    SECTION("a single-frame masked text message") {
        bytes frame{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
        const auto h = parse_ok(frame, role::server, 6);
        CHECK(h.masked);
        CHECK(h.key == rfc_key);
        CHECK(h.payload_length == 5);
        CHECK(write(h) == bytes(frame.begin(), frame.begin() + 6));
        wsx::apply_mask(wsx::mutable_bytes(frame.data() + 6, 5), h.key);
        CHECK(std::string(frame.begin() + 6, frame.end()) == "Hello");
    }
    SECTION("a fragmented unmasked text message") {
        const bytes first{0x01, 0x03, 0x48, 0x65, 0x6c};
        const bytes second{0x80, 0x02, 0x6c, 0x6f};
        const auto h1 = parse_ok(first, role::client, 2);
        CHECK_FALSE(h1.fin);
        CHECK(h1.op == opcode::text);
        CHECK(h1.payload_length == 3);
        const auto h2 = parse_ok(second, role::client, 2);
        CHECK(h2.fin);
        CHECK(h2.op == opcode::continuation);
        CHECK(h2.payload_length == 2);
        CHECK(write(header(opcode::text, 3, false)) == bytes{0x01, 0x03});
        CHECK(write(header(opcode::continuation, 2)) == bytes{0x80, 0x02});
    }
    SECTION("unmasked ping and masked pong") {
        const auto ping = parse_ok({0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}, role::client, 2);
        CHECK(ping.op == opcode::ping);
        CHECK(wsx::is_control(ping.op));
        const auto pong = parse_ok({0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d}, role::server, 6);
        CHECK(pong.op == opcode::pong);
        CHECK(write(masked(header(opcode::pong, 5), rfc_key)) ==
              bytes{0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d});
    }
    SECTION("256 bytes and 64 KiB binary messages in one unmasked frame") {
        const bytes b256{0x82, 0x7e, 0x01, 0x00};
        CHECK(parse_ok(b256, role::client, 4).payload_length == 256);
        CHECK(write(header(opcode::binary, 256)) == b256);
        const bytes b64k{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};
        CHECK(parse_ok(b64k, role::client, 10).payload_length == 65536);
        CHECK(write(header(opcode::binary, 65536)) == b64k);
    }
}

TEST_CASE("payload length encodings at their boundaries") {
    struct row { std::uint64_t length; bytes encoded; };
    const row rows[] = {
        {0, {0x82, 0x00}},
        {125, {0x82, 0x7d}},
        {126, {0x82, 0x7e, 0x00, 0x7e}},
        {65535, {0x82, 0x7e, 0xff, 0xff}},
        {65536, {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}},
        {0x7fffffffffffffffULL, {0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
    };
    for (const auto& r : rows) {
        CAPTURE(r.length);
        CHECK(write(header(opcode::binary, r.length)) == r.encoded);
        CHECK(wsx::frame_header_size(r.length, false) == r.encoded.size());
        CHECK(parse_ok(r.encoded, role::client, r.encoded.size()).payload_length == r.length);
        // The same lengths masked: 4 more bytes.
        const auto m = masked(header(opcode::binary, r.length), {1, 2, 3, 4});
        const auto encoded = write(m);
        CHECK(encoded.size() == r.encoded.size() + 4);
        const auto back = parse_ok(encoded, role::server, encoded.size());
        CHECK(back.payload_length == r.length);
        CHECK(back.key == wsx::mask_key{1, 2, 3, 4});
    }
}

TEST_CASE("RFC 6455 §5.2: lengths must use the minimal encoding") {
    CHECK(parse_error({0x82, 0x7e, 0x00, 0x7d}, role::client) == error::non_minimal_length);
    CHECK(parse_error({0x82, 0x7e, 0x00, 0x00}, role::client) == error::non_minimal_length);
    CHECK(parse_error({0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, role::client) ==
          error::non_minimal_length);
    CHECK(parse_ok({0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}, role::client, 10).payload_length == 65536);
}

TEST_CASE("RFC 6455 §5.2: the top bit of a 64-bit length must be 0") {
    CHECK(parse_error({0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0}, role::client) ==
          error::length_top_bit_set);
    CHECK(parse_error({0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, role::client) ==
          error::length_top_bit_set);
}

TEST_CASE("RFC 6455 §5.5: control frames are short and unfragmented") {
    for (auto op : {opcode::close, opcode::ping, opcode::pong}) {
        const auto code = static_cast<std::uint8_t>(0x80 | static_cast<std::uint8_t>(op));
        CAPTURE(static_cast<int>(op));
        CHECK(parse_ok({code, 125}, role::client, 2).payload_length == 125);
        // 126 needs the 16-bit encoding, which is already too long.
        CHECK(parse_error({code, 126, 0, 126}, role::client) == error::control_frame_too_long);
        CHECK(parse_error({code, 127, 0, 0, 0, 0, 0, 1, 0, 0}, role::client) ==
              error::control_frame_too_long);
        const auto unfinished = static_cast<std::uint8_t>(code & 0x7f);
        CHECK(parse_error({unfinished, 0}, role::client) == error::fragmented_control_frame);
    }
    // Data frames may be fragmented and long.
    CHECK(parse_ok({0x02, 0x7e, 0x00, 0x7e}, role::client, 4).payload_length == 126);
}

TEST_CASE("RFC 6455 §5.2: unknown opcodes fail") {
    for (std::uint8_t op : {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf}) {
        CAPTURE(op);
        CHECK(parse_error({static_cast<std::uint8_t>(0x80 | op), 0}, role::client) == error::bad_opcode);
    }
    for (std::uint8_t op : {0, 1, 2, 8, 9, 0xa}) {
        CAPTURE(op);
        CHECK(parse_ok({static_cast<std::uint8_t>(0x80 | op), 0}, role::client, 2).payload_length == 0);
    }
}

TEST_CASE("RFC 6455 §5.2: reserved bits need an extension that allows them") {
    CHECK(parse_error({0xc1, 0x00}, role::client) == error::reserved_bits_set);
    CHECK(parse_error({0xa1, 0x00}, role::client) == error::reserved_bits_set);
    CHECK(parse_error({0x91, 0x00}, role::client) == error::reserved_bits_set);
    const auto h = parse_ok({0xc1, 0x00}, role::client, 2, wsx::rsv1_bit);
    CHECK(h.rsv == wsx::rsv1_bit);
    // Allowing RSV1 does not allow RSV2 or RSV3.
    CHECK(parse_error({0xe1, 0x00}, role::client, wsx::rsv1_bit) == error::reserved_bits_set);
    frame_header w = header(opcode::text, 0);
    w.rsv = wsx::rsv1_bit;
    CHECK(write(w) == bytes{0xc1, 0x00});
}

TEST_CASE("RFC 6455 §5.1: masking depends on the direction") {
    CHECK(parse_error({0x81, 0x00}, role::server) == error::unmasked_client_frame);
    CHECK(parse_error({0x81, 0x80, 1, 2, 3, 4}, role::client) == error::masked_server_frame);
    CHECK(parse_ok({0x81, 0x80, 1, 2, 3, 4}, role::server, 6).masked);
}

TEST_CASE("need_more tells how many bytes the header needs") {
    frame_header h;
    const bytes frame{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9};
    CHECK(wsx::parse_frame_header(wsx::const_bytes(frame.data(), 0), role::server, h).size == 2);
    CHECK(wsx::parse_frame_header(wsx::const_bytes(frame.data(), 1), role::server, h).size == 2);
    const auto r = wsx::parse_frame_header(wsx::const_bytes(frame.data(), 2), role::server, h);
    CHECK(r.status == parse_status::need_more);
    CHECK(r.size == 14);
    CHECK(parse_ok(frame, role::server, 14).payload_length == 65536);
}

TEST_CASE("the writer refuses a buffer that is too small") {
    bytes small(3);
    CHECK(wsx::write_frame_header(header(opcode::binary, 65536), small) == 0);
    CHECK(wsx::write_frame_header(header(opcode::binary, 200), small) == 0);
    bytes enough(4);
    CHECK(wsx::write_frame_header(header(opcode::binary, 200), enough) == 4);
}

TEST_CASE("every header round-trips through the writer and the parser") {
    for (std::uint8_t b0 = 0; b0 < 0xff; ++b0) {
        for (std::uint64_t len : {0ULL, 1ULL, 125ULL, 126ULL, 65535ULL, 65536ULL, 1ULL << 40}) {
            frame_header h;
            h.fin = (b0 & 0x80) != 0;
            h.rsv = static_cast<std::uint8_t>((b0 >> 4) & 7);
            h.op = static_cast<opcode>(b0 & 0xf);
            h.payload_length = len;
            const auto encoded = write(h);
            frame_header back;
            const auto r = wsx::parse_frame_header(encoded, role::client, back, 7);
            const bool legal = wsx::is_known(h.op) && (!wsx::is_control(h.op) || (h.fin && len <= 125));
            REQUIRE((r.status == parse_status::complete) == legal);
            if (legal) {
                CHECK(back.fin == h.fin);
                CHECK(back.rsv == h.rsv);
                CHECK(back.op == h.op);
                CHECK(back.payload_length == len);
            }
        }
    }
}
