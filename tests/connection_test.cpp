#include <wsx/connection.hpp>

#include "support/connection_pair.hpp"

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

using namespace wsx;
using namespace std::chrono_literals;
using wsx::test::bytes;
using wsx::test::chunking;
using wsx::test::frame;
using wsx::test::recorded;

namespace {

std::string repeat(char c, std::size_t n) { return std::string(n, c); }

// A connection opened without the HTTP handshake, fed raw bytes.
struct raw_peer {
    connection conn;
    explicit raw_peer(role r, connection_options o = test::fixed_options()) : conn(r, std::move(o)) {
        conn.open_without_handshake();
    }
    std::vector<recorded> feed(const bytes& data, chunking how = chunking::whole) {
        return test::feed(conn, data, how);
    }
    std::vector<test::parsed_frame> sent() {
        auto out = test::drain(conn);
        return test::parse_frames(out, conn.get_role() == role::server ? role::client : role::server);
    }
};

// The close frame a connection sent last, as (code).
std::uint16_t sent_close_code(raw_peer& p) {
    auto frames = p.sent();
    REQUIRE_FALSE(frames.empty());
    const auto& last = frames.back();
    REQUIRE(last.op == opcode::close);
    REQUIRE(last.payload.size() >= 2);
    return static_cast<std::uint16_t>((last.payload[0] << 8) | last.payload[1]);
}

const chunking all_chunkings[] = {chunking::whole, chunking::bytewise, chunking::random};

} // namespace

TEST_CASE("messages of every kind cross a client-server pair under every chunking") {
    for (auto how : all_chunkings) {
        CAPTURE(static_cast<int>(how));
        test::connection_pair p;
        const std::vector<std::string> texts{"", "Hello", "héllo 世界 🎉", repeat('a', 125),
                                             repeat('b', 126), repeat('c', 65535), repeat('d', 65536),
                                             repeat('e', 200000)};
        for (const auto& t : texts) REQUIRE_FALSE(p.client.send_text(t));
        bytes binary(70000);
        for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<std::uint8_t>(i * 7);
        REQUIRE_FALSE(p.server.send_binary(binary));
        REQUIRE_FALSE(p.server.send_binary(bytes{}));

        auto at_server = p.client_to_server(how);
        REQUIRE(at_server.size() == texts.size());
        for (std::size_t i = 0; i < texts.size(); ++i) {
            CHECK(at_server[i].type == event_type::message);
            CHECK(at_server[i].text);
            CHECK(at_server[i].data == texts[i]);
        }
        auto at_client = p.server_to_client(how);
        REQUIRE(at_client.size() == 2);
        CHECK(at_client[0].type == event_type::message);
        CHECK_FALSE(at_client[0].text);
        CHECK(at_client[0].data == std::string(binary.begin(), binary.end()));
        CHECK(at_client[1].data.empty());
    }
}

TEST_CASE("connections share one options object without copying it") {
    const auto shared = std::make_shared<const connection_options>(test::fixed_options());
    connection client(role::client, shared);
    connection server(role::server, shared);
    CHECK(&client.options() == shared.get());
    CHECK(server.shared_options() == shared);
    CHECK(shared.use_count() == 3);

    // Deflate agreed without deflate options: the defaults apply (a 4 KiB
    // message is over their compress_threshold, so it goes compressed).
    client.open_without_handshake(deflate_params{});
    server.open_without_handshake(deflate_params{});
    const std::string text = repeat('z', 4096);
    REQUIRE_FALSE(client.send_text(text));
    const bytes wire(client.pending_output().begin(), client.pending_output().end());
    REQUIRE(wire.size() < text.size());
    CHECK((wire[0] & 0x40) != 0); // RSV1: compressed (RFC 7692 §6)
    const auto events = test::feed(server, wire, chunking::whole);
    REQUIRE(events.size() == 1);
    CHECK(events[0].data == text);
}

TEST_CASE("client frames are masked with the injected key; server frames are not") {
    test::connection_pair p;
    REQUIRE_FALSE(p.client.send_text("Hello"));
    const bytes wire = test::drain(p.client);
    // RFC 6455 §5.7 with the key 37 fa 21 3d.
    CHECK(wire == bytes{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58});
    REQUIRE_FALSE(p.server.send_text("Hello"));
    CHECK(test::drain(p.server) == bytes{0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f});
}

TEST_CASE("fragmented messages are reassembled with control frames in between") {
    for (auto how : all_chunkings) {
        test::connection_pair p;
        REQUIRE_FALSE(p.client.begin_message(true, bytes{'H', 'e'}));
        REQUIRE_FALSE(p.client.send_ping(bytes{'p'}));
        REQUIRE_FALSE(p.client.continue_message(bytes{'l', 'l'}));
        REQUIRE_FALSE(p.client.send_pong(bytes{'q'}));
        // A message may not start while another is being sent.
        CHECK(p.client.send_text("x") == error::expected_continuation);
        REQUIRE_FALSE(p.client.finish_message(bytes{'o'}));
        auto events = p.client_to_server(how);
        REQUIRE(events.size() == 3);
        CHECK(events[0].type == event_type::ping);
        CHECK(events[0].data == "p");
        CHECK(events[1].type == event_type::pong);
        CHECK(events[2].type == event_type::message);
        CHECK(events[2].data == "Hello");
        // The server answered the ping by itself, with the same payload.
        auto back = p.server_to_client(how);
        REQUIRE(back.size() == 1);
        CHECK(back[0].type == event_type::pong);
        CHECK(back[0].data == "p");
    }
}

TEST_CASE("sending in pieces keeps the API honest") {
    test::connection_pair p;
    CHECK(p.client.continue_message(bytes{'a'}) == error::unexpected_continuation);
    REQUIRE_FALSE(p.client.begin_message(false, bytes{1}));
    CHECK(p.client.send_text("x") == error::expected_continuation);
    CHECK(p.client.begin_message(true, bytes{}) == error::expected_continuation);
    REQUIRE_FALSE(p.client.finish_message());
    auto events = p.client_to_server(chunking::whole);
    REQUIRE(events.size() == 1);
    CHECK(events[0].data == std::string(1, '\x01'));
}

TEST_CASE("outgoing messages are split at fragment_size") {
    auto options = test::fixed_options();
    options.fragment_size = 10;
    test::connection_pair p(options);
    REQUIRE_FALSE(p.server.send_text(repeat('z', 35)));
    const auto frames = test::parse_frames(test::drain(p.server), role::client);
    REQUIRE(frames.size() == 4);
    CHECK(frames[0].op == opcode::text);
    CHECK_FALSE(frames[0].fin);
    CHECK(frames[1].op == opcode::continuation);
    CHECK(frames[3].fin);
    CHECK(frames[3].payload.size() == 5);
}

