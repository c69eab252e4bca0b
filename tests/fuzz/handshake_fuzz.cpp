// Fuzzes the handshake on arbitrary heads. Server: parse, validate, answer;
// the answer is always one well-formed HTTP response (101 with the right
// accept key, or an error with a body of its Content-Length). Client: any
// response validates without crashing, and success means a real 101.
#include <wsx/handshake.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

void require(bool condition) {
    if (!condition) std::abort();
}

void check_well_formed(const std::string& out, int expected_status, const wsx::server_request* accepted) {
    wsx::http_response response;
    const wsx::http_parse_result r = wsx::parse_http_response(out, response);
    require(r.status == wsx::parse_status::complete);
    require(response.status == expected_status);
    const wsx::http_headers& h = response.headers;
    if (accepted != nullptr) {
        require(r.consumed == out.size());
        require(h.find("Sec-WebSocket-Accept") == std::optional<std::string_view>(wsx::accept_key(accepted->key)));
        require(h.has_token("Upgrade", "websocket") && h.has_token("Connection", "upgrade"));
        return;
    }
    require(h.has_token("Connection", "close"));
    const std::optional<std::string_view> length = h.find("Content-Length");
    require(length.has_value() && *length == std::to_string(out.size() - r.consumed));
}

void server_side(wsx::const_bytes input) {
    static const wsx::origin_policy origins{{"https://example.com"}, true};
    static const std::vector<std::string> supported{"chat", "superchat"};
    wsx::http_request_parser parser;
    wsx::server_request request;
    const wsx::http_parse_result parsed = parser.parse(input, request.http);
    if (parsed.status == wsx::parse_status::need_more) return;
    std::error_code ec = parsed.ec;
    if (!ec) ec = wsx::validate_request(request, origins);
    std::string out;
    if (ec) {
        wsx::append_error_response(out, ec);
        check_well_formed(out, wsx::http_status_for(ec), nullptr);
        return;
    }
    const std::string_view subprotocol = wsx::select_subprotocol(request, supported);
    require(subprotocol.empty() || request.offers_subprotocol(subprotocol));
    wsx::append_accept_response(out, request, subprotocol, {}, {{"Server", "wsx"}});
    check_well_formed(out, 101, &request);
    (void)request.extensions();
}

void client_side(wsx::const_bytes input) {
    wsx::client_request_options options;
    options.host = "example.com";
    options.subprotocols = {"chat"};
    wsx::http_response_parser parser;
    wsx::client_response response;
    if (parser.parse(input, response.http).status != wsx::parse_status::complete) return;
    const std::error_code ec = wsx::validate_response(response, options, "dGhlIHNhbXBsZSBub25jZQ==");
    if (!ec) {
        require(response.http.status == 101);
        require(response.subprotocol.empty() || response.subprotocol == "chat");
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const wsx::const_bytes input(data, size);
    server_side(input);
    client_side(input);
    return 0;
}
