#include <wsx/random.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <set>
#include <vector>

namespace {

bool all_zero(const std::vector<std::uint8_t>& bytes) {
    for (std::uint8_t b : bytes)
        if (b != 0) return false;
    return true;
}

} // namespace

TEST_CASE("fill_random fills small and large requests") {
    // Sizes around the pool's request limit (64) and its size (256), in a
    // sequence that crosses pool refills.
    for (std::size_t size : {1u, 4u, 16u, 63u, 64u, 65u, 255u, 256u, 257u, 4096u}) {
        std::vector<std::uint8_t> bytes(size, 0);
        wsx::fill_random(bytes);
        // Every byte zero has probability 2^-(8 * size): 1/256 for one byte.
        if (size >= 4) CHECK(!all_zero(bytes));
    }
    std::vector<std::uint8_t> none;
    wsx::fill_random(none);
    CHECK(none.empty());
}

TEST_CASE("mask keys drawn one after another differ") {
    // 200 4-byte keys cross the 256-byte pool several times; a repeat among
    // them has probability below 2^-16.
    std::set<std::array<std::uint8_t, 4>> keys;
    for (int i = 0; i < 200; ++i) {
        std::array<std::uint8_t, 4> key{};
        wsx::fill_random(key);
        keys.insert(key);
    }
    CHECK(keys.size() == 200);
}

TEST_CASE("the default source is fill_random; any function can stand in") {
    wsx::random_source source = wsx::default_random_source();
    REQUIRE(source);
    std::array<std::uint8_t, 16> a{};
    std::array<std::uint8_t, 16> b{};
    source(a);
    source(b);
    CHECK(a != b);

    wsx::random_source fixed = [](wsx::mutable_bytes out) {
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint8_t>(i);
    };
    std::array<std::uint8_t, 4> key{};
    fixed(key);
    CHECK(key == std::array<std::uint8_t, 4>{0, 1, 2, 3});
}