TEST_CASE("protocol violations fail the connection with their close code, for both roles") {
    struct row {
        const char* name;
        std::error_code ec;
        std::uint16_t code;
        bytes (*make)(role sender);
    };
    const row rows[] = {
        {"reserved opcode", error::bad_opcode, 1002,
         [](role s) { return frame(s, static_cast<opcode>(3), {}); }},
        {"reserved bits", error::reserved_bits_set, 1002,
         [](role s) { return frame(s, opcode::text, {'a'}, true, wsx::rsv2_bit); }},
        {"continuation without a message", error::unexpected_continuation, 1002,
         [](role s) { return frame(s, opcode::continuation, {'a'}); }},
        {"new message inside a fragmented one", error::expected_continuation, 1002,
         [](role s) {
             auto b = frame(s, opcode::text, {'a'}, false);
             auto c = frame(s, opcode::text, {'b'});
             b.insert(b.end(), c.begin(), c.end());
             return b;
         }},
        {"fragmented ping", error::fragmented_control_frame, 1002,
         [](role s) { return frame(s, opcode::ping, {'a'}, false); }},
        {"long ping", error::control_frame_too_long, 1002,
         [](role s) { return frame(s, opcode::ping, bytes(126, 'a')); }},
        {"invalid UTF-8", error::invalid_utf8, 1007,
         [](role s) { return frame(s, opcode::text, {0xc0, 0x80}); }},
        {"text ending inside a character", error::invalid_utf8, 1007,
         [](role s) { return frame(s, opcode::text, {'a', 0xe2, 0x82}); }},
        {"one-byte close payload", error::bad_close_payload, 1002,
         [](role s) { return frame(s, opcode::close, {0x03}); }},
        {"close code 1005 on the wire", error::bad_close_code, 1002,
         [](role s) { return frame(s, opcode::close, {0x03, 0xed}); }},
        {"close code 999", error::bad_close_code, 1002,
         [](role s) { return frame(s, opcode::close, {0x03, 0xe7}); }},
        {"close reason not UTF-8", error::invalid_utf8, 1007,
         [](role s) { return frame(s, opcode::close, {0x03, 0xe8, 0xff}); }},
        {"RSV1 without deflate", error::reserved_bits_set, 1002,
         [](role s) { return frame(s, opcode::text, {'a'}, true, wsx::rsv1_bit); }},
    };
    for (const auto& r : rows) {
        for (role receiver : {role::server, role::client}) {
            for (auto how : all_chunkings) {
                CAPTURE(r.name, receiver == role::server, static_cast<int>(how));
                raw_peer peer(receiver);
                const role sender = receiver == role::server ? role::client : role::server;
                auto events = peer.feed(r.make(sender), how);
                REQUIRE_FALSE(events.empty());
                const auto& last = events.back();
                CHECK(last.type == event_type::close);
                CHECK(last.ec == r.ec);
                CHECK(static_cast<std::uint16_t>(last.code) == r.code);
                CHECK(sent_close_code(peer) == r.code);
                CHECK((peer.conn.transport_action() == wsx::transport_action::close));
                CHECK(peer.conn.get_state() == state::closed);
                // Nothing more is processed or sent.
                CHECK(peer.feed(frame(sender, opcode::ping, {})).empty());
                CHECK(peer.conn.send_text("late") == error::connection_closed);
                CHECK(peer.sent().empty());
            }
        }
    }
}

TEST_CASE("masking is checked by direction") {
    raw_peer server(role::server);
    auto events = server.feed(frame(role::server, opcode::text, {'a'}));
    REQUIRE(events.size() == 1);
    CHECK(events[0].ec == error::unmasked_client_frame);
    raw_peer client(role::client);
    events = client.feed(frame(role::client, opcode::text, {'a'}));
    REQUIRE(events.size() == 1);
    CHECK(events[0].ec == error::masked_server_frame);
}

TEST_CASE("UTF-8 fails fast, at the fragment with the first invalid byte") {
    for (role receiver : {role::server, role::client}) {
        raw_peer peer(receiver);
        const role sender = receiver == role::server ? role::client : role::server;
        CHECK(peer.feed(frame(sender, opcode::text, {'o', 'k', 0xe2}, false)).empty());
        CHECK(peer.feed(frame(sender, opcode::continuation, {0x82, 0xac}, false)).empty());
        // The next fragment is invalid: no need to wait for the end.
        auto events = peer.feed(frame(sender, opcode::continuation, {0xed, 0xa0, 0x80}, false));
        REQUIRE(events.size() == 1);
        CHECK(events[0].ec == error::invalid_utf8);
        CHECK(events[0].code == close_code::invalid_payload);
    }
}

// Autobahn 6.4.3/6.4.4: one text frame arrives in pieces and the second
// piece already makes it invalid; the close must not wait for the rest.
TEST_CASE("UTF-8 fails fast inside a frame, before the rest of it arrives") {
    const std::string valid = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    for (role receiver : {role::server, role::client}) {
        const role sender = receiver == role::server ? role::client : role::server;
        for (const std::string& bad : {std::string("\xf4\x90\x80\x80"), std::string("\xf4\x90")}) {
            for (std::size_t size : {std::size_t(64), connection::direct_payload_size + 10}) {
                CAPTURE(receiver == role::server, bad.size(), size);
                std::string text = valid + bad;
                text.resize(size, 'a');
                const bytes whole = frame(sender, opcode::text, bytes(text.begin(), text.end()));
                const std::size_t header = whole.size() - text.size();
                raw_peer peer(receiver);
                // The header and the valid part: nothing to say yet.
                CHECK(peer.feed(bytes(whole.begin(), whole.begin() + header + valid.size())).empty());
                // The first invalid byte fails the connection, the frame still unfinished.
                const auto events = peer.feed(bytes(whole.begin() + header + valid.size(),
                                                    whole.begin() + header + valid.size() + bad.size()));
                REQUIRE(events.size() == 1);
                CHECK(events[0].type == event_type::close);
                CHECK(events[0].ec == error::invalid_utf8);
                CHECK(sent_close_code(peer) == 1007);
            }
        }
    }
}

TEST_CASE("a text frame validated piece by piece is delivered whole and unmasked once") {
    for (role receiver : {role::server, role::client}) {
        const role sender = receiver == role::server ? role::client : role::server;
        for (std::size_t size : {std::size_t(3000), connection::direct_payload_size + 3000}) {
            CAPTURE(receiver == role::server, size);
            std::string text;
            while (text.size() < size) text += "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8e\x89 ";
            const bytes whole = frame(sender, opcode::text, bytes(text.begin(), text.end()));
            raw_peer peer(receiver);
            // Pieces of 7 bytes: characters and mask words cut at every place.
            std::vector<recorded> events;
            for (std::size_t at = 0; at < whole.size(); at += 7) {
                auto got = peer.feed(bytes(whole.begin() + at, whole.begin() + std::min(whole.size(), at + 7)));
                events.insert(events.end(), got.begin(), got.end());
            }
            REQUIRE(events.size() == 1);
            CHECK(events[0].type == event_type::message);
            CHECK(events[0].data == text);
        }
    }
}

TEST_CASE("inside a frame, a broken rule other than UTF-8 keeps its own close code") {
    raw_peer peer(role::server);
    CHECK(peer.feed(frame(role::client, opcode::text, {'o', 'k'}, false)).empty());
    // A new text message inside a fragmented one is 1002, even though the
    // part of it that arrived first is invalid UTF-8.
    const bytes intruder = frame(role::client, opcode::text, {0xff, 'a', 'b', 'c'});
    CHECK(peer.feed(bytes(intruder.begin(), intruder.end() - 2)).empty());
    const auto events = peer.feed(bytes(intruder.end() - 2, intruder.end()));
    REQUIRE(events.size() == 1);
    CHECK(events[0].ec == error::expected_continuation);
}

TEST_CASE("a continuation validated piece by piece fails at its first invalid byte") {
    raw_peer peer(role::client);
    CHECK(peer.feed(frame(role::server, opcode::text, {'o', 'k', 0xe2}, false)).empty());
    const bytes next = frame(role::server, opcode::continuation, {0x82, 0xac, 'x', 0xc0, 'y', 'z'});
    CHECK(peer.feed(bytes(next.begin(), next.begin() + 5)).empty()); // header, then a valid euro sign and 'x'
    const auto events = peer.feed(bytes(next.begin() + 5, next.begin() + 6));
    REQUIRE(events.size() == 1);
    CHECK(events[0].ec == error::invalid_utf8);
}

TEST_CASE("a character split across fragments is valid") {
    raw_peer peer(role::server);
    const std::string euro = "\xe2\x82\xac";
    CHECK(peer.feed(frame(role::client, opcode::text, {0xe2}, false)).empty());
    CHECK(peer.feed(frame(role::client, opcode::continuation, {0x82}, false)).empty());
    auto events = peer.feed(frame(role::client, opcode::continuation, {0xac}));
    REQUIRE(events.size() == 1);
    CHECK(events[0].data == euro);
}

