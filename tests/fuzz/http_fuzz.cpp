// Fuzzes the HTTP head parsers: whatever the input, no crash, `consumed`
// within the input, every view inside the head, and any prefix answers
// need_more or what the whole input answers.
#include <wsx/http.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

void require(bool condition) {
    if (!condition) std::abort();
}

struct head_bounds {
    const char* begin;
    const char* end;
    void check(std::string_view view) const {
        require(view.empty() || (view.data() >= begin && view.data() + view.size() <= end));
    }
};

void check_views(const wsx::http_request& r, head_bounds b) {
    b.check(r.method);
    b.check(r.target);
    require(!r.method.empty() && !r.target.empty());
    for (const wsx::http_header h : r.headers) {
        b.check(h.name);
        b.check(h.value);
        require(!h.name.empty());
    }
}

void check_views(const wsx::http_response& r, head_bounds b) {
    b.check(r.reason);
    require(r.status >= 100 && r.status <= 999);
    for (const wsx::http_header h : r.headers) {
        b.check(h.name);
        b.check(h.value);
        require(!h.name.empty());
    }
}

bool same(const wsx::http_parse_result& a, const wsx::http_parse_result& b) {
    return a.status == b.status && a.consumed == b.consumed && a.ec == b.ec;
}

template <class Parser, class Message>
void fuzz_parser(wsx::const_bytes input, wsx::http_limits limits) {
    const char* data = reinterpret_cast<const char*>(input.data());
    Parser parser(limits);
    Message whole;
    const wsx::http_parse_result full = parser.parse(input, whole);
    require(full.consumed <= input.size());
    require(full.status == wsx::parse_status::error ? bool(full.ec) : !full.ec);
    if (full.status == wsx::parse_status::complete) {
        require(full.consumed > 0 && full.consumed <= parser.limits().max_head_size);
        require(whole.headers.size() <= parser.limits().max_header_count);
        check_views(whole, {data, data + full.consumed});
    }
    if (full.status == wsx::parse_status::need_more) require(input.size() < parser.limits().max_head_size);

    // Prefixes: all of them for short inputs, about 64 for long ones. Each
    // is parsed alone, then the parser continues with the whole input.
    const std::size_t step = input.size() / 64 + 1;
    for (std::size_t split = 0; split < input.size(); split += step) {
        Parser split_parser(limits);
        Message m;
        const wsx::http_parse_result partial = split_parser.parse(input.first(split), m);
        if (partial.status == wsx::parse_status::need_more) {
            const wsx::http_parse_result rest = split_parser.parse(input, m);
            require(same(rest, full));
            if (rest.status == wsx::parse_status::complete) check_views(m, {data, data + rest.consumed});
        } else {
            require(same(partial, full));
        }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const wsx::const_bytes input(data, size);
    fuzz_parser<wsx::http_request_parser, wsx::http_request>(input, {});
    fuzz_parser<wsx::http_response_parser, wsx::http_response>(input, {});
    // Small limits, so that both are reached often.
    const wsx::http_limits small{96, 3};
    fuzz_parser<wsx::http_request_parser, wsx::http_request>(input, small);
    fuzz_parser<wsx::http_response_parser, wsx::http_response>(input, small);
    return 0;
}
