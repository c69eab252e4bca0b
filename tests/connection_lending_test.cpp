// The connection's hooks for the Asio adapter: idle(), release_buffers()
// and adopt_buffers() (a pool lends buffers to busy connections only), and
// send_prepared() (a broadcast's frame, made once, queued as it is).
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

// A whole unmasked text frame, as a server sends it.
bytes server_text_frame(const std::string& text) {
    return test::frame(role::server, opcode::text, bytes(text.begin(), text.end()));
}

} // namespace

TEST_CASE("lending: an idle connection gives its buffers back and takes them again") {
    connection server = open_server();
    connection client(role::client, test::fixed_options());
    client.open_without_handshake();
    CHECK(server.idle());

    // A message in, and one out: the connection grew its buffers.
    REQUIRE(!client.send_text(std::string(1000, 'a')));
    const auto events = test::transfer(client, server, test::chunking::whole);
    REQUIRE(events.size() == 1);
    REQUIRE(!server.send_text("reply"));
    CHECK(!server.idle()); // output waits

    connection::buffer_set set;
    CHECK(!server.release_buffers(set)); // not while output waits
    CHECK(set.input.capacity() == 0);
    test::drain(server);
    CHECK(server.idle());
    CHECK(server.release_buffers(set));
    CHECK(set.input.capacity() >= 1000);
    CHECK(set.output.capacity() > 0);

    // With no buffer the connection still works: it takes the lent ones.
    const auto* lent_input = set.input.data();
    server.adopt_buffers(set);
    CHECK(set.input.capacity() == 0); // taken
    REQUIRE(!client.send_text("again"));
    const auto more = test::transfer(client, server, test::chunking::bytewise);
    REQUIRE(more.size() == 1);
    CHECK(more[0].data == "again");
    connection::buffer_set back;
    CHECK(server.release_buffers(back));
    CHECK(back.input.data() == lent_input); // the same memory went round
}

TEST_CASE("lending: half a message is not idle; buffers it holds are not replaced") {
    connection server = open_server();
    const bytes whole = test::frame(role::client, opcode::text, bytes(100, 'x'));
    server.receive(const_bytes(whole.data(), 50));
    CHECK(!server.next_event());
    CHECK(!server.input_idle());
    connection::buffer_set set;
    CHECK(!server.release_buffers(set));
    set.input.resize(4096);
    server.adopt_buffers(set);
    CHECK(set.input.size() == 4096); // kept its own, which holds the half frame
    server.receive(const_bytes(whole.data() + 50, whole.size() - 50));
    const event ev = server.next_event();
    CHECK(ev.type == event_type::message);
    CHECK(ev.data.size() == 100);
}

TEST_CASE("send_prepared: queued as is, with send_*'s checks, backpressure at N and N+1") {
    connection_options options = test::fixed_options();
    const bytes frame = server_text_frame("hello");
    options.max_pending_output = 2 * frame.size();
    connection server = open_server(options);

    // The check is on what is queued before the call, as for send_*.
    REQUIRE(!server.send_prepared(frame));
    REQUIRE(!server.send_prepared(frame));
    CHECK(server.pending_output_size() == options.max_pending_output); // at the limit: accepted
    REQUIRE(!server.send_prepared(frame));
    CHECK(server.pending_output_size() == options.max_pending_output + frame.size()); // above it: refused
    CHECK(server.send_prepared(frame) == error::would_block);
    const bytes wire = test::drain(server);
    const auto frames = test::parse_frames(wire, role::client);
    REQUIRE(frames.size() == 3);
    for (const auto& f : frames) CHECK(std::string(f.payload.begin(), f.payload.end()) == "hello");

    // Not in the middle of a message sent in pieces.
    REQUIRE(!server.begin_message(true, const_bytes(std::string("a"))));
    CHECK(server.send_prepared(frame) == error::expected_continuation);
    REQUIRE(!server.finish_message());
    CHECK(!server.send_prepared(frame));

    // Not after a close, not from a client (its frames need their own masks).
    REQUIRE(!server.close());
    CHECK(server.send_prepared(frame) == error::connection_closed);
    connection client(role::client, test::fixed_options());
    client.open_without_handshake();
    CHECK(client.send_prepared(frame) == error::connection_closed);
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
