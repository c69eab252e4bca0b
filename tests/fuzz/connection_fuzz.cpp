// wsx::connection fed arbitrary peer bytes after a real opening handshake.
//
// Input: three control bytes, then the bytes the peer "sends".
//   byte 0: bit 0 role under test (0 server, 1 client), bit 1 permessage-
//           deflate, bit 2 streaming, bit 3 small limits, bits 4-6 how the
//           bytes are cut into reads, bit 7 prepare()/commit() instead of
//           receive();
//   byte 1: what the application does between reads (send text, binary,
//           fragments, pings, pongs, close, let time pass, drain lazily);
//   byte 2: a seed for read sizes and timing.
// A client and a server connection complete the handshake in memory; the one
// under test then reads the input, and its output goes to the other, real
// peer.
//
// Invariants (abort on violation):
// - no crash, no undefined behaviour, no unbounded loop;
// - events after the handshake are data, ping, pong or close; text is valid
//   UTF-8 (whole messages, or chunk by chunk when streaming); payloads keep
//   to the limits;
// - exactly one close event once the input ends (EOF), always the last one,
//   with a code valid on the wire, or 1005 / 1006;
// - every output byte parses as frames for the receiving role: headers
//   accepted by parse_frame_header, fragments in order, RSV1 only on the
//   first frame of a compressed message, a valid close payload, nothing
//   after the close frame, and no output at all once the transport should be
//   closed and what was pending has been written;
// - the real peer reads that output without finding any fault in it.
#include <wsx/connection.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace wsx;

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "connection invariant violated: %s\n", what);
    std::abort();
}

void expect(bool condition, const char* what) {
    if (!condition) violated(what);
}

// Deterministic "random" bytes: the fuzzer must replay an input exactly.
random_source counting_random() {
    return [n = std::uint8_t{0}](mutable_bytes out) mutable {
        for (auto& b : out) b = static_cast<std::uint8_t>(n++ * 37 + 11);
    };
}

struct xorshift {
    std::uint32_t x;
    std::uint32_t next() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return x;
    }
};

constexpr std::size_t small_message_limit = 1000;

// Checks the frames one side writes, as the other side must read them.
class output_checker {
public:
    output_checker(role receiver, bool deflate) : receiver_(receiver), deflate_(deflate) {}

    void check(const_bytes wire) {
        std::size_t pos = 0;
        while (pos < wire.size()) {
            expect(!close_seen_, "a frame after the close frame");
            frame_header h;
            const auto r = parse_frame_header(wire.subspan(pos), receiver_, h, deflate_ ? rsv1_bit : 0);
            expect(r.status == parse_status::complete, "output is not a valid frame header");
            pos += r.size;
            expect(h.payload_length <= wire.size() - pos, "output ends inside a frame");
            payload_.assign(wire.data() + pos, wire.data() + pos + h.payload_length);
            pos += static_cast<std::size_t>(h.payload_length);
            if (h.masked) apply_mask(payload_, h.key);
            frame(h);
        }
    }

private:
    void frame(const frame_header& h) {
        if (is_control(h.op)) {
            expect(h.rsv == 0, "RSV bits on a control frame");
            if (h.op == opcode::close) {
                close_payload parsed;
                expect(!parse_close_payload(payload_, parsed), "an invalid close payload");
                close_seen_ = true;
            }
            return;
        }
        if (h.op == opcode::continuation) {
            expect(in_message_, "a continuation outside a message");
            expect(h.rsv == 0, "RSV1 on a continuation");
        } else {
            expect(!in_message_, "a new message inside a fragmented one");
            in_message_ = true;
            text_ = h.op == opcode::text;
            compressed_ = (h.rsv & rsv1_bit) != 0;
            utf8_.reset();
        }
        if (text_ && !compressed_) expect(utf8_.feed(payload_), "sent text is not UTF-8");
        if (h.fin) {
            in_message_ = false;
            if (text_ && !compressed_) expect(utf8_.complete(), "sent text ends inside a character");
        }
    }

    role receiver_;
    bool deflate_;
    bool close_seen_ = false;
    bool in_message_ = false;
    bool text_ = false;
    bool compressed_ = false;
    utf8_validator utf8_;
    std::vector<std::uint8_t> payload_;
};

struct run {
    run(connection& tested, connection& other, bool deflate, std::size_t input_size)
        : under_test(tested), peer(other), checker(other.get_role(), deflate),
          streaming(tested.options().streaming), max_message_size(tested.options().max_message_size),
          // At most an event per input byte (a 2-byte frame) plus the close.
          event_budget(input_size + 2) {}

    connection& under_test;
    connection& peer;
    output_checker checker;
    bool streaming;
    std::size_t max_message_size;
    std::size_t event_budget;

