// wsx/frame.hpp - RFC 6455 §5.2 frame headers: opcodes, an incremental
// header parser and a header writer.
//
// The parser is stateless over a prefix: hand it whatever bytes have arrived
// and it answers need_more (with how many bytes the header needs, once known),
// complete (with the header's size), or the error naming the rule broken. A
// header is at most 14 bytes, so parsing again from the start when more bytes
// arrive costs nothing and keeps the state in one place: the caller's buffer.
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/error.hpp>
#include <wsx/mask.hpp>

#include <cstddef>
#include <cstdint>
#include <system_error>

namespace wsx {

// RFC 6455 §5.2: "Opcode: 4 bits".
enum class opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

// RFC 6455 §5.5: "Control frames are identified by opcodes where the most
// significant bit of the opcode is 1."
constexpr bool is_control(opcode op) noexcept { return (static_cast<std::uint8_t>(op) & 0x8) != 0; }

constexpr bool is_known(opcode op) noexcept {
    switch (op) {
    case opcode::continuation: case opcode::text: case opcode::binary:
    case opcode::close: case opcode::ping: case opcode::pong:
        return true;
    }
    return false;
}

// Who we are: a client reads unmasked frames and writes masked ones; a server
// the reverse.
enum class role : std::uint8_t { client, server };

// Bits of frame_header::rsv, in the order they appear on the wire.
inline constexpr std::uint8_t rsv1_bit = 0x4;
inline constexpr std::uint8_t rsv2_bit = 0x2;
inline constexpr std::uint8_t rsv3_bit = 0x1;

struct frame_header {
    bool fin = true;
    std::uint8_t rsv = 0; // RSV1..RSV3 as rsv1_bit | rsv2_bit | rsv3_bit
    opcode op = opcode::text;
    bool masked = false;
    mask_key key{};
    std::uint64_t payload_length = 0;
};

// 2 bytes, 8 of extended length, 4 of mask key.
inline constexpr std::size_t max_frame_header_size = 14;
// RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
inline constexpr std::size_t max_control_payload = 125;

enum class parse_status : std::uint8_t { need_more, complete, error };

struct header_parse_result {
    parse_status status = parse_status::need_more;
    // complete: the header's size. need_more: the size it needs, as far as
    // the bytes so far tell (at least 2). error: 0.
    std::size_t size = 0;
    std::error_code ec;
};

// The header's size, from its second byte (mask bit and 7-bit length).
constexpr std::size_t frame_header_size(std::uint8_t second_byte) noexcept {
    const std::uint8_t len7 = second_byte & 0x7f;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((second_byte & 0x80) ? 4 : 0);
}
constexpr std::size_t frame_header_size(std::uint64_t payload_length, bool masked) noexcept {
    return 2 + (payload_length < 126 ? 0 : payload_length <= 0xffff ? 2 : 8) + (masked ? 4 : 0);
}

// Parses a frame header as received by `receiver`. `allowed_rsv` holds the
// RSV bits a negotiated extension gives meaning to (rsv1_bit for
// permessage-deflate); whether that extension allows a bit on this particular
// frame (a continuation, a control frame) is its own rule, checked above.
inline header_parse_result parse_frame_header(const_bytes input, role receiver, frame_header& out,
                                              std::uint8_t allowed_rsv = 0) noexcept {
    if (input.size() < 2) return {parse_status::need_more, 2, {}};
    const std::uint8_t b0 = input[0];
    const std::uint8_t b1 = input[1];
    frame_header h;
    h.fin = (b0 & 0x80) != 0;
    h.rsv = static_cast<std::uint8_t>((b0 >> 4) & 0x7);
    h.op = static_cast<opcode>(b0 & 0x0f);
    h.masked = (b1 & 0x80) != 0;
    const std::uint8_t len7 = b1 & 0x7f;

    auto fail = [](error e) { return header_parse_result{parse_status::error, 0, e}; };
    // RFC 6455 §5.2: "If an unknown opcode is received, the receiving endpoint
    // MUST _Fail the WebSocket Connection_."
    if (!is_known(h.op)) return fail(error::bad_opcode);
    // RFC 6455 §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that
    // defines meanings for non-zero values."
    if ((h.rsv & ~allowed_rsv) != 0) return fail(error::reserved_bits_set);
    if (is_control(h.op)) {
        // RFC 6455 §5.5: "Control frames themselves MUST NOT be fragmented."
        if (!h.fin) return fail(error::fragmented_control_frame);
        // RFC 6455 §5.5: "All control frames MUST have a payload length of 125
        // bytes or less".
        if (len7 > max_control_payload) return fail(error::control_frame_too_long);
    }
    // RFC 6455 §5.1: "a client MUST mask all frames that it sends to the
    // server ... The server MUST close the connection upon receiving a frame
    // that is not masked"; "A client MUST close a connection if it detects a
    // masked frame."
    if (receiver == role::server && !h.masked) return fail(error::unmasked_client_frame);
    if (receiver == role::client && h.masked) return fail(error::masked_server_frame);

    const std::size_t size = frame_header_size(b1);
    if (input.size() < size) return {parse_status::need_more, size, {}};

    std::size_t pos = 2;
    if (len7 == 126) {
        h.payload_length = (std::uint64_t{input[2]} << 8) | input[3];
        pos = 4;
        // RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode
        // the length".
        if (h.payload_length < 126) return fail(error::non_minimal_length);
    } else if (len7 == 127) {
        // RFC 6455 §5.2: "the most significant bit MUST be 0".
        if (input[2] & 0x80) return fail(error::length_top_bit_set);
        std::uint64_t n = 0;
        for (std::size_t i = 2; i < 10; ++i) n = (n << 8) | input[i];
        h.payload_length = n;
        pos = 10;
        if (h.payload_length <= 0xffff) return fail(error::non_minimal_length);
    } else {
        h.payload_length = len7;
    }
    if (h.masked) {
        for (std::size_t i = 0; i < 4; ++i) h.key[i] = input[pos + i];
    }
    out = h;
    return {parse_status::complete, size, {}};
}

// Writes `h` into out (at least frame_header_size(h.payload_length, h.masked)
// bytes, max_frame_header_size always suffices) in the shortest length
// encoding; returns the number of bytes written, or 0 if out is too small.
inline std::size_t write_frame_header(const frame_header& h, mutable_bytes out) noexcept {
    const std::size_t size = frame_header_size(h.payload_length, h.masked);
    if (out.size() < size) return 0;
    out[0] = static_cast<std::uint8_t>((h.fin ? 0x80 : 0) | ((h.rsv & 0x7) << 4) |
                                       (static_cast<std::uint8_t>(h.op) & 0x0f));
    const std::uint8_t mask_bit = h.masked ? 0x80 : 0;
    std::size_t pos = 2;
    if (h.payload_length < 126) {
        out[1] = static_cast<std::uint8_t>(mask_bit | h.payload_length);
    } else if (h.payload_length <= 0xffff) {
        out[1] = static_cast<std::uint8_t>(mask_bit | 126);
        out[2] = static_cast<std::uint8_t>(h.payload_length >> 8);
        out[3] = static_cast<std::uint8_t>(h.payload_length);
        pos = 4;
    } else {
        out[1] = static_cast<std::uint8_t>(mask_bit | 127);
        for (std::size_t i = 0; i < 8; ++i)
            out[2 + i] = static_cast<std::uint8_t>(h.payload_length >> (56 - 8 * i));
        pos = 10;
    }
    if (h.masked) {
        for (std::size_t i = 0; i < 4; ++i) out[pos + i] = h.key[i];
    }
    return size;
}

} // namespace wsx
