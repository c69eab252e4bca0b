// wsx/error.hpp - every failure cause wsx reports, as std::error_code.
//
// Peer misbehaviour is data, never an exception: parsers return a wsx::error,
// the connection turns it into the right close frame. Conditions group causes
// so callers can ask "was this the peer breaking the protocol?" without
// listing every cause.
#pragma once

#include <string>
#include <system_error>
#include <type_traits>

namespace wsx {

enum class error {
    // 0 is reserved for success by std::error_code.

    // Framing (RFC 6455 §5).
    bad_opcode = 1,          // reserved opcode 3-7 or 0xB-0xF
    reserved_bits_set,       // RSV1-3 set without an extension that allows it
    unmasked_client_frame,   // a server received an unmasked frame
    masked_server_frame,     // a client received a masked frame
    control_frame_too_long,  // control frame payload above 125 bytes
    fragmented_control_frame,// control frame with FIN clear
    non_minimal_length,      // payload length not in its shortest encoding
    length_top_bit_set,      // 64-bit length with its most significant bit set
    unexpected_continuation, // continuation frame with no message to continue
    expected_continuation,   // new data frame while a message is unfinished
    frame_too_big,           // a frame above the configured frame size limit

    // Message content.
    invalid_utf8,            // text payload or close reason is not UTF-8
    message_too_big,         // message above the size limit (after inflation)
    too_many_fragments,      // more fragments than the limit allows

    // Close frames (RFC 6455 §5.5.1, §7.4).
    bad_close_payload,       // a close payload of exactly one byte
    bad_close_code,          // a close code that must not appear on the wire

    // permessage-deflate (RFC 7692).
    inflate_failed,          // the compressed stream is corrupt
    deflate_failed,          // zlib refused to compress (out of memory)
    bad_extension_offer,     // an offer the server must decline
    bad_extension_response,  // a response the client must fail on

    // HTTP/1.1 head parsing.
    http_bad_request_line,
    http_bad_status_line,
    http_bad_version,
    http_bad_header_name,
    http_bad_header_value,
    http_missing_colon,
    http_bare_cr,
    http_obs_fold,
    http_head_too_large,
    http_too_many_headers,

    // Handshake, server side (RFC 6455 §4.2.1).
    bad_method,
    bad_http_version,
    missing_host,
    missing_upgrade,
    missing_connection_upgrade,
    bad_sec_key,
    unsupported_version,
    origin_not_allowed,
    // Handshake, client side (RFC 6455 §4.2.2, §4.1).
    unexpected_status,
    bad_sec_accept,
    unexpected_subprotocol,
    unexpected_extension,
    handshake_rejected,      // the server application refused the upgrade

    // Connection life.
    connection_closed,       // the operation needs an open connection
    unexpected_eof,          // the transport ended without a close frame
    open_timeout,
    close_timeout,
    ping_timeout,
    would_block,             // the send queue is above its high water mark
    end_of_stream,           // the byte stream below was closed cleanly by the peer