    bool close_event_seen = false;
    bool transport_closed_and_drained = false;
    bool chunk_open = false;
    bool chunk_text = false;
    std::size_t chunk_bytes = 0;
    utf8_validator chunk_utf8;

    void pull_events() {
        while (const event ev = under_test.next_event()) {
            expect(!close_event_seen, "an event after the close event");
            expect(event_budget-- > 0, "more events than the input can explain");
            switch (ev.type) {
            case event_type::none:
            case event_type::request:
            case event_type::http_request:
            case event_type::response:
                violated("a handshake event after the handshake");
            case event_type::message:
                expect(!streaming, "a whole message while streaming");
                expect(ev.data.size() <= max_message_size, "a message above the limit");
                if (ev.text) expect(is_valid_utf8(ev.data), "a text message that is not UTF-8");
                break;
            case event_type::chunk:
                expect(streaming, "a chunk while not streaming");
                if (!chunk_open) {
                    chunk_open = true;
                    chunk_text = ev.text;
                    chunk_bytes = 0;
                    chunk_utf8.reset();
                }
                expect(ev.text == chunk_text, "a chunk changed its message's type");
                chunk_bytes += ev.data.size();
                expect(chunk_bytes <= max_message_size, "a streamed message above the limit");
                if (ev.text) expect(chunk_utf8.feed(ev.data), "a text chunk that is not UTF-8");
                if (ev.fin) {
                    chunk_open = false;
                    if (ev.text) expect(chunk_utf8.complete(), "streamed text ends inside a character");
                }
                break;
            case event_type::ping:
            case event_type::pong:
                expect(ev.data.size() <= max_control_payload, "a control payload above 125 bytes");
                break;
            case event_type::close: {
                close_event_seen = true;
                const auto code = static_cast<std::uint16_t>(ev.code);
                expect(is_valid_on_wire(code) || ev.code == close_code::no_status ||
                           ev.code == close_code::abnormal,
                       "a close code that is neither valid on the wire nor 1005/1006");
                if (ev.ec) expect(!ev.closed_by_peer, "a failure blamed on the peer's close");
                expect(under_test.get_state() == state::closed, "a close event before the state is closed");
                break;
            }
            }
        }
    }

    // Writes the output away: checks it and hands it to the peer.
    void drain() {
        // Consuming all the output may queue one pong, owed for a ping that
        // came while the output was above its limit (it is sent once the
        // output drains): a second round writes it, and nothing follows.
        for (int round = 0; round < 2 && under_test.pending_output_size() > 0; ++round) {
            const const_bytes out = under_test.pending_output();
            if (transport_closed_and_drained) expect(out.empty(), "output after the transport was to be closed");
            checker.check(out);
            peer.receive(out);
            under_test.consume_output(out.size());
        }
        expect(under_test.pending_output_size() == 0, "output left after consuming all of it");
        if (under_test.transport_action() == wsx::transport_action::close) transport_closed_and_drained = true;
        while (const event ev = peer.next_event()) {
            expect(!ev.ec, "the peer found a fault in the output");
        }
        peer.consume_output(peer.pending_output().size());
    }
};

