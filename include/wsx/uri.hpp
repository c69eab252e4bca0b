// wsx/uri.hpp - ws:// and wss:// URIs (RFC 6455 §3, syntax from RFC 3986).
//
// parse_uri() splits a WebSocket URI into what a client needs to connect and
// to write its opening handshake: the secure flag, the host to resolve, the
// port, the Host header value and the request target ("resource name").
// It owns nothing but the strings it returns and touches no network.
//
// Decisions a caller may want to know:
// - Scheme and reg-name hosts are case-insensitive; both come back lowercase.
// - IPv6 literals are written in brackets ("ws://[::1]:9001/"); `host` holds
//   them without brackets (ready for getaddrinfo and certificate checks), the
//   Host header with them. Zone identifiers and IPvFuture are refused.
// - A host made only of digits and dots must be a valid dotted-quad IPv4
//   address ("ws://1.2.3.256/" is refused rather than looked up as a name).
// - Percent-encodings are refused in the host (no name with them can be
//   resolved or matched against a certificate); elsewhere they must be "%"
//   followed by two hex digits, and path and query keep them as written.
// - Userinfo ("ws://user:pass@host/") is accepted, percent-decoded into
//   `user` and `password`, and never copied into the Host header or the
//   target: wsx does not send it by itself; a caller may turn it into an
//   Authorization header.
// - An empty port ("ws://host:/") means the default port (RFC 3986 §3.2.3);
//   an explicit port must be 1-65535.
// - Spaces, control characters and bytes above 0x7E are refused anywhere:
//   the caller percent-encodes them first.
#pragma once

#include <wsx/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace wsx {

enum class uri_host_kind {
    name, // a registered name, e.g. "example.com" or "localhost"
    ipv4, // a dotted-quad literal
    ipv6, // a bracketed literal; `host` holds it without the brackets
};

struct uri {
    bool secure = false;                       // wss://
    std::string host;                          // lowercase, IPv6 without brackets
    uri_host_kind host_kind = uri_host_kind::name;
    std::uint16_t port = 0;                    // the explicit port, else 80 / 443
    std::string path;                          // as written, "/" when empty
    std::string query;                         // as written, without the "?"
    std::string user;                          // percent-decoded userinfo before ":"
    std::string password;                      // percent-decoded userinfo after ":"
    std::string host_header;                   // value of the Host header
    std::string target;                        // request target: path ["?" query]
};

namespace detail {

inline bool uri_is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline bool uri_is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
inline bool uri_is_hex(char c) noexcept {
    return uri_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
inline int uri_hex_value(char c) noexcept {
    if (uri_is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return c - 'A' + 10;
}
inline char uri_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// RFC 3986 §2.3: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
inline bool uri_is_unreserved(char c) noexcept {
    return uri_is_alpha(c) || uri_is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}
// RFC 3986 §2.2: sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="
inline bool uri_is_sub_delim(char c) noexcept {
    switch (c) {
    case '!': case '$': case '&': case '\'': case '(': case ')':
    case '*': case '+': case ',': case ';': case '=':
        return true;
    default:
        return false;
    }
}

// Checks that `text` holds only characters for which `allowed` is true plus
// well-formed percent-encodings (RFC 3986 §2.1: "%" HEXDIG HEXDIG).
template <class Allowed>
bool uri_check_component(std::string_view text, Allowed allowed) noexcept {
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '%') {
            if (text.size() - i < 3 || !uri_is_hex(text[i + 1]) || !uri_is_hex(text[i + 2])) return false;
            i += 2;
        } else if (!allowed(c)) {
            return false;
        }
    }
    return true;
}

// Decodes a component already checked by uri_check_component.
inline std::string uri_percent_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%') {
            out.push_back(static_cast<char>(uri_hex_value(text[i + 1]) * 16 + uri_hex_value(text[i + 2])));
            i += 2;
        } else {
            out.push_back(text[i]);
        }
    }
    return out;
}

// RFC 3986 §3.3: pchar = unreserved / pct-encoded / sub-delims / ":" / "@"
inline bool uri_is_pchar(char c) noexcept {
    return uri_is_unreserved(c) || uri_is_sub_delim(c) || c == ':' || c == '@';
}