TEST_CASE("closing handshake started by either side") {
    for (bool client_starts : {true, false}) {
        CAPTURE(client_starts);
        test::connection_pair p;
        connection& starter = client_starts ? p.client : p.server;
        connection& other = client_starts ? p.server : p.client;
        REQUIRE_FALSE(starter.send_text("before"));
        REQUIRE_FALSE(starter.close(close_code::going_away, "bye"));
        CHECK(starter.get_state() == state::closing);
        CHECK(starter.send_text("after") == error::connection_closed);
        auto at_other = test::transfer(starter, other, chunking::whole);
        REQUIRE(at_other.size() == 2);
        CHECK(at_other[0].data == "before");
        CHECK(at_other[1].type == event_type::close);
        CHECK(at_other[1].code == close_code::going_away);
        CHECK(at_other[1].reason == "bye");
        CHECK(at_other[1].closed_by_peer);
        CHECK_FALSE(at_other[1].ec);
        CHECK(other.get_state() == state::closed);
        auto at_starter = test::transfer(other, starter, chunking::whole);
        REQUIRE(at_starter.size() == 1);
        CHECK(at_starter[0].type == event_type::close);
        CHECK(at_starter[0].code == close_code::going_away); // echoed
        CHECK_FALSE(at_starter[0].closed_by_peer);
        // RFC 6455 §7.1.1: the server closes the TCP connection first.
        CHECK((p.server.transport_action() == wsx::transport_action::close));
        // RFC 6455 §7.1.1: the client waits for the server to end TCP, with
        // nothing more to write.
        CHECK(p.client.transport_action() == wsx::transport_action::shutdown_write);
        p.client.receive_eof();
        CHECK_FALSE(p.client.next_event()); // the close event was the last
        CHECK((p.client.transport_action() == wsx::transport_action::close)); // the server closed TCP: the wait is over
    }
}

namespace {

// A ping every second, answered within half a second.
connection_options keepalive_options() {
    auto o = test::fixed_options();
    o.ping_interval = 1000ms;
    o.ping_timeout = 500ms;
    return o;
}

} // namespace

TEST_CASE("the core keeps one close status: the frames sent and received, and how it ended") {
    test::connection_pair p;
    REQUIRE_FALSE(p.client.close(close_code::going_away, "bye"));
    CHECK(p.client.status().sent == close_code::going_away);
    CHECK_FALSE(p.client.status().received);
    auto at_server = p.client_to_server(chunking::whole);
    REQUIRE(at_server.size() == 1);
    const close_status& server = p.server.status();
    CHECK(server.code == close_code::going_away);
    CHECK(server.reason == "bye");
    CHECK(server.closed_by_peer);
    CHECK_FALSE(server.ec);
    CHECK(server.received == close_code::going_away);
    CHECK(server.sent == close_code::going_away); // echoed
    p.server_to_client(chunking::whole);
    const close_status& client = p.client.status();
    CHECK(client.code == close_code::going_away);
    CHECK_FALSE(client.closed_by_peer);
    CHECK(client.sent == close_code::going_away);
    CHECK(client.received == close_code::going_away);
    // The status is final: a transport error after the close changes nothing.
    p.client.receive_transport_error(std::make_error_code(std::errc::connection_reset));
    CHECK(p.client.status().code == close_code::going_away);
    CHECK_FALSE(p.client.status().ec);
    CHECK(p.client.transport_action() == wsx::transport_action::close);
}

TEST_CASE("a transport error ends the connection with 1006, or with its own earlier reason") {
    SECTION("while open: input and output are dropped, the close event says why") {
        test::connection_pair p;
        REQUIRE_FALSE(p.client.send_text("lost"));
        p.server.receive(test::drain(p.client));
        REQUIRE_FALSE(p.server.send_text("unsent"));
        p.server.receive_transport_error(std::make_error_code(std::errc::connection_reset));
        CHECK(p.server.pending_output_size() == 0);
        CHECK(p.server.buffered_input() == 0);
        CHECK(p.server.status().code == close_code::abnormal); // known before the event
        auto events = test::collect(p.server);
        REQUIRE(events.size() == 1);
        CHECK(events[0].type == event_type::close);
        CHECK(events[0].code == close_code::abnormal);
        CHECK(events[0].ec == std::errc::connection_reset);
        CHECK(p.server.transport_action() == wsx::transport_action::close);
        CHECK(p.server.send_text("after") == error::connection_closed);
    }
    SECTION("after a keepalive timeout the timeout is the reason") {
        test::connection_pair p(keepalive_options());
        const time_point t0{};
        p.server.tick(t0);
        p.server.tick(t0 + 1000ms);
        p.server.tick(t0 + 1500ms);
        CHECK(p.server.status().sent == close_code::internal_error);
        p.server.receive_transport_error(std::make_error_code(std::errc::broken_pipe));
        auto events = test::collect(p.server);
        REQUIRE(events.size() == 1);
        CHECK(events[0].code == close_code::internal_error);
        CHECK(events[0].ec == error::ping_timeout);
        CHECK(p.server.status().ec == error::ping_timeout);
    }
}

TEST_CASE("simultaneous close") {
    test::connection_pair p;
    REQUIRE_FALSE(p.client.close(close_code::normal));
    REQUIRE_FALSE(p.server.close(close_code::going_away));
    auto at_server = p.client_to_server(chunking::whole);
    auto at_client = p.server_to_client(chunking::whole);
    REQUIRE(at_server.size() == 1);
    REQUIRE(at_client.size() == 1);
    CHECK(at_server[0].code == close_code::normal);
    CHECK(at_client[0].code == close_code::going_away);
    CHECK(test::drain(p.client).empty()); // no second close frame
    CHECK(test::drain(p.server).empty());
}

TEST_CASE("a close frame without a status code is answered without one") {
    raw_peer peer(role::server);
    auto events = peer.feed(frame(role::client, opcode::close, {}));
    REQUIRE(events.size() == 1);
    CHECK(events[0].code == close_code::no_status);
    auto sent = peer.sent();
    REQUIRE(sent.size() == 1);
    CHECK(sent[0].op == opcode::close);
    CHECK(sent[0].payload.empty());
}

TEST_CASE("every close code valid on the wire is echoed") {
    for (std::uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999}) {
        CAPTURE(code);
        raw_peer peer(role::server);
        auto events = peer.feed(frame(role::client, opcode::close,
                                      {static_cast<std::uint8_t>(code >> 8), static_cast<std::uint8_t>(code)}));
        REQUIRE(events.size() == 1);
        CHECK(static_cast<std::uint16_t>(events[0].code) == code);
        CHECK(sent_close_code(peer) == code);
    }
}

TEST_CASE("frames after the peer's close are ignored; data before it is delivered") {
    raw_peer peer(role::server);
    bytes wire = frame(role::client, opcode::text, {'1'});
    auto add = [&](const bytes& b) { wire.insert(wire.end(), b.begin(), b.end()); };
    add(frame(role::client, opcode::binary, {'2'}));
    add(frame(role::client, opcode::close, {0x03, 0xe8}));
    add(frame(role::client, opcode::text, {'3'}));
    add(frame(role::client, opcode::ping, {}));
    auto events = peer.feed(wire);
    REQUIRE(events.size() == 3);
    CHECK(events[0].data == "1");
    CHECK(events[1].data == "2");
    CHECK(events[2].type == event_type::close);
    auto sent = peer.sent();
    REQUIRE(sent.size() == 1); // the close reply, no pong
    CHECK(sent[0].op == opcode::close);
}

TEST_CASE("end of stream without a close frame is 1006 after delivering what arrived") {
    for (role receiver : {role::server, role::client}) {
        raw_peer peer(receiver);
        const role sender = receiver == role::server ? role::client : role::server;
        bytes wire = frame(sender, opcode::text, {'x'});
        const bytes partial = frame(sender, opcode::text, {'y', 'z'});
        wire.insert(wire.end(), partial.begin(), partial.end() - 1); // cut in the middle
        peer.conn.receive(wire);
        peer.conn.receive_eof();
        auto events = test::collect(peer.conn);
        REQUIRE(events.size() == 2);
        CHECK(events[0].data == "x");
        CHECK(events[1].type == event_type::close);
        CHECK(events[1].code == close_code::abnormal);
        CHECK(events[1].ec == error::unexpected_eof);
        CHECK((peer.conn.transport_action() == wsx::transport_action::close));
        CHECK(peer.sent().empty()); // no close frame after EOF... nothing to read it
    }
}

