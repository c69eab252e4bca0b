// wsx::output_queue: the connection's bytes to write, as owned, borrowed and
// shared segments that stay where they are until written.
#include <wsx/output_queue.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using wsx::const_bytes;
using wsx::output_queue;

namespace {

void put(output_queue& q, const std::string& s) {
    if (!s.empty()) std::memcpy(q.append(s.size()), s.data(), s.size());
}

std::string text(const_bytes b) { return std::string(b.begin(), b.end()); }

// Everything waiting, in order, without consuming it.
std::string gathered(const output_queue& q) {
    const_bytes pieces[64];
    std::string all;
    const std::size_t n = q.gather(pieces, 64);
    for (std::size_t i = 0; i < n; ++i) all += text(pieces[i]);
    return all;
}

} // namespace

TEST_CASE("output_queue: owned bytes appended in a row make one piece") {
    output_queue q;
    CHECK(q.empty());
    CHECK(q.front().empty());
    put(q, "abc");
    put(q, "def");
    const_bytes pieces[4];
    REQUIRE(q.gather(pieces, 4) == 1);
    CHECK(text(pieces[0]) == "abcdef");
    CHECK(q.size() == 6);
    CHECK(q.queued() == 6);
    CHECK(q.written() == 0);
    q.consume(2);
    CHECK(text(q.front()) == "cdef");
    q.consume(100); // more than waits: all of it
    CHECK(q.empty());
    CHECK(q.written() == 6);
    CHECK(q.queued() == 6);
}

TEST_CASE("output_queue: borrowed and shared segments keep their order and are not copied") {
    output_queue q;
    const std::string caller = "CALLER";
    auto frame = std::make_shared<const std::string>("SHARED");
    put(q, "h1");
    q.append_borrowed(const_bytes(caller));
    put(q, "h2");
    q.append_shared(frame, const_bytes(*frame));
    put(q, "t");
    q.append_borrowed({}); // nothing: no segment
    const_bytes pieces[8];
    REQUIRE(q.gather(pieces, 8) == 5);
    CHECK(pieces[1].data() == reinterpret_cast<const std::uint8_t*>(caller.data()));
    CHECK(pieces[3].data() == reinterpret_cast<const std::uint8_t*>(frame->data()));
    CHECK(gathered(q) == "h1CALLERh2SHAREDt");
    CHECK(q.gather(pieces, 2) == 2); // at most as many as asked
    CHECK(frame.use_count() == 2);

    // A write that ends inside a segment, then one across three.
    q.consume(5);
    CHECK(text(q.front()) == "LER");
    const std::uint64_t after_caller = 2 + caller.size();
    q.consume(6);
    CHECK(q.written() > after_caller); // the caller's bytes are written: its memory is free
    CHECK(gathered(q) == "HAREDt");
    q.consume(5);
    CHECK(frame.use_count() == 1); // written: the owner is let go
    CHECK(gathered(q) == "t");
}

TEST_CASE("output_queue: bytes handed out stay put while more is appended") {
    output_queue q;
    put(q, "first");
    const const_bytes handed = q.front();
    const std::uint8_t* where = handed.data();
    // Far more than any block holds: the queue must not move "first".
    const std::string big(1 << 20, 'x');
    for (int i = 0; i < 4; ++i) put(q, big);
    CHECK(handed.data() == where);
    CHECK(text(handed) == "first");
    CHECK(q.size() == 5 + 4 * big.size());
    q.consume(5);
    std::string rest;
    while (!q.empty()) {
        const const_bytes piece = q.front();
        rest += text(piece);
        q.consume(piece.size());
    }
    CHECK(rest.size() == 4 * big.size());
    CHECK(rest.find_first_not_of('x') == std::string::npos);
}

TEST_CASE("output_queue: unseen bytes may move, so a block grows into one piece") {
    output_queue q;
    const std::string big(100000, 'y');
    put(q, "a");
    put(q, big);
    put(q, "b");
    const_bytes pieces[4];
    CHECK(q.gather(pieces, 4) == 1); // nothing was handed out: one block grew
    CHECK(q.size() == big.size() + 2);
}

TEST_CASE("output_queue: clear() drops what waits; an empty queue gives its memory away") {
    output_queue q;
    auto frame = std::make_shared<const std::string>("S");
    put(q, "abc");
    q.append_shared(frame, const_bytes(*frame));
    q.clear();
    CHECK(q.empty());
    CHECK(q.written() == q.queued());
    CHECK(frame.use_count() == 1);

    output_queue::storage kept;
    put(q, "abc");
    CHECK_FALSE(q.release(kept)); // not while bytes wait
    q.consume(3);
    REQUIRE(q.release(kept));
    CHECK(q.capacity() == 0); // holds nothing now
    CHECK(kept.bytes.size() >= 3);
    const std::uint8_t* block = kept.bytes.data();
    q.adopt(kept);
    CHECK(kept.bytes.empty());
    put(q, "xyz");
    CHECK(q.front().data() == block); // written into the adopted block
    CHECK(text(q.front()) == "xyz");
}