// RFC 3986 §3.2.2: dec-octet "." dec-octet "." dec-octet "." dec-octet,
// where a dec-octet is 0-255 without leading zeros.
inline bool uri_is_ipv4(std::string_view text) noexcept {
    int parts = 0;
    std::size_t i = 0;
    while (true) {
        std::size_t digits = 0;
        int value = 0;
        while (i < text.size() && uri_is_digit(text[i]) && digits < 4) {
            value = value * 10 + (text[i] - '0');
            ++digits;
            ++i;
        }
        if (digits == 0 || digits > 3 || value > 255) return false;
        if (digits > 1 && text[i - digits] == '0') return false;
        ++parts;
        if (i == text.size()) return parts == 4;
        if (text[i] != '.' || parts == 4) return false;
        ++i;
    }
}

// RFC 3986 §3.2.2 IPv6address: eight 16-bit groups of 1-4 hex digits, one
// run of zero groups written "::", the last 32 bits optionally as IPv4.
inline bool uri_is_ipv6(std::string_view text) noexcept {
    int groups = 0;
    bool compressed = false;
    std::size_t i = 0;
    if (text.size() >= 2 && text[0] == ':' && text[1] == ':') {
        compressed = true;
        i = 2;
        if (i == text.size()) return true; // "::"
    } else if (!text.empty() && text[0] == ':') {
        return false;
    }
    while (i < text.size()) {
        std::size_t start = i;
        while (i < text.size() && uri_is_hex(text[i]) && i - start < 5) ++i;
        const std::size_t digits = i - start;
        if (i < text.size() && text[i] == '.') {
            // An embedded IPv4 address ends the literal and counts as two groups.
            if (!uri_is_ipv4(text.substr(start))) return false;
            groups += 2;
            i = text.size();
            break;
        }
        if (digits == 0 || digits > 4) return false;
        ++groups;
        if (i == text.size()) break;
        if (text[i] != ':') return false;
        ++i;
        if (i < text.size() && text[i] == ':') {
            if (compressed) return false; // "::" at most once
            compressed = true;
            ++i;
            if (i == text.size()) break; // trailing "::"
        } else if (i == text.size()) {
            return false; // a single trailing ":"
        }
    }
    return compressed ? groups <= 7 : groups == 8;
}

inline std::string uri_lowercase(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = uri_lower(c);
    return out;
}

} // namespace detail