TEST_CASE("limits: message size, frame size and fragment count at N and N+1") {
    SECTION("max_message_size, one frame") {
        auto o = test::fixed_options();
        o.max_message_size = 1000;
        raw_peer ok(role::server, o);
        auto events = ok.feed(frame(role::client, opcode::binary, bytes(1000, 1)));
        REQUIRE(events.size() == 1);
        CHECK(events[0].type == event_type::message);
        raw_peer big(role::server, o);
        events = big.feed(frame(role::client, opcode::binary, bytes(1001, 1)));
        REQUIRE(events.size() == 1);
        CHECK(events[0].ec == error::message_too_big);
        CHECK(sent_close_code(big) == 1009);
    }
    SECTION("max_message_size, across fragments") {
        auto o = test::fixed_options();
        o.max_message_size = 1000;
        raw_peer ok(role::server, o);
        ok.feed(frame(role::client, opcode::binary, bytes(600, 1), false));
        auto events = ok.feed(frame(role::client, opcode::continuation, bytes(400, 1)));
        REQUIRE(events.size() == 1);
        CHECK(events[0].data.size() == 1000);
        raw_peer big(role::server, o);
        big.feed(frame(role::client, opcode::binary, bytes(600, 1), false));
        events = big.feed(frame(role::client, opcode::continuation, bytes(401, 1)));
        REQUIRE(events.size() == 1);
        CHECK(events[0].ec == error::message_too_big);
    }
    SECTION("a 2^62-byte frame header fails at once") {
        raw_peer peer(role::server);
        const bytes header{0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
        auto events = peer.feed(header);
        REQUIRE(events.size() == 1);
        CHECK(events[0].ec == error::frame_too_big);
        CHECK(sent_close_code(peer) == 1009);
    }
    SECTION("max_frame_size") {
        auto o = test::fixed_options();
        o.max_frame_size = 100;
        raw_peer ok(role::server, o);
        ok.feed(frame(role::client, opcode::binary, bytes(100, 1), false));
        auto events = ok.feed(frame(role::client, opcode::continuation, bytes(100, 1)));
        REQUIRE(events.size() == 1);
        CHECK(events[0].data.size() == 200);
        raw_peer big(role::server, o);
        events = big.feed(frame(role::client, opcode::binary, bytes(101, 1)));
        REQUIRE(events.size() == 1);
        CHECK(events[0].ec == error::frame_too_big);
    }
    SECTION("max_fragments") {
        auto o = test::fixed_options();
        o.max_fragments = 10;
        for (std::size_t n : {10, 11}) {
            CAPTURE(n);
            raw_peer peer(role::server, o);
            bytes wire;
            for (std::size_t i = 0; i < n; ++i) {
                auto f = frame(role::client, i == 0 ? opcode::binary : opcode::continuation, {'a'}, i + 1 == n);
                wire.insert(wire.end(), f.begin(), f.end());
            }
            auto events = peer.feed(wire);
            REQUIRE(events.size() == 1);
            if (n == 10) {
                CHECK(events[0].data.size() == 10);
            } else {
                CHECK(events[0].ec == error::too_many_fragments);
                CHECK(sent_close_code(peer) == 1009);
            }
        }
    }
}

TEST_CASE("streaming mode delivers a message frame by frame") {
    auto o = test::fixed_options();
    o.streaming = true;
    raw_peer peer(role::server, o);
    bytes wire = frame(role::client, opcode::text, {'a', 'b'}, false);
    auto more = frame(role::client, opcode::continuation, {'c'});
    wire.insert(wire.end(), more.begin(), more.end());
    auto events = peer.feed(wire);
    REQUIRE(events.size() == 2);
    CHECK(events[0].type == event_type::chunk);
    CHECK(events[0].text);
    CHECK_FALSE(events[0].fin);
    CHECK(events[0].data == "ab");
    CHECK(events[1].fin);
    CHECK(events[1].data == "c");
}

TEST_CASE("backpressure: sends above max_pending_output answer would_block, nothing is lost") {
    auto o = test::fixed_options();
    o.max_pending_output = 1000;
    test::connection_pair p(o);
    REQUIRE_FALSE(p.server.send_binary(bytes(990, 1))); // 994 bytes queued
    REQUIRE_FALSE(p.server.send_binary(bytes(10, 2)));  // 1006: now above
    CHECK(p.server.send_binary(bytes(1, 3)) == error::would_block);
    auto events = p.server_to_client(chunking::whole);
    REQUIRE(events.size() == 2);
    CHECK_FALSE(p.server.send_binary(bytes(1, 3)));
}

TEST_CASE("a ping flood while the peer does not read is answered by one pong, sent once the output drains") {
    auto o = test::fixed_options();
    o.max_pending_output = 100;
    raw_peer peer(role::server, o);
    REQUIRE_FALSE(peer.conn.send_binary(bytes(200, 1))); // the peer is not reading
    const std::uint64_t frame_end = peer.conn.output_queued();
    bytes wire;
    for (int i = 0; i < 1000; ++i) {
        auto f = frame(role::client, opcode::ping, {static_cast<std::uint8_t>(i), static_cast<std::uint8_t>(i >> 8)});
        wire.insert(wire.end(), f.begin(), f.end());
    }
    auto events = peer.feed(wire);
    CHECK(events.size() == 1000);
    CHECK(peer.conn.pending_output_size() < 300); // pongs did not pile up
    // Once the output drains, the owed pong is queued at once: it must not
    // wait for the peer's next frame (a flood's last ping may be its last).
    SECTION("drained by consume_output") {
        peer.conn.consume_output(peer.conn.pending_output_size());
    }
    SECTION("drained in pieces, as a slow writer does: the pong follows the frame") {
        while (peer.conn.output_written() < frame_end)
            peer.conn.consume_output(std::min<std::uint64_t>(7, frame_end - peer.conn.output_written()));
    }
    REQUIRE(peer.conn.pending_output_size() > 0);
    auto sent = peer.sent();
    REQUIRE(sent.size() == 1);
    CHECK(sent[0].op == opcode::pong);
    CHECK(sent[0].payload == bytes{0xe7, 0x03}); // the most recent ping: 999
}

TEST_CASE("keepalive: a ping at the interval, 1011 when no answer comes in time") {
    test::connection_pair p(keepalive_options());
    const time_point t0{};
    p.server.tick(t0);
    p.client.tick(t0);
    CHECK(p.server.next_deadline() == t0 + 1000ms);
    p.server.tick(t0 + 999ms);
    CHECK(test::drain(p.server).empty());
    p.server.tick(t0 + 1000ms);
    CHECK(p.server.next_deadline() == t0 + 1500ms);

    SECTION("the peer answers: latency measured, no close") {
        auto at_client = p.server_to_client(chunking::whole);
        REQUIRE(at_client.size() == 1);
        CHECK(at_client[0].type == event_type::ping);
        p.server.tick(t0 + 1030ms);
        auto at_server = p.client_to_server(chunking::whole);
        REQUIRE(at_server.size() == 1);
        CHECK(at_server[0].type == event_type::pong);
        REQUIRE(p.server.latency());
        CHECK(*p.server.latency() == 30ms);
        p.server.tick(t0 + 1600ms);
        CHECK(p.server.get_state() == state::open);
        CHECK(p.server.next_deadline() == t0 + 2030ms);
    }
    SECTION("the peer is silent") {
        test::drain(p.server);
        p.server.tick(t0 + 1499ms);
        CHECK(p.server.get_state() == state::open);
        p.server.tick(t0 + 1500ms);
        auto events = test::collect(p.server);
        REQUIRE(events.size() == 1);
        CHECK(events[0].type == event_type::close);
        CHECK(events[0].code == close_code::internal_error);
        CHECK(events[0].ec == error::ping_timeout);
        const auto frames = test::parse_frames(test::drain(p.server), role::client);
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].op == opcode::close);
        CHECK(std::string(frames[0].payload.begin() + 2, frames[0].payload.end()) == "keepalive ping timeout");
        CHECK((p.server.transport_action() == wsx::transport_action::close));
    }
}