// A text of `size` bytes with characters of 1 to 4 bytes.
std::string text_of(std::size_t size) {
    static const std::string_view pieces[] = {"a", "\xc3\xa9", "\xe4\xb8\x96", "\xf0\x9f\x8e\x89", " "};
    std::string s;
    for (std::size_t i = 0; s.size() < size; ++i) {
        const std::string_view p = pieces[i % 5];
        if (s.size() + p.size() > size) {
            s.append(size - s.size(), 'z');
            break;
        }
        s += p;
    }
    return s;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::uint8_t control[3] = {0, 0, 0};
    const std::size_t control_size = size < 3 ? size : 3;
    if (control_size > 0) std::memcpy(control, data, control_size);
    const const_bytes input(data + control_size, size - control_size);

    const role tested = (control[0] & 1) ? role::client : role::server;
    const bool deflate = (control[0] & 2) != 0;
    const bool streaming = (control[0] & 4) != 0;
    const bool small_limits = (control[0] & 8) != 0;
    const unsigned chunking = (control[0] >> 4) & 7;
    const bool use_prepare = (control[0] & 0x80) != 0;
    const std::uint8_t actions = control[1];
    xorshift rng{0x9e3779b9u ^ (std::uint32_t{control[2]} << 8 | 1)};

    connection_options options;
    options.random = counting_random();
    options.streaming = streaming;
    if (deflate) options.deflate.emplace();
    if (small_limits) {
        options.max_message_size = small_message_limit;
        options.max_frame_size = 500;
        options.max_fragments = 10;
        options.max_pending_output = 200;
        options.fragment_size = 64;
    }

    // ---- a real opening handshake -------------------------------------------------
    connection client(role::client, options);
    connection server(role::server, options);
    client_request_options request;
    request.host = "localhost";
    request.target = "/chat";
    expect(!client.start_handshake(request), "start_handshake failed");
    server.receive(client.pending_output());
    client.consume_output(client.pending_output_size());
    expect(server.next_event().type == event_type::request, "no request event");
    expect(!server.accept(), "accept failed");
    client.receive(server.pending_output());
    server.consume_output(server.pending_output_size());
    expect(client.next_event().type == event_type::response, "no response event");
    expect(client.get_state() == state::open && server.get_state() == state::open, "handshake did not open");
    expect(client.deflate_enabled() == deflate && server.deflate_enabled() == deflate, "deflate not agreed");

    connection& under_test = tested == role::server ? server : client;
    connection& peer = tested == role::server ? client : server;
    run r(under_test, peer, deflate, input.size());

    // ---- the peer's bytes, in reads ---------------------------------------------------
    auto now = time_point{} + std::chrono::hours(1);
    std::size_t pos = 0;
    bool closed_by_us = false;
    for (std::size_t i = 0; pos < input.size(); ++i) {
        std::size_t n = input.size() - pos;
        switch (chunking) {
        case 0: break;                                                   // whole
        case 1: n = 1; break;                                            // byte by byte
        case 2: n = 1 + rng.next() % 300; break;
        case 3: n = 7; break;
        case 4: n = under_test.read_size_hint(); break;                  // as a socket read
        case 5: n = 2; break;
        case 6: n = (i % 2) ? 4096 : 1; break;
        default: n = 1 + rng.next() % 20; break;
        }
        n = std::min(n, input.size() - pos);
        if (use_prepare) {
            // Less than asked only for the rest of a large frame's payload.
            const mutable_bytes area = under_test.prepare(n);
            expect(area.size() > 0, "prepare gave no room");
            n = std::min(n, area.size());
            std::memcpy(area.data(), input.data() + pos, n);
            under_test.commit(n);
        } else {
            under_test.receive(input.subspan(pos, n));
        }
        pos += n;
        r.pull_events();

        // The application acts between reads.
        const bool open = under_test.get_state() == state::open;
        if (actions & 0x01) {
            const std::string text = text_of((i * 37) % 150);
            const std::error_code ec = under_test.send_text(text);
            if (!open) expect(static_cast<bool>(ec), "send_text succeeded while not open");
        }
        if ((actions & 0x02) && i % 3 == 0) {
            const std::uint8_t bytes[5] = {0, 0xff, static_cast<std::uint8_t>(i), 0x80, 7};
            const std::error_code ec = under_test.send_binary(const_bytes(bytes, sizeof bytes));
            if (!open) expect(static_cast<bool>(ec), "send_binary succeeded while not open");
        }
        if ((actions & 0x04) && i % 5 == 1) {
            const std::uint8_t payload[3] = {'p', static_cast<std::uint8_t>(i), 'g'};
            (void)under_test.send_ping(const_bytes(payload, sizeof payload));
        }
        if (actions & 0x08) {
            const std::string piece = text_of(i % 40);
            switch (i % 4) {
            case 0: (void)under_test.begin_message(true, const_bytes(piece)); break;
            case 3: (void)under_test.finish_message(const_bytes(piece)); break;
            default: (void)under_test.continue_message(const_bytes(piece)); break;
            }
        }
        if (actions & 0x10) {
            now += std::chrono::milliseconds(3000 + rng.next() % 12000);
            under_test.tick(now);
            if (const auto deadline = under_test.next_deadline()) {
                expect(*deadline > now || under_test.get_state() == state::closed,
                       "a deadline already passed after tick");
            }
        }
        if ((actions & 0x20) && !closed_by_us && i == control[2] % 8u) {
            closed_by_us = true;
            (void)under_test.close(close_code::going_away, "bye \xe2\x9c\x8c");
        }
        if ((actions & 0x40) && i % 4 == 2) (void)under_test.send_pong();
        r.pull_events();
        // Lazy writers let the output pile up (backpressure, coalesced pongs).
        if (!(actions & 0x80) || i % 4 == 3) r.drain();
    }

    // ---- the end of the stream ------------------------------------------------------
    r.drain();
    under_test.receive_eof();
    r.pull_events();
    expect(r.close_event_seen, "no close event after EOF");
    r.drain();
    expect(under_test.transport_action() == wsx::transport_action::close, "the transport is kept after EOF and the close event");

    // Nothing more happens after the close event.
    static const std::uint8_t more[] = {0x89, 0x80, 1, 2, 3, 4, 0x8a, 0x00};
    under_test.receive(const_bytes(more, sizeof more));
    now += std::chrono::hours(1);
    under_test.tick(now);
    expect(!under_test.next_event(), "an event after the close event");
    expect(static_cast<bool>(under_test.send_text("late")), "send after close succeeded");
    r.drain();
    return 0;
}
