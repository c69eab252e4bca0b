// No heap allocation per message in steady state (DESIGN: "buffers are
// reused; allocation happens only when a message outgrows them").
//
// This binary replaces the global operator new and delete, in every form,
// with versions that count, and gives zlib counting zalloc/zfree hooks. Each
// case warms a connection up with a few messages, then sends or receives
// many more of the same size and expects not one allocation among them.
#include <wsx/connection.hpp>

#include "support/connection_pair.hpp"

#include <catch2/catch.hpp>

#include <openssl/crypto.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

namespace {

std::atomic<std::size_t> heap_allocations{0};
std::atomic<std::size_t> zlib_allocations{0};

void* counted_allocate(std::size_t size) noexcept {
    heap_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(size == 0 ? 1 : size);
}

void* counted_allocate_aligned(std::size_t size, std::align_val_t alignment) noexcept {
    heap_allocations.fetch_add(1, std::memory_order_relaxed);
    const auto align = static_cast<std::size_t>(alignment);
    // aligned_alloc wants a size that is a multiple of the alignment.
    const std::size_t rounded = (size == 0 ? align : (size + align - 1) / align * align);
    return std::aligned_alloc(align, rounded);
}

void* allocate_or_throw(void* p) {
    if (p == nullptr) throw std::bad_alloc();
    return p;
}

// zlib's allocations, counted with the others.
voidpf counted_zalloc(voidpf, uInt items, uInt size) {
    heap_allocations.fetch_add(1, std::memory_order_relaxed);
    zlib_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::calloc(items, size);
}
void counted_zfree(voidpf, voidpf p) { std::free(p); }

// OpenSSL's allocations (RAND_bytes refilling the mask key pool), counted
// too. The hooks must be in place before OpenSSL allocates anything, so they
// are set while static objects are constructed, before main().
std::atomic<std::size_t> openssl_allocations{0};
void* counted_openssl_malloc(std::size_t size, const char*, int) {
    heap_allocations.fetch_add(1, std::memory_order_relaxed);
    openssl_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(size == 0 ? 1 : size);
}
void* counted_openssl_realloc(void* p, std::size_t size, const char*, int) {
    heap_allocations.fetch_add(1, std::memory_order_relaxed);
    openssl_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::realloc(p, size == 0 ? 1 : size);
}
void counted_openssl_free(void* p, const char*, int) { std::free(p); }
const bool openssl_counted =
    CRYPTO_set_mem_functions(counted_openssl_malloc, counted_openssl_realloc, counted_openssl_free) == 1;

} // namespace

// These replacements use malloc and free. Once GCC 12 inlines them into the
// standard library at -O2 it reports the pair as a new/free mismatch, which
// it is not: every pointer these operators free came from their own malloc.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t size) { return allocate_or_throw(counted_allocate(size)); }
void* operator new[](std::size_t size) { return allocate_or_throw(counted_allocate(size)); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return counted_allocate(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return counted_allocate(size); }
void* operator new(std::size_t size, std::align_val_t a) { return allocate_or_throw(counted_allocate_aligned(size, a)); }
void* operator new[](std::size_t size, std::align_val_t a) { return allocate_or_throw(counted_allocate_aligned(size, a)); }
void* operator new(std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
    return counted_allocate_aligned(size, a);
}
void* operator new[](std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
    return counted_allocate_aligned(size, a);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

using namespace wsx;
using wsx::test::bytes;

namespace {

// Allocations made since construction.
class allocation_counter {
public:
    allocation_counter() : start_(heap_allocations.load()) {}
    std::size_t count() const { return heap_allocations.load() - start_; }

private:
    std::size_t start_;
};

struct size_class {
    std::size_t size;
    std::size_t messages; // measured, after the warm-up
};

// Fewer of the big ones keep the test quick in a debug build.
const size_class size_classes[] = {{16, 10000}, {1024, 10000}, {64 * 1024, 200}, {1024 * 1024, 10}};
constexpr std::size_t warm_up = 3;

std::string text_of(std::size_t size) {
    const std::string words = "Zero allocations per message, h\xc3\xa9las, \xe4\xb8\x96\xe7\x95\x8c. ";
    std::string text;
    while (text.size() < size) text += words;
    // Cut where a character starts (not before a continuation byte), then pad.
    std::size_t n = size;
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xc0) == 0x80) --n;
    text.resize(n);
    text.resize(size, '.');
    return text;
}

bytes bytes_of(const std::string& s) { return bytes(s.begin(), s.end()); }

// A text message as `fragments` client frames (one frame when 1).
bytes client_message(const std::string& text, std::size_t fragments) {
    bytes wire;
    const std::size_t piece = (text.size() + fragments - 1) / fragments;
    std::size_t pos = 0;
    for (std::size_t i = 0; i < fragments; ++i) {
        const std::size_t n = std::min(piece, text.size() - pos);
        const bytes part(text.begin() + static_cast<std::ptrdiff_t>(pos),
                         text.begin() + static_cast<std::ptrdiff_t>(pos + n));
        const bytes f = test::frame(role::client, i == 0 ? opcode::text : opcode::continuation, part,
                                    i + 1 == fragments);
        wire.insert(wire.end(), f.begin(), f.end());
        pos += n;
    }
    return wire;
}

// How a wire is cut into reads.
enum class reads { whole, pieces_of_1000 };

// Receives `wire` (whole messages) `times` times; returns how many message
// events carried `expected_size` bytes. No allocation of its own.
std::size_t receive_messages(connection& c, const bytes& wire, std::size_t times, std::size_t expected_size,
                             reads how) {
    std::size_t delivered = 0;
    for (std::size_t t = 0; t < times; ++t) {
        std::size_t pos = 0;
        while (pos < wire.size()) {
            std::size_t n = how == reads::whole ? wire.size() : std::min<std::size_t>(1000, wire.size() - pos);
            const mutable_bytes area = c.prepare(n);
            n = std::min(n, area.size()); // less only for the rest of a large frame's payload
            std::memcpy(area.data(), wire.data() + pos, n);
            c.commit(n);
            pos += n;
            while (const event ev = c.next_event()) {
                if (ev.type == event_type::message && ev.data.size() == expected_size) ++delivered;
                if (ev.type == event_type::chunk && ev.fin) ++delivered;
            }
        }
    }
    return delivered;
}

// Sends `text` `times` times and writes the output away; returns how many
// sends succeeded.
std::size_t send_messages(connection& c, const std::string& text, std::size_t times) {
    std::size_t sent = 0;
    for (std::size_t t = 0; t < times; ++t) {
        if (!c.send_text(text)) ++sent;
        c.consume_output(c.pending_output().size());
    }
    return sent;
}

connection open_server(connection_options options = test::fixed_options()) {
    connection c(role::server, std::move(options));
    c.open_without_handshake();
    return c;
}

} // namespace