TEST_CASE("the close timeout drops a peer that never answers our close") {
    test::connection_pair p;
    const time_point t0{};
    p.server.tick(t0);
    REQUIRE_FALSE(p.server.close());
    CHECK(p.server.next_deadline() == t0 + 10000ms);
    p.server.tick(t0 + 9999ms);
    CHECK_FALSE((p.server.transport_action() == wsx::transport_action::close));
    p.server.tick(t0 + 10000ms);
    CHECK((p.server.transport_action() == wsx::transport_action::close));
    auto events = test::collect(p.server);
    REQUIRE(events.size() == 1);
    CHECK(events[0].ec == error::close_timeout);
    CHECK(events[0].code == close_code::abnormal);
}

TEST_CASE("a client waits for the server to close TCP, up to the close timeout") {
    test::connection_pair p;
    const time_point t0{};
    p.client.tick(t0);
    REQUIRE_FALSE(p.server.close());
    p.server_to_client(chunking::whole);
    CHECK(p.client.get_state() == state::closed);
    CHECK_FALSE((p.client.transport_action() == wsx::transport_action::close));
    p.client.tick(t0 + 10000ms);
    CHECK((p.client.transport_action() == wsx::transport_action::close));
}

// ---- with the HTTP handshake ------------------------------------------------

namespace {

client_request_options request_to(std::string target = "/chat") {
    client_request_options r;
    r.host = "example.com";
    r.target = std::move(target);
    return r;
}

// Runs the opening handshake between two fresh connections.
void open_pair(connection& client, connection& server, chunking how = chunking::whole,
               accept_options answer = {}) {
    REQUIRE_FALSE(client.start_handshake(request_to()));
    auto at_server = test::transfer(client, server, how);
    REQUIRE(at_server.size() == 1);
    REQUIRE(at_server[0].type == event_type::request);
    REQUIRE_FALSE(server.accept(std::move(answer)));
    auto at_client = test::transfer(server, client, how);
    REQUIRE(at_client.size() == 1);
    REQUIRE(at_client[0].type == event_type::response);
    REQUIRE(client.get_state() == state::open);
    REQUIRE(server.get_state() == state::open);
}

} // namespace

TEST_CASE("the opening handshake, then messages, under every chunking") {
    for (auto how : all_chunkings) {
        connection client(role::client, test::fixed_options());
        connection server(role::server, test::fixed_options());
        open_pair(client, server, how);
        CHECK(server.request().path == "/chat");
        CHECK(server.request().host == "example.com");
        CHECK(client.response().http.status == 101);
        CHECK_FALSE(client.deflate_enabled());
        REQUIRE_FALSE(client.send_text("ping?"));
        auto events = test::transfer(client, server, how);
        REQUIRE(events.size() == 1);
        CHECK(events[0].data == "ping?");
    }
}

TEST_CASE("frames right behind the 101 response are not lost") {
    connection client(role::client, test::fixed_options());
    connection server(role::server, test::fixed_options());
    REQUIRE_FALSE(client.start_handshake(request_to()));
    REQUIRE(test::transfer(client, server, chunking::whole).size() == 1);
    REQUIRE_FALSE(server.accept());
    REQUIRE_FALSE(server.send_text("welcome"));
    auto events = test::transfer(server, client, chunking::whole);
    REQUIRE(events.size() == 2);
    CHECK(events[0].type == event_type::response);
    CHECK(events[1].data == "welcome");
}

TEST_CASE("subprotocol chosen by the server") {
    connection client(role::client, test::fixed_options());
    connection server(role::server, test::fixed_options());
    auto request = request_to();
    request.subprotocols = {"chat.v2", "chat.v1"};
    REQUIRE_FALSE(client.start_handshake(request));
    REQUIRE(test::transfer(client, server, chunking::whole).size() == 1);
    CHECK(select_subprotocol(server.request(), {"chat.v1"}) == "chat.v1");
    REQUIRE_FALSE(server.accept({"chat.v1", {}}));
    test::transfer(server, client, chunking::whole);
    CHECK(client.subprotocol() == "chat.v1");
    CHECK(server.subprotocol() == "chat.v1");
}

TEST_CASE("a rejected handshake reports the status, then closes") {
    connection client(role::client, test::fixed_options());
    connection server(role::server, test::fixed_options());
    REQUIRE_FALSE(client.start_handshake(request_to()));
    test::transfer(client, server, chunking::whole);
    REQUIRE_FALSE(server.reject(401, "who are you?", {{"WWW-Authenticate", "Bearer"}}));
    auto at_server = test::collect(server);
    REQUIRE(at_server.size() == 1);
    CHECK(at_server[0].ec == error::handshake_rejected);
    CHECK((server.transport_action() == wsx::transport_action::close));
    auto at_client = test::transfer(server, client, chunking::whole);
    REQUIRE(at_client.size() == 2);
    CHECK(at_client[0].type == event_type::response);
    CHECK(client.response().http.status == 401);
    CHECK(client.response().http.headers.find("WWW-Authenticate") == std::string_view("Bearer"));
    CHECK(at_client[1].type == event_type::close);
    CHECK(at_client[1].ec == error::unexpected_status);
}

TEST_CASE("a bad upgrade request is answered with its HTTP status") {
    struct row { std::string request; std::error_code ec; std::string status_line; };
    const row rows[] = {
        {"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n", error::bad_sec_key, "HTTP/1.1 400 "},
        {"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
         error::unsupported_version, "HTTP/1.1 426 "},
        // An upgrade without "Connection: Upgrade" is still an upgrade.
        {"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", error::missing_connection_upgrade,
         "HTTP/1.1 400 "},
        {"GET / HTTP/1.1\r\nHost: x\r\n" + std::string(20000, 'a') + "\r\n\r\n", error::http_head_too_large,
         "HTTP/1.1 431 "},
    };
    for (const auto& r : rows) {
        CAPTURE(r.request.substr(0, 60));
        connection server(role::server, test::fixed_options());
        auto events = test::feed(server, bytes(r.request.begin(), r.request.end()), chunking::whole);
        REQUIRE(events.size() == 1);
        CHECK(events[0].type == event_type::close);
        CHECK(events[0].ec == r.ec);
        const bytes out = test::drain(server);
        CHECK(std::string(out.begin(), out.end()).rfind(r.status_line, 0) == 0);
        CHECK((server.transport_action() == wsx::transport_action::close));
    }
}

