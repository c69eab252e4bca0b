// wsx/http.hpp - a bounded, incremental, zero-copy HTTP/1.1 head parser for
// the opening handshake: requests (server side) and responses (client side).
//
// Use: keep the bytes received so far in one buffer and call parse() with all
// of them each time more arrive (the buffer may move between calls: the
// parser keeps offsets, not pointers). It answers
//   need_more - the head is not complete yet;
//   complete  - `consumed` bytes form the head; whatever follows them (frames
//               a client sent right behind its request) is left to the caller;
//   error     - a wsx::error naming the malformation.
// Each line is examined once, as soon as its LF arrives, so garbage is refused
// early; bytes are never copied. On complete, the request or response holds
// string_views into the buffer given to that last call: they stay valid as
// long as those bytes do. Pass the same request/response object to every call
// of one parse (another object makes the parser start over).
//
// Storage: headers live in a fixed array of http_header_capacity entries
// inside the request/response (16 bytes each), so parsing never allocates;
// http_limits::max_header_count is clamped to that capacity.
//
// Decisions on what RFC 9112 leaves open:
// - Bare LF (RFC 9112 §2.2, "MAY recognize a single LF"): accepted as a line
//   terminator, so "\n" and "\r\n" end lines alike.
// - A CR anywhere but right before an LF is http_bare_cr (RFC 9112 §2.2), and
//   takes precedence over anything else wrong with that line.
// - obs-fold, a field line starting with SP or HTAB (RFC 9112 §5.2), is
//   refused with http_obs_fold in requests ("MAY reject") and, deliberately,
//   in responses too: no WebSocket server folds lines, and the views cannot be
//   rewritten to unfold them. Whitespace before the first field line (§2.2)
//   is refused the same way.
// - Empty lines before a request-line are skipped (RFC 9112 §2.2 SHOULD); they
//   count towards max_head_size.
// - Request-line and status-line components are separated by exactly one SP;
//   a request-target is visible ASCII only (clients percent-encode the rest).
// - A status-line may omit the SP before an empty reason-phrase
//   ("HTTP/1.1 101"), as some servers send it.
// - Field values may hold obs-text (bytes 0x80-0xFF) but no control
//   characters other than HTAB; whitespace around them is trimmed.
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/error.hpp>
#include <wsx/frame.hpp> // parse_status, shared with the frame parser

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace wsx {

struct http_limits {
    std::size_t max_head_size = 16 * 1024; // request/status line, headers and the empty line
    std::size_t max_header_count = 100;    // at most http_header_capacity
};

// How many headers a request or response can hold.
inline constexpr std::size_t http_header_capacity = 100;

struct http_header {
    std::string_view name;
    std::string_view value; // without the whitespace around it
};

struct http_version {
    int major = 1;
    int minor = 1;
};
constexpr bool operator==(http_version a, http_version b) noexcept {
    return a.major == b.major && a.minor == b.minor;
}
constexpr bool operator!=(http_version a, http_version b) noexcept { return !(a == b); }
constexpr bool operator<(http_version a, http_version b) noexcept {
    return a.major < b.major || (a.major == b.major && a.minor < b.minor);
}
constexpr bool operator>=(http_version a, http_version b) noexcept { return !(a < b); }

struct http_parse_result {
    parse_status status = parse_status::need_more;
    std::size_t consumed = 0; // complete: the size of the head
    std::error_code ec;       // error: what is wrong
};

namespace detail {

// RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
// "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
constexpr std::array<bool, 256> make_token_table() noexcept {
    std::array<bool, 256> table{};
    for (int c = '0'; c <= '9'; ++c) table[static_cast<std::size_t>(c)] = true;
    for (int c = 'a'; c <= 'z'; ++c) table[static_cast<std::size_t>(c)] = true;
    for (int c = 'A'; c <= 'Z'; ++c) table[static_cast<std::size_t>(c)] = true;
    for (char c : std::string_view("!#$%&'*+-.^_`|~")) table[static_cast<unsigned char>(c)] = true;
    return table;
}
inline constexpr std::array<bool, 256> token_table = make_token_table();

// RFC 9110 §5.5: field-content is VCHAR / obs-text with SP and HTAB inside.
constexpr std::array<bool, 256> make_field_value_table() noexcept {
    std::array<bool, 256> table{};
    for (int c = 0x20; c <= 0xff; ++c) table[static_cast<std::size_t>(c)] = c != 0x7f;
    table['\t'] = true;
    return table;
}
inline constexpr std::array<bool, 256> field_value_table = make_field_value_table();

constexpr bool is_token_char(char c) noexcept { return token_table[static_cast<unsigned char>(c)]; }
constexpr bool is_field_value_char(char c) noexcept {
    return field_value_table[static_cast<unsigned char>(c)];
}
// RFC 5234 B.1: VCHAR = %x21-7E
constexpr bool is_visible_ascii(char c) noexcept { return c > 0x20 && c < 0x7f; }
constexpr bool is_http_whitespace(char c) noexcept { return c == ' ' || c == '\t'; }

constexpr bool is_token(std::string_view s) noexcept {
    if (s.empty()) return false;
    for (char c : s)
        if (!is_token_char(c)) return false;
    return true;
}

constexpr char ascii_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Header names and tokens compare ASCII case-insensitively (RFC 9110 §5.1).
constexpr bool ascii_iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}

constexpr std::string_view trim_http_whitespace(std::string_view s) noexcept {
    while (!s.empty() && is_http_whitespace(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_http_whitespace(s.back())) s.remove_suffix(1);
    return s;
}

// Calls visit(element); a visitor returning bool stops the walk with false.
template <class Visitor>
bool visit_element(Visitor& visit, std::string_view element) {
    if constexpr (std::is_same_v<std::invoke_result_t<Visitor&, std::string_view>, bool>) {
        return visit(element);
    } else {
        visit(element);
        return true;
    }
}

class http_head_parser;

} // namespace detail

// Walks the elements of one comma-separated list value (RFC 9110 §5.6.1:
// `#element`), trimmed of whitespace, skipping empty ones. Commas inside a
// quoted-string (RFC 9110 §5.6.4, with backslash quoted-pairs) do not
// separate. `visit(std::string_view)` may return bool: false stops the walk
// and makes this return false.
template <class Visitor>
bool for_each_list_element(std::string_view value, Visitor&& visit) {
    std::size_t start = 0;
    bool quoted = false;
    for (std::size_t i = 0; i <= value.size(); ++i) {
        if (i < value.size()) {
            const char c = value[i];
            if (quoted) {
                if (c == '\\' && i + 1 < value.size()) ++i;
                else if (c == '"') quoted = false;
                continue;
            }
            if (c == '"') quoted = true;
            if (c != ',') continue;
        }
        const std::string_view element = detail::trim_http_whitespace(value.substr(start, i - start));
        if (!element.empty() && !detail::visit_element(visit, element)) return false;
        start = i + 1;
    }
    return true;
}

// The header fields of a parsed head, in the order received.
class http_headers {
public:
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = http_header;
        using difference_type = std::ptrdiff_t;
        using pointer = void;
        using reference = http_header;

        iterator() noexcept = default;
        http_header operator*() const noexcept { return (*headers_)[index_]; }
        iterator& operator++() noexcept {
            ++index_;
            return *this;
        }
        iterator operator++(int) noexcept {
            iterator before = *this;
            ++index_;
            return before;
        }
        friend bool operator==(const iterator& a, const iterator& b) noexcept {
            return a.headers_ == b.headers_ && a.index_ == b.index_;
        }
        friend bool operator!=(const iterator& a, const iterator& b) noexcept { return !(a == b); }

    private:
        friend class http_headers;
        iterator(const http_headers* headers, std::size_t index) noexcept : headers_(headers), index_(index) {}
        const http_headers* headers_ = nullptr;
        std::size_t index_ = 0;
    };

    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    http_header operator[](std::size_t i) const noexcept {
        const entry& e = entries_[i];
        return {{base_ + e.name_offset, e.name_size}, {base_ + e.value_offset, e.value_size}};
    }
    iterator begin() const noexcept { return {this, 0}; }
    iterator end() const noexcept { return {this, size_}; }

    // The value of the first field named `name` (any case), if there is one.
    std::optional<std::string_view> find(std::string_view name) const noexcept {
        for (std::size_t i = 0; i < size_; ++i)
            if (name_is(i, name)) return (*this)[i].value;
        return std::nullopt;
    }
    bool contains(std::string_view name) const noexcept { return find(name).has_value(); }

    // How many field lines are named `name`.
    std::size_t count(std::string_view name) const noexcept {
        std::size_t n = 0;
        for (std::size_t i = 0; i < size_; ++i) n += name_is(i, name) ? 1 : 0;
        return n;
    }

    // Calls visit(value) for each field line named `name`, in order (a bool
    // result false stops; then this returns false).
    template <class Visitor>
    bool for_each_value(std::string_view name, Visitor&& visit) const {
        for (std::size_t i = 0; i < size_; ++i)
            if (name_is(i, name) && !detail::visit_element(visit, (*this)[i].value)) return false;
        return true;
    }

    // Calls visit(element) for each list element of every field line named
    // `name`: "Connection: keep-alive, Upgrade" gives "keep-alive" then
    // "Upgrade" (RFC 9110 §5.3: repeated lines form one list).
    template <class Visitor>
    bool for_each_element(std::string_view name, Visitor&& visit) const {
        return for_each_value(name, [&visit](std::string_view value) {
            return for_each_list_element(value, visit);
        });
    }

    // Whether a list field named `name` has the element `token` (any case).
    bool has_token(std::string_view name, std::string_view token) const noexcept {
        return !for_each_element(name, [token](std::string_view element) {
            return !detail::ascii_iequals(element, token);
        });
    }

    // Every line named `name`, joined with ", " (RFC 9110 §5.3 makes that
    // the same field); empty when there is none.
    std::string join(std::string_view name) const {
        std::string joined;
        for_each_value(name, [&joined](std::string_view value) {
            if (!joined.empty()) joined += ", ";
            joined += value;
        });
        return joined;
    }

private:
    friend class detail::http_head_parser;

    // Offsets into the buffer, so that a buffer that moves between two parse
    // calls leaves nothing dangling.
    struct entry {
        std::uint32_t name_offset;
        std::uint32_t name_size;
        std::uint32_t value_offset;
        std::uint32_t value_size;
    };

    bool name_is(std::size_t i, std::string_view name) const noexcept {
        return entries_[i].name_size == name.size() &&
               detail::ascii_iequals({base_ + entries_[i].name_offset, entries_[i].name_size}, name);
    }

    const char* base_ = nullptr;
    std::size_t size_ = 0;
    std::array<entry, http_header_capacity> entries_{};
};

