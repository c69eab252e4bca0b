#include <wsx/asio/buffer_pool.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

using wsx::detail::buffer_pool;

namespace {

constexpr std::size_t mib = 1024 * 1024;

std::unique_ptr<wsx::connection> open_server() {
    auto c = std::make_unique<wsx::connection>(wsx::role::server);
    c->open_without_handshake();
    return c;
}

// A connection that sent `size` bytes, written: idle, holding its output block.
std::unique_ptr<wsx::connection> sent(std::size_t size, const std::uint8_t** block = nullptr) {
    auto c = open_server();
    REQUIRE_FALSE(c->send_binary(std::string(size, 'x')));
    if (block != nullptr) *block = c->pending_output().data();
    c->consume_output(c->pending_output_size());
    return c;
}

} // namespace

TEST_CASE("buffer_pool keeps large buffers, up to its byte budget") {
    buffer_pool pool;
    const std::size_t fits = buffer_pool::max_kept_bytes / mib;
    for (std::size_t i = 0; i < fits + 4; ++i) CHECK(pool.reclaim(*sent(mib)));
    CHECK(pool.kept_bytes() <= buffer_pool::max_kept_bytes);
    CHECK(pool.kept_bytes() > buffer_pool::max_kept_bytes - 2 * mib); // full, or nearly
    CHECK(pool.kept() < fits);

    // A megabyte message after another reuses the same buffer.
    const std::uint8_t* storage = nullptr;
    auto first = sent(mib, &storage);
    buffer_pool fresh;
    CHECK(fresh.reclaim(*first));
    auto next = open_server();
    fresh.lend(*next);
    CHECK(fresh.kept_bytes() == 0);
    REQUIRE_FALSE(next->send_binary(std::string(mib, 'y')));
    CHECK(next->pending_output().data() == storage);
}

TEST_CASE("buffer_pool keeps at most max_kept buffers of a kind") {
    buffer_pool pool;
    for (std::size_t i = 0; i < buffer_pool::max_kept + 10; ++i) CHECK(pool.reclaim(*sent(100)));
    CHECK(pool.kept() == buffer_pool::max_kept); // the output blocks; nothing else grew
    CHECK(pool.kept_bytes() <= buffer_pool::max_kept * 8 * 1024);
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
