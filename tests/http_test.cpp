#include <wsx/http.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

using wsx::error;
using wsx::parse_status;

// Everything a parse answered, comparable across ways of feeding it.
struct outcome {
    parse_status status = parse_status::need_more;
    std::size_t consumed = 0;
    std::error_code ec;
    std::string parsed; // the request or response, written out

    bool operator==(const outcome& other) const {
        return status == other.status && consumed == other.consumed && ec == other.ec && parsed == other.parsed;
    }
};

std::ostream& operator<<(std::ostream& os, const outcome& o) {
    return os << "status " << static_cast<int>(o.status) << " consumed " << o.consumed << " ec '" << o.ec.message()
              << "' parsed [" << o.parsed << "]";
}

std::string describe_headers(const wsx::http_headers& headers) {
    std::string out;
    for (const wsx::http_header h : headers) {
        out += '<';
        out += h.name;
        out += "|";
        out += h.value;
        out += '>';
    }
    return out;
}

std::string describe(const wsx::http_request& r) {
    return std::string(r.method) + " " + std::string(r.target) + " " + std::to_string(r.version.major) + "." +
           std::to_string(r.version.minor) + " " + describe_headers(r.headers);
}

std::string describe(const wsx::http_response& r) {
    return std::to_string(r.version.major) + "." + std::to_string(r.version.minor) + " " + std::to_string(r.status) +
           " '" + std::string(r.reason) + "' " + describe_headers(r.headers);
}

template <class Parser, class Message>
outcome make_outcome(const wsx::http_parse_result& r, const Message& m) {
    outcome o{r.status, r.consumed, r.ec, {}};
    if (r.status == parse_status::complete) o.parsed = describe(m);
    return o;
}

template <class Parser, class Message>
outcome parse_whole(std::string_view input, wsx::http_limits limits) {
    Parser parser(limits);
    Message m;
    return make_outcome<Parser>(parser.parse(input, m), m);
}

// One byte more per call, each time from a freshly allocated copy: the
// buffer moves between calls, as a growing receive buffer does.
template <class Parser, class Message>
outcome parse_bytewise(std::string_view input, wsx::http_limits limits) {
    Parser parser(limits);
    Message m;
    for (std::size_t i = 0; i <= input.size(); ++i) {
        const std::string copy(input.substr(0, i));
        const wsx::http_parse_result r = parser.parse(copy, m);
        if (r.status != parse_status::need_more) return make_outcome<Parser>(r, m);
    }
    return {};
}

// The same answer fed whole, byte by byte, and in two pieces split anywhere;
// a prefix answers need_more or the final error.
template <class Parser, class Message>
outcome check_every_split(std::string_view input, wsx::http_limits limits = {}) {
    const outcome whole = parse_whole<Parser, Message>(input, limits);
    CHECK(parse_bytewise<Parser, Message>(input, limits) == whole);
    for (std::size_t split = 0; split <= input.size(); ++split) {
        Parser parser(limits);
        Message m;
        const std::string first(input.substr(0, split));
        const outcome partial = make_outcome<Parser>(parser.parse(first, m), m);
        if (partial.status == parse_status::need_more) {
            const outcome second = make_outcome<Parser>(parser.parse(input, m), m);
            if (!(second == whole)) FAIL_CHECK("split at " << split << ": " << second << " vs " << whole);
        } else if (!(partial == whole)) {
            FAIL_CHECK("prefix of " << split << ": " << partial << " vs " << whole);
        }
    }
    return whole;
}

outcome request(std::string_view input, wsx::http_limits limits = {}) {
    return check_every_split<wsx::http_request_parser, wsx::http_request>(input, limits);
}
outcome response(std::string_view input, wsx::http_limits limits = {}) {
    return check_every_split<wsx::http_response_parser, wsx::http_response>(input, limits);
}