struct http_request {
    std::string_view method;
    std::string_view target; // as sent: origin-form "/path?query", or absolute-form
    http_version version;
    http_headers headers;
};

struct http_response {
    http_version version;
    int status = 0;          // 100-999
    std::string_view reason; // may be empty
    http_headers headers;
};

namespace detail {

// What both parsers share: finding lines, the limits, field lines.
class http_head_parser {
public:
    explicit http_head_parser(http_limits limits) noexcept : limits_(limits) {
        if (limits_.max_header_count > http_header_capacity) limits_.max_header_count = http_header_capacity;
        // Offsets are 32 bits wide.
        if (limits_.max_head_size > 0xffffffffu) limits_.max_head_size = 0xffffffffu;
    }

    const http_limits& limits() const noexcept { return limits_; }

    // Forgets the head in progress: the next call starts a new one.
    void reset() noexcept {
        line_start_ = 0;
        searched_ = 0;
        start_line_done_ = false;
        done_ = false;
        headers_ = nullptr;
    }

protected:
    // A piece of the start line, as an offset into the buffer.
    struct piece {
        std::uint32_t offset = 0;
        std::uint32_t size = 0;
        std::string_view in(const char* base) const noexcept { return {base + offset, size}; }
    };

    static piece piece_of(std::size_t offset, std::size_t size) noexcept {
        return {static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(size)};
    }

