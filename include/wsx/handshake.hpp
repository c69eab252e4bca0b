// wsx/handshake.hpp - the WebSocket opening handshake (RFC 6455 §4) without
// I/O: keys, the client's request and its check of the answer, the server's
// check of a request, subprotocols, origins, and every response a server
// sends (101, errors, anything an application wants instead).
//
// Server, on a connection:
//   http_request_parser parser(limits);  server_request request;
//   parser.parse(bytes, request.http)        until complete (or error);
//   validate_request(request, origins)       RFC 6455 §4.2.1 checks;
//   append_accept_response(out, request, select_subprotocol(request, mine), extensions)
//   or, on any error, append_error_response(out, ec) and close.
// Client:
//   key = make_sec_key(random); append_client_request(out, options, key);
//   http_response_parser parser; client_response response;
//   parser.parse(bytes, response.http)       until complete;
//   validate_response(response, options, key).
//
// Peer input never throws: every check answers a std::error_code. Building a
// request or response from options that cannot be sent (a CR in a header
// value, a field wsx writes itself, a subprotocol the client did not offer)
// is a programming error and throws std::invalid_argument, before anything is
// appended.
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/detail/crypto.hpp>
#include <wsx/error.hpp>
#include <wsx/http.hpp>
#include <wsx/random.hpp>
#include <wsx/uri.hpp>
#include <wsx/version.hpp>

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace wsx {

// RFC 6455 §1.3: the GUID a server appends to the client's key.
inline constexpr std::string_view websocket_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
// RFC 6455 §4.1: the key is a 16-byte nonce, base64-encoded (24 characters).
inline constexpr std::size_t sec_key_nonce_size = 16;
inline constexpr std::size_t sec_key_size = 24;
// base64 of a 20-byte SHA-1 digest.
inline constexpr std::size_t sec_accept_size = 28;
inline constexpr std::string_view default_user_agent = "wsx/" WSX_VERSION_STRING;

// ---- keys --------------------------------------------------------------------

// RFC 6455 §4.2.2: Sec-WebSocket-Accept = base64(SHA-1(key + GUID)).
inline void append_accept_key(std::string& out, std::string_view key) {
    const auto encoded = detail::base64_encode(detail::sha1(key, websocket_guid));
    out.append(encoded.data(), sec_accept_size);
}

inline std::string accept_key(std::string_view key) {
    std::string out;
    append_accept_key(out, key);
    return out;
}

// RFC 6455 §4.1: "a nonce consisting of a randomly selected 16-byte value
// that has been base64-encoded". An empty source means fill_random.
inline std::string make_sec_key(const random_source& random = {}) {
    std::array<std::uint8_t, sec_key_nonce_size> nonce{};
    if (random) {
        random(nonce);
    } else {
        fill_random(nonce);
    }
    const auto encoded = detail::base64_encode(nonce);
    return std::string(encoded.data(), sec_key_size);
}

// RFC 6455 §4.2.1 item 5: a key "that, when decoded, is 16 bytes in length".
inline bool is_valid_sec_key(std::string_view key) noexcept {
    if (key.size() != sec_key_size) return false;
    std::array<std::uint8_t, detail::base64_decoded_capacity(sec_key_size)> decoded{};
    const std::optional<std::size_t> size = detail::base64_decode(key, decoded);
    return size && *size == sec_key_nonce_size;
}

// ---- header fields we send ------------------------------------------------------

// A header field to send (owning, unlike the parsed http_header).
struct http_field {
    std::string name;
    std::string value;
};
using http_fields = std::vector<http_field>;

namespace detail {

inline bool is_sendable_value(std::string_view value) noexcept {
    for (char c : value)
        if (!is_field_value_char(c)) return false;
    return true;
}

inline void require(bool condition, const char* what) {
    if (!condition) throw std::invalid_argument(std::string("wsx: ") + what);
}

// User fields must be sendable and must not repeat one that wsx writes.
inline void check_user_fields(const http_fields& fields, std::initializer_list<std::string_view> written_by_wsx) {
    for (const http_field& field : fields) {
        require(is_token(field.name), "header name is not an HTTP token");
        require(is_sendable_value(field.value), "header value holds a control character");
        for (std::string_view reserved : written_by_wsx)
            if (ascii_iequals(field.name, reserved))
                throw std::invalid_argument("wsx: header " + field.name + " is written by wsx itself");
    }
}

inline void append_field(std::string& out, std::string_view name, std::string_view value) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
}

inline void append_user_fields(std::string& out, const http_fields& fields) {
    for (const http_field& field : fields) append_field(out, field.name, field.value);
}

inline void append_decimal(std::string& out, std::uint64_t value) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
    out.append(digits, end);
}