std::error_code request_error(std::string_view input) {
    const outcome o = request(input);
    CHECK(o.status == parse_status::error);
    return o.ec;
}
std::error_code response_error(std::string_view input) {
    const outcome o = response(input);
    CHECK(o.status == parse_status::error);
    return o.ec;
}

} // namespace

TEST_CASE("a request head is parsed into views, and what follows it is left alone") {
    const std::string head = "GET /chat?room=1 HTTP/1.1\r\n"
                             "Host: example.com\r\n"
                             "X-Empty:\r\n"
                             "X-Spaces: \t  padded value \t \r\n"
                             "\r\n";
    const std::string input = head + "\x81\x85" "frame";
    wsx::http_request r;
    const wsx::http_parse_result result = wsx::parse_http_request(input, r);
    REQUIRE(result.status == parse_status::complete);
    CHECK(result.consumed == head.size());
    CHECK(!result.ec);
    CHECK(r.method == "GET");
    CHECK(r.target == "/chat?room=1");
    CHECK(r.version == wsx::http_version{1, 1});
    REQUIRE(r.headers.size() == 3);
    CHECK(r.headers[0].name == "Host");
    CHECK(r.headers[0].value == "example.com");
    CHECK(r.headers[1].name == "X-Empty");
    CHECK(r.headers[1].value.empty());
    CHECK(r.headers[2].value == "padded value");
    // Views, not copies.
    CHECK(r.target.data() == input.data() + 4);
    CHECK(r.headers[0].value.data() == input.data() + input.find("example.com"));

    CHECK(request(input).consumed == head.size());
}

TEST_CASE("a response head is parsed") {
    const std::string head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
    const std::string input = head + std::string("\x81\x00", 2);
    wsx::http_response r;
    const wsx::http_parse_result result = wsx::parse_http_response(input, r);
    REQUIRE(result.status == parse_status::complete);
    CHECK(result.consumed == head.size());
    CHECK(r.status == 101);
    CHECK(r.reason == "Switching Protocols");
    CHECK(r.version == wsx::http_version{1, 1});
    CHECK(r.headers.find("upgrade") == std::optional<std::string_view>("websocket"));
    CHECK(response(head + "rest").consumed == head.size());

    SECTION("a reason phrase may be empty, with or without its space") {
        CHECK(response("HTTP/1.1 404 \r\n\r\n").parsed == "1.1 404 '' ");
        CHECK(response("HTTP/1.1 404\r\n\r\n").parsed == "1.1 404 '' ");
        CHECK(response("HTTP/1.0 503 Service\tUn available\r\n\r\n").parsed == "1.0 503 'Service\tUn available' ");
    }
}

TEST_CASE("bare LF ends lines like CRLF") {
    CHECK(request("GET / HTTP/1.1\nHost: a\n\n").parsed == "GET / 1.1 <Host|a>");
    CHECK(request("GET / HTTP/1.1\r\nHost: a\n\r\n").parsed == "GET / 1.1 <Host|a>");
    CHECK(response("HTTP/1.1 101 OK\nA: b\n\n").parsed == "1.1 101 'OK' <A|b>");
}

TEST_CASE("a CR not followed by LF is refused wherever it is") {
    CHECK(request_error("GET / HTTP/1.1\rHost: a\r\n\r\n") == error::http_bare_cr);
    CHECK(request_error("GET /\r HTTP/1.1\r\n\r\n") == error::http_bare_cr);
    CHECK(request_error("GET / HTTP/1.1\r\nHo\rst: a\r\n\r\n") == error::http_bare_cr);
    CHECK(request_error("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n") == error::http_bare_cr);
    CHECK(request_error("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n") == error::http_bare_cr);
    CHECK(request_error("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n") == error::http_bare_cr);
    CHECK(response_error("HTTP/1.1 101 Swi\rtching\r\n\r\n") == error::http_bare_cr);
    CHECK(response_error("HTTP/1.1 101 OK\r\nA:\r\r\n\r\n") == error::http_bare_cr);
}

