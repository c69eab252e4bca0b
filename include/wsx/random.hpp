// wsx/random.hpp - where wsx gets its random bytes: mask keys (RFC 6455
// §5.3) and the Sec-WebSocket-Key nonce (§4.1).
//
// Randomness is injectable: the connection takes a random_source, tests pass
// a fixed one, everything else gets fill_random(), a CSPRNG over OpenSSL's
// RAND_bytes. A client draws a 4-byte mask key for every frame it sends, so
// fill_random() serves small requests from a 256-byte pool per thread and
// calls RAND_bytes once per 256 bytes rather than once per frame.
//
// A failing RAND_bytes is not something a peer can cause; it means the
// process has no usable entropy. fill_random() then throws std::system_error
// (std::errc::io_error, with OpenSSL's reason in what()) rather than hand out
// predictable bytes.
#pragma once

#include <wsx/bytes.hpp>

#include <openssl/err.h>
#include <openssl/rand.h>

#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <system_error>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define WSX_HAS_PTHREAD_ATFORK 1
#else
#define WSX_HAS_PTHREAD_ATFORK 0
#endif

namespace wsx {

// Fills its argument with random bytes.
using random_source = std::function<void(mutable_bytes)>;

namespace detail {

[[noreturn]] inline void throw_random_failure() {
    const unsigned long code = ERR_get_error();
    char reason[256] = "no OpenSSL error queued";
    if (code != 0) ERR_error_string_n(code, reason, sizeof reason);
    ERR_clear_error();
    throw std::system_error(std::make_error_code(std::errc::io_error),
                            std::string("wsx: RAND_bytes failed: ") + reason);
}

inline void random_bytes_uncached(std::uint8_t* out, std::size_t size) {
    while (size > 0) {
        const int chunk = size > static_cast<std::size_t>(INT_MAX) ? INT_MAX : static_cast<int>(size);
        if (RAND_bytes(out, chunk) != 1) throw_random_failure();
        out += chunk;
        size -= static_cast<std::size_t>(chunk);
    }
}

struct random_pool {
    std::array<std::uint8_t, 256> bytes{};
    std::size_t used = 256; // bytes[used..] have not been handed out yet
};

// Requests above this size skip the pool: they would empty it at once.
inline constexpr std::size_t random_pool_max_request = 64;

inline random_pool& thread_random_pool() noexcept {
    thread_local random_pool pool;
    return pool;
}

// After fork() the child's pool is a copy of the parent's: both would hand out
// the same bytes. The child starts with an empty pool instead (the forking
// thread is the only one in the child, and this runs on it).
inline void discard_thread_random_pool() noexcept {
    random_pool& pool = thread_random_pool();
    pool.used = pool.bytes.size();
}

inline void watch_for_fork() noexcept {
#if WSX_HAS_PTHREAD_ATFORK
    static const bool registered =
        pthread_atfork(nullptr, nullptr, &discard_thread_random_pool) == 0;
    (void)registered;
#endif
}

} // namespace detail

// Fills `out` with bytes from OpenSSL's CSPRNG. Throws std::system_error when
// RAND_bytes fails (see above); never returns predictable bytes.
inline void fill_random(mutable_bytes out) {
    if (out.empty()) return;
    if (out.size() > detail::random_pool_max_request) {
        detail::random_bytes_uncached(out.data(), out.size());
        return;
    }
    detail::watch_for_fork();
    detail::random_pool& pool = detail::thread_random_pool();
    if (pool.bytes.size() - pool.used < out.size()) {
        detail::random_bytes_uncached(pool.bytes.data(), pool.bytes.size());
        pool.used = 0;
    }
    std::memcpy(out.data(), pool.bytes.data() + pool.used, out.size());
    // Bytes handed out are wiped from the pool so a later memory leak of the
    // pool cannot reveal keys already used.
    std::memset(pool.bytes.data() + pool.used, 0, out.size());
    pool.used += out.size();
}

inline random_source default_random_source() { return &fill_random; }

} // namespace wsx