// Parses a ws:// or wss:// URI. On failure sets ec to wsx::error::bad_uri and
// returns an empty uri.
inline uri parse_uri(std::string_view text, std::error_code& ec) {
    using namespace detail;
    ec.clear();
    const auto fail = [&ec] {
        ec = make_error_code(error::bad_uri);
        return uri{};
    };

    // Spaces, control characters and non-ASCII bytes are never part of a URI
    // (RFC 3986 §2); refusing them up front keeps every later check simple.
    for (char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte <= 0x20 || byte >= 0x7F) return fail();
    }
    // RFC 6455 §3: fragment identifiers MUST NOT be used on WebSocket URIs.
    if (text.find('#') != std::string_view::npos) return fail();

    uri result;
    // RFC 6455 §3: the secure flag is set when the scheme matches "wss"
    // case-insensitively; RFC 3986 §3.1: schemes are case-insensitive.
    const std::size_t scheme_end = text.find("://");
    if (scheme_end == std::string_view::npos) return fail();
    const std::string scheme = uri_lowercase(text.substr(0, scheme_end));
    if (scheme == "ws") {
        result.secure = false;
    } else if (scheme == "wss") {
        result.secure = true;
    } else {
        return fail();
    }
    std::string_view rest = text.substr(scheme_end + 3);

    // RFC 3986 §3.2: the authority ends at the first "/", "?" (or "#").
    const std::size_t authority_end = rest.find_first_of("/?");
    std::string_view authority = rest.substr(0, authority_end);
    const std::string_view path_and_query =
        authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);

    // RFC 3986 §3.2.1: userinfo = *( unreserved / pct-encoded / sub-delims / ":" )
    const std::size_t at = authority.find('@');
    if (at != std::string_view::npos) {
        const std::string_view userinfo = authority.substr(0, at);
        if (!uri_check_component(userinfo, [](char c) {
                return uri_is_unreserved(c) || uri_is_sub_delim(c) || c == ':';
            })) {
            return fail();
        }
        const std::size_t colon = userinfo.find(':');
        result.user = uri_percent_decode(userinfo.substr(0, colon));
        if (colon != std::string_view::npos) result.password = uri_percent_decode(userinfo.substr(colon + 1));
        authority = authority.substr(at + 1);
    }

    // RFC 3986 §3.2.2: host = IP-literal / IPv4address / reg-name
    std::string_view host;
    std::string_view port_text;
    bool has_port = false;
    if (!authority.empty() && authority[0] == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) return fail();
        host = authority.substr(1, close - 1);
        if (!uri_is_ipv6(host)) return fail(); // also refuses zone ids and IPvFuture
        result.host_kind = uri_host_kind::ipv6;
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') return fail();
            has_port = true;
            port_text = after.substr(1);
        }
    } else {
        const std::size_t colon = authority.find(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) {
            has_port = true;
            port_text = authority.substr(colon + 1);
        }
        // reg-name = *( unreserved / pct-encoded / sub-delims ); percent
        // encodings are refused here (see the top of this file).
        for (char c : host) {
            if (!uri_is_unreserved(c) && !uri_is_sub_delim(c)) return fail();
        }
        bool digits_and_dots = true;
        for (char c : host) digits_and_dots = digits_and_dots && (uri_is_digit(c) || c == '.');
        if (digits_and_dots && !host.empty()) {
            if (!uri_is_ipv4(host)) return fail();
            result.host_kind = uri_host_kind::ipv4;
        }
    }
    if (host.empty()) return fail();
    result.host = uri_lowercase(host);

    // RFC 6455 §3: the default for "ws" is port 80, for "wss" port 443.
    const std::uint16_t default_port = result.secure ? 443 : 80;
    result.port = default_port;
    if (has_port && !port_text.empty()) {
        // RFC 3986 §3.2.3: port = *DIGIT; a TCP port is 1-65535.
        std::uint32_t value = 0;
        for (char c : port_text) {
            if (!uri_is_digit(c)) return fail();
            value = value * 10 + static_cast<std::uint32_t>(c - '0');
            if (value > 65535) return fail();
        }
        if (value == 0) return fail();
        result.port = static_cast<std::uint16_t>(value);
    }

    // RFC 3986 §3.3: path-abempty = *( "/" segment ), segment = *pchar
    const std::size_t query_start = path_and_query.find('?');
    const std::string_view path = path_and_query.substr(0, query_start);
    if (!uri_check_component(path, [](char c) { return uri_is_pchar(c) || c == '/'; })) return fail();
    // RFC 3986 §3.4: query = *( pchar / "/" / "?" )
    std::string_view query;
    if (query_start != std::string_view::npos) {
        query = path_and_query.substr(query_start + 1);
        if (!uri_check_component(query, [](char c) { return uri_is_pchar(c) || c == '/' || c == '?'; })) {
            return fail();
        }
    }
    // RFC 6455 §3: the resource name is "/" if the path is empty, the path,
    // then "?" and the query only if the query is non-empty.
    result.path = path.empty() ? std::string("/") : std::string(path);
    result.query = std::string(query);
    result.target = result.path;
    if (!result.query.empty()) {
        result.target += '?';
        result.target += result.query;
    }

    // RFC 6455 §4.1: Host carries /host/ plus ":" /port/ only when the port
    // is not the default one; RFC 3986 §3.2.2 keeps IPv6 in brackets.
    result.host_header = result.host_kind == uri_host_kind::ipv6 ? "[" + result.host + "]" : result.host;
    if (result.port != default_port) {
        result.host_header += ':';
        result.host_header += std::to_string(result.port);
    }
    return result;
}

// Throwing form: std::system_error carrying wsx::error::bad_uri. The URI is
// left out of the exception's text as it may hold a password.
inline uri parse_uri(std::string_view text) {
    std::error_code ec;
    uri result = parse_uri(text, ec);
    if (ec) throw std::system_error(ec);
    return result;
}

} // namespace wsx