TEST_CASE("obs-fold and whitespace after the start line are refused") {
    CHECK(request_error("GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n") == error::http_obs_fold);
    CHECK(request_error("GET / HTTP/1.1\r\nX-A: one\r\n\ttwo\r\n\r\n") == error::http_obs_fold);
    CHECK(request_error("GET / HTTP/1.1\r\n Host: a\r\n\r\n") == error::http_obs_fold);
    CHECK(response_error("HTTP/1.1 101 OK\r\nA: b\r\n c\r\n\r\n") == error::http_obs_fold);
}

TEST_CASE("empty lines before a request line are skipped, not before a status line") {
    CHECK(request("\r\n\nGET / HTTP/1.1\r\n\r\n").parsed == "GET / 1.1 ");
    CHECK(response_error("\r\nHTTP/1.1 101 OK\r\n\r\n") == error::http_bad_status_line);
}

TEST_CASE("malformed request lines") {
    CHECK(request_error("GET  / HTTP/1.1\r\n\r\n") == error::http_bad_request_line);
    CHECK(request_error(" GET / HTTP/1.1\r\n\r\n") == error::http_bad_request_line);
    CHECK(request_error("GET /\r\n\r\n") == error::http_bad_request_line);
    CHECK(request_error("GET\r\n\r\n") == error::http_bad_request_line);
    CHECK(request_error("G(T / HTTP/1.1\r\n\r\n") == error::http_bad_request_line);
    CHECK(request_error("GET /a\x7f HTTP/1.1\r\n\r\n") == error::http_bad_request_line);
    CHECK(request_error("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n") == error::http_bad_request_line);
    CHECK(request_error("GET /\t HTTP/1.1\r\n\r\n") == error::http_bad_request_line);
    CHECK(request_error(std::string("GET /\0 HTTP/1.1\r\n\r\n", 19)) == error::http_bad_request_line);
    // Binary garbage is refused at its first LF, not at the size limit.
    CHECK(request_error("\x16\x03\x01\x02\x01\n") == error::http_bad_request_line);

    CHECK(request_error("GET / HTTP/1.1 \r\n\r\n") == error::http_bad_version);
    CHECK(request_error("GET / HTTP/11\r\n\r\n") == error::http_bad_version);
    CHECK(request_error("GET / http/1.1\r\n\r\n") == error::http_bad_version);
    CHECK(request_error("GET / HTTP/1.1x\r\n\r\n") == error::http_bad_version);
    CHECK(request_error("GET / HTTP/1.x\r\n\r\n") == error::http_bad_version);
    CHECK(request_error("GET / HTTP/1.12\r\n\r\n") == error::http_bad_version);
    CHECK(request_error("GET / \r\n\r\n") == error::http_bad_version);

    // Other versions parse; the handshake decides what it accepts.
    CHECK(request("GET / HTTP/1.0\r\n\r\n").parsed == "GET / 1.0 ");
    CHECK(request("GET / HTTP/2.0\r\n\r\n").parsed == "GET / 2.0 ");
    CHECK(request("POST * HTTP/1.1\r\n\r\n").parsed == "POST * 1.1 ");
}

TEST_CASE("malformed status lines") {
    CHECK(response_error("HTTP/1.1 10 OK\r\n\r\n") == error::http_bad_status_line);
    CHECK(response_error("HTTP/1.1 1011 OK\r\n\r\n") == error::http_bad_status_line);
    CHECK(response_error("HTTP/1.1 abc OK\r\n\r\n") == error::http_bad_status_line);
    CHECK(response_error("HTTP/1.1 099 OK\r\n\r\n") == error::http_bad_status_line);
    CHECK(response_error("HTTP/1.1  101 OK\r\n\r\n") == error::http_bad_status_line);
    CHECK(response_error("HTTP/1.1\r\n\r\n") == error::http_bad_status_line);
    CHECK(response_error("HTTP/1.1 101 Sw\x01tching\r\n\r\n") == error::http_bad_status_line);
    CHECK(response_error("SSH-2.0-OpenSSH_9.2\r\n\r\n") == error::http_bad_status_line);
    CHECK(response_error("<html>\n") == error::http_bad_status_line);

    CHECK(response_error("HTTP/1.1101 OK\r\n\r\n") == error::http_bad_version);
    CHECK(response_error("HTTP/x.1 101 OK\r\n\r\n") == error::http_bad_version);
    CHECK(response_error("HTTP/1.1x\r\n\r\n") == error::http_bad_version);

    CHECK(response("HTTP/1.1 999 \xff\x80 obs-text\r\n\r\n").status == parse_status::complete);
}

