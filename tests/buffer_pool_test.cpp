#include <wsx/asio/buffer_pool.hpp>
#include <wsx/connection.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

using wsx::detail::buffer_pool;

namespace {

constexpr std::size_t mib = 1024 * 1024;

std::unique_ptr<wsx::connection> open_server(buffer_pool* pool = nullptr) {
    wsx::connection_options options;
    options.buffers = pool;
    auto c = std::make_unique<wsx::connection>(wsx::role::server, options);
    c->open_without_handshake();
    return c;
}

// A connection that sent `size` bytes, written: idle, its output block
// given to `pool`.
std::unique_ptr<wsx::connection> sent(buffer_pool& pool, std::size_t size, const std::uint8_t** block = nullptr) {
    auto c = open_server(&pool);
    REQUIRE_FALSE(c->send_binary(std::string(size, 'x')));
    if (block != nullptr) *block = c->pending_output().data();
    c->consume_output(c->pending_output_size());
    return c;
}

// `count` connections that each send `size` bytes at once, then all go idle:
// each gives its own output block to the pool.
void busy_then_idle(buffer_pool& pool, std::size_t count, std::size_t size) {
    std::vector<std::unique_ptr<wsx::connection>> busy;
    for (std::size_t i = 0; i < count; ++i) {
        busy.push_back(open_server(&pool));
        REQUIRE_FALSE(busy.back()->send_binary(std::string(size, 'x')));
    }
    for (auto& c : busy) c->consume_output(c->pending_output_size());
}

} // namespace

TEST_CASE("buffer_pool keeps large buffers, up to its byte budget") {
    buffer_pool pool;
    const std::size_t fits = buffer_pool::max_kept_bytes / mib;
    busy_then_idle(pool, fits + 4, mib);
    CHECK(pool.kept_bytes() <= buffer_pool::max_kept_bytes);
    CHECK(pool.kept_bytes() > buffer_pool::max_kept_bytes - 2 * mib); // full, or nearly
    CHECK(pool.kept() < fits);

    // A megabyte message after another reuses the same buffer.
    const std::uint8_t* storage = nullptr;
    buffer_pool fresh;
    sent(fresh, mib, &storage);
    CHECK(fresh.kept_bytes() >= mib);
    auto next = open_server(&fresh);
    REQUIRE_FALSE(next->send_binary(std::string(mib, 'y')));
    CHECK(fresh.kept_bytes() == 0); // lent
    CHECK(next->pending_output().data() == storage);
}

TEST_CASE("buffer_pool keeps at most max_kept buffers of a kind") {
    buffer_pool pool;
    busy_then_idle(pool, buffer_pool::max_kept + 10, 100);
    CHECK(pool.kept() == buffer_pool::max_kept); // the output blocks; nothing else grew
    CHECK(pool.kept_bytes() <= buffer_pool::max_kept * 8 * 1024);
}

TEST_CASE("buffer_pool lends a connection its buffers and takes them back when it is idle") {
    buffer_pool pool;
    auto c = open_server(&pool);
    REQUIRE_FALSE(c->send_binary(std::string(2 * mib, 'x')));
    CHECK(pool.kept_bytes() == 0); // output pending: not idle
    c->consume_output(c->pending_output_size());
    CHECK(pool.kept_bytes() >= 2 * mib); // the output buffer, large, is kept
    const std::size_t before = pool.kept_bytes();
    REQUIRE_FALSE(c->send_text("again"));
    CHECK(pool.kept_bytes() < before);
}
