#include <wsx/mask.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

using bytes = std::vector<std::uint8_t>;

const wsx::mask_key key{0x37, 0xfa, 0x21, 0x3d};

// RFC 6455 §5.3, one octet at a time.
void reference_mask(std::uint8_t* data, std::size_t n, wsx::mask_key k, std::size_t offset) {
    for (std::size_t i = 0; i < n; ++i) data[i] ^= k[(offset + i) % 4];
}

// Bytes that differ from one position to the next, so a misplaced key byte shows.
bytes pattern(std::size_t n) {
    bytes out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(i * 131 + 7);
    return out;
}

} // namespace

TEST_CASE("mask: RFC 6455 §5.7 masked \"Hello\"") {
    bytes payload{'H', 'e', 'l', 'l', 'o'};
    wsx::apply_mask(payload, key);
    CHECK(payload == bytes{0x7f, 0x9f, 0x4d, 0x51, 0x58});
    wsx::apply_mask(payload, key);
    CHECK(payload == bytes{'H', 'e', 'l', 'l', 'o'});
}

// Length 0 includes an empty vector, whose data() is null: UBSan checks that
// nothing is done with it.
TEST_CASE("mask: every offset 0-7 and every length 0-100 match the reference") {
    for (std::size_t offset = 0; offset < 8; ++offset) {
        for (std::size_t length = 0; length <= 100; ++length) {
            INFO("offset " << offset << ", length " << length);
            bytes expected = pattern(length);
            bytes actual = expected;
            reference_mask(expected.data(), length, key, offset);
            wsx::apply_mask(actual, key, offset);
            CHECK(actual == expected);
        }
    }
}

TEST_CASE("mask: large offsets rotate the key like small ones") {
    bytes a = pattern(77), b = pattern(77);
    wsx::apply_mask(a, key, 3);
    wsx::apply_mask(b, key, (std::size_t{1} << 40) + 3);
    CHECK(a == b);
}

TEST_CASE("mask: in place on misaligned pointers, neighbours untouched") {
    // Starts at every alignment within 64 bytes, lengths that cross every
    // block width (8, 16, 32, 64) and their tails.
    const std::size_t lengths[] = {0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200, 1000};
    for (std::size_t start = 0; start < 64; ++start) {
        for (std::size_t length : lengths) {
            INFO("start " << start << ", length " << length);
            bytes buffer = pattern(start + length + 16);
            bytes expected = buffer;
            reference_mask(expected.data() + start, length, key, 1);
            wsx::apply_mask(wsx::mutable_bytes(buffer.data() + start, length), key, 1);
            CHECK(buffer == expected);
        }
    }
}

TEST_CASE("mask: a payload masked piece by piece equals one call") {
    const bytes original = pattern(300);
    bytes whole = original;
    wsx::apply_mask(whole, key);
    for (std::size_t split = 0; split <= original.size(); ++split) {
        INFO("split at " << split);
        bytes pieces = original;
        wsx::mutable_bytes all(pieces);
        wsx::apply_mask(all.first(split), key, 0);
        wsx::apply_mask(all.subspan(split), key, split);
        CHECK(pieces == whole);
    }
    // Many small, uneven pieces.
    bytes pieces = original;
    wsx::mutable_bytes all(pieces);
    std::size_t position = 0;
    for (std::size_t piece = 1; position < all.size(); piece = piece % 37 + 1) {
        const std::size_t n = piece < all.size() - position ? piece : all.size() - position;
        wsx::apply_mask(all.subspan(position, n), key, position);
        position += n;
    }
    CHECK(pieces == whole);
}

TEST_CASE("mask: a zero key changes nothing; masking twice restores") {
    bytes data = pattern(1000);
    const bytes original = data;
    wsx::apply_mask(data, wsx::mask_key{0, 0, 0, 0}, 3);
    CHECK(data == original);
    wsx::apply_mask(data, key, 2);
    CHECK(data != original);
    wsx::apply_mask(data, key, 2);
    CHECK(data == original);
}
