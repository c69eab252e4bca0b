#include <wsx/detail/crypto.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

std::string hex(const wsx::detail::sha1_digest& d) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (std::uint8_t b : d) {
        out += digits[b >> 4];
        out += digits[b & 15];
    }
    return out;
}

std::optional<std::string> decode(std::string_view text) {
    std::vector<std::uint8_t> out(wsx::detail::base64_decoded_capacity(text.size()));
    const std::optional<std::size_t> size = wsx::detail::base64_decode(text, out);
    if (!size) return std::nullopt;
    return std::string(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(*size));
}

} // namespace

TEST_CASE("SHA-1 test vectors (FIPS 180 examples)") {
    using wsx::detail::sha1;
    CHECK(hex(sha1(std::string_view("abc"))) == "a9993e364706816aba3e25717850c26c9cd0d89d");
    CHECK(hex(sha1(std::string_view(""))) == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    CHECK(hex(sha1(std::string_view("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))) ==
          "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    // Two parts hash as their concatenation.
    CHECK(sha1(std::string_view("ab"), std::string_view("c")) == sha1(std::string_view("abc")));
}

TEST_CASE("base64 round trips (RFC 4648 §10 vectors)") {
    const std::pair<std::string_view, std::string_view> vectors[] = {
        {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    };
    for (const auto& [plain, encoded] : vectors) {
        CHECK(wsx::detail::base64_encode(plain) == encoded);
        CHECK(decode(encoded) == std::string(plain));
    }
    std::string appended = "key: ";
    wsx::detail::append_base64(appended, std::string_view("foobar"));
    CHECK(appended == "key: Zm9vYmFy");

    const std::array<std::uint8_t, 3> fixed{'f', 'o', 'o'};
    const auto chars = wsx::detail::base64_encode(fixed);
    CHECK(std::string_view(chars.data()) == "Zm9v");
}

TEST_CASE("base64 decoding refuses what is not padded base64") {
    CHECK(!decode("Zg"));       // not a multiple of 4
    CHECK(!decode("Zg="));
    CHECK(!decode("Z==="));     // three '='
    CHECK(!decode("Z=g="));     // '=' inside
    CHECK(!decode("=Zg="));
    CHECK(!decode(" Zg=="));    // whitespace
    CHECK(!decode("Zg==\n"));
    CHECK(!decode("Zm9v Zg="));
    CHECK(!decode("Zm9-"));     // base64url alphabet
    CHECK(!decode("Zm9_"));
    CHECK(decode("+/+/") == std::string("\xfb\xff\xbf", 3));

    std::array<std::uint8_t, 2> too_small{};
    CHECK(!wsx::detail::base64_decode("Zm9v", too_small));
}