    // Runs the line loop. parse_start_line(line, offset) handles the first
    // line; `request` says whether empty lines may come before it.
    template <class StartLineParser>
    http_parse_result parse_head(const_bytes buffer, http_headers& headers, bool request,
                                 StartLineParser&& parse_start_line) noexcept {
        if (done_ || &headers != headers_ || buffer.size() < searched_ || buffer.size() < line_start_) {
            reset();
            headers_ = &headers;
            headers.size_ = 0;
        }
        const char* data = reinterpret_cast<const char*>(buffer.data());
        headers.base_ = data;
        const std::size_t window = buffer.size() < limits_.max_head_size ? buffer.size() : limits_.max_head_size;
        for (;;) {
            // Bytes an earlier call searched hold no LF: a line trickling in
            // byte by byte is not searched again from its start each time.
            const std::size_t from = searched_ > line_start_ ? searched_ : line_start_;
            const void* lf = from < window ? std::memchr(data + from, '\n', window - from) : nullptr;
            if (lf == nullptr) {
                searched_ = window;
                // The limit is on the whole head: once max_head_size bytes are
                // here without its end, it can only be too large.
                if (buffer.size() >= limits_.max_head_size) return finish_with(error::http_head_too_large);
                return {parse_status::need_more, 0, {}};
            }
            const std::size_t line_offset = line_start_;
            const std::size_t lf_offset = static_cast<std::size_t>(static_cast<const char*>(lf) - data);
            std::size_t line_end = lf_offset;
            // RFC 9112 §2.2: "a recipient MAY recognize a single LF as a line
            // terminator and ignore any preceding CR".
            if (line_end > line_offset && data[line_end - 1] == '\r') --line_end;
            const std::string_view line(data + line_offset, line_end - line_offset);
            line_start_ = lf_offset + 1;

            std::error_code ec;
            if (!start_line_done_) {
                // RFC 9112 §2.2: a server "SHOULD ignore at least one empty
                // line (CRLF) received prior to the request-line".
                if (line.empty() && request) continue;
                ec = parse_start_line(line, line_offset);
                start_line_done_ = true;
            } else if (line.empty()) {
                done_ = true;
                return {parse_status::complete, line_start_, {}};
            } else {
                ec = parse_field_line(line, line_offset, headers);
            }
            if (ec) return finish_with(ec);
        }
    }