TEST_CASE("the counters see allocations by operator new, zlib and OpenSSL") {
    allocation_counter counter;
    auto* p = new std::vector<int>(100);
    CHECK(counter.count() >= 2);
    delete p;
    REQUIRE(openssl_counted);
    const std::size_t openssl_before = openssl_allocations.load();
    void* q = OPENSSL_malloc(10);
    OPENSSL_free(q);
    CHECK(openssl_allocations.load() == openssl_before + 1);
}

TEST_CASE("a server receives single-frame messages without allocating") {
    for (const auto& sc : size_classes) {
        for (reads how : {reads::whole, reads::pieces_of_1000}) {
            CAPTURE(sc.size, static_cast<int>(how));
            const std::string text = text_of(sc.size);
            const bytes wire = client_message(text, 1);
            connection server = open_server();
            REQUIRE(receive_messages(server, wire, warm_up, sc.size, how) == warm_up);
            allocation_counter counter;
            const std::size_t delivered = receive_messages(server, wire, sc.messages, sc.size, how);
            const std::size_t allocations = counter.count();
            CHECK(delivered == sc.messages);
            CHECK(allocations == 0);
        }
    }
}

TEST_CASE("a server receives many frames in one read without allocating") {
    // 64 small messages per read: the parse loop runs over a full buffer.
    const std::string text = text_of(16);
    bytes wire;
    for (int i = 0; i < 64; ++i) {
        const bytes one = client_message(text, 1);
        wire.insert(wire.end(), one.begin(), one.end());
    }
    connection server = open_server();
    REQUIRE(receive_messages(server, wire, warm_up, 16, reads::whole) == warm_up * 64);
    allocation_counter counter;
    const std::size_t delivered = receive_messages(server, wire, 10000 / 64, 16, reads::whole);
    const std::size_t allocations = counter.count();
    CHECK(delivered == 10000 / 64 * 64);
    CHECK(allocations == 0);
}

TEST_CASE("a server reassembles fragmented messages without allocating") {
    for (bool streaming : {false, true}) {
        for (const auto& sc : size_classes) {
            CAPTURE(streaming, sc.size);
            const std::string text = text_of(sc.size);
            const bytes wire = client_message(text, 4);
            auto options = test::fixed_options();
            options.streaming = streaming;
            connection server = open_server(options);
            REQUIRE(receive_messages(server, wire, warm_up, sc.size, reads::pieces_of_1000) == warm_up);
            allocation_counter counter;
            const std::size_t delivered = receive_messages(server, wire, sc.messages, sc.size, reads::pieces_of_1000);
            const std::size_t allocations = counter.count();
            CHECK(delivered == sc.messages);
            CHECK(allocations == 0);
        }
    }
}

