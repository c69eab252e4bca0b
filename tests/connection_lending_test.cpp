// The connection's buffers and what it shares: idle(), a buffer_source that
// takes an idle connection's buffers and lends them again when it needs
// some, and send_shared() (a broadcast's frame, made once, referenced by
// each queue).
#include <wsx/connection.hpp>

#include "support/connection_pair.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace wsx;
using wsx::test::bytes;

namespace {

connection open_server(connection_options options = test::fixed_options()) {
    connection c(role::server, std::move(options));
    c.open_without_handshake();
    return c;
}

// Keeps one buffer of each kind and counts the calls.
class keeping_source final : public buffer_source {
public:
    void lend(connection_buffers& wanted) override {
        ++lends;
        std::swap(wanted, kept);
    }
    void give_back(connection_buffers& returned) override {
        ++gives;
        keep(kept.input, returned.input);
        keep(kept.message, returned.message);
        keep(kept.scratch, returned.scratch);
        if (kept.output.bytes.capacity() < returned.output.bytes.capacity()) std::swap(kept.output, returned.output);
        returned = {};
    }
    template <class Buffer>
    static void keep(Buffer& mine, Buffer& theirs) {
        if (mine.capacity() < theirs.capacity()) std::swap(mine, theirs);
    }

    connection_buffers kept;
    int lends = 0;
    int gives = 0;
};

} // namespace

TEST_CASE("lending: an idle connection gives its buffers to its source and takes them again") {
    keeping_source source;
    connection_options options = test::fixed_options();
    options.buffers = &source;
    connection server = open_server(options);
    connection client(role::client, test::fixed_options());
    client.open_without_handshake();
    CHECK(server.idle());

    // A message in: the input grew, and went to the source once the
    // message was handed out and nothing more was there.
    REQUIRE(!client.send_text(std::string(1000, 'a')));
    const auto events = test::transfer(client, server, test::chunking::whole);
    REQUIRE(events.size() == 1);
    CHECK(source.gives == 1);
    CHECK(source.kept.input.capacity() >= 1000);
    const auto* input_memory = source.kept.input.data();

    // A reply out: the connection takes the buffers back, and holds them
    // while output waits.
    REQUIRE(!server.send_text("reply"));
    CHECK(source.lends == 2);
    CHECK(source.kept.input.capacity() == 0); // lent
    CHECK(!server.idle());
    const int gives = source.gives;
    CHECK(server.next_event().type == event_type::none);
    CHECK(source.gives == gives); // not idle: nothing given
    test::drain(server);
    CHECK(server.idle());
    CHECK(source.gives == gives + 1);
    CHECK(source.kept.input.data() == input_memory); // the same memory went round
    CHECK(source.kept.output.bytes.capacity() > 0);

    // It still works, bytewise.
    REQUIRE(!client.send_text("again"));
    const auto more = test::transfer(client, server, test::chunking::bytewise);
    REQUIRE(more.size() == 1);
    CHECK(more[0].data == "again");
    CHECK(source.kept.input.data() == input_memory);
}

TEST_CASE("lending: half a message, or a read in progress, is not idle") {
    keeping_source source;
    connection_options options = test::fixed_options();
    options.buffers = &source;
    connection server = open_server(options);
    const bytes whole = test::frame(role::client, opcode::text, bytes(100, 'x'));
    server.receive(const_bytes(whole.data(), 50));
    CHECK(!server.next_event());
    CHECK(!server.input_idle());
    CHECK(source.gives == 0); // it holds the half frame
    server.receive(const_bytes(whole.data() + 50, whole.size() - 50));
    const event ev = server.next_event();
    CHECK(ev.type == event_type::message);
    CHECK(ev.data.size() == 100);
    CHECK(!server.next_event());
    CHECK(source.gives == 1);

    // Between prepare() and commit() a reader holds the input buffer.
    const mutable_bytes area = server.prepare(64);
    CHECK(!server.idle());
    CHECK(!server.next_event());
    CHECK(source.gives == 1);
    server.commit(0);
    CHECK(server.idle());
    CHECK(!server.next_event());
    CHECK(source.gives == 2);
    (void)area;
}

TEST_CASE("lending: without a source a connection keeps its own buffers") {
    connection server = open_server();
    connection client(role::client, test::fixed_options());
    client.open_without_handshake();
    REQUIRE(!client.send_text(std::string(1000, 'a')));
    REQUIRE(test::transfer(client, server, test::chunking::whole).size() == 1);
    const mutable_bytes area = server.prepare(10);
    server.commit(0);
    CHECK(server.prepare(10).data() == area.data()); // the same buffer
    server.commit(0);
}