    // RFC 9112 §2.2: a CR not followed by LF is invalid anywhere in a head.
    static std::error_code line_error(std::string_view line, error e) noexcept {
        return line.find('\r') != std::string_view::npos ? error::http_bare_cr : e;
    }

    // RFC 9112 §2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT
    static bool parse_version(std::string_view text, http_version& out) noexcept {
        if (text.size() != 8 || text.substr(0, 5) != "HTTP/" || text[6] != '.') return false;
        const char major = text[5];
        const char minor = text[7];
        if (major < '0' || major > '9' || minor < '0' || minor > '9') return false;
        out = {major - '0', minor - '0'};
        return true;
    }

private:
    http_parse_result finish_with(std::error_code ec) noexcept {
        done_ = true;
        return {parse_status::error, 0, ec};
    }

    // RFC 9112 §5: field-line = field-name ":" OWS field-value OWS
    std::error_code parse_field_line(std::string_view line, std::size_t offset, http_headers& headers) noexcept {
        // RFC 9112 §5.2: obs-fold is obsolete; a recipient may reject it
        // (§2.2 says the same of whitespace after the start-line).
        if (is_http_whitespace(line.front())) return error::http_obs_fold;
        // The limit is checked before the header takes a slot.
        if (headers.size_ >= limits_.max_header_count) return error::http_too_many_headers;

        std::size_t i = 0;
        while (i < line.size() && is_token_char(line[i])) ++i;
        if (i == line.size()) return error::http_missing_colon;
        // RFC 9112 §5.1: "No whitespace is allowed between the field name and
        // colon"; the name is a non-empty token.
        if (line[i] != ':' || i == 0) return line_error(line, error::http_bad_header_name);
        const std::size_t name_size = i;
        ++i;
        while (i < line.size() && is_http_whitespace(line[i])) ++i;
        const std::size_t value_start = i;
        std::size_t value_end = i;
        for (; i < line.size(); ++i) {
            const char c = line[i];
            if (!is_field_value_char(c)) return line_error(line, error::http_bad_header_value);
            if (!is_http_whitespace(c)) value_end = i + 1;
        }
        http_headers::entry& e = headers.entries_[headers.size_++];
        e.name_offset = static_cast<std::uint32_t>(offset);
        e.name_size = static_cast<std::uint32_t>(name_size);
        e.value_offset = static_cast<std::uint32_t>(offset + value_start);
        e.value_size = static_cast<std::uint32_t>(value_end - value_start);
        return {};
    }

    http_limits limits_;
    std::size_t line_start_ = 0;            // the first byte not yet in a parsed line
    std::size_t searched_ = 0;              // [line_start_, searched_) holds no LF
    bool start_line_done_ = false;
    bool done_ = false;                     // complete or error: the next call starts over
    const http_headers* headers_ = nullptr; // where this parse stores its headers
};

} // namespace detail