// RFC 3986 §3.2.2: reg-name, IPv4 or bracketed IPv6 characters.
inline bool is_host_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("-._~!$&'()*+,;=%:[]").find(c) != std::string_view::npos;
}

} // namespace detail

// ---- client ----------------------------------------------------------------------

struct client_request_options {
    std::string host;                      // a name, an IPv4 or an IPv6 literal (brackets optional)
    std::uint16_t port = 0;                // 0: the default port for `secure`
    bool secure = false;                   // wss:// (default port 443, else 80)
    std::string target = "/";              // the resource name: path ["?" query]
    std::string origin;                    // empty: no Origin header
    std::vector<std::string> subprotocols; // offered, in order of preference
    std::string extensions;                // a ready Sec-WebSocket-Extensions offer; empty: none
    http_fields headers;                   // more fields (Authorization, Cookie, ...)
    std::string user_agent = std::string(default_user_agent); // empty: no User-Agent
};

// Appends the opening handshake request for `options` with Sec-WebSocket-Key
// `key` (make_sec_key()). Throws std::invalid_argument for options that
// cannot be sent; appends nothing then.
inline void append_client_request(std::string& out, const client_request_options& options, std::string_view key) {
    using detail::require;
    require(!options.host.empty(), "empty host");
    for (char c : options.host) require(detail::is_host_char(c), "host holds a character not allowed in a URI host");
    // A ':' outside brackets can only be an IPv6 literal's (the port has its
    // own option).
    const bool ipv6 = options.host.find(':') != std::string::npos && options.host.front() != '[';
    if (ipv6)
        for (char c : options.host)
            require((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.',
                    "host with a ':' is neither an IPv6 literal nor bracketed (give the port in `port`)");
    // RFC 6455 §3: the resource name is "/" or a path, with an optional query
    // and no fragment.
    require(!options.target.empty() && options.target.front() == '/', "target does not start with '/'");
    for (char c : options.target) require(detail::is_visible_ascii(c) && c != '#', "target holds a space, a control character, '#' or a non-ASCII byte");
    require(key.size() == sec_key_size && is_valid_sec_key(key), "key is not base64 of 16 bytes");
    require(detail::is_sendable_value(options.origin), "origin holds a control character");
    // RFC 6455 §4.1 item 10: subprotocols are tokens, "all unique strings".
    for (std::size_t i = 0; i < options.subprotocols.size(); ++i) {
        require(detail::is_token(options.subprotocols[i]), "subprotocol is not an HTTP token");
        for (std::size_t j = 0; j < i; ++j)
            require(options.subprotocols[j] != options.subprotocols[i], "subprotocol offered twice");
    }
    require(detail::is_sendable_value(options.extensions), "extensions hold a control character");
    require(detail::is_sendable_value(options.user_agent), "user agent holds a control character");
    detail::check_user_fields(options.headers,
                              {"Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                               "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Origin", "User-Agent",
                               "Content-Length", "Transfer-Encoding"});

    // RFC 6455 §4.1 item 2: "The method of the request MUST be GET, and the
    // HTTP version MUST be at least 1.1."
    out += "GET ";
    out += options.target;
    out += " HTTP/1.1\r\n";
    // RFC 6455 §4.1 item 4: Host is the host "followed by ":" and the port
    // number if a non-default port number is being used".
    out += "Host: ";
    if (ipv6) out += '[';
    out += options.host;
    if (ipv6) out += ']';
    const std::uint16_t default_port = options.secure ? 443 : 80;
    if (options.port != 0 && options.port != default_port) {
        out += ':';
        detail::append_decimal(out, options.port);
    }
    out += "\r\n";
    // RFC 6455 §4.1 items 5-9.
    out += "Upgrade: websocket\r\n"
           "Connection: Upgrade\r\n";
    detail::append_field(out, "Sec-WebSocket-Key", key);
    out += "Sec-WebSocket-Version: 13\r\n";
    if (!options.origin.empty()) detail::append_field(out, "Origin", options.origin);
    if (!options.subprotocols.empty()) {
        out += "Sec-WebSocket-Protocol: ";
        for (std::size_t i = 0; i < options.subprotocols.size(); ++i) {
            if (i > 0) out += ", ";
            out += options.subprotocols[i];
        }
        out += "\r\n";
    }
    if (!options.extensions.empty()) detail::append_field(out, "Sec-WebSocket-Extensions", options.extensions);
    if (!options.user_agent.empty()) detail::append_field(out, "User-Agent", options.user_agent);
    detail::append_user_fields(out, options.headers);
    out += "\r\n";
}

// The server's answer, as the client sees it.
struct client_response {
    http_response http;           // status, reason, every header (Location, WWW-Authenticate...)
    std::string_view subprotocol; // validate_response(): the server's choice, or empty

    // The extensions the server accepted, every Sec-WebSocket-Extensions line
    // joined, for the extension layer to check against its offer.
    std::string extensions() const { return http.headers.join("Sec-WebSocket-Extensions"); }
};

// RFC 6455 §4.1: the client's checks of the server's handshake, for a
// request sent with `options` and `key`. A status other than 101 answers
// unexpected_status; the response (status, Location, Retry-After...) stays
// for the caller to act on. Extensions the client offered are left to the
// extension layer: only an answer to an offer never made fails here.
inline std::error_code validate_response(client_response& response, const client_request_options& options,
                                         std::string_view key) {
    const http_headers& headers = response.http.headers;
    response.subprotocol = {};
    // RFC 6455 §4.1: "If the status code received from the server is not 101,
    // the client handles the response per HTTP [RFC2616] procedures."
    if (response.http.status != 101) return error::unexpected_status;
    // RFC 6455 §4.1 item 2: Upgrade must be an ASCII case-insensitive match
    // for "websocket".
    const std::optional<std::string_view> upgrade = headers.find("Upgrade");
    if (headers.count("Upgrade") != 1 || !detail::ascii_iequals(*upgrade, "websocket"))
        return error::missing_upgrade;
    // RFC 6455 §4.1 item 3: Connection must hold the token "Upgrade".
    if (!headers.has_token("Connection", "Upgrade")) return error::missing_connection_upgrade;
    // RFC 6455 §4.1 item 4: Sec-WebSocket-Accept must be base64(SHA-1(key + GUID)).
    const std::optional<std::string_view> accept = headers.find("Sec-WebSocket-Accept");
    if (headers.count("Sec-WebSocket-Accept") != 1 || accept->size() != sec_accept_size) return error::bad_sec_accept;
    const auto expected = detail::base64_encode(detail::sha1(key, websocket_guid));
    if (*accept != std::string_view(expected.data(), sec_accept_size)) return error::bad_sec_accept;
    // RFC 6455 §4.1 item 5: an extension "that was not present in the
    // client's handshake" fails the connection.
    if (options.extensions.empty() && !headers.for_each_element("Sec-WebSocket-Extensions",
                                                                [](std::string_view) { return false; }))
        return error::unexpected_extension;
    // RFC 6455 §4.1 item 6: a subprotocol "that was not present in the
    // client's handshake" fails the connection; the server picks one.
    if (headers.contains("Sec-WebSocket-Protocol")) {
        const std::string_view chosen = *headers.find("Sec-WebSocket-Protocol");
        bool offered = false;
        for (const std::string& mine : options.subprotocols) offered = offered || chosen == mine;
        if (!offered || headers.count("Sec-WebSocket-Protocol") != 1) return error::unexpected_subprotocol;
        response.subprotocol = chosen;
    }
    return {};
}

// ---- server ----------------------------------------------------------------------

// Which browser pages may connect (RFC 6455 §10.2: the Origin header lets a
// server refuse scripts from sites it does not know).
struct origin_policy {
    // Origins allowed, compared whole and ASCII case-insensitively, e.g.
    // "https://example.com" or "http://localhost:8080". Empty: every origin.
    std::vector<std::string> allowed;
    // Requests without Origin: browsers always send it (RFC 6455 §4.1 item 8),
    // other clients usually do not. Unset, as Python websockets decides: let
    // in while `allowed` is empty, refused once it lists origins (a list of
    // origins means "only these"). true or false decides either way.
    std::optional<bool> allow_missing;

    bool allows(const http_headers& headers) const noexcept {
        return allows(headers.count("Origin"), headers.find("Origin").value_or(std::string_view{}));
    }
    // For a request with `count` Origin lines, the first being `origin`.
    bool allows(std::size_t count, std::string_view origin) const noexcept {
        if (count == 0) return allow_missing.value_or(allowed.empty());
        if (allowed.empty()) return true;
        // RFC 6454 §7.3: a user agent sends at most one Origin.
        if (count != 1) return false;
        for (const std::string& candidate : allowed)
            if (detail::ascii_iequals(candidate, origin)) return true;
        return false;
    }
};

// A client's upgrade request, as the server sees it.
struct server_request {
    http_request http; // method, target and every header, as parsed

    // Set by validate_request() (as far as it got, also on failure); views
    // into the same buffer as `http`.
    std::string_view path;  // the resource name's path ("/chat")
    std::string_view query; // after '?', without it; empty when none
    std::string_view host;  // the Host header
    std::string_view key;   // Sec-WebSocket-Key
    std::optional<std::string_view> origin;

    // Calls visit(name) for each subprotocol offered, in the client's order
    // (every Sec-WebSocket-Protocol line; a bool result false stops).
    template <class Visitor>
    bool for_each_subprotocol(Visitor&& visit) const {
        return http.headers.for_each_element("Sec-WebSocket-Protocol", visit);
    }
    // Whether the client offered subprotocol `name` (exact match).
    bool offers_subprotocol(std::string_view name) const noexcept {
        return !for_each_subprotocol([name](std::string_view offered) { return offered != name; });
    }
    // The extension offers, every Sec-WebSocket-Extensions line joined
    // (RFC 6455 §9.1: repeated lines are one list), for the extension layer.
    std::string extensions() const { return http.headers.join("Sec-WebSocket-Extensions"); }
};

namespace detail {

// RFC 6455 §3 and §4.2.1 item 1: the request-target is a resource name
// ("/path?query") or an absolute http(s) URI holding one; no fragment.
inline bool split_resource_name(std::string_view target, std::string_view& path, std::string_view& query) noexcept {
    if (target.empty() || target.find('#') != std::string_view::npos) return false;
    if (target.front() != '/') {
        const std::size_t scheme_end = target.find("://");
        if (scheme_end == std::string_view::npos) return false;
        const std::string_view scheme = target.substr(0, scheme_end);
        if (!ascii_iequals(scheme, "http") && !ascii_iequals(scheme, "https") && !ascii_iequals(scheme, "ws") &&
            !ascii_iequals(scheme, "wss"))
            return false;
        std::string_view rest = target.substr(scheme_end + 3);
        const std::size_t authority_end = rest.find_first_of("/?");
        if (authority_end == 0) return false;
        if (authority_end == std::string_view::npos || rest[authority_end] == '?') {
            // No path: the resource name's path is "/" (RFC 6455 §3).
            path = "/";
            query = authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end + 1);
            return true;
        }
        target = rest.substr(authority_end);
    }
    const std::size_t question = target.find('?');
    path = target.substr(0, question);
    query = question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
    return true;
}

} // namespace detail

