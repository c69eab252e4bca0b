// The opening handshake on one core: what a server spends per connection to
// parse a Chromium-shaped upgrade request, validate it and write the 101
// answer, and its parts; the client's side; and Boost.Beast doing the same
// server work (its request_parser, field checks, accept key and serializer)
// as the reference.
#include <wsx/handshake.hpp>

#include "../support/sample_requests.hpp"

#include <benchmark/benchmark.h>

#include <string>
#include <string_view>

#if __has_include(<boost/beast/http.hpp>) && __has_include(<boost/beast/websocket.hpp>)
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#define WSX_BENCH_HAS_BEAST 1
#else
#define WSX_BENCH_HAS_BEAST 0
#endif

namespace {

using wsx::test::chromium_request;

const std::string server_response =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "\r\n";

// Parse + validate (with an origin allow-list) + 101 response, reusing the
// parser, the request and the output string as a server loop would.
void wsx_server_handshake(benchmark::State& state) {
    wsx::http_request_parser parser;
    wsx::server_request request;
    wsx::origin_policy origins;
    origins.allowed = {"http://example.com:8000"};
    std::string out;
    for (auto _ : state) {
        const wsx::http_parse_result parsed = parser.parse(chromium_request, request.http);
        const std::error_code ec = wsx::validate_request(request, origins);
        if (parsed.status != wsx::parse_status::complete || ec) state.SkipWithError("handshake failed");
        out.clear();
        wsx::append_accept_response(out, request);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(chromium_request.size()));
}
BENCHMARK(wsx_server_handshake);

void wsx_parse_request(benchmark::State& state) {
    wsx::http_request_parser parser;
    wsx::http_request request;
    for (auto _ : state) {
        const wsx::http_parse_result parsed = parser.parse(chromium_request, request);
        benchmark::DoNotOptimize(parsed);
        benchmark::DoNotOptimize(request.headers.size());
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(chromium_request.size()));
}
BENCHMARK(wsx_parse_request);

void wsx_validate_request(benchmark::State& state) {
    wsx::server_request request;
    wsx::parse_http_request(chromium_request, request.http);
    for (auto _ : state) {
        const std::error_code ec = wsx::validate_request(request);
        benchmark::DoNotOptimize(ec);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(wsx_validate_request);

void wsx_accept_key(benchmark::State& state) {
    std::string out;
    for (auto _ : state) {
        out.clear();
        wsx::append_accept_key(out, "dGhlIHNhbXBsZSBub25jZQ==");
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(wsx_accept_key);

// Client: key, request, parse and check the 101.
void wsx_client_handshake(benchmark::State& state) {
    wsx::client_request_options options;
    options.host = "example.com";
    options.target = "/chat";
    wsx::http_response_parser parser;
    wsx::client_response response;
    std::string out;
    for (auto _ : state) {
        const std::string key = wsx::make_sec_key();
        out.clear();
        wsx::append_client_request(out, options, key);
        parser.parse(server_response, response.http);
        // The canned answer fits another key: expect bad_sec_accept, having
        // done every check up to and including the digest.
        const std::error_code ec = wsx::validate_response(response, options, key);
        if (ec != wsx::error::bad_sec_accept) state.SkipWithError("unexpected answer");
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(wsx_client_handshake);

#if WSX_BENCH_HAS_BEAST
namespace beast = boost::beast;
namespace http = boost::beast::http;

// The same server work with Beast's public HTTP parser and serializer and
// its accept-key helper.
void beast_server_handshake(benchmark::State& state) {
    std::string out;
    for (auto _ : state) {
        http::request_parser<http::empty_body> parser;
        beast::error_code ec;
        parser.put(boost::asio::buffer(chromium_request), ec);
        const http::request<http::empty_body>& request = parser.get();
        const bool ok = parser.is_done() && !ec && request.method() == http::verb::get &&
                        request.version() >= 11 && beast::websocket::is_upgrade(request) &&
                        request.count(http::field::host) == 1 &&
                        request[http::field::sec_websocket_version] == "13" &&
                        request[http::field::origin] == "http://example.com:8000";
        const beast::string_view key = request[http::field::sec_websocket_key];
        if (!ok || key.size() != 24) state.SkipWithError("handshake failed");
        beast::websocket::detail::sec_ws_accept_type accept;
        beast::websocket::detail::make_sec_ws_accept(accept, key);

        http::response<http::empty_body> response{http::status::switching_protocols, 11};
        response.set(http::field::upgrade, "websocket");
        response.set(http::field::connection, "Upgrade");
        response.set(http::field::sec_websocket_accept, accept);
        http::response_serializer<http::empty_body> serializer{response};
        out.clear();
        do {
            serializer.next(ec, [&](beast::error_code&, const auto& buffers) {
                for (const auto buffer : beast::buffers_range_ref(buffers))
                    out.append(static_cast<const char*>(buffer.data()), buffer.size());
                serializer.consume(beast::buffer_bytes(buffers));
            });
        } while (!ec && !serializer.is_done());
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(chromium_request.size()));
}
BENCHMARK(beast_server_handshake);
#endif

} // namespace
