#include <wsx/extension.hpp>

#include "support/same_extensions.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

using wsx::error;
using wsx::extension;
using wsx::extension_param;

namespace {

std::vector<extension> parse_ok(std::string_view value) {
    std::vector<extension> out;
    const std::error_code ec = wsx::parse_extensions(value, out);
    INFO("value: " << value);
    REQUIRE_FALSE(ec);
    return out;
}

std::error_code parse_error(std::string_view value) {
    std::vector<extension> out{extension{"kept", {}}};
    const std::error_code ec = wsx::parse_extensions(value, out);
    INFO("value: " << value);
    // A failed parse leaves what was there before.
    CHECK(out.size() == 1);
    CHECK(out[0].name == "kept");
    return ec;
}

extension_param param(std::string name) { return {std::move(name), std::nullopt}; }
extension_param param(std::string name, std::string value) { return {std::move(name), std::move(value)}; }

using wsx::test::same_extensions;

} // namespace

TEST_CASE("a single extension without parameters") {
    const auto exts = parse_ok("permessage-deflate");
    REQUIRE(exts.size() == 1);
    CHECK(exts[0].name == "permessage-deflate");
    CHECK(exts[0].params.empty());
}

TEST_CASE("extensions with parameters, values and several elements") {
    const auto exts = parse_ok("permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=10; "
                               "client_no_context_takeover, x-other; q=\"quoted\"");
    const std::vector<extension> expected{
        {"permessage-deflate", {param("client_max_window_bits")}},
        {"permessage-deflate", {param("server_max_window_bits", "10"), param("client_no_context_takeover")}},
        {"x-other", {param("q", "quoted")}},
    };
    CHECK(same_extensions(exts, expected));
}

TEST_CASE("quoted-string values are unescaped and must then be tokens") {
    CHECK(parse_ok("e; a=\"10\"")[0].params[0].value == "10");
    CHECK(parse_ok("e; a=\"1\\0\"")[0].params[0].value == "10");
    CHECK(parse_ok("e; a=\"\\a\\b\"")[0].params[0].value == "ab");
    CHECK(parse_ok("e; a=\"x!#$%&'*+-.^_`|~9\"")[0].params[0].value == "x!#$%&'*+-.^_`|~9");
    // RFC 6455 §9.1: after unescaping, the value must be a token.
    CHECK(parse_error("e; a=\"\"") == error::bad_extension_offer);
    CHECK(parse_error("e; a=\"1 0\"") == error::bad_extension_offer);
    CHECK(parse_error("e; a=\"1\\ 0\"") == error::bad_extension_offer);
    CHECK(parse_error("e; a=\"a\\\"b\"") == error::bad_extension_offer);
    CHECK(parse_error("e; a=\"a,b\"") == error::bad_extension_offer);
    CHECK(parse_error("e; a=\"a;b\"") == error::bad_extension_offer);
    CHECK(parse_error("e; a=\"\xc3\xa9\"") == error::bad_extension_offer);
    // Unterminated, or a backslash at the end.
    CHECK(parse_error("e; a=\"10") == error::bad_extension_offer);
    CHECK(parse_error("e; a=\"10\\") == error::bad_extension_offer);
    CHECK(parse_error("e; a=\"10\\\"") == error::bad_extension_offer);
    // Control characters are neither qdtext nor quotable.
    CHECK(parse_error(std::string_view("e; a=\"1\x01\"", 9)) == error::bad_extension_offer);
    CHECK(parse_error(std::string_view("e; a=\"1\\\x7f\"", 10)) == error::bad_extension_offer);
    // A quote must open the value, not appear inside a token.
    CHECK(parse_error("e; a=1\"0\"") == error::bad_extension_offer);
}

TEST_CASE("whitespace around separators") {
    const std::vector<extension> expected{{"a", {param("p"), param("q", "1")}}, {"b", {}}};
    CHECK(same_extensions(parse_ok("a;p;q=1,b"), expected));
    CHECK(same_extensions(parse_ok(" \ta \t; \tp\t ;q \t= \t1 \t, \tb \t"), expected));
    // Whitespace inside a token splits it: malformed.
    CHECK(parse_error("a b") == error::bad_extension_offer);
    CHECK(parse_error("a; p q") == error::bad_extension_offer);
    CHECK(parse_error("a; q=1 2") == error::bad_extension_offer);
    // Only SP and HTAB are OWS.
    CHECK(parse_error("a;\rp") == error::bad_extension_offer);
    CHECK(parse_error("a\n") == error::bad_extension_offer);
}