// RFC 6455 §4.2.1: the server's checks of a parsed request, in this order:
// bad_method, bad_http_version, http_bad_request_line (a target that is not a
// resource name), missing_host, missing_upgrade, missing_connection_upgrade,
// unsupported_version, bad_sec_key, origin_not_allowed. The version comes
// before the key so that clients of older drafts, which send other keys, get
// the 426 that names version 13 (RFC 6455 §4.4).
inline std::error_code validate_request(server_request& request, const origin_policy& origins = {}) noexcept {
    const http_request& http = request.http;
    const http_headers& headers = http.headers;

    // One pass over the headers for the fields that must appear once.
    struct single_field {
        std::string_view value; // the first line's
        std::size_t count = 0;
    };
    single_field host, key, version, origin;
    for (std::size_t i = 0; i < headers.size(); ++i) {
        const http_header h = headers[i];
        single_field* field = nullptr;
        switch (h.name.size()) {
        case 4: field = detail::ascii_iequals(h.name, "Host") ? &host : nullptr; break;
        case 6: field = detail::ascii_iequals(h.name, "Origin") ? &origin : nullptr; break;
        case 17: field = detail::ascii_iequals(h.name, "Sec-WebSocket-Key") ? &key : nullptr; break;
        case 21: field = detail::ascii_iequals(h.name, "Sec-WebSocket-Version") ? &version : nullptr; break;
        default: break;
        }
        if (field != nullptr && field->count++ == 0) field->value = h.value;
    }
    request.path = request.query = {};
    request.host = host.value;
    request.key = key.value;
    request.origin = origin.count > 0 ? std::optional<std::string_view>(origin.value) : std::nullopt;

    // RFC 6455 §4.2.1 item 1: "An HTTP/1.1 or higher GET request" (methods
    // are case-sensitive, RFC 9110 §9.1).
    if (http.method != "GET") return error::bad_method;
    if (http.version < http_version{1, 1}) return error::bad_http_version;
    if (!detail::split_resource_name(http.target, request.path, request.query)) return error::http_bad_request_line;
    // RFC 6455 §4.2.1 item 2: "A |Host| header field containing the server's
    // authority"; RFC 9112 §3.2: exactly one, else 400.
    if (host.count != 1 || host.value.empty()) return error::missing_host;
    // RFC 6455 §4.2.1 item 3: "An |Upgrade| header field containing the value
    // "websocket", treated as an ASCII case-insensitive value."
    if (!headers.has_token("Upgrade", "websocket")) return error::missing_upgrade;
    // RFC 6455 §4.2.1 item 4: "A |Connection| header field that includes the
    // token "Upgrade", treated as an ASCII case-insensitive value."
    if (!headers.has_token("Connection", "Upgrade")) return error::missing_connection_upgrade;
    // RFC 6455 §4.2.1 item 6: "A |Sec-WebSocket-Version| header field, with a
    // value of 13"; §11.3.5: it "MUST NOT appear more than once".
    if (version.count != 1 || version.value != "13") return error::unsupported_version;
    // RFC 6455 §4.2.1 item 5: a key that decodes to 16 bytes; §11.3.1: it
    // "MUST NOT appear more than once".
    if (key.count != 1 || !is_valid_sec_key(key.value)) return error::bad_sec_key;
    // RFC 6455 §4.2.2 item 4 / §10.2: the server may refuse an origin.
    if (!origins.allows(origin.count, origin.value)) return error::origin_not_allowed;
    return {};
}