TEST_CASE("malformed header lines") {
    auto with_field = [](std::string_view line) {
        return request_error("GET / HTTP/1.1\r\n" + std::string(line) + "\r\n\r\n");
    };
    CHECK(with_field("Host") == error::http_missing_colon);
    CHECK(with_field("X-Token-Only!#$") == error::http_missing_colon);
    CHECK(with_field("Host example.com") == error::http_bad_header_name);
    CHECK(with_field("Host : example.com") == error::http_bad_header_name);
    CHECK(with_field(": no name") == error::http_bad_header_name);
    CHECK(with_field("X(y): z") == error::http_bad_header_name);
    CHECK(with_field("X\xc3\xa9: z") == error::http_bad_header_name);
    CHECK(with_field("X-A: a\x01z") == error::http_bad_header_value);
    CHECK(with_field("X-A: a\x7fz") == error::http_bad_header_value);
    CHECK(with_field(std::string("X-A: a\0z", 8)) == error::http_bad_header_value);

    // obs-text and inner whitespace are allowed in values; a colon too.
    CHECK(request("GET / HTTP/1.1\r\nX-A: caf\xc3\xa9 \t x:y\r\n\r\n").parsed ==
          "GET / 1.1 <X-A|caf\xc3\xa9 \t x:y>");
    CHECK(request("GET / HTTP/1.1\r\nX-A:\t \t\r\n\r\n").parsed == "GET / 1.1 <X-A|>");
}

namespace {

// A request of exactly `size` bytes (size >= 40), padded in one header value.
std::string request_of_size(std::size_t size) {
    const std::string start = "GET / HTTP/1.1\r\nX-Pad: ";
    const std::string end = "\r\n\r\n";
    return start + std::string(size - start.size() - end.size(), 'p') + end;
}

std::string request_with_headers(std::size_t count) {
    std::string head = "GET / HTTP/1.1\r\n";
    for (std::size_t i = 0; i < count; ++i) head += "X-" + std::to_string(i) + ": v\r\n";
    return head + "\r\n";
}

} // namespace

TEST_CASE("head size limit at N and N+1") {
    const std::size_t n = 200;
    const wsx::http_limits limits{n, 100};
    const std::string fits = request_of_size(n);
    REQUIRE(fits.size() == n);
    CHECK(request(fits, limits).status == parse_status::complete);
    CHECK(request(request_of_size(n + 1), limits).ec == error::http_head_too_large);
    CHECK(response("HTTP/1.1 200 OK\r\nX: " + std::string(n, 'x') + "\r\n\r\n", limits).ec ==
          error::http_head_too_large);

    SECTION("the default is 16 KiB") {
        // Fed whole and byte by byte only: splitting 16 KiB everywhere is slow.
        const wsx::http_limits defaults;
        const std::string default_fits = request_of_size(16 * 1024);
        const std::string default_over = request_of_size(16 * 1024 + 1);
        CHECK(parse_whole<wsx::http_request_parser, wsx::http_request>(default_fits, defaults).status ==
              parse_status::complete);
        CHECK(parse_bytewise<wsx::http_request_parser, wsx::http_request>(default_fits, defaults).status ==
              parse_status::complete);
        CHECK(parse_whole<wsx::http_request_parser, wsx::http_request>(default_over, defaults).ec ==
              error::http_head_too_large);
        CHECK(parse_bytewise<wsx::http_request_parser, wsx::http_request>(default_over, defaults).ec ==
              error::http_head_too_large);
    }

    SECTION("refused as soon as N bytes hold no end, not when the end arrives") {
        const std::string endless = "GET / HTTP/1.1\r\nX-Pad: " + std::string(1000, 'p');
        wsx::http_request_parser parser(limits);
        wsx::http_request r;
        CHECK(parser.parse(endless.substr(0, n - 1), r).status == parse_status::need_more);
        CHECK(parser.parse(endless.substr(0, n), r).ec == error::http_head_too_large);
    }

    SECTION("bytes after a head that fits do not count") {
        CHECK(request(fits + std::string(1000, 'f'), limits).consumed == n);
    }
}

