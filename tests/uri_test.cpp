#include <wsx/uri.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <system_error>

namespace {

struct good_case {
    const char* text;
    bool secure;
    const char* host;
    wsx::uri_host_kind kind;
    std::uint16_t port;
    const char* host_header;
    const char* target;
};

} // namespace

TEST_CASE("parse_uri accepts WebSocket URIs") {
    using kind = wsx::uri_host_kind;
    const good_case cases[] = {
        {"ws://example.com", false, "example.com", kind::name, 80, "example.com", "/"},
        {"ws://example.com/", false, "example.com", kind::name, 80, "example.com", "/"},
        {"wss://example.com", true, "example.com", kind::name, 443, "example.com", "/"},
        {"WSS://Example.COM/Chat", true, "example.com", kind::name, 443, "example.com", "/Chat"},
        {"Ws://h/", false, "h", kind::name, 80, "h", "/"},
        {"ws://example.com:9001/chat?room=1&x=%20y", false, "example.com", kind::name, 9001,
         "example.com:9001", "/chat?room=1&x=%20y"},
        {"ws://example.com:80/", false, "example.com", kind::name, 80, "example.com", "/"},
        {"wss://example.com:443/", true, "example.com", kind::name, 443, "example.com", "/"},
        {"ws://example.com:443/", false, "example.com", kind::name, 443, "example.com:443", "/"},
        {"wss://example.com:80/", true, "example.com", kind::name, 80, "example.com:80", "/"},
        {"ws://example.com:/", false, "example.com", kind::name, 80, "example.com", "/"},
        {"ws://example.com:0080/", false, "example.com", kind::name, 80, "example.com", "/"},
        {"ws://h:1/", false, "h", kind::name, 1, "h:1", "/"},
        {"ws://h:65535/", false, "h", kind::name, 65535, "h:65535", "/"},
        {"ws://127.0.0.1:9001/", false, "127.0.0.1", kind::ipv4, 9001, "127.0.0.1:9001", "/"},
        {"ws://255.255.255.255/", false, "255.255.255.255", kind::ipv4, 80, "255.255.255.255", "/"},
        {"ws://0.0.0.0/", false, "0.0.0.0", kind::ipv4, 80, "0.0.0.0", "/"},
        {"ws://1.2.3.4a/", false, "1.2.3.4a", kind::name, 80, "1.2.3.4a", "/"},
        {"ws://[::1]:9001/", false, "::1", kind::ipv6, 9001, "[::1]:9001", "/"},
        {"wss://[::1]/", true, "::1", kind::ipv6, 443, "[::1]", "/"},
        {"ws://[::]/", false, "::", kind::ipv6, 80, "[::]", "/"},
        {"ws://[2001:DB8::A]/", false, "2001:db8::a", kind::ipv6, 80, "[2001:db8::a]", "/"},
        {"ws://[1:2:3:4:5:6:7:8]/", false, "1:2:3:4:5:6:7:8", kind::ipv6, 80, "[1:2:3:4:5:6:7:8]", "/"},
        {"ws://[1:2:3:4:5:6:7::]/", false, "1:2:3:4:5:6:7::", kind::ipv6, 80, "[1:2:3:4:5:6:7::]", "/"},
        {"ws://[::ffff:192.0.2.1]/", false, "::ffff:192.0.2.1", kind::ipv6, 80, "[::ffff:192.0.2.1]", "/"},
        {"ws://[1:2:3:4:5:6:1.2.3.4]/", false, "1:2:3:4:5:6:1.2.3.4", kind::ipv6, 80,
         "[1:2:3:4:5:6:1.2.3.4]", "/"},
        {"ws://h?q", false, "h", kind::name, 80, "h", "/?q"},
        {"ws://h/?", false, "h", kind::name, 80, "h", "/"},
        {"ws://h/a/b/?x=/y?z", false, "h", kind::name, 80, "h", "/a/b/?x=/y?z"},
        {"ws://h/%7Euser/a:b@c;d=e", false, "h", kind::name, 80, "h", "/%7Euser/a:b@c;d=e"},
        {"ws://my-host_1.example~/", false, "my-host_1.example~", kind::name, 80, "my-host_1.example~", "/"},
        {"ws://user:pa%3Ass@h:81/x", false, "h", kind::name, 81, "h:81", "/x"},
    };
    for (const good_case& c : cases) {
        INFO(c.text);
        std::error_code ec = wsx::error::tls_failed;
        const wsx::uri u = wsx::parse_uri(c.text, ec);
        REQUIRE_FALSE(ec);
        CHECK(u.secure == c.secure);
        CHECK(u.host == c.host);
        CHECK(u.host_kind == c.kind);
        CHECK(u.port == c.port);
        CHECK(u.host_header == c.host_header);
        CHECK(u.target == c.target);
    }
}

TEST_CASE("parse_uri splits path and query") {
    const wsx::uri u = wsx::parse_uri("ws://h/a%20b?c=d?e");
    CHECK(u.path == "/a%20b");
    CHECK(u.query == "c=d?e");
    const wsx::uri empty = wsx::parse_uri("ws://h");
    CHECK(empty.path == "/");
    CHECK(empty.query.empty());
}

