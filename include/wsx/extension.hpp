// wsx/extension.hpp - the Sec-WebSocket-Extensions header grammar
// (RFC 6455 §9.1): parse a header value into extensions and their
// parameters, and format them back.
//
//   permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits="10"
//
// Choices made here:
// - Extension and parameter names are tokens and compare case-insensitively,
//   so they are stored lowercase; values keep their case.
// - A quoted-string value is stored unescaped, and must then be a token
//   (RFC 6455 §9.1), so every stored value is a token.
// - Empty list elements ("a, , b", a leading or trailing comma, or a value
//   with no element at all) are ignored, as RFC 7230 §7 asks of recipients;
//   an empty element between parameters ("a;;b") is malformed.
// - Whitespace (SP, HTAB) is allowed around ",", ";" and "=".
//
// A malformed value is error::bad_extension_offer, the server-side meaning; a
// client that parses a response maps it to bad_extension_response itself.
// Parsing allocates (strings, vectors): it runs once per handshake.
#pragma once

#include <wsx/error.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace wsx {

struct extension_param {
    std::string name;                 // lowercase token
    std::optional<std::string> value; // a token, unescaped; empty optional: no "="
};

struct extension {
    std::string name; // lowercase token
    std::vector<extension_param> params;
};

namespace detail::extension_syntax {

// RFC 7230 §3.2.6: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
// "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
constexpr bool is_tchar(char c) noexcept {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

constexpr bool is_token(std::string_view s) noexcept {
    if (s.empty()) return false;
    for (char c : s) {
        if (!is_tchar(c)) return false;
    }
    return true;
}

// RFC 7230 §3.2.3: OWS = *( SP / HTAB )
constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

constexpr char to_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// RFC 7230 §3.2.6: qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
constexpr bool is_qdtext(unsigned char c) noexcept {
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

// RFC 7230 §3.2.6: quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
constexpr bool is_quotable(unsigned char c) noexcept { return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f); }

// A cursor over one header value; each reader advances it on success only as
// far as what it read.
class reader {
public:
    explicit reader(std::string_view text) noexcept : text_(text) {}

    bool at_end() const noexcept { return pos_ == text_.size(); }
    char peek() const noexcept { return text_[pos_]; }
    void skip_ows() noexcept {
        while (!at_end() && is_ows(peek())) ++pos_;
    }
    bool consume(char c) noexcept {
        if (at_end() || peek() != c) return false;
        ++pos_;
        return true;
    }

    // A token, lowercased into `out`; false when there is none here.
    bool read_token(std::string& out, bool lowercase) {
        const std::size_t start = pos_;
        while (!at_end() && is_tchar(peek())) ++pos_;
        if (pos_ == start) return false;
        out.assign(text_.data() + start, pos_ - start);
        if (lowercase) {
            for (char& c : out) c = to_lower(c);
        }
        return true;
    }

    // RFC 7230 §3.2.6: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE,
    // stored unescaped.
    bool read_quoted_string(std::string& out) {
        if (!consume('"')) return false;
        out.clear();
        while (!at_end()) {
            const auto c = static_cast<unsigned char>(peek());
            ++pos_;
            if (c == '"') return true;
            if (c == '\\') {
                if (at_end() || !is_quotable(static_cast<unsigned char>(peek()))) return false;
                out.push_back(peek());
                ++pos_;
            } else if (is_qdtext(c)) {
                out.push_back(static_cast<char>(c));
            } else {
                return false;
            }
        }
        return false; // no closing quote
    }

private:
    std::string_view text_;
    std::size_t pos_ = 0;
};

// extension = extension-token *( ";" extension-param ), with the reader just
// past the leading OWS; stops before the "," or the end that follows it.
inline bool read_extension(reader& in, extension& out) {
    if (!in.read_token(out.name, true)) return false;
    for (;;) {
        in.skip_ows();
        if (in.at_end() || in.peek() == ',') return true;
        if (!in.consume(';')) return false;
        in.skip_ows();
        // RFC 6455 §9.1: extension-param = token [ "=" (token | quoted-string) ]
        extension_param param;
        if (!in.read_token(param.name, true)) return false;
        in.skip_ows();
        if (in.consume('=')) {
            in.skip_ows();
            std::string value;
            if (!in.at_end() && in.peek() == '"') {
                // RFC 6455 §9.1: "When using the quoted-string syntax variant,
                // the value after quoted-string unescaping MUST conform to the
                // 'token' ABNF."
                if (!in.read_quoted_string(value) || !is_token(value)) return false;
            } else if (!in.read_token(value, false)) {
                return false;
            }
            param.value = std::move(value);
        }
        out.params.push_back(std::move(param));
    }
}

} // namespace detail::extension_syntax

// Parses one Sec-WebSocket-Extensions header value and appends its extensions
// to `out`, in order (call it once per header line). On error `out` is left as
// it was.
inline std::error_code parse_extensions(std::string_view header_value, std::vector<extension>& out) {
    namespace syntax = detail::extension_syntax;
    const std::size_t original_size = out.size();
    syntax::reader in(header_value);
    // RFC 7230 §7: "a recipient MUST parse and ignore a reasonable number of
    // empty list elements", so commas may repeat, lead and trail.
    for (;;) {
        in.skip_ows();
        if (in.at_end()) return {};
        if (in.consume(',')) continue;
        extension ext;
        if (!syntax::read_extension(in, ext)) {
            out.resize(original_size);
            return error::bad_extension_offer;
        }
        out.push_back(std::move(ext));
        // read_extension stops at "," or at the end: the loop takes either.
    }
}

// Appends one extension as header text: `name; param; param=value`. Values
// that are tokens are written bare, others as a quoted-string (which the
// parser above will reject: RFC 6455 §9.1 values must be tokens).
inline void append_extension(std::string& out, const extension& ext) {
    out += ext.name;
    for (const extension_param& param : ext.params) {
        out += "; ";
        out += param.name;
        if (!param.value) continue;
        out += '=';
        if (detail::extension_syntax::is_token(*param.value)) {
            out += *param.value;
            continue;
        }
        out += '"';
        for (char c : *param.value) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        out += '"';
    }
}

// A whole header value: extensions separated by ", ".
inline std::string format_extensions(const std::vector<extension>& extensions) {
    std::string out;
    for (const extension& ext : extensions) {
        if (!out.empty()) out += ", ";
        append_extension(out, ext);
    }
    return out;
}

} // namespace wsx
