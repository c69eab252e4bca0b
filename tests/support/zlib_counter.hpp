// tests/support/zlib_counter.hpp - zlib allocation hooks that count, for the
// deflate tests and benchmarks to see how much memory a z_stream holds.
#pragma once

#include <wsx/deflate.hpp>

#include <zlib.h>

#include <cstddef>
#include <cstdlib>

namespace wsx::test {

// Counts zlib's allocations through the z_stream hooks: the bytes held now
// and the number of allocations so far. Each block carries its size in front
// of it, so that deallocate knows how much is given back.
struct zlib_counter {
    std::size_t live = 0;
    std::size_t calls = 0;
    static void* allocate(void* opaque, uInt items, uInt size) {
        auto* self = static_cast<zlib_counter*>(opaque);
        const std::size_t n = std::size_t{items} * size;
        auto* block = static_cast<std::size_t*>(std::malloc(n + sizeof(std::size_t)));
        if (block == nullptr) return Z_NULL;
        *block = n;
        self->live += n;
        ++self->calls;
        return block + 1;
    }
    static void deallocate(void* opaque, void* address) {
        auto* self = static_cast<zlib_counter*>(opaque);
        auto* block = static_cast<std::size_t*>(address) - 1;
        self->live -= *block;
        std::free(block);
    }
    zlib_allocator hooks() { return {&allocate, &deallocate, this}; }
};

} // namespace wsx::test