TEST_CASE("empty list elements are ignored (RFC 7230 §7)") {
    const std::vector<extension> expected{{"a", {}}, {"b", {param("p")}}};
    CHECK(same_extensions(parse_ok("a, , b; p"), expected));
    CHECK(same_extensions(parse_ok(",a,,,b;p,"), expected));
    CHECK(same_extensions(parse_ok(" , a ,\t, b ; p , "), expected));
    CHECK(parse_ok("").empty());
    CHECK(parse_ok(" , ,").empty());
}

TEST_CASE("names are case-insensitive and stored lowercase; values keep their case") {
    const auto exts = parse_ok("PerMessage-Deflate; Client_Max_Window_Bits=AbC");
    REQUIRE(exts.size() == 1);
    CHECK(exts[0].name == "permessage-deflate");
    CHECK(exts[0].params[0].name == "client_max_window_bits");
    CHECK(exts[0].params[0].value == "AbC");
}

TEST_CASE("malformed values") {
    const char* const malformed[] = {
        ";",          "a;",        "a;;b",      "a; =1",   "a; p=",    "a; p= ",   "a; p=,b",  "a; p==1",
        "=a",         "a=1",       "a; p=1=2",  "a p",     "\"a\"",    "a; \"p\"", "a;p;",     "a,;b",
        "a(b)",       "a; p=(1)",  "a/b",       "a; p=@",  "a:b",      "a; p=[]",  "a{",       "a; p=1;",
        "a; p=\"1\"x", "a; p=\"1\" x", "a ;; p", "\x80",     "a; p=\x80", "a,\x01",
    };
    for (const char* value : malformed) {
        INFO("value: " << value);
        CHECK(parse_error(value) == error::bad_extension_offer);
    }
}

TEST_CASE("parse appends; several header lines add up like one joined by commas") {
    const std::string whole = "a; p=1, b, c; q=\"2\"; r";
    const auto expected = parse_ok(whole);
    REQUIRE(expected.size() == 3);
    // Split the value at each comma into two header lines.
    for (std::size_t i = 0; i < whole.size(); ++i) {
        if (whole[i] != ',') continue;
        std::vector<extension> out;
        REQUIRE_FALSE(wsx::parse_extensions(std::string_view(whole).substr(0, i), out));
        REQUIRE_FALSE(wsx::parse_extensions(std::string_view(whole).substr(i + 1), out));
        CHECK(same_extensions(out, expected));
    }
}

TEST_CASE("every prefix of a value parses or fails cleanly, as its last character says") {
    const std::string whole = "permessage-deflate; client_max_window_bits=\"10\"; x, y; z";
    for (std::size_t n = 0; n <= whole.size(); ++n) {
        const auto prefix = std::string_view(whole).substr(0, n);
        bool in_quotes = false;
        char last = ',';
        for (char c : prefix) {
            if (c == '"') in_quotes = !in_quotes;
            if (c != ' ') last = c;
        }
        // A prefix is complete unless it stops inside a quoted-string or
        // right after ";" or "=".
        const bool complete = !in_quotes && last != ';' && last != '=';
        std::vector<extension> out;
        const std::error_code ec = wsx::parse_extensions(prefix, out);
        INFO("prefix: " << prefix);
        if (complete) {
            CHECK_FALSE(ec);
        } else {
            CHECK(ec == error::bad_extension_offer);
            CHECK(out.empty());
        }
    }
}

TEST_CASE("format writes tokens bare and quotes the rest") {
    const std::vector<extension> exts{
        {"permessage-deflate", {param("client_max_window_bits"), param("server_max_window_bits", "10")}},
        {"x", {param("v", "a b\"c\\")}},
        {"y", {}},
    };
    CHECK(wsx::format_extensions(exts) ==
          "permessage-deflate; client_max_window_bits; server_max_window_bits=10, x; v=\"a b\\\"c\\\\\", y");
    CHECK(wsx::format_extensions({}).empty());
    std::string out = "prefix ";
    wsx::append_extension(out, exts[2]);
    CHECK(out == "prefix y");
}

TEST_CASE("parse, format, parse gives the same extensions") {
    const char* const values[] = {
        "a",
        "A; B=C",
        "permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=\"10\"",
        " x ;y= \"z\" , , w;v ",
        "e; a=\"\\1\\0\"; b; c=d",
    };
    for (const char* value : values) {
        INFO("value: " << value);
        const auto first = parse_ok(value);
        const std::string formatted = wsx::format_extensions(first);
        const auto second = parse_ok(formatted);
        CHECK(same_extensions(first, second));
        CHECK(wsx::format_extensions(second) == formatted);
    }
}