TEST_CASE("parse_uri keeps userinfo out of Host and target") {
    const wsx::uri u = wsx::parse_uri("wss://Al%69ce:s%3Acr%40t@example.com/p");
    CHECK(u.user == "Alice");
    CHECK(u.password == "s:cr@t");
    CHECK(u.host_header == "example.com");
    CHECK(u.target == "/p");

    const wsx::uri user_only = wsx::parse_uri("ws://bob@h/");
    CHECK(user_only.user == "bob");
    CHECK(user_only.password.empty());
    CHECK(user_only.host == "h");

    const wsx::uri none = wsx::parse_uri("ws://h/");
    CHECK(none.user.empty());
    CHECK(none.password.empty());
}

TEST_CASE("parse_uri refuses malformed URIs") {
    const char* const cases[] = {
        "",
        "ws:",
        "ws:/h/",
        "ws//h/",
        "ws://",
        "ws:///path",
        "ws://:80/",
        "ws://user@/",
        "ws://user@:80/",
        "http://h/",
        "https://h/",
        "wsx://h/",
        "w://h/",
        "://h/",
        // RFC 6455 §3: no fragments, not even an empty one.
        "ws://h/#frag",
        "ws://h/#",
        "ws://h#",
        "ws://h/?q#f",
        // Ports: 1-65535, digits only.
        "ws://h:0/",
        "ws://h:00/",
        "ws://h:65536/",
        "ws://h:99999999999999999999/",
        "ws://h:-1/",
        "ws://h:+80/",
        "ws://h:8a/",
        "ws://h:80:81/",
        "ws://[::1]:65536/",
        "ws://[::1]x/",
        // Spaces, control characters and non-ASCII bytes.
        "ws://h/a b",
        " ws://h/",
        "ws://h/ ",
        "ws://h/\t",
        "ws://h/\r\n",
        "ws://h/\x7f",
        "ws://h/\xc3\xa9",
        "ws://h\x01/",
        // Percent-encodings.
        "ws://h/%",
        "ws://h/%2",
        "ws://h/%G0",
        "ws://h/%0g",
        "ws://h/?%",
        "ws://h/?a=%zz",
        "ws://us%er@h/",
        "ws://h%41/",
        // Characters outside their component.
        "ws://h/a[b",
        "ws://h/a\"b",
        "ws://h/a<b>",
        "ws://h/a\\b",
        "ws://h/a{b}",
        "ws://h/a^b",
        "ws://h/a|b",
        "ws://h/a`b",
        "ws://h/?a[b",
        "ws://a@b@h/",
        "ws://us[er@h/",
        "ws://h!\"/",
        "ws://h[/",
        // IPv4-looking hosts must be valid dotted quads.
        "ws://256.0.0.1/",
        "ws://1.2.3/",
        "ws://1.2.3.4.5/",
        "ws://1.2.3.4./",
        "ws://.1.2.3/",
        "ws://01.2.3.4/",
        "ws://1..3.4/",
        "ws://1234/",
        // IPv6 literals.
        "ws://[]/",
        "ws://[::1/",
        "ws://::1/",
        "ws://[:1]/",
        "ws://[1:]/",
        "ws://[1:2:3:4:5:6:7]/",
        "ws://[1:2:3:4:5:6:7:8:9]/",
        "ws://[1:2:3:4:5:6:7:8::]/",
        "ws://[1::2::3]/",
        "ws://[1:::2]/",
        "ws://[12345::]/",
        "ws://[g::1]/",
        "ws://[::1%25eth0]/",
        "ws://[fe80::1%eth0]/",
        "ws://[v1.x]/",
        "ws://[1.2.3.4]/",
        "ws://[::1.2.3]/",
        "ws://[::1.2.3.4:5]/",
        "ws://[1:2:3:4:5:6:7:1.2.3.4]/",
    };
    for (const char* text : cases) {
        INFO(text);
        std::error_code ec;
        const wsx::uri u = wsx::parse_uri(text, ec);
        CHECK(ec == wsx::error::bad_uri);
        CHECK(u.host.empty());
        CHECK(u.target.empty());
    }
}

TEST_CASE("parse_uri's throwing form throws std::system_error with bad_uri") {
    try {
        (void)wsx::parse_uri("ws://h:65536/");
        FAIL("no exception");
    } catch (const std::system_error& e) {
        CHECK(e.code() == wsx::error::bad_uri);
    }
    CHECK_NOTHROW(wsx::parse_uri("ws://h:65535/"));
}

TEST_CASE("parse_uri handles every prefix of a URI") {
    // A truncated URI is either refused or parsed; it never reads past its
    // end (sanitizers watch this). Once the host is whole, every prefix parses.
    const std::string full = "wss://user:pw@[2001:db8::1]:8443/a/b?c=d";
    const std::size_t host_end = full.find(']') + 1;
    for (std::size_t n = 0; n <= full.size(); ++n) {
        INFO(full.substr(0, n));
        std::error_code ec;
        const wsx::uri u = wsx::parse_uri(std::string_view(full).substr(0, n), ec);
        if (n >= host_end) {
            REQUIRE_FALSE(ec);
            CHECK(u.secure);
            CHECK(u.host == "2001:db8::1");
            CHECK(u.password == "pw");
        } else if (n > full.find('[')) {
            CHECK(ec == wsx::error::bad_uri);
        }
    }
    std::error_code ec;
    const wsx::uri u = wsx::parse_uri(full, ec);
    REQUIRE_FALSE(ec);
    CHECK(u.host_header == "[2001:db8::1]:8443");
    CHECK(u.target == "/a/b?c=d");
    CHECK(u.port == 8443);
}
