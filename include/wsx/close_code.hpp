// wsx/close_code.hpp - close status codes and the close frame payload
// (RFC 6455 §5.5.1, §7.4).
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/error.hpp>
#include <wsx/utf8.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <system_error>

namespace wsx {

// Any 16-bit value may be held (close_code{4000}); the names are those of
// RFC 6455 §7.4.1 and the IANA registry.
enum class close_code : std::uint16_t {
    normal = 1000,
    going_away = 1001,
    protocol_error = 1002,
    unsupported_data = 1003,
    no_status = 1005,        // never sent: "no status code was present"
    abnormal = 1006,         // never sent: closed without a close frame
    invalid_payload = 1007,  // e.g. text that is not UTF-8
    policy_violation = 1008,
    message_too_big = 1009,
    mandatory_extension = 1010,
    internal_error = 1011,
    service_restart = 1012,
    try_again_later = 1013,
    bad_gateway = 1014,
    tls_handshake = 1015,    // never sent
};

// RFC 6455 §7.4.1-§7.4.2: may this code appear in a close frame?
// 0-999 are not used; 1004 is reserved; 1005, 1006 and 1015 "MUST NOT be set
// as a status code in a Close control frame"; 1016-2999 are reserved for
// future revisions; 3000-4999 belong to libraries, frameworks and applications.
constexpr bool is_valid_on_wire(std::uint16_t code) noexcept {
    if (code >= 3000 && code <= 4999) return true;
    if (code < 1000 || code > 1014) return false;
    return code != 1004 && code != 1005 && code != 1006;
}
constexpr bool is_valid_on_wire(close_code code) noexcept {
    return is_valid_on_wire(static_cast<std::uint16_t>(code));
}

// RFC 6455 §5.5: control frame payloads are at most 125 bytes, so a close
// reason is at most 123 bytes after its 2-byte code.
inline constexpr std::size_t max_close_payload = 125;
inline constexpr std::size_t max_close_reason = max_close_payload - 2;

struct close_payload {
    close_code code = close_code::no_status;
    std::string_view reason; // a view into the parsed payload
};

// Parses a received close frame payload. An empty payload means no status
// code (1005). Errors: one byte (bad_close_payload), a code not valid on the
// wire (bad_close_code), a reason that is not UTF-8 (invalid_utf8).
inline std::error_code parse_close_payload(const_bytes payload, close_payload& out) noexcept {
    out = close_payload{};
    if (payload.empty()) return {};
    // RFC 6455 §5.5.1: "If there is a body, the first two bytes of the body
    // MUST be a 2-byte unsigned integer (in network byte order)".
    if (payload.size() == 1) return error::bad_close_payload;
    const auto code = static_cast<std::uint16_t>((payload[0] << 8) | payload[1]);
    if (!is_valid_on_wire(code)) return error::bad_close_code;
    const_bytes reason = payload.subspan(2);
    // RFC 6455 §5.5.1: the reason "is not guaranteed to be human readable"
    // but is UTF-8 encoded; §8.1 makes invalid UTF-8 a failure.
    if (!is_valid_utf8(reason)) return error::invalid_utf8;
    out.code = static_cast<close_code>(code);
    out.reason = as_string_view(reason);
    return {};
}

// Writes the payload of a close frame into out (at least max_close_payload
// bytes) and returns its size. no_status yields an empty payload. A reason
// longer than 123 bytes is cut at the last whole UTF-8 character that fits.
inline std::size_t format_close_payload(close_code code, std::string_view reason,
                                        mutable_bytes out) noexcept {
    if (code == close_code::no_status || out.size() < max_close_payload) return 0;
    const auto value = static_cast<std::uint16_t>(code);
    out[0] = static_cast<std::uint8_t>(value >> 8);
    out[1] = static_cast<std::uint8_t>(value & 0xff);
    std::size_t n = reason.size();
    if (n > max_close_reason) {
        n = max_close_reason;
        // Back off continuation bytes (10xxxxxx) so no character is split.
        while (n > 0 && (static_cast<std::uint8_t>(reason[n]) & 0xc0) == 0x80) --n;
    }
    for (std::size_t i = 0; i < n; ++i) out[2 + i] = static_cast<std::uint8_t>(reason[i]);
    return 2 + n;
}

} // namespace wsx