TEST_CASE("sending and draining does not allocate, for a server and a masking client") {
    for (role r : {role::server, role::client}) {
        for (const auto& sc : size_classes) {
            CAPTURE(r == role::server, sc.size);
            const std::string text = text_of(sc.size);
            // The default random source: the client masks with keys from the
            // per-thread pool, refilled from OpenSSL.
            connection c(r, connection_options{});
            c.open_without_handshake();
            REQUIRE(send_messages(c, text, warm_up) == warm_up);
            allocation_counter counter;
            const std::size_t sent = send_messages(c, text, sc.messages);
            const std::size_t allocations = counter.count();
            CHECK(sent == sc.messages);
            CHECK(allocations == 0);
        }
    }
}

TEST_CASE("a client receives server frames without allocating") {
    for (const auto& sc : size_classes) {
        CAPTURE(sc.size);
        const bytes wire = test::frame(role::server, opcode::binary, bytes_of(text_of(sc.size)));
        connection client(role::client, test::fixed_options());
        client.open_without_handshake();
        REQUIRE(receive_messages(client, wire, warm_up, sc.size, reads::pieces_of_1000) == warm_up);
        allocation_counter counter;
        const std::size_t delivered = receive_messages(client, wire, sc.messages, sc.size, reads::pieces_of_1000);
        const std::size_t allocations = counter.count();
        CHECK(delivered == sc.messages);
        CHECK(allocations == 0);
    }
}

TEST_CASE("control frames between messages do not allocate") {
    connection server = open_server();
    bytes wire = test::frame(role::client, opcode::ping, bytes_of("are you there"));
    const bytes pong = test::frame(role::client, opcode::pong, bytes_of("yes"));
    const bytes message = client_message(text_of(100), 2);
    wire.insert(wire.end(), pong.begin(), pong.end());
    wire.insert(wire.end(), message.begin(), message.end());
    // One message, the automatic pong and a ping of our own leaving the output.
    auto exchange = [&] {
        std::size_t done = receive_messages(server, wire, 1, 100, reads::whole);
        static const std::uint8_t ours[] = {'o', 'u', 'r', 's'};
        if (!server.send_ping(const_bytes(ours, sizeof ours))) ++done;
        server.consume_output(server.pending_output().size());
        return done;
    };
    for (std::size_t i = 0; i < warm_up; ++i) REQUIRE(exchange() == 2);
    allocation_counter counter;
    std::size_t done = 0;
    for (int i = 0; i < 10000; ++i) done += exchange();
    const std::size_t allocations = counter.count();
    CHECK(done == 2 * 10000);
    CHECK(allocations == 0);
}

TEST_CASE("with permessage-deflate, messages after the warm-up do not allocate") {
    for (std::size_t fragment_size : {std::size_t{0}, std::size_t{4096}}) {
        for (const auto& sc : size_classes) {
            CAPTURE(fragment_size, sc.size);
            connection_options options = test::fixed_options();
            options.deflate.emplace();
            options.deflate->allocator.allocate = counted_zalloc;
            options.deflate->allocator.deallocate = counted_zfree;
            options.deflate->compress_threshold = 0; // 16-byte messages are compressed too
            options.fragment_size = fragment_size;
            connection client(role::client, options);
            connection server(role::server, options);
            client.open_without_handshake(deflate_params{});
            server.open_without_handshake(deflate_params{});
            const std::string text = text_of(sc.size);

            // Client to server and back, compressed both ways; returns the
            // round trips that delivered the message intact in size.
            auto round_trips = [&](std::size_t times) {
                std::size_t ok = 0;
                for (std::size_t t = 0; t < times; ++t) {
                    std::size_t delivered = 0;
                    if (client.send_text(text)) continue;
                    const const_bytes to_server = client.pending_output();
                    server.receive(to_server);
                    client.consume_output(to_server.size());
                    while (const event ev = server.next_event()) {
                        if (ev.type == event_type::message && ev.data.size() == text.size()) ++delivered;
                    }
                    if (server.send_text(text)) continue;
                    const const_bytes to_client = server.pending_output();
                    client.receive(to_client);
                    server.consume_output(to_client.size());
                    while (const event ev = client.next_event()) {
                        if (ev.type == event_type::message && ev.data.size() == text.size()) ++delivered;
                    }
                    if (delivered == 2) ++ok;
                }
                return ok;
            };
            const std::size_t zlib_before = zlib_allocations.load();
            REQUIRE(round_trips(warm_up) == warm_up);
            // zlib's state came to life here, through the counting hooks.
            CHECK(zlib_allocations.load() > zlib_before);
            const std::size_t times = sc.messages / 2; // each round trip is two messages
            allocation_counter counter;
            const std::size_t ok = round_trips(times);
            const std::size_t allocations = counter.count();
            CHECK(ok == times);
            CHECK(allocations == 0);
        }
    }
}