// The first of the server's `supported` subprotocols (its order of
// preference) that the client offered, as a view into the request; empty
// when there is none. RFC 6455 §4.2.2 item 4: the server selects "one or
// none of the acceptable protocols" the client listed.
inline std::string_view select_subprotocol(const server_request& request,
                                           const std::vector<std::string>& supported) noexcept {
    for (const std::string& mine : supported) {
        std::string_view found;
        request.for_each_subprotocol([&](std::string_view offered) {
            if (offered != mine) return true;
            found = offered;
            return false;
        });
        if (!found.empty()) return found;
    }
    return {};
}

// An application's own choice of subprotocol: empty, or one the request
// offers (a view into the request, e.g. from for_each_subprotocol).
using subprotocol_selector = std::function<std::string_view(const server_request&)>;

// Appends "101 Switching Protocols" for a validated request, with the chosen
// subprotocol (empty: none; else one the client offered), the accepted
// extensions (a ready Sec-WebSocket-Extensions value from the extension
// layer; empty: none) and the application's fields. Throws
// std::invalid_argument for a subprotocol not offered, an unsendable value or
// a field wsx writes itself; appends nothing then.
inline void append_accept_response(std::string& out, const server_request& request, std::string_view subprotocol = {},
                                   std::string_view extensions = {}, const http_fields& headers = {}) {
    detail::require(is_valid_sec_key(request.key), "request was not validated: no valid Sec-WebSocket-Key");
    // RFC 6455 §4.2.2 item 4: the subprotocol is one the client offered.
    detail::require(subprotocol.empty() || request.offers_subprotocol(subprotocol),
                    "subprotocol was not offered by the client");
    detail::require(detail::is_sendable_value(extensions), "extensions hold a control character");
    detail::check_user_fields(headers, {"Upgrade", "Connection", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol",
                                        "Sec-WebSocket-Extensions", "Content-Length", "Transfer-Encoding"});
    // RFC 6455 §4.2.2 item 5: status 101, Upgrade, Connection, the accept key,
    // then the optional subprotocol and extensions.
    out += "HTTP/1.1 101 Switching Protocols\r\n"
           "Upgrade: websocket\r\n"
           "Connection: Upgrade\r\n"
           "Sec-WebSocket-Accept: ";
    append_accept_key(out, request.key);
    out += "\r\n";
    if (!subprotocol.empty()) detail::append_field(out, "Sec-WebSocket-Protocol", subprotocol);
    if (!extensions.empty()) detail::append_field(out, "Sec-WebSocket-Extensions", extensions);
    detail::append_user_fields(out, headers);
    out += "\r\n";
}