TEST_CASE("header count limit at N and N+1") {
    CHECK(request(request_with_headers(100)).status == parse_status::complete);
    CHECK(request(request_with_headers(101)).ec == error::http_too_many_headers);

    const wsx::http_limits three{16 * 1024, 3};
    CHECK(request(request_with_headers(3), three).status == parse_status::complete);
    CHECK(request(request_with_headers(4), three).ec == error::http_too_many_headers);
    CHECK(response("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", three).ec ==
          error::http_too_many_headers);

    const wsx::http_limits zero{16 * 1024, 0};
    CHECK(request("GET / HTTP/1.1\r\n\r\n", zero).status == parse_status::complete);
    CHECK(request("GET / HTTP/1.1\r\nA: b\r\n\r\n", zero).ec == error::http_too_many_headers);

    // Above the storage capacity, the capacity is the limit.
    const wsx::http_limits many{16 * 1024, 1000};
    CHECK(wsx::http_request_parser(many).limits().max_header_count == wsx::http_header_capacity);
    CHECK(request(request_with_headers(wsx::http_header_capacity + 1), many).ec == error::http_too_many_headers);
}

TEST_CASE("headers are looked up case-insensitively") {
    const std::string head = "GET / HTTP/1.1\r\n"
                             "Connection: keep-alive, Upgrade\r\n"
                             "X-List: a\r\n"
                             "x-list: , b ,,\"c, d\" , \"e\\\"f,g\"\r\n"
                             "UPGRADE: WebSocket\r\n"
                             "\r\n";
    wsx::http_request r;
    REQUIRE(wsx::parse_http_request(head, r).status == parse_status::complete);
    const wsx::http_headers& h = r.headers;
    CHECK(h.find("upgrade") == std::optional<std::string_view>("WebSocket"));
    CHECK(h.find("Upgrade") == std::optional<std::string_view>("WebSocket"));
    CHECK(h.find("X-List") == std::optional<std::string_view>("a"));
    CHECK(!h.find("Upgrad"));
    CHECK(!h.find("Host"));
    CHECK(h.contains("CONNECTION"));
    CHECK(h.count("x-LIST") == 2);
    CHECK(h.count("Host") == 0);

    CHECK(h.has_token("connection", "upgrade"));
    CHECK(h.has_token("Connection", "KEEP-ALIVE"));
    CHECK(!h.has_token("Connection", "close"));
    CHECK(!h.has_token("Connection", "keep"));
    CHECK(h.has_token("Upgrade", "websocket"));
    CHECK(!h.has_token("Host", "websocket"));

    std::vector<std::string> elements;
    h.for_each_element("X-List", [&](std::string_view e) { elements.emplace_back(e); });
    CHECK(elements == std::vector<std::string>{"a", "b", "\"c, d\"", "\"e\\\"f,g\""});
    CHECK(h.has_token("X-List", "\"C, D\""));

    std::vector<std::string> values;
    h.for_each_value("x-list", [&](std::string_view v) { values.emplace_back(v); });
    CHECK(values == std::vector<std::string>{"a", ", b ,,\"c, d\" , \"e\\\"f,g\""});
    CHECK(h.join("X-List") == "a, , b ,,\"c, d\" , \"e\\\"f,g\"");
    CHECK(h.join("Host").empty());

    // A visitor returning false stops the walk.
    int seen = 0;
    CHECK(!h.for_each_element("X-List", [&](std::string_view) { return ++seen < 2; }));
    CHECK(seen == 2);

    std::size_t iterated = 0;
    for (const wsx::http_header header : h) {
        CHECK(!header.name.empty());
        ++iterated;
    }
    CHECK(iterated == h.size());
}