    // Adapters and URIs.
    bad_uri,
    tls_failed,
};

// Groups of causes, for std::error_code comparisons:
//   if (ec == wsx::condition::protocol_violation) ...
enum class condition {
    protocol_violation = 1, // the peer broke RFC 6455 / RFC 7692
    handshake_failed,       // the opening handshake did not complete
    closed,                 // the connection is closed or closing
};

namespace detail {

inline const char* error_message(error e) noexcept {
    switch (e) {
    case error::bad_opcode: return "reserved opcode";
    case error::reserved_bits_set: return "reserved bits set without a negotiated extension";
    case error::unmasked_client_frame: return "client frame is not masked";
    case error::masked_server_frame: return "server frame is masked";
    case error::control_frame_too_long: return "control frame payload longer than 125 bytes";
    case error::fragmented_control_frame: return "control frame is fragmented";
    case error::non_minimal_length: return "payload length not minimally encoded";
    case error::length_top_bit_set: return "64-bit payload length has its top bit set";
    case error::unexpected_continuation: return "continuation frame without a message to continue";
    case error::expected_continuation: return "new data frame inside a fragmented message";
    case error::frame_too_big: return "frame larger than the frame size limit";
    case error::invalid_utf8: return "invalid UTF-8";
    case error::message_too_big: return "message larger than the message size limit";
    case error::too_many_fragments: return "more fragments than the fragment limit";
    case error::bad_close_payload: return "close frame payload of one byte";
    case error::bad_close_code: return "close code not allowed on the wire";
    case error::inflate_failed: return "compressed message is corrupt";
    case error::deflate_failed: return "compression failed";
    case error::bad_extension_offer: return "unacceptable extension offer";
    case error::bad_extension_response: return "unacceptable extension response";
    case error::http_bad_request_line: return "malformed HTTP request line";
    case error::http_bad_status_line: return "malformed HTTP status line";
    case error::http_bad_version: return "malformed HTTP version";
    case error::http_bad_header_name: return "malformed HTTP header name";
    case error::http_bad_header_value: return "malformed HTTP header value";
    case error::http_missing_colon: return "HTTP header line without a colon";
    case error::http_bare_cr: return "bare CR in HTTP head";
    case error::http_obs_fold: return "obsolete line folding in HTTP head";
    case error::http_head_too_large: return "HTTP head larger than the head size limit";
    case error::http_too_many_headers: return "more HTTP headers than the header count limit";
    case error::bad_method: return "handshake method is not GET";
    case error::bad_http_version: return "handshake HTTP version below 1.1";
    case error::missing_host: return "handshake without a Host header";
    case error::missing_upgrade: return "handshake without Upgrade: websocket";
    case error::missing_connection_upgrade: return "handshake without Connection: Upgrade";
    case error::bad_sec_key: return "missing or malformed Sec-WebSocket-Key";
    case error::unsupported_version: return "unsupported Sec-WebSocket-Version";
    case error::origin_not_allowed: return "origin not allowed";
    case error::unexpected_status: return "server did not answer 101 Switching Protocols";
    case error::bad_sec_accept: return "missing or wrong Sec-WebSocket-Accept";
    case error::unexpected_subprotocol: return "server chose a subprotocol that was not offered";
    case error::unexpected_extension: return "server accepted an extension that was not offered";
    case error::handshake_rejected: return "handshake rejected";
    case error::connection_closed: return "connection closed";
    case error::unexpected_eof: return "transport closed without a close frame";
    case error::open_timeout: return "opening handshake timed out";
    case error::close_timeout: return "closing handshake timed out";
    case error::ping_timeout: return "keepalive ping timeout";
    case error::would_block: return "send queue is full";
    case error::end_of_stream: return "end of stream";
    case error::bad_uri: return "malformed WebSocket URI";
    case error::tls_failed: return "TLS failure";
    }
    return "unknown wsx error";
}

class error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "wsx"; }
    std::string message(int value) const override { return error_message(static_cast<error>(value)); }
    std::error_condition default_error_condition(int value) const noexcept override;
};

class condition_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "wsx.condition"; }
    std::string message(int value) const override {
        switch (static_cast<condition>(value)) {
        case condition::protocol_violation: return "WebSocket protocol violation";
        case condition::handshake_failed: return "WebSocket handshake failed";
        case condition::closed: return "WebSocket connection closed";
        }
        return "unknown wsx condition";
    }
    bool equivalent(const std::error_code& code, int value) const noexcept override;
};

} // namespace detail

inline const std::error_category& error_category() noexcept {
    static const detail::error_category_impl instance;
    return instance;
}

inline const std::error_category& condition_category() noexcept {
    static const detail::condition_category_impl instance;
    return instance;
}

inline std::error_code make_error_code(error e) noexcept {
    return {static_cast<int>(e), error_category()};
}

inline std::error_condition make_error_condition(condition c) noexcept {
    return {static_cast<int>(c), condition_category()};
}

// Which condition a cause belongs to; a cause belongs to at most one.
inline bool belongs_to(error e, condition c) noexcept {
    const int v = static_cast<int>(e);
    switch (c) {
    case condition::protocol_violation:
        return v >= static_cast<int>(error::bad_opcode) &&
               v <= static_cast<int>(error::bad_extension_response) &&
               e != error::deflate_failed && e != error::bad_extension_offer &&
               e != error::bad_extension_response;
    case condition::handshake_failed:
        return (v >= static_cast<int>(error::bad_extension_offer) &&
                v <= static_cast<int>(error::handshake_rejected)) ||
               e == error::open_timeout;
    case condition::closed:
        return e == error::connection_closed || e == error::unexpected_eof ||
               e == error::close_timeout || e == error::ping_timeout;
    }
    return false;
}

namespace detail {

inline std::error_condition error_category_impl::default_error_condition(int value) const noexcept {
    return {value, *this};
}

inline bool condition_category_impl::equivalent(const std::error_code& code, int value) const noexcept {
    return code.category() == wsx::error_category() &&
           belongs_to(static_cast<error>(code.value()), static_cast<condition>(value));
}

} // namespace detail
} // namespace wsx

namespace std {
template <> struct is_error_code_enum<wsx::error> : true_type {};
template <> struct is_error_condition_enum<wsx::condition> : true_type {};
} // namespace std