// ---- responses other than 101 -----------------------------------------------------

// RFC 9110 §15: the reason phrases of the statuses a WebSocket server is
// likely to send; empty for others (the status line stays valid).
inline std::string_view http_reason_phrase(int status) noexcept {
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return {};
    }
}

// The HTTP status a server answers a failed handshake with: 400 for a
// malformed request, 405 for a method other than GET, 426 for a request
// without Upgrade: websocket or with another WebSocket version, 403 for a
// refused origin or an application's refusal, 431 for a head above the
// limits, 500 for anything that is not the peer's fault.
inline int http_status_for(std::error_code ec) noexcept {
    if (ec.category() != error_category()) return 500;
    switch (static_cast<error>(ec.value())) {
    case error::http_head_too_large:
    case error::http_too_many_headers:
        return 431;
    case error::http_bad_request_line:
    case error::http_bad_status_line:
    case error::http_bad_version:
    case error::http_bad_header_name:
    case error::http_bad_header_value:
    case error::http_missing_colon:
    case error::http_bare_cr:
    case error::http_obs_fold:
    case error::bad_http_version:
    case error::missing_host:
    case error::missing_connection_upgrade:
    case error::bad_sec_key:
    case error::bad_extension_offer:
        return 400;
    case error::bad_method:
        return 405;
    case error::missing_upgrade:
    case error::unsupported_version:
        return 426;
    case error::origin_not_allowed:
    case error::handshake_rejected:
        return 403;
    default:
        return 500;
    }
}