TEST_CASE("list elements") {
    auto elements = [](std::string_view value) {
        std::vector<std::string> out;
        wsx::for_each_list_element(value, [&](std::string_view e) { out.emplace_back(e); });
        return out;
    };
    using list = std::vector<std::string>;
    CHECK(elements("").empty());
    CHECK(elements(" , ,\t,").empty());
    CHECK(elements("a") == list{"a"});
    CHECK(elements("a,b") == list{"a", "b"});
    CHECK(elements(" a ;\tq=1 ,  b ") == list{"a ;\tq=1", "b"});
    CHECK(elements("permessage-deflate; client_max_window_bits, x-webkit-deflate-frame") ==
          list{"permessage-deflate; client_max_window_bits", "x-webkit-deflate-frame"});
    CHECK(elements("a; p=\"1,2\", b") == list{"a; p=\"1,2\"", "b"});
    CHECK(elements("\"a\\\\\", b") == list{"\"a\\\\\"", "b"});
    CHECK(elements("\"unterminated, b") == list{"\"unterminated, b"});
    CHECK(elements("\"ends in a backslash\\") == list{"\"ends in a backslash\\"});
}

TEST_CASE("a parser follows a buffer that grows and moves, and starts over when asked") {
    const std::string head = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    wsx::http_request_parser parser;
    wsx::http_request r;
    std::string buffer;
    wsx::http_parse_result result;
    for (char c : head) {
        buffer.push_back(c);
        buffer.shrink_to_fit();
        result = parser.parse(buffer, r);
    }
    REQUIRE(result.status == parse_status::complete);
    CHECK(describe(r) == "GET /a 1.1 <Host|h>");
    CHECK(r.headers[0].value.data() == buffer.data() + head.find("h\r"));

    // After an answer, the next call parses a new head from the start.
    const std::string next = "GET /b HTTP/1.1\r\n\r\n";
    CHECK(parser.parse(next, r).status == parse_status::complete);
    CHECK(describe(r) == "GET /b 1.1 ");

    // reset() abandons a head in progress.
    CHECK(parser.parse(std::string_view("GET /c HTT"), r).status == parse_status::need_more);
    parser.reset();
    CHECK(parser.parse(next, r).status == parse_status::complete);
    CHECK(describe(r) == "GET /b 1.1 ");

    // Another message object makes the parser start over as well.
    CHECK(parser.parse(std::string_view("GET /d HTTP/1.1\r\nA: 1\r\n"), r).status == parse_status::need_more);
    wsx::http_request other;
    CHECK(parser.parse(std::string_view("GET /d HTTP/1.1\r\nA: 1\r\n\r\n"), other).status ==
          parse_status::complete);
    CHECK(describe(other) == "GET /d 1.1 <A|1>");

    // An error is final too: the next call starts over.
    CHECK(parser.parse(std::string_view("BAD\r\n"), r).ec == error::http_bad_request_line);
    CHECK(parser.parse(next, r).status == parse_status::complete);
}

TEST_CASE("need_more until the empty line") {
    CHECK(request("").status == parse_status::need_more);
    CHECK(request("GET / HTTP/1.1\r\nHost: a\r\n").status == parse_status::need_more);
    CHECK(request("GET / HTTP/1.1\r\nHost: a\r\n\r").status == parse_status::need_more);
    CHECK(response("HTTP/1.1 101 OK\r\n").status == parse_status::need_more);
}
