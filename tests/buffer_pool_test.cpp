#include <wsx/asio/buffer_pool.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

using wsx::detail::buffer_pool;

namespace {

constexpr std::size_t mib = 1024 * 1024;

std::vector<std::uint8_t> buffer_of(std::size_t capacity) {
    std::vector<std::uint8_t> v;
    v.reserve(capacity);
    return v;
}

} // namespace

TEST_CASE("buffer_pool keeps large buffers, up to its byte budget") {
    buffer_pool pool;
    const std::size_t fits = buffer_pool::max_kept_bytes / mib;
    for (std::size_t i = 0; i < fits + 4; ++i) {
        auto v = buffer_of(mib);
        pool.give_back_write_buffer(v);
        CHECK(v.capacity() == 0); // kept or freed, never left with the caller
    }
    CHECK(pool.kept() == fits);
    CHECK(pool.kept_bytes() == fits * mib);

    // A megabyte message after another reuses the same buffer.
    auto taken = pool.take_write_buffer();
    CHECK(taken.capacity() == mib);
    CHECK(pool.kept_bytes() == (fits - 1) * mib);
    const std::uint8_t* storage = taken.data();
    pool.give_back_write_buffer(taken);
    auto again = pool.take_write_buffer();
    CHECK(again.data() == storage);
}

TEST_CASE("buffer_pool keeps at most max_kept buffers of a kind; one over the budget is freed") {
    buffer_pool pool;
    for (std::size_t i = 0; i < buffer_pool::max_kept + 10; ++i) {
        auto v = buffer_of(1024);
        pool.give_back_write_buffer(v);
    }
    CHECK(pool.kept() == buffer_pool::max_kept);
    CHECK(pool.kept_bytes() == buffer_pool::max_kept * 1024);

    auto huge = buffer_of(buffer_pool::max_kept_bytes);
    pool.give_back_write_buffer(huge); // the pool is full of small ones
    CHECK(pool.kept() == buffer_pool::max_kept);

    buffer_pool empty;
    auto too_big = buffer_of(buffer_pool::max_kept_bytes + 1);
    empty.give_back_write_buffer(too_big);
    CHECK(empty.kept() == 0);
    CHECK(empty.kept_bytes() == 0);
    auto exact = buffer_of(buffer_pool::max_kept_bytes);
    empty.give_back_write_buffer(exact);
    CHECK(empty.kept_bytes() == buffer_pool::max_kept_bytes);
}

TEST_CASE("buffer_pool lends a connection its buffers and takes them back when it is idle") {
    buffer_pool pool;
    wsx::connection c(wsx::role::server);
    c.open_without_handshake();
    pool.lend(c);
    REQUIRE_FALSE(c.send_binary(std::string(2 * mib, 'x')));
    CHECK_FALSE(pool.reclaim(c)); // output pending: not idle
    c.consume_output(c.pending_output_size());
    CHECK(pool.reclaim(c));
    CHECK(pool.kept_bytes() >= 2 * mib); // the output buffer, large, is kept
    const std::size_t before = pool.kept_bytes();
    pool.lend(c);
    CHECK(pool.kept_bytes() < before);
}