namespace detail {

// Status line, `fixed` fields, the application's, then Content-Type (for a
// body, unless given), Content-Length and Connection (the connection ends
// after any answer but 101).
inline void append_final_response(std::string& out, int status, std::string_view body, const http_fields& headers,
                                  std::initializer_list<std::pair<std::string_view, std::string_view>> fixed,
                                  std::string_view connection) {
    require(status >= 200 && status <= 999, "status is not a final status (200-999)");
    require((status != 204 && status != 304) || body.empty(), "204 and 304 responses have no body");
    check_user_fields(headers, {"Content-Length", "Transfer-Encoding", "Connection"});
    bool has_content_type = false;
    for (const http_field& field : headers) has_content_type = has_content_type || ascii_iequals(field.name, "Content-Type");
    out += "HTTP/1.1 ";
    append_decimal(out, static_cast<std::uint64_t>(status));
    out += ' ';
    out += http_reason_phrase(status);
    out += "\r\n";
    for (const auto& field : fixed) append_field(out, field.first, field.second);
    append_user_fields(out, headers);
    if (!body.empty() && !has_content_type) out += "Content-Type: text/plain; charset=utf-8\r\n";
    // RFC 9110 §8.6: no Content-Length in 204 responses.
    if (status != 204) {
        out += "Content-Length: ";
        append_decimal(out, body.size());
        out += "\r\n";
    }
    append_field(out, "Connection", connection);
    out += "\r\n";
    out += body;
}

} // namespace detail