TEST_CASE("a plain HTTP request is an event; the application's answer is written") {
    struct row { std::string request; std::error_code ec; std::string refusal_line; };
    const row rows[] = {
        {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", error::missing_upgrade, "HTTP/1.1 426 "},
        {"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", error::bad_method, "HTTP/1.1 405 "},
        {"GET /health HTTP/1.0\r\n\r\n", error::bad_http_version, "HTTP/1.1 400 "},
    };
    for (const auto& r : rows) {
        CAPTURE(r.request);
        connection server(role::server, test::fixed_options());
        auto events = test::feed(server, bytes(r.request.begin(), r.request.end()), chunking::bytewise);
        REQUIRE(events.size() == 1);
        CHECK(events[0].type == event_type::http_request);
        CHECK(events[0].ec == r.ec);
        CHECK(server.pending_output_size() == 0); // nothing is answered for the application
        CHECK(server.transport_action() == wsx::transport_action::none);
        CHECK(server.accept() == r.ec);           // it is no upgrade
        if (r.ec == error::missing_upgrade) { // the application's reply
            REQUIRE_FALSE(server.reject(200, "ok\n", {{"Content-Type", "text/html"}}));
            const bytes out = test::drain(server);
            const std::string text(out.begin(), out.end());
            CHECK(text.rfind("HTTP/1.1 200 ", 0) == 0);
            CHECK(text.find("Content-Type: text/html\r\n") != std::string::npos);
            CHECK(text.substr(text.size() - 3) == "ok\n");
            auto closed = test::collect(server);
            REQUIRE(closed.size() == 1);
            CHECK(closed[0].type == event_type::close);
            CHECK(closed[0].ec == error::handshake_rejected);
        }
        // The core's refusal, for every row (the first has answered already).
        const std::error_code refused = server.refuse();
        if (r.ec != error::missing_upgrade) {
            REQUIRE_FALSE(refused);
            const bytes out = test::drain(server);
            CHECK(std::string(out.begin(), out.end()).rfind(r.refusal_line, 0) == 0);
            auto closed = test::collect(server);
            REQUIRE(closed.size() == 1);
            CHECK(closed[0].ec == r.ec);
            CHECK(server.status().ec == r.ec);
        } else {
            CHECK(refused == error::connection_closed); // answered once
        }
        CHECK(server.transport_action() == wsx::transport_action::close);
        CHECK(server.reject(200) == error::connection_closed);
    }
}

TEST_CASE("misuse is an error code, never an exception out of the core") {
    SECTION("a client request that cannot be sent starts nothing") {
        connection client(role::client, test::fixed_options());
        auto request = request_to();
        request.headers = {{"Sec-WebSocket-Key", "mine"}}; // wsx writes it itself
        CHECK(client.start_handshake(request) == std::errc::invalid_argument);
        CHECK(client.pending_output_size() == 0);
        CHECK(client.get_state() == state::connecting);
        request.host = "bad host";
        request.headers.clear();
        CHECK(client.start_handshake(request) == std::errc::invalid_argument);
        REQUIRE_FALSE(client.start_handshake(request_to())); // a good one still can
        CHECK(client.pending_output_size() > 0);
    }
    SECTION("an answer that cannot be sent: the client hears 500") {
        for (int answer : {0, 1, 2}) {
            CAPTURE(answer);
            connection client(role::client, test::fixed_options());
            connection server(role::server, test::fixed_options());
            auto request = request_to();
            request.subprotocols = {"chat.v1"};
            REQUIRE_FALSE(client.start_handshake(request));
            REQUIRE(test::transfer(client, server, chunking::whole).size() == 1);
            std::error_code ec;
            if (answer == 0) ec = server.accept({"never.offered", {}});
            if (answer == 1) ec = server.reject(42);
            if (answer == 2) ec = server.reject(401, {}, {{"Content-Length", "5"}});
            CHECK(ec == std::errc::invalid_argument);
            const bytes out = test::drain(server);
            CHECK(std::string(out.begin(), out.end()).rfind("HTTP/1.1 500 ", 0) == 0);
            auto closed = test::collect(server);
            REQUIRE(closed.size() == 1);
            CHECK(closed[0].ec == std::errc::invalid_argument);
            CHECK(server.transport_action() == wsx::transport_action::close);
        }
    }
    SECTION("calls at the wrong time") {
        connection server(role::server, test::fixed_options());
        CHECK(server.accept() == error::connection_closed); // no request yet
        CHECK(server.reject(403) == error::connection_closed);
        CHECK(server.send_text("early") == error::connection_closed);
        connection client(role::client, test::fixed_options());
        REQUIRE_FALSE(client.start_handshake(request_to()));
        CHECK(client.start_handshake(request_to()) == error::connection_closed); // once
        CHECK(client.accept() == error::connection_closed);
    }
}

TEST_CASE("origins outside the allow-list get 403") {
    auto o = test::fixed_options();
    o.origins.allowed = {"https://good.example"};
    for (const char* origin : {"https://good.example", "https://evil.example"}) {
        connection client(role::client, test::fixed_options());
        connection server(role::server, o);
        auto request = request_to();
        request.origin = origin;
        REQUIRE_FALSE(client.start_handshake(request));
        auto events = test::transfer(client, server, chunking::whole);
        REQUIRE(events.size() == 1);
        if (std::string_view(origin) == "https://good.example") {
            CHECK(events[0].type == event_type::request);
        } else {
            CHECK(events[0].ec == error::origin_not_allowed);
            const bytes out = test::drain(server);
            CHECK(std::string(out.begin(), out.end()).rfind("HTTP/1.1 403 ", 0) == 0);
        }
    }
}

TEST_CASE("end of stream or the open timeout during the handshake") {
    connection server(role::server, test::fixed_options());
    const time_point t0{};
    server.tick(t0);
    server.receive(std::string_view("GET / HTTP/1.1\r\n"));
    CHECK_FALSE(server.next_event());
    CHECK(server.next_deadline() == t0 + 10000ms);
    server.tick(t0 + 10000ms);
    auto events = test::collect(server);
    REQUIRE(events.size() == 1);
    CHECK(events[0].ec == error::open_timeout);
    CHECK((server.transport_action() == wsx::transport_action::close));

    connection client(role::client, test::fixed_options());
    REQUIRE_FALSE(client.start_handshake(request_to()));
    client.receive(std::string_view("HTTP/1.1 101 Switching"));
    client.receive_eof();
    events = test::collect(client);
    REQUIRE(events.size() == 1);
    CHECK(events[0].ec == error::unexpected_eof);
}

// ---- permessage-deflate ----------------------------------------------------------

TEST_CASE("permessage-deflate negotiated in the handshake compresses both ways") {
    for (auto how : all_chunkings) {
        auto o = test::fixed_options();
        o.deflate.emplace();
        o.deflate->compress_threshold = 0;
        connection client(role::client, o);
        connection server(role::server, o);
        open_pair(client, server, how);
        CHECK(client.deflate_enabled());
        CHECK(server.deflate_enabled());
        const std::string text = "{\"hello\": \"world\", \"n\": 1} " + repeat('x', 5000);
        for (int i = 0; i < 3; ++i) REQUIRE_FALSE(client.send_text(text));
        REQUIRE_FALSE(server.send_binary(bytes(100000, 7)));
        REQUIRE_FALSE(server.send_text(""));
        const bytes wire = test::drain(client);
        CHECK(wire.size() < text.size()); // three messages, compressed
        CHECK((wire[0] & 0x40) != 0);     // RSV1 on the first frame
        auto at_server = test::feed(server, wire, how);
        REQUIRE(at_server.size() == 3);
        for (const auto& ev : at_server) CHECK(ev.data == text);
        auto at_client = test::transfer(server, client, how);
        REQUIRE(at_client.size() == 2);
        CHECK(at_client[0].data == std::string(100000, '\x07'));
        CHECK(at_client[1].data.empty());
    }
}

TEST_CASE("messages under the threshold and fragmented ones with deflate") {
    auto o = test::fixed_options();
    o.deflate.emplace();
    o.deflate->compress_threshold = 64;
    test::connection_pair p(o, deflate_params{});
    REQUIRE_FALSE(p.client.send_text("short"));
    const bytes small = test::drain(p.client);
    CHECK((small[0] & 0x40) == 0); // sent as is
    p.server.receive(small);
    auto events = test::collect(p.server);
    REQUIRE(events.size() == 1);
    CHECK(events[0].data == "short");

    REQUIRE_FALSE(p.client.begin_message(true, std::string_view("Hel")));
    REQUIRE_FALSE(p.client.send_ping(bytes{'!'}));
    REQUIRE_FALSE(p.client.continue_message(std::string_view("lo, ")));
    REQUIRE_FALSE(p.client.finish_message(std::string_view("world")));
    const auto frames = test::parse_frames(test::drain(p.client), role::server);
    REQUIRE(frames.size() == 4);
    CHECK(frames[0].rsv == wsx::rsv1_bit);
    CHECK(frames[1].op == opcode::ping);
    CHECK(frames[2].rsv == 0);
    CHECK(frames[3].rsv == 0);
}

TEST_CASE("RFC 7692 §7.2.3.1 frames are understood") {
    for (auto how : all_chunkings) {
        test::connection_pair p(test::fixed_options(), deflate_params{});
        // The unmasked examples, as a client receives them.
        auto events = test::feed(p.client, {0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, how);
        REQUIRE(events.size() == 1);
        CHECK(events[0].data == "Hello");
        events = test::feed(p.client, {0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00}, how);
        REQUIRE(events.size() == 1);
        CHECK(events[0].data == "Hello");
    }
}

TEST_CASE("deflate violations: RSV1 on control or continuation frames, bombs, corrupt data") {
    auto o = test::fixed_options();
    o.max_message_size = 1000;
    SECTION("RSV1 on a ping") {
        raw_peer peer(role::server, o);
        peer.conn = connection(role::server, o);
        peer.conn.open_without_handshake(deflate_params{});
        auto events = peer.feed(frame(role::client, opcode::ping, {}, true, wsx::rsv1_bit));
        REQUIRE(events.size() == 1);
        CHECK(events[0].ec == error::reserved_bits_set);
        CHECK(sent_close_code(peer) == 1002);
    }
    SECTION("RSV1 on a continuation") {
        raw_peer peer(role::server, o);
        peer.conn = connection(role::server, o);
        peer.conn.open_without_handshake(deflate_params{});
        peer.feed(frame(role::client, opcode::text, {0xf2, 0x48}, false, wsx::rsv1_bit));
        auto events = peer.feed(frame(role::client, opcode::continuation, {0xcd}, true, wsx::rsv1_bit));
        REQUIRE(events.size() == 1);
        CHECK(events[0].ec == error::reserved_bits_set);
    }
    SECTION("a small frame that inflates past the limit") {
        std::vector<std::uint8_t> bomb;
        deflater d(deflate_params{}, deflate_options{});
        REQUIRE_FALSE(d.compress(bytes(1001, 'a'), true, bomb));
        for (std::size_t size : {1000, 1001}) {
            CAPTURE(size);
            std::vector<std::uint8_t> payload;
            deflater fresh(deflate_params{}, deflate_options{});
            REQUIRE_FALSE(fresh.compress(bytes(size, 'a'), true, payload));
            raw_peer peer(role::server, o);
            peer.conn = connection(role::server, o);
            peer.conn.open_without_handshake(deflate_params{});
            auto events = peer.feed(frame(role::client, opcode::binary, payload, true, wsx::rsv1_bit));
            REQUIRE(events.size() == 1);
            if (size == 1000) {
                CHECK(events[0].data.size() == 1000);
            } else {
                CHECK(events[0].ec == error::message_too_big);
                CHECK(sent_close_code(peer) == 1009);
            }
        }
    }
    SECTION("corrupt compressed data") {
        raw_peer peer(role::server, o);
        peer.conn = connection(role::server, o);
        peer.conn.open_without_handshake(deflate_params{});
        auto events = peer.feed(frame(role::client, opcode::binary, {0xff, 0xff, 0xff}, true, wsx::rsv1_bit));
        REQUIRE(events.size() == 1);
        CHECK(events[0].ec == error::inflate_failed);
        CHECK(sent_close_code(peer) == 1002);
    }
}

TEST_CASE("limits: the message size limit counts each message on its own") {
    // Two messages of 600 bytes under a 1000-byte limit: the first one's
    // size must not count against the second.
    auto o = test::fixed_options();
    o.max_message_size = 1000;
    for (auto how : all_chunkings) {
        CAPTURE(static_cast<int>(how));
        raw_peer peer(role::server, o);
        bytes wire = frame(role::client, opcode::binary, bytes(600, 1));
        const bytes fragmented_first = frame(role::client, opcode::text, bytes(500, 'a'), false);
        const bytes fragmented_last = frame(role::client, opcode::continuation, bytes(500, 'b'));
        const bytes second = frame(role::client, opcode::binary, bytes(1000, 2));
        for (const bytes* b : {&second, &fragmented_first, &fragmented_last, &second})
            wire.insert(wire.end(), b->begin(), b->end());
        auto events = peer.feed(wire, how);
        REQUIRE(events.size() == 4);
        for (const auto& ev : events) CHECK(ev.type == event_type::message);
        CHECK(events[0].data.size() == 600);
        CHECK(events[1].data.size() == 1000);
        CHECK(events[2].data.size() == 1000);
        CHECK(events[3].data.size() == 1000);
    }
}

namespace {
bytes numbered(std::size_t size); // below
} // namespace

TEST_CASE("output handed to a writer stays where it is while more is queued") {
    test::connection_pair p;
    REQUIRE_FALSE(p.server.send_text("one"));
    p.server.consume_output(1); // a writer that wrote one byte
    const_bytes pieces[4];
    REQUIRE(p.server.pending_output(pieces, 4) == 1);
    const const_bytes in_flight = pieces[0]; // a write is on its way with these
    const bytes expected(in_flight.begin(), in_flight.end());
    CHECK(expected == bytes{0x03, 'o', 'n', 'e'});
    // Meanwhile: enough to outgrow any block the queue had.
    const bytes big = numbered(300000);
    REQUIRE_FALSE(p.server.send_binary(big));
    REQUIRE_FALSE(p.server.send_text("two"));
    CHECK(bytes(in_flight.begin(), in_flight.end()) == expected);
    CHECK(p.server.pending_output_size() == 4 + 10 + big.size() + 5);
    CHECK(p.server.output_queued() - p.server.output_written() == p.server.pending_output_size());
    // The write of the first piece completes; the rest follows.
    p.server.consume_output(in_flight.size());
    bytes wire{0x81};
    wire.insert(wire.end(), expected.begin(), expected.end());
    const bytes rest = test::drain(p.server);
    wire.insert(wire.end(), rest.begin(), rest.end());
    CHECK(p.server.output_written() == wire.size());
    p.client.receive(wire);
    auto events = test::collect(p.client);
    REQUIRE(events.size() == 3);
    CHECK(events[0].data == "one");
    CHECK(events[1].data == std::string(big.begin(), big.end()));
    CHECK(events[2].data == "two");
}

TEST_CASE("an incompressible message of exactly the size limit gets through compressed") {
    auto o = test::fixed_options();
    o.max_message_size = 100000;
    o.max_frame_size = 100000;
    o.deflate.emplace();
    o.deflate->compress_threshold = 0;
    test::connection_pair p(o, deflate_params{});
    bytes noise(100000);
    std::mt19937 rng(7);
    for (auto& b : noise) b = static_cast<std::uint8_t>(rng());
    REQUIRE_FALSE(p.client.send_binary(noise));
    const bytes wire = test::drain(p.client);
    CHECK(wire.size() > noise.size() + 8); // the compressed frame is larger than the limit
    auto events = test::feed(p.server, wire, chunking::whole);
    REQUIRE(events.size() == 1);
    CHECK(events[0].type == event_type::message);
    CHECK(events[0].data.size() == noise.size());
    // One byte more is still refused, once inflated.
    bytes more(100001);
    for (auto& b : more) b = static_cast<std::uint8_t>(rng());
    REQUIRE_FALSE(p.client.send_binary(more));
    events = test::transfer(p.client, p.server, chunking::whole);
    REQUIRE(events.size() == 1);
    CHECK(events[0].ec);
    CHECK(events[0].code == close_code::message_too_big);
}

// ---- large messages without copies ----------------------------------------------

namespace {

bytes numbered(std::size_t size) {
    bytes b(size);
    for (std::size_t i = 0; i < size; ++i) b[i] = static_cast<std::uint8_t>(i * 13 + i / 251);
    return b;
}

// Reads `wire` as a socket would, into prepare(read_size_hint()), and hands
// each message event to `on_message`; checks on the way that a read never
// lands past the end of a large frame's payload.
template <class OnMessage>
void read_like_a_socket(connection& c, const bytes& wire, OnMessage on_message) {
    std::size_t pos = 0;
    for (int reads = 0; pos < wire.size(); ++reads) {
        REQUIRE(reads < 100);
        const mutable_bytes area = c.prepare(c.read_size_hint());
        REQUIRE(area.size() > 0);
        const std::size_t n = std::min(area.size(), wire.size() - pos);
        std::memcpy(area.data(), wire.data() + pos, n);
        c.commit(n);
        pos += n;
        while (const event ev = c.next_event()) on_message(ev);
    }
}

} // namespace

TEST_CASE("a large message is read in place and handed over without a copy") {
    raw_peer server(role::server);
    const bytes big = numbered(200000);
    bytes wire = frame(role::client, opcode::binary, big);
    const bytes tail = frame(role::client, opcode::text, {'t', 'a', 'i', 'l'});
    wire.insert(wire.end(), tail.begin(), tail.end());
    const bytes big2 = numbered(180000);
    const bytes second = frame(role::client, opcode::binary, big2);
    wire.insert(wire.end(), second.begin(), second.end());

    // The application's buffer, which the connection gets in exchange for
    // the first message and fills with the second.
    std::string mine(300000, 'q');
    const char* const my_buffer = mine.data();
    std::vector<std::string> got;
    std::vector<const std::uint8_t*> where;
    read_like_a_socket(server.conn, wire, [&](const event& ev) {
        REQUIRE(ev.type == event_type::message);
        where.push_back(ev.data.data());
        server.conn.take_message(ev, mine);
        got.push_back(mine);
    });
    REQUIRE(got.size() == 3);
    CHECK(got[0] == std::string(big.begin(), big.end()));
    CHECK(got[1] == "tail");
    CHECK(got[2] == std::string(big2.begin(), big2.end()));
    // The large ones were swapped out, not copied: the second one arrived
    // in the buffer the application gave up for the first.
    CHECK(where[2] == reinterpret_cast<const std::uint8_t*>(my_buffer));
    CHECK(mine.data() == my_buffer);

    SECTION("a small message is copied") {
        const bytes small = frame(role::client, opcode::text, {'h', 'i'});
        server.conn.receive(small);
        const event ev = server.conn.next_event();
        REQUIRE(ev.type == event_type::message);
        std::string into;
        server.conn.take_message(ev, into);
        CHECK(into == "hi");
        CHECK(reinterpret_cast<const std::uint8_t*>(into.data()) != ev.data.data());
    }
}

TEST_CASE("a large message read in place under every chunking, and its failures") {
    for (auto how : all_chunkings) {
        CAPTURE(static_cast<int>(how));
        raw_peer server(role::server);
        std::string text(100000, 'x');
        text.replace(50000, 4, "🎉");
        const auto events = server.feed(frame(role::client, opcode::text, bytes(text.begin(), text.end())), how);
        REQUIRE(events.size() == 1);
        CHECK(events[0].text);
        CHECK(events[0].data == text);
    }
    SECTION("invalid UTF-8 in a large text frame: 1007") {
        raw_peer server(role::server);
        bytes payload(100000, 'x');
        payload[99999] = 0xff;
        const auto events = server.feed(frame(role::client, opcode::text, payload), chunking::random);
        REQUIRE(events.size() == 1);
        CHECK(events[0].type == event_type::close);
        CHECK(events[0].code == close_code::invalid_payload);
        CHECK(sent_close_code(server) == 1007);
    }
    SECTION("the transport ends in the middle of the payload: 1006") {
        raw_peer server(role::server);
        bytes wire = frame(role::client, opcode::binary, numbered(100000));
        wire.resize(wire.size() - 10);
        server.conn.receive(wire);
        CHECK(test::collect(server.conn).empty());
        server.conn.receive_eof();
        const auto events = test::collect(server.conn);
        REQUIRE(events.size() == 1);
        CHECK(events[0].code == close_code::abnormal);
        CHECK(events[0].ec == error::unexpected_eof);
    }
    SECTION("a large frame inside a fragmented message is still a protocol error") {
        raw_peer server(role::server);
        bytes wire = frame(role::client, opcode::text, {'a'}, false);
        const bytes big = frame(role::client, opcode::binary, numbered(100000));
        wire.insert(wire.end(), big.begin(), big.end());
        const auto events = server.feed(wire, chunking::random);
        REQUIRE(events.size() == 1);
        CHECK(events[0].code == close_code::protocol_error);
        CHECK(events[0].ec == error::expected_continuation);
    }
}

TEST_CASE("send_borrowed: a server's large payload goes out from the caller's memory") {
    raw_peer server(role::server);
    bytes payload = numbered(100000);
    const bytes original = payload;
    REQUIRE_FALSE(server.conn.send_text("first"));
    bool borrowed = false;
    REQUIRE_FALSE(server.conn.send_borrowed(false, payload, borrowed));
    CHECK(borrowed);
    const std::uint64_t end = server.conn.output_queued();
    REQUIRE_FALSE(server.conn.send_text("after"));
    // The queue is a gather list: header, the caller's bytes, what followed.
    const_bytes pieces[8];
    const std::size_t count = server.conn.pending_output(pieces, 8);
    REQUIRE(count == 3);
    CHECK(pieces[1].data() == payload.data()); // referenced, not copied
    CHECK(pieces[1].size() == payload.size());
    // RFC 6455 §5.2: 127, then the length in 64 bits, network byte order.
    const bytes header{0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x86, 0xa0};
    REQUIRE(pieces[0].size() == 7 + header.size());
    CHECK(bytes(pieces[0].begin() + 7, pieces[0].end()) == header);

    SECTION("written in order; then the caller may reuse its memory") {
        bytes wire;
        while (server.conn.output_written() < end) {
            const const_bytes piece = server.conn.pending_output();
            wire.insert(wire.end(), piece.begin(), piece.end());
            server.conn.consume_output(piece.size());
        }
        std::fill(payload.begin(), payload.end(), 0);
        const bytes after = test::drain(server.conn);
        wire.insert(wire.end(), after.begin(), after.end());
        raw_peer client(role::client);
        const auto events = client.feed(wire, chunking::random);
        REQUIRE(events.size() == 3);
        CHECK(events[0].data == "first");
        CHECK_FALSE(events[1].text);
        CHECK(events[1].data == std::string(original.begin(), original.end()));
        CHECK(events[2].data == "after");
    }
    SECTION("a transport error lets the caller's bytes go") {
        server.conn.receive_transport_error(std::make_error_code(std::errc::broken_pipe));
        CHECK(server.conn.pending_output_size() == 0);
        CHECK(server.conn.output_written() >= end);
    }
}

TEST_CASE("send_borrowed copies what does not go out exactly as given, and keeps the rules of sending") {
    const bytes big = numbered(100000);
    auto copied = [&](connection& c, std::size_t size) {
        bool b = true;
        REQUIRE_FALSE(c.send_borrowed(true, const_bytes(big).first(size), b));
        test::drain(c);
        return !b;
    };
    raw_peer client(role::client);
    CHECK(copied(client.conn, big.size())); // a client masks
    auto o = test::fixed_options();
    o.fragment_size = 70000;
    raw_peer cutting(role::server, o);
    CHECK(copied(cutting.conn, 70001));
    CHECK_FALSE(copied(cutting.conn, 70000));
    connection compressing(role::server, test::fixed_options());
    compressing.open_without_handshake(deflate_params{});
    CHECK(copied(compressing, big.size())); // it goes compressed
    raw_peer server(role::server);
    CHECK(copied(server.conn, connection::direct_payload_size - 1)); // small: a copy is cheaper
    CHECK_FALSE(copied(server.conn, connection::direct_payload_size));

    bool b = false;
    REQUIRE_FALSE(server.conn.begin_message(true, {}));
    CHECK(server.conn.send_borrowed(true, big, b) == error::expected_continuation);
    REQUIRE_FALSE(server.conn.finish_message());
    REQUIRE_FALSE(server.conn.close());
    CHECK(server.conn.send_borrowed(true, big, b) == error::connection_closed);
    CHECK_FALSE(b);
}
