#include <wsx/handshake.hpp>

#include "support/sample_requests.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace {

using wsx::error;
using wsx::parse_status;

// Requests as real clients send them (the Python websockets, Node ws and
// curl ones captured from those clients; browser ones as their developer
// tools show them), all with the RFC 6455 §1.3 sample key.
using wsx::test::chromium_request;

const std::string firefox_request =
    "GET /chat HTTP/1.1\r\n"
    "Host: localhost:8000\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\n"
    "Accept: */*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: http://localhost:8000\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-Fetch-Dest: empty\r\n"
    "Sec-Fetch-Mode: websocket\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "Upgrade: websocket\r\n"
    "\r\n";

const std::string python_websockets_request =
    "GET /chat?x=1 HTTP/1.1\r\n"
    "Host: 127.0.0.1:34353\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "User-Agent: Python/3.11 websockets/10.4\r\n"
    "\r\n";

const std::string node_ws_request =
    "GET /chat?x=1 HTTP/1.1\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Connection: Upgrade\r\n"
    "Upgrade: websocket\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "Host: 127.0.0.1:37491\r\n"
    "\r\n";

// curl 7.88 with the headers set by hand (-H), as often done to probe a server.
const std::string curl_manual_request =
    "GET /chat HTTP/1.1\r\n"
    "Host: 127.0.0.1:55793\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n"
    "Connection: Upgrade\r\n"
    "Upgrade: websocket\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "\r\n";

// curl 8 with its own ws:// support.
const std::string curl_ws_request =
    "GET /chat HTTP/1.1\r\n"
    "Host: localhost:8080\r\n"
    "User-Agent: curl/8.5.0\r\n"
    "Accept: */*\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "\r\n";

// Parses `head` whole and validates it.
struct server_side {
    wsx::server_request request;
    wsx::http_parse_result parsed;
    std::error_code ec;
};

void run_server(server_side& s, std::string_view head, const wsx::origin_policy& origins = {}) {
    s.parsed = wsx::parse_http_request(head, s.request.http);
    s.ec = s.parsed.status == parse_status::error ? s.parsed.ec
           : s.parsed.status == parse_status::need_more
               ? std::error_code(error::http_bad_request_line)
               : wsx::validate_request(s.request, origins);
}

std::error_code server_error(std::string_view head, const wsx::origin_policy& origins = {}) {
    server_side s;
    run_server(s, head, origins);
    return s.ec;
}

// The Python websockets request with one header line replaced (or removed
// when `line` is empty), or the request line replaced.
std::string python_with(std::string_view name, std::string_view line) {
    std::string head = python_websockets_request;
    const std::size_t at = name.empty() ? 0 : head.find(std::string(name) + ":");
    REQUIRE(at != std::string::npos);
    const std::size_t end = head.find("\r\n", at) + 2;
    head.replace(at, end - at, line.empty() ? std::string() : std::string(line) + "\r\n");
    return head;
}

// A random source that writes 0, 1, 2, ...
void counting_random(wsx::mutable_bytes out) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint8_t>(i);
}

// Parses a response the server side built and checks it is well-formed.
struct parsed_response {
    std::string text;
    wsx::http_response response;
    std::string_view body;
};

void parse_built(parsed_response& p) {
    const wsx::http_parse_result r = wsx::parse_http_response(p.text, p.response);
    REQUIRE(r.status == parse_status::complete);
    p.body = std::string_view(p.text).substr(r.consumed);
}

} // namespace