// Appends a final response other than 101 - a health check's 200, a 301 with
// Location, 401 with WWW-Authenticate, 404, 503 with Retry-After - with
// Content-Length and "Connection: close": the transport is closed after it.
// Throws std::invalid_argument for a status outside 200-999 (or a 204/304
// with a body), an unsendable field, or Content-Length, Transfer-Encoding or
// Connection among `headers`.
inline void append_http_response(std::string& out, int status, std::string_view body = {},
                                 const http_fields& headers = {}) {
    detail::append_final_response(out, status, body, headers, {}, "close");
}

// Appends the answer to a handshake that failed with `ec`: the status of
// http_status_for(ec), the error's message as a plain-text body, and what
// that status calls for - Allow: GET with 405; with 426, Upgrade: websocket
// (RFC 9110 §15.5.22) and Sec-WebSocket-Version: 13 (RFC 6455 §4.2.2 item 4),
// and Connection: Upgrade, close.
inline void append_error_response(std::string& out, std::error_code ec) {
    const int status = http_status_for(ec);
    std::string body = ec.message();
    body += '\n';
    if (status == 405) {
        detail::append_final_response(out, status, body, {}, {{"Allow", "GET"}}, "close");
    } else if (status == 426) {
        // RFC 9110 §7.8: a sender of Upgrade "MUST also send an "upgrade"
        // connection option".
        detail::append_final_response(out, status, body, {},
                                      {{"Upgrade", "websocket"}, {"Sec-WebSocket-Version", "13"}},
                                      "Upgrade, close");
    } else {
        detail::append_final_response(out, status, body, {}, {}, "close");
    }
}

// A final HTTP response other than 101: a page, a 404, a refusal.
struct http_reply {
    int status = 404;
    std::string body;
    http_fields headers; // Content-Type defaults to text/plain for a body
};

// ---- what a client asks for -------------------------------------------------------

// The client settings an adapter takes besides where to connect; mapped onto
// client_request_options by make_client_request().
struct handshake_options {
    std::string origin;                    // empty: no Origin header
    std::vector<std::string> subprotocols; // offered, in order of preference
    http_fields headers;                   // more fields (Authorization, Cookie, ...)
    std::string user_agent = std::string(default_user_agent); // empty: none
    // permessage-deflate is not here: connection_options::deflate, the one
    // switch for both roles, offers it.
};

namespace detail {

// Splits a Host value - "name", "name:port", "192.0.2.1:port", "[v6]",
// "[v6]:port" or a bare IPv6 literal - into host and port (0 when none).
inline bool split_host_port(std::string_view text, std::string& host, std::uint16_t& port) {
    port = 0;
    std::string_view port_text;
    if (!text.empty() && text.front() == '[') {
        const std::size_t close = text.find(']');
        if (close == std::string_view::npos) return false;
        host = std::string(text.substr(1, close - 1));
        const std::string_view rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return false;
            port_text = rest.substr(1);
        }
    } else if (const std::size_t colon = text.find(':');
               colon != std::string_view::npos && text.find(':', colon + 1) == std::string_view::npos) {
        host = std::string(text.substr(0, colon));
        port_text = text.substr(colon + 1);
    } else {
        host = std::string(text); // a name, or an IPv6 literal without brackets
    }
    if (host.empty()) return false;
    if (port_text.empty()) return true;
    unsigned value = 0;
    const auto result = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (result.ec != std::errc() || result.ptr != port_text.data() + port_text.size() || value == 0 ||
        value > 65535)
        return false;
    port = static_cast<std::uint16_t>(value);
    return true;
}

} // namespace detail

// The request for a parsed ws:// or wss:// URI (its host, port and target).
inline client_request_options make_client_request(const uri& where, const handshake_options& options) {
    client_request_options request;
    request.host = where.host;
    request.port = where.port;
    request.secure = where.secure;
    request.target = where.target;
    request.origin = options.origin;
    request.subprotocols = options.subprotocols;
    request.headers = options.headers;
    request.user_agent = options.user_agent;
    return request;
}

// The request for `host` (a Host value: "name", "name:port", "[::1]:9001")
// and `target` ("/path?query"); false, with `request` untouched, when `host`
// is not one.
inline bool make_client_request(std::string_view host, std::string_view target, const handshake_options& options,
                                client_request_options& request) {
    uri where;
    if (!detail::split_host_port(host, where.host, where.port)) return false;
    where.target = std::string(target);
    request = make_client_request(where, options);
    return true;
}

} // namespace wsx