TEST_CASE("send_shared: the frame is referenced, with send_*'s checks, backpressure at N and N+1") {
    connection_options options = test::fixed_options();
    const auto hello = std::make_shared<prepared_message>(true, const_bytes(std::string("hello")));
    const std::size_t frame_size = hello->plain_frame().size();
    options.max_pending_output = 2 * frame_size;
    connection server = open_server(options);

    // The check is on what is queued before the call, as for send_*.
    REQUIRE(!server.send_shared(hello));
    REQUIRE(!server.send_shared(hello));
    CHECK(server.pending_output_size() == options.max_pending_output); // at the limit: accepted
    REQUIRE(!server.send_shared(hello));
    CHECK(server.pending_output_size() == options.max_pending_output + frame_size); // above it: refused
    CHECK(server.send_shared(hello) == error::would_block);
    const_bytes pieces[4];
    REQUIRE(server.pending_output(pieces, 4) == 3);
    for (const const_bytes& piece : pieces) {
        if (piece.empty()) continue;
        CHECK(piece.data() == hello->plain_frame().data()); // held once, referenced thrice
    }
    CHECK(hello.use_count() == 4);
    const bytes wire = test::drain(server);
    CHECK(hello.use_count() == 1); // written: let go
    const auto frames = test::parse_frames(wire, role::client);
    REQUIRE(frames.size() == 3);
    for (const auto& f : frames) CHECK(std::string(f.payload.begin(), f.payload.end()) == "hello");

    // Not in the middle of a message sent in pieces.
    REQUIRE(!server.begin_message(true, const_bytes(std::string("a"))));
    CHECK(server.send_shared(hello) == error::expected_continuation);
    REQUIRE(!server.finish_message());
    CHECK(!server.send_shared(hello));

    // Not after a close.
    REQUIRE(!server.close());
    CHECK(server.send_shared(hello) == error::connection_closed);
    CHECK(server.send_shared(nullptr) == std::errc::invalid_argument);
}

TEST_CASE("send_shared: each connection gets a frame it can send") {
    const std::string text(5000, 'z'); // compressible, above the threshold
    const auto m = std::make_shared<prepared_message>(true, const_bytes(text));
    auto received = [&](connection& from, connection& to) {
        REQUIRE(!from.send_shared(m));
        const auto events = test::transfer(from, to, test::chunking::whole);
        REQUIRE(events.size() == 1);
        CHECK(events[0].data == text);
    };
    auto shares = [&](connection& c) {
        REQUIRE(!c.send_shared(m));
        const_bytes piece = c.pending_output();
        const bool shared = piece.data() == m->plain_frame().data();
        test::drain(c);
        return shared;
    };
    SECTION("a client masks its own copy") {
        connection client(role::client, test::fixed_options());
        client.open_without_handshake();
        connection server = open_server();
        received(client, server);
        CHECK_FALSE(shares(client));
    }
    SECTION("a frame fragment_size would cut goes in fragments") {
        connection_options o = test::fixed_options();
        o.fragment_size = 1000;
        connection server = open_server(o);
        connection client(role::client, test::fixed_options());
        client.open_without_handshake();
        received(server, client);
        CHECK_FALSE(shares(server));
    }
    SECTION("compressed once for connections without context takeover") {
        connection_options o = test::fixed_options();
        o.deflate.emplace();
        deflate_params fresh;
        fresh.our_no_context_takeover = true;
        fresh.peer_no_context_takeover = true;
        connection a(role::server, o), b(role::server, o);
        a.open_without_handshake(fresh);
        b.open_without_handshake(fresh);
        REQUIRE(!a.send_shared(m));
        REQUIRE(!b.send_shared(m));
        CHECK(a.pending_output().data() == b.pending_output().data()); // one compressed frame for both
        CHECK(a.pending_output().size() < 100);
        connection client(role::client, o);
        client.open_without_handshake(fresh);
        const auto events = test::transfer(a, client, test::chunking::whole);
        REQUIRE(events.size() == 1);
        CHECK(events[0].data == text);
    }
    SECTION("a compressor with a history compresses its own") {
        connection_options o = test::fixed_options();
        o.deflate.emplace();
        connection server(role::server, o), client(role::client, o);
        server.open_without_handshake(deflate_params{});
        client.open_without_handshake(deflate_params{});
        received(server, client);
        received(server, client);
    }
}

TEST_CASE("deflate_parameters: empty without permessage-deflate, the agreement with it") {
    connection plain = open_server();
    CHECK(!plain.deflate_parameters());
    connection_options options = test::fixed_options();
    options.deflate.emplace();
    connection compressed(role::server, options);
    deflate_params agreed;
    agreed.our_no_context_takeover = true;
    agreed.our_max_window_bits = 10;
    compressed.open_without_handshake(agreed);
    REQUIRE(compressed.deflate_parameters());
    CHECK(compressed.deflate_parameters()->our_no_context_takeover);
    CHECK(compressed.deflate_parameters()->our_max_window_bits == 10);
}