TEST_CASE("the RFC 6455 §1.3 example key and accept value") {
    CHECK(wsx::accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    std::string out = "Sec-WebSocket-Accept: ";
    wsx::append_accept_key(out, "dGhlIHNhbXBsZSBub25jZQ==");
    CHECK(out == "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST_CASE("Sec-WebSocket-Key is 16 random bytes in base64") {
    CHECK(wsx::make_sec_key(&counting_random) == "AAECAwQFBgcICQoLDA0ODw==");
    const std::string a = wsx::make_sec_key();
    const std::string b = wsx::make_sec_key(wsx::default_random_source());
    CHECK(a.size() == wsx::sec_key_size);
    CHECK(wsx::is_valid_sec_key(a));
    CHECK(wsx::is_valid_sec_key(b));
    CHECK(a != b);

    CHECK(wsx::is_valid_sec_key("dGhlIHNhbXBsZSBub25jZQ=="));
    CHECK(!wsx::is_valid_sec_key(""));
    CHECK(!wsx::is_valid_sec_key("dGhlIHNhbXBsZSBub25jZQ"));   // unpadded
    CHECK(!wsx::is_valid_sec_key("AAAAAAAAAAAAAAAAAAAAAAA="));  // 17 bytes
    CHECK(!wsx::is_valid_sec_key("AAAAAAAAAAAAAAAAAAAAAAAA"));  // 18 bytes
    CHECK(!wsx::is_valid_sec_key("AAAAAAAAAAAAAAAAAAAA"));      // 15 bytes
    CHECK(!wsx::is_valid_sec_key("dGhlIHNhbXBsZSBub25jZQ-="));
    CHECK(!wsx::is_valid_sec_key("dGhlIHNhbXBsZSBub25jZ Q="));
}

TEST_CASE("requests of real clients are accepted") {
    struct sample {
        const char* client;
        const std::string* head;
        std::string_view host;
        std::string_view query;
        std::optional<std::string_view> origin;
        std::vector<std::string> subprotocols;
        std::string extensions;
    };
    const sample samples[] = {
        {"Chromium", &chromium_request, "example.com:8000", "", "http://example.com:8000", {},
         "permessage-deflate; client_max_window_bits"},
        {"Firefox", &firefox_request, "localhost:8000", "", "http://localhost:8000", {"chat", "superchat"},
         "permessage-deflate"},
        {"Python websockets", &python_websockets_request, "127.0.0.1:34353", "x=1", std::nullopt, {"chat"},
         "permessage-deflate; client_max_window_bits"},
        {"Node ws", &node_ws_request, "127.0.0.1:37491", "x=1", std::nullopt, {"chat"},
         "permessage-deflate; client_max_window_bits"},
        {"curl by hand", &curl_manual_request, "127.0.0.1:55793", "", std::nullopt, {}, ""},
        {"curl ws://", &curl_ws_request, "localhost:8080", "", std::nullopt, {}, ""},
    };
    for (const sample& s : samples) {
        INFO(s.client);
        server_side server;
        run_server(server, *s.head);
        REQUIRE(server.parsed.status == parse_status::complete);
        CHECK(server.parsed.consumed == s.head->size());
        CHECK(!server.ec);
        const wsx::server_request& request = server.request;
        CHECK(request.path == "/chat");
        CHECK(request.query == s.query);
        CHECK(request.host == s.host);
        CHECK(request.key == "dGhlIHNhbXBsZSBub25jZQ==");
        CHECK(request.origin == s.origin);
        std::vector<std::string> offered;
        request.for_each_subprotocol([&](std::string_view p) { offered.emplace_back(p); });
        CHECK(offered == s.subprotocols);
        CHECK(request.extensions() == s.extensions);
        CHECK(request.http.headers.size() > 3);

        // Split anywhere, the same request validates the same way.
        for (std::size_t split = 0; split <= s.head->size(); ++split) {
            wsx::http_request_parser parser;
            wsx::server_request again;
            const std::string first = s.head->substr(0, split);
            wsx::http_parse_result r = parser.parse(first, again.http);
            if (r.status == parse_status::need_more) r = parser.parse(*s.head, again.http);
            REQUIRE(r.status == parse_status::complete);
            REQUIRE(!wsx::validate_request(again));
            CHECK(again.extensions() == s.extensions);
        }

        std::string out;
        wsx::append_accept_response(out, request);
        CHECK(out == "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                     "\r\n");
    }
}

TEST_CASE("each missing or wrong part of a request has its error and HTTP status") {
    struct bad {
        std::string head;
        error expected;
        int status;
    };
    const std::string request_line = "GET /chat?x=1 HTTP/1.1";
    const bad cases[] = {
        {python_with("", "POST /chat HTTP/1.1"), error::bad_method, 405},
        {python_with("", "get /chat HTTP/1.1"), error::bad_method, 405},
        {python_with("", "GET /chat HTTP/1.0"), error::bad_http_version, 400},
        {python_with("", "GET * HTTP/1.1"), error::http_bad_request_line, 400},
        {python_with("", "GET /chat#top HTTP/1.1"), error::http_bad_request_line, 400},
        {python_with("", "GET ftp://host/chat HTTP/1.1"), error::http_bad_request_line, 400},
        {python_with("", "GET http:///chat HTTP/1.1"), error::http_bad_request_line, 400},
        {python_with("Host", ""), error::missing_host, 400},
        {python_with("Host", "Host:"), error::missing_host, 400},
        {python_with("Host", "Host: a\r\nHost: b"), error::missing_host, 400},
        {python_with("Upgrade", ""), error::missing_upgrade, 426},
        {python_with("Upgrade", "Upgrade: h2c"), error::missing_upgrade, 426},
        {python_with("Upgrade", "Upgrade: websockets"), error::missing_upgrade, 426},
        {python_with("Connection", ""), error::missing_connection_upgrade, 400},
        {python_with("Connection", "Connection: keep-alive"), error::missing_connection_upgrade, 400},
        {python_with("Connection", "Connection: Upgrades"), error::missing_connection_upgrade, 400},
        {python_with("Sec-WebSocket-Version", ""), error::unsupported_version, 426},
        {python_with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"), error::unsupported_version, 426},
        {python_with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 13, 8"), error::unsupported_version, 426},
        {python_with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13"),
         error::unsupported_version, 426},
        {python_with("Sec-WebSocket-Key", ""), error::bad_sec_key, 400},
        {python_with("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"), error::bad_sec_key, 400},
        {python_with("Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA="), error::bad_sec_key, 400},
        {python_with("Sec-WebSocket-Key", "Sec-WebSocket-Key: not base64 at all!!!!!"), error::bad_sec_key, 400},
        {python_with("Sec-WebSocket-Key",
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),
         error::bad_sec_key, 400},
        // Parse errors answer with their own status.
        {python_with("Host", "Host : a"), error::http_bad_header_name, 400},
        {python_with("Host", "Host: a\r\n b"), error::http_obs_fold, 400},
        {python_with("Host", "Host: a\rb"), error::http_bare_cr, 400},
        {python_with("Host", "Host: " + std::string(17000, 'a')), error::http_head_too_large, 431},
    };
    for (const bad& c : cases) {
        INFO(c.head);
        CHECK(server_error(c.head) == c.expected);
        CHECK(wsx::http_status_for(c.expected) == c.status);
    }
    CHECK(wsx::http_status_for(error::http_too_many_headers) == 431);
    CHECK(wsx::http_status_for(error::origin_not_allowed) == 403);
    CHECK(wsx::http_status_for(error::handshake_rejected) == 403);
    CHECK(wsx::http_status_for(error::bad_extension_offer) == 400);
    CHECK(wsx::http_status_for(error::invalid_utf8) == 500);
    CHECK(wsx::http_status_for(std::make_error_code(std::errc::io_error)) == 500);
}

TEST_CASE("what the server checks leniently") {
    // Any case, any position, several lines.
    CHECK(!server_error(python_with("Upgrade", "Upgrade: WebSocket")));
    CHECK(!server_error(python_with("Upgrade", "upgrade: foo/2, WEBSOCKET")));
    CHECK(!server_error(python_with("Connection", "connection: close, upgrade")));
    CHECK(!server_error(python_with("Connection", "Connection: keep-alive\r\nConnection: Upgrade")));
    CHECK(!server_error(python_with("", "GET /chat HTTP/1.2")));
    CHECK(!server_error(python_with("", "GET /chat HTTP/2.0")));

    // Absolute-form targets hold the resource name after the authority.
    struct target {
        std::string request_line;
        std::string_view path;
        std::string_view query;
    };
    const target targets[] = {
        {"GET http://example.com/chat?room=1 HTTP/1.1", "/chat", "room=1"},
        {"GET wss://example.com HTTP/1.1", "/", ""},
        {"GET HTTPS://example.com?q HTTP/1.1", "/", "q"},
        {"GET /? HTTP/1.1", "/", ""},
    };
    for (const target& t : targets) {
        const std::string head = python_with("", t.request_line);
        server_side s;
        run_server(s, head);
        CHECK(!s.ec);
        CHECK(s.request.path == t.path);
        CHECK(s.request.query == t.query);
    }
}

TEST_CASE("origin policy") {
    const std::string from_example = python_with("User-Agent", "Origin: https://example.com");
    const std::string without_origin = python_websockets_request;
    const std::string from_two = python_with("User-Agent", "Origin: https://example.com\r\nOrigin: https://a.b");

    const wsx::origin_policy anyone;
    CHECK(!server_error(from_example, anyone));
    CHECK(!server_error(without_origin, anyone));
    CHECK(!server_error(from_two, anyone));

    wsx::origin_policy listed;
    listed.allowed = {"https://example.com", "http://localhost:8080"};
    CHECK(!server_error(from_example, listed));
    CHECK(!server_error(python_with("User-Agent", "Origin: HTTPS://EXAMPLE.COM"), listed));
    CHECK(!server_error(python_with("User-Agent", "Origin: http://localhost:8080"), listed));
    CHECK(server_error(python_with("User-Agent", "Origin: http://localhost:8081"), listed) ==
          error::origin_not_allowed);
    CHECK(server_error(python_with("User-Agent", "Origin: https://example.com.evil.org"), listed) ==
          error::origin_not_allowed);
    CHECK(server_error(python_with("User-Agent", "Origin: https://example.co"), listed) == error::origin_not_allowed);
    CHECK(server_error(python_with("User-Agent", "Origin: null"), listed) == error::origin_not_allowed);
    CHECK(server_error(from_two, listed) == error::origin_not_allowed);
    // A list of origins means only those, as in Python websockets: a
    // request without Origin is refused unless allow_missing says so.
    CHECK(server_error(without_origin, listed) == error::origin_not_allowed);
    listed.allow_missing = true;
    CHECK(!server_error(without_origin, listed));
    CHECK(server_error(python_with("User-Agent", "Origin: http://localhost:8081"), listed) ==
          error::origin_not_allowed);

    listed.allow_missing = false;
    CHECK(server_error(without_origin, listed) == error::origin_not_allowed);
    CHECK(!server_error(from_example, listed));

    wsx::origin_policy browsers_only;
    browsers_only.allow_missing = false;
    CHECK(server_error(without_origin, browsers_only) == error::origin_not_allowed);
    CHECK(!server_error(from_example, browsers_only));

    server_side s;
    run_server(s, from_example);
    CHECK(s.request.origin == std::optional<std::string_view>("https://example.com"));
}

TEST_CASE("subprotocol selection") {
    server_side s;
    run_server(s, firefox_request); // offers "chat, superchat"
    REQUIRE(!s.ec);
    CHECK(s.request.offers_subprotocol("chat"));
    CHECK(s.request.offers_subprotocol("superchat"));
    CHECK(!s.request.offers_subprotocol("Chat"));
    CHECK(!s.request.offers_subprotocol("super"));

    // The server's order of preference decides.
    CHECK(wsx::select_subprotocol(s.request, {"superchat", "chat"}) == "superchat");
    CHECK(wsx::select_subprotocol(s.request, {"mqtt", "chat"}) == "chat");
    CHECK(wsx::select_subprotocol(s.request, {"mqtt"}).empty());
    CHECK(wsx::select_subprotocol(s.request, {}).empty());
    // The answer is a view into the request, not into the server's list.
    const std::string_view chosen = wsx::select_subprotocol(s.request, {"chat"});
    CHECK(chosen.data() == firefox_request.data() + firefox_request.find("chat, superchat"));

    // A user callback picks with the whole request at hand.
    const wsx::subprotocol_selector pick_last = [](const wsx::server_request& request) {
        std::string_view last;
        request.for_each_subprotocol([&](std::string_view p) { last = p; });
        return last;
    };
    CHECK(pick_last(s.request) == "superchat");

    std::string out;
    wsx::append_accept_response(out, s.request, pick_last(s.request), "permessage-deflate",
                                 {{"Set-Cookie", "session=1"}, {"Server", "wsx"}});
    CHECK(out == "HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                 "Sec-WebSocket-Protocol: superchat\r\n"
                 "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                 "Set-Cookie: session=1\r\n"
                 "Server: wsx\r\n"
                 "\r\n");

    // Appending reuses the caller's string.
    out.clear();
    const std::size_t capacity = out.capacity();
    wsx::append_accept_response(out, s.request, "chat");
    CHECK(out.capacity() == capacity);
}

TEST_CASE("the 101 response refuses what it must not send") {
    server_side s;
    run_server(s, firefox_request);
    REQUIRE(!s.ec);
    std::string out = "kept";
    CHECK_THROWS_AS(wsx::append_accept_response(out, s.request, "mqtt"), std::invalid_argument);
    CHECK_THROWS_AS(wsx::append_accept_response(out, s.request, {}, "permessage-deflate\r\nX: y"),
                    std::invalid_argument);
    CHECK_THROWS_AS(wsx::append_accept_response(out, s.request, {}, {}, {{"Sec-WebSocket-Accept", "x"}}),
                    std::invalid_argument);
    CHECK_THROWS_AS(wsx::append_accept_response(out, s.request, {}, {}, {{"connection", "close"}}),
                    std::invalid_argument);
    CHECK_THROWS_AS(wsx::append_accept_response(out, s.request, {}, {}, {{"Bad Name", "x"}}), std::invalid_argument);
    CHECK_THROWS_AS(wsx::append_accept_response(out, s.request, {}, {}, {{"X", "a\nb"}}), std::invalid_argument);
    const wsx::server_request not_validated;
    CHECK_THROWS_AS(wsx::append_accept_response(out, not_validated), std::invalid_argument);
    CHECK(out == "kept");
}

TEST_CASE("error responses are complete HTTP responses that close the connection") {
    const error errors[] = {
        error::http_bad_request_line, error::http_bad_header_name, error::http_bare_cr, error::http_obs_fold,
        error::http_head_too_large,   error::http_too_many_headers, error::bad_method,  error::bad_http_version,
        error::missing_host,          error::missing_upgrade,       error::missing_connection_upgrade,
        error::bad_sec_key,           error::unsupported_version,   error::origin_not_allowed,
        error::handshake_rejected,
    };
    for (error e : errors) {
        INFO(std::error_code(e).message());
        parsed_response p;
        wsx::append_error_response(p.text, e);
        parse_built(p);
        const wsx::http_headers& h = p.response.headers;
        CHECK(p.response.status == wsx::http_status_for(e));
        CHECK(p.response.reason == wsx::http_reason_phrase(p.response.status));
        CHECK(p.body == std::error_code(e).message() + "\n");
        CHECK(h.find("Content-Length") == std::optional<std::string_view>(std::to_string(p.body.size())));
        CHECK(h.find("Content-Type") == std::optional<std::string_view>("text/plain; charset=utf-8"));
        CHECK(h.has_token("Connection", "close"));
        if (p.response.status == 426) {
            CHECK(h.find("Sec-WebSocket-Version") == std::optional<std::string_view>("13"));
            CHECK(h.find("Upgrade") == std::optional<std::string_view>("websocket"));
            CHECK(h.has_token("Connection", "upgrade"));
        }
        if (p.response.status == 405) CHECK(h.find("Allow") == std::optional<std::string_view>("GET"));
    }

    std::string out;
    wsx::append_error_response(out, error::unsupported_version);
    CHECK(out == "HTTP/1.1 426 Upgrade Required\r\n"
                 "Upgrade: websocket\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: 34\r\n"
                 "Connection: Upgrade, close\r\n"
                 "\r\n"
                 "unsupported Sec-WebSocket-Version\n");
    out.clear();
    wsx::append_error_response(out, error::origin_not_allowed);
    CHECK(out == "HTTP/1.1 403 Forbidden\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: 19\r\n"
                 "Connection: close\r\n"
                 "\r\n"
                 "origin not allowed\n");
}

TEST_CASE("any response an application wants instead of upgrading") {
    std::string out;
    wsx::append_http_response(out, 200, "ok\n");
    CHECK(out == "HTTP/1.1 200 OK\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: 3\r\n"
                 "Connection: close\r\n"
                 "\r\n"
                 "ok\n");

    out.clear();
    wsx::append_http_response(out, 401, {}, {{"WWW-Authenticate", "Basic realm=\"chat\""}});
    CHECK(out == "HTTP/1.1 401 Unauthorized\r\n"
                 "WWW-Authenticate: Basic realm=\"chat\"\r\n"
                 "Content-Length: 0\r\n"
                 "Connection: close\r\n"
                 "\r\n");

    out.clear();
    wsx::append_http_response(out, 204);
    CHECK(out == "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");

    struct answer {
        int status;
        wsx::http_fields headers;
        std::string body;
    };
    const answer answers[] = {
        {301, {{"Location", "wss://example.com/chat"}}, ""},
        {302, {{"Location", "/login"}}, "see /login"},
        {404, {}, "no such path"},
        {503, {{"Retry-After", "30"}}, "busy"},
        {200, {{"Content-Type", "application/json"}}, "{\"ok\":true}"},
        {299, {}, ""},
    };
    for (const answer& a : answers) {
        parsed_response p;
        wsx::append_http_response(p.text, a.status, a.body, a.headers);
        parse_built(p);
        CHECK(p.response.status == a.status);
        CHECK(p.body == a.body);
        CHECK(p.response.headers.has_token("Connection", "close"));
        CHECK(p.response.headers.find("Content-Length") ==
              std::optional<std::string_view>(std::to_string(a.body.size())));
        CHECK(p.response.headers.count("Content-Type") == (a.body.empty() ? 0u : 1u));
        for (const wsx::http_field& f : a.headers)
            CHECK(p.response.headers.find(f.name) == std::optional<std::string_view>(f.value));
    }

    std::string kept = "kept";
    CHECK_THROWS_AS(wsx::append_http_response(kept, 101), std::invalid_argument);
    CHECK_THROWS_AS(wsx::append_http_response(kept, 199), std::invalid_argument);
    CHECK_THROWS_AS(wsx::append_http_response(kept, 1000), std::invalid_argument);
    CHECK_THROWS_AS(wsx::append_http_response(kept, 204, "body"), std::invalid_argument);
    CHECK_THROWS_AS(wsx::append_http_response(kept, 200, {}, {{"Content-Length", "5"}}), std::invalid_argument);
    CHECK_THROWS_AS(wsx::append_http_response(kept, 200, {}, {{"Transfer-Encoding", "chunked"}}),
                    std::invalid_argument);
    CHECK_THROWS_AS(wsx::append_http_response(kept, 302, {}, {{"Location", "/a\r\nSet-Cookie: x=1"}}),
                    std::invalid_argument);
    CHECK(kept == "kept");
}

TEST_CASE("the client request, byte for byte") {
    const std::string key = wsx::make_sec_key(&counting_random);
    wsx::client_request_options options;
    options.host = "example.com";
    options.target = "/chat?room=a%20b";
    options.origin = "https://example.com";
    options.subprotocols = {"chat", "superchat"};
    options.extensions = "permessage-deflate; client_max_window_bits";
    options.headers = {{"Authorization", "Bearer abc"}, {"Cookie", "a=1"}};
    std::string out;
    wsx::append_client_request(out, options, key);
    CHECK(out == "GET /chat?room=a%20b HTTP/1.1\r\n"
                 "Host: example.com\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "Origin: https://example.com\r\n"
                 "Sec-WebSocket-Protocol: chat, superchat\r\n"
                 "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                 "User-Agent: wsx/0.1.0\r\n"
                 "Authorization: Bearer abc\r\n"
                 "Cookie: a=1\r\n"
                 "\r\n");

    wsx::client_request_options plain;
    plain.host = "localhost";
    plain.user_agent.clear();
    out.clear();
    wsx::append_client_request(out, plain, key);
    CHECK(out == "GET / HTTP/1.1\r\n"
                 "Host: localhost\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "\r\n");

    // The request is one the server side accepts.
    server_side s;
    run_server(s, out);
    CHECK(!s.ec);
}

TEST_CASE("the Host header carries the port only when it is not the default") {
    auto host_line = [](std::string host, std::uint16_t port, bool secure) {
        wsx::client_request_options options;
        options.host = std::move(host);
        options.port = port;
        options.secure = secure;
        std::string out;
        wsx::append_client_request(out, options, "dGhlIHNhbXBsZSBub25jZQ==");
        const std::size_t at = out.find("Host: ");
        return out.substr(at, out.find("\r\n", at) - at);
    };
    CHECK(host_line("example.com", 0, false) == "Host: example.com");
    CHECK(host_line("example.com", 80, false) == "Host: example.com");
    CHECK(host_line("example.com", 443, false) == "Host: example.com:443");
    CHECK(host_line("example.com", 0, true) == "Host: example.com");
    CHECK(host_line("example.com", 443, true) == "Host: example.com");
    CHECK(host_line("example.com", 80, true) == "Host: example.com:80");
    CHECK(host_line("example.com", 8080, false) == "Host: example.com:8080");
    CHECK(host_line("127.0.0.1", 65535, true) == "Host: 127.0.0.1:65535");
    CHECK(host_line("::1", 9001, false) == "Host: [::1]:9001");
    CHECK(host_line("[::1]", 0, false) == "Host: [::1]");
}

TEST_CASE("client options that cannot be sent throw and append nothing") {
    auto throws = [&](auto change, std::string_view use_key = "dGhlIHNhbXBsZSBub25jZQ==") {
        wsx::client_request_options options;
        options.host = "example.com";
        change(options);
        std::string out = "kept";
        bool threw = false;
        try {
            wsx::append_client_request(out, options, use_key);
        } catch (const std::invalid_argument&) {
            threw = true;
        }
        return threw && out == "kept";
    };
    using options = wsx::client_request_options;
    CHECK(!throws([](options&) {}));
    CHECK(throws([](options& o) { o.host.clear(); }));
    CHECK(throws([](options& o) { o.host = "example.com\r\nX: y"; }));
    CHECK(throws([](options& o) { o.host = "exa mple.com"; }));
    CHECK(throws([](options& o) { o.host = "example.com/path"; }));
    CHECK(throws([](options& o) { o.host = "example.com:8080"; }));
    CHECK(!throws([](options& o) { o.host = "2001:db8::1"; }));
    CHECK(!throws([](options& o) { o.host = "::ffff:192.0.2.1"; }));
    CHECK(throws([](options& o) { o.target = "chat"; }));
    CHECK(throws([](options& o) { o.target.clear(); }));
    CHECK(throws([](options& o) { o.target = "/chat#top"; }));
    CHECK(throws([](options& o) { o.target = "/a b"; }));
    CHECK(throws([](options& o) { o.origin = "https://a\r\nX: y"; }));
    CHECK(throws([](options& o) { o.subprotocols = {"chat", ""}; }));
    CHECK(throws([](options& o) { o.subprotocols = {"two words"}; }));
    CHECK(throws([](options& o) { o.subprotocols = {"chat", "chat"}; }));
    CHECK(throws([](options& o) { o.extensions = "permessage-deflate\n"; }));
    CHECK(throws([](options& o) { o.user_agent = "x\x01"; }));
    CHECK(throws([](options& o) { o.headers = {{"Sec-WebSocket-Key", "x"}}; }));
    CHECK(throws([](options& o) { o.headers = {{"host", "x"}}; }));
    CHECK(throws([](options& o) { o.headers = {{"X", "a\r\nB: c"}}; }));
    CHECK(throws([](options& o) { o.headers = {{"", "a"}}; }));
    CHECK(throws([](options&) {}, "short"));
    CHECK(throws([](options&) {}, "AAAAAAAAAAAAAAAAAAAAAAA="));
}

namespace {

// The client's view of a response: parse `head` and validate it against
// what was offered.
struct client_side {
    wsx::client_response response;
    std::error_code ec;
};

void run_client(client_side& c, std::string_view head, const wsx::client_request_options& options,
                std::string_view key = "dGhlIHNhbXBsZSBub25jZQ==") {
    const wsx::http_parse_result r = wsx::parse_http_response(head, c.response.http);
    REQUIRE(r.status == parse_status::complete);
    c.ec = wsx::validate_response(c.response, options, key);
}

std::error_code client_error(std::string_view head, const wsx::client_request_options& options) {
    client_side c;
    run_client(c, head, options);
    return c.ec;
}

// Captured from Python websockets 10.4 and Node ws 8 servers, answering a
// request with the RFC 6455 §1.3 key, subprotocol "chat" and
// "permessage-deflate; client_max_window_bits".
const std::string python_websockets_response =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12; client_max_window_bits=12\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "Date: Sun, 22 Nov 2026 08:18:25 GMT\r\n"
    "Server: Python/3.11 websockets/10.4\r\n"
    "\r\n";

const std::string node_ws_response =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    "\r\n";

const std::string minimal_response =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "\r\n";

std::string minimal_with(std::string_view name, std::string_view line) {
    std::string head = minimal_response;
    if (name.empty()) return head.insert(head.size() - 2, std::string(line) + "\r\n");
    const std::size_t at = head.find(std::string(name) + ":");
    REQUIRE(at != std::string::npos);
    const std::size_t end = head.find("\r\n", at) + 2;
    head.replace(at, end - at, line.empty() ? std::string() : std::string(line) + "\r\n");
    return head;
}

wsx::client_request_options offering(std::vector<std::string> subprotocols, std::string extensions) {
    wsx::client_request_options options;
    options.host = "127.0.0.1";
    options.subprotocols = std::move(subprotocols);
    options.extensions = std::move(extensions);
    return options;
}

} // namespace

TEST_CASE("the client accepts real servers' answers") {
    const auto options = offering({"chat"}, "permessage-deflate; client_max_window_bits");
    client_side c;
    run_client(c, python_websockets_response, options);
    CHECK(!c.ec);
    CHECK(c.response.subprotocol == "chat");
    CHECK(c.response.extensions() == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12");

    run_client(c, node_ws_response, options);
    CHECK(!c.ec);
    CHECK(c.response.subprotocol == "chat");
    CHECK(c.response.extensions() == "permessage-deflate");

    run_client(c, minimal_response, options);
    CHECK(!c.ec);
    CHECK(c.response.subprotocol.empty());
    CHECK(c.response.extensions().empty());

    const auto nothing = offering({}, "");
    CHECK(!client_error(minimal_response, nothing));
    CHECK(!client_error(minimal_with("Upgrade", "upgrade: WebSocket"), nothing));
    CHECK(!client_error(minimal_with("Connection", "Connection: keep-alive, upgrade"), nothing));
    CHECK(!client_error(minimal_with("", "Sec-WebSocket-Extensions:"), nothing));
}

TEST_CASE("every way a server's answer fails the client") {
    const auto nothing = offering({}, "");
    const auto chat = offering({"chat", "superchat"}, "");
    const auto deflate = offering({}, "permessage-deflate");

    CHECK(client_error(minimal_with("Upgrade", ""), nothing) == error::missing_upgrade);
    CHECK(client_error(minimal_with("Upgrade", "Upgrade: h2c"), nothing) == error::missing_upgrade);
    CHECK(client_error(minimal_with("Upgrade", "Upgrade: websocket, h2c"), nothing) == error::missing_upgrade);
    CHECK(client_error(minimal_with("Upgrade", "Upgrade: websocket\r\nUpgrade: websocket"), nothing) ==
          error::missing_upgrade);
    CHECK(client_error(minimal_with("Connection", ""), nothing) == error::missing_connection_upgrade);
    CHECK(client_error(minimal_with("Connection", "Connection: keep-alive"), nothing) ==
          error::missing_connection_upgrade);
    CHECK(client_error(minimal_with("Sec-WebSocket-Accept", ""), nothing) == error::bad_sec_accept);
    CHECK(client_error(minimal_with("Sec-WebSocket-Accept", "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo"),
                       nothing) == error::bad_sec_accept);
    CHECK(client_error(minimal_with("Sec-WebSocket-Accept", "Sec-WebSocket-Accept: S3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                       nothing) == error::bad_sec_accept);
    CHECK(client_error(minimal_with("", "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), nothing) ==
          error::bad_sec_accept);
    {
        client_side c;
        run_client(c, minimal_response, nothing, "AAECAwQFBgcICQoLDA0ODw==");
        CHECK(c.ec == error::bad_sec_accept);
    }

    CHECK(client_error(minimal_with("", "Sec-WebSocket-Extensions: permessage-deflate"), nothing) ==
          error::unexpected_extension);
    CHECK(client_error(minimal_with("", "Sec-WebSocket-Extensions: , x-webkit-deflate-frame"), nothing) ==
          error::unexpected_extension);
    CHECK(!client_error(minimal_with("", "Sec-WebSocket-Extensions: permessage-deflate"), deflate));

    CHECK(client_error(minimal_with("", "Sec-WebSocket-Protocol: chat"), nothing) == error::unexpected_subprotocol);
    CHECK(client_error(minimal_with("", "Sec-WebSocket-Protocol: mqtt"), chat) == error::unexpected_subprotocol);
    CHECK(client_error(minimal_with("", "Sec-WebSocket-Protocol: Chat"), chat) == error::unexpected_subprotocol);
    CHECK(client_error(minimal_with("", "Sec-WebSocket-Protocol: chat, superchat"), chat) ==
          error::unexpected_subprotocol);
    CHECK(client_error(minimal_with("", "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat"), chat) ==
          error::unexpected_subprotocol);
    CHECK(client_error(minimal_with("", "Sec-WebSocket-Protocol:"), chat) == error::unexpected_subprotocol);
    const std::string superchat = minimal_with("", "Sec-WebSocket-Protocol: superchat");
    client_side c;
    run_client(c, superchat, chat);
    CHECK(!c.ec);
    CHECK(c.response.subprotocol == "superchat");
}

TEST_CASE("a status other than 101 leaves the answer to the caller") {
    const auto nothing = offering({}, "");
    struct answer {
        std::string head;
        int status;
        std::string_view header;
        std::string_view value;
    };
    const answer answers[] = {
        {"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n", 401,
         "WWW-Authenticate", "Basic realm=\"x\""},
        {"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 403, "Content-Length", "0"},
        {"HTTP/1.1 301 Moved Permanently\r\nLocation: wss://example.com/new\r\n\r\n", 301, "Location",
         "wss://example.com/new"},
        {"HTTP/1.1 302 Found\r\nLocation: /login\r\n\r\n", 302, "Location", "/login"},
        {"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 120\r\n\r\n", 503, "Retry-After", "120"},
        {"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n", 200, "Content-Type", "text/html"},
        // A 426 naming the versions the server speaks.
        {"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13, 8\r\n\r\n", 426, "Sec-WebSocket-Version",
         "13, 8"},
        // An interim answer is not the one awaited either.
        {"HTTP/1.1 100 Continue\r\n\r\n", 100, "", ""},
    };
    for (const answer& a : answers) {
        client_side c;
        run_client(c, a.head, nothing);
        CHECK(c.ec == error::unexpected_status);
        CHECK(c.response.http.status == a.status);
        if (!a.header.empty()) CHECK(c.response.http.headers.find(a.header) == std::optional<std::string_view>(a.value));
    }
}

TEST_CASE("a client and a server agree") {
    wsx::client_request_options options = offering({"v2.chat", "v1.chat"}, "");
    options.host = "::1";
    options.port = 9001;
    options.target = "/room/7?token=abc";
    const std::string key = wsx::make_sec_key(&counting_random);
    std::string request_bytes;
    wsx::append_client_request(request_bytes, options, key);
    request_bytes += "\x81\x80";  // a frame sent right behind the request

    wsx::http_request_parser request_parser;
    wsx::server_request request;
    wsx::http_parse_result r{};
    for (std::size_t i = 1; i <= request_bytes.size() && r.status == parse_status::need_more; ++i)
        r = request_parser.parse(std::string_view(request_bytes).substr(0, i), request.http);
    REQUIRE(r.status == parse_status::complete);
    CHECK(request_bytes.substr(r.consumed) == "\x81\x80");
    REQUIRE(!wsx::validate_request(request));
    CHECK(request.host == "[::1]:9001");
    CHECK(request.path == "/room/7");
    CHECK(request.query == "token=abc");

    std::string response_bytes;
    wsx::append_accept_response(response_bytes, request, wsx::select_subprotocol(request, {"v1.chat"}));
    client_side c;
    run_client(c, response_bytes, options, key);
    CHECK(!c.ec);
    CHECK(c.response.subprotocol == "v1.chat");
}