// Parses request heads (server side).
class http_request_parser : public detail::http_head_parser {
public:
    explicit http_request_parser(http_limits limits = {}) noexcept : http_head_parser(limits) {}

    // `buffer` holds every byte received so far; see the top of this file.
    http_parse_result parse(const_bytes buffer, http_request& out) noexcept {
        http_parse_result result = parse_head(buffer, out.headers, true,
                                              [this, &out](std::string_view line, std::size_t offset) {
                                                  return parse_request_line(line, offset, out);
                                              });
        if (result.status == parse_status::complete) {
            const char* base = reinterpret_cast<const char*>(buffer.data());
            out.method = method_.in(base);
            out.target = target_.in(base);
        }
        return result;
    }

private:
    // RFC 9112 §3: request-line = method SP request-target SP HTTP-version
    std::error_code parse_request_line(std::string_view line, std::size_t offset, http_request& out) noexcept {
        std::size_t i = 0;
        // RFC 9110 §9.1: method = token
        while (i < line.size() && detail::is_token_char(line[i])) ++i;
        if (i == 0 || i == line.size() || line[i] != ' ')
            return line_error(line, error::http_bad_request_line);
        method_ = piece_of(offset, i);
        const std::size_t target_start = ++i;
        // RFC 9112 §3.2: the request-target holds no whitespace.
        while (i < line.size() && detail::is_visible_ascii(line[i])) ++i;
        if (i == target_start || i == line.size() || line[i] != ' ')
            return line_error(line, error::http_bad_request_line);
        target_ = piece_of(offset + target_start, i - target_start);
        if (!parse_version(line.substr(i + 1), out.version)) return line_error(line, error::http_bad_version);
        return {};
    }

    piece method_;
    piece target_;
};

// Parses response heads (client side).
class http_response_parser : public detail::http_head_parser {
public:
    explicit http_response_parser(http_limits limits = {}) noexcept : http_head_parser(limits) {}

    // `buffer` holds every byte received so far; see the top of this file.
    http_parse_result parse(const_bytes buffer, http_response& out) noexcept {
        http_parse_result result = parse_head(buffer, out.headers, false,
                                              [this, &out](std::string_view line, std::size_t offset) {
                                                  return parse_status_line(line, offset, out);
                                              });
        if (result.status == parse_status::complete)
            out.reason = reason_.in(reinterpret_cast<const char*>(buffer.data()));
        return result;
    }

private:
    // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
    std::error_code parse_status_line(std::string_view line, std::size_t offset, http_response& out) noexcept {
        if (line.substr(0, 5) != "HTTP/") return line_error(line, error::http_bad_status_line);
        const std::size_t space = line.find(' ');
        if (space == std::string_view::npos) {
            http_version ignored;
            return line_error(line, parse_version(line, ignored) ? error::http_bad_status_line
                                                                 : error::http_bad_version);
        }
        if (!parse_version(line.substr(0, space), out.version)) return line_error(line, error::http_bad_version);
        // RFC 9110 §15: status-code = 3DIGIT, 100-999 (the first digit is the class).
        const std::string_view code = line.substr(space + 1, 3);
        if (code.size() != 3 || code[0] < '1' || code[0] > '9' || code[1] < '0' || code[1] > '9' ||
            code[2] < '0' || code[2] > '9')
            return line_error(line, error::http_bad_status_line);
        out.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
        std::size_t i = space + 4;
        reason_ = piece_of(offset + i, 0);
        if (i == line.size()) return {};
        if (line[i] != ' ') return line_error(line, error::http_bad_status_line);
        ++i;
        // RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
        for (std::size_t j = i; j < line.size(); ++j)
            if (!detail::is_field_value_char(line[j])) return line_error(line, error::http_bad_status_line);
        reason_ = piece_of(offset + i, line.size() - i);
        return {};
    }

    piece reason_;
};

// One-shot forms, for a buffer that holds (at least) the whole head.
inline http_parse_result parse_http_request(const_bytes buffer, http_request& out, http_limits limits = {}) noexcept {
    http_request_parser parser(limits);
    return parser.parse(buffer, out);
}
inline http_parse_result parse_http_response(const_bytes buffer, http_response& out,
                                             http_limits limits = {}) noexcept {
    http_response_parser parser(limits);
    return parser.parse(buffer, out);
}

} // namespace wsx
