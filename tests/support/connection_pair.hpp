// Helpers for tests of wsx::connection: a client and a server wired back to
// back in memory, raw frame builders, and byte pumps that chop the stream
// whole, one byte at a time, or at seeded random points. Users may copy this
// file to test their own frame handling.
#pragma once

#include <wsx/connection.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace wsx::test {

using bytes = std::vector<std::uint8_t>;

// A fixed mask key source (37 fa 21 3d, the key of RFC 6455 §5.7), so tests
// see the same bytes every run.
inline random_source fixed_random() {
    return [](mutable_bytes out) {
        static constexpr std::uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = key[i % 4];
    };
}

inline connection_options fixed_options() {
    connection_options o;
    o.random = fixed_random();
    return o;
}

// One frame as `sender` would put it on the wire (masked with the fixed key
// when the sender is a client).
inline bytes frame(role sender, opcode op, bytes payload, bool fin = true, std::uint8_t rsv = 0) {
    frame_header h;
    h.fin = fin;
    h.rsv = rsv;
    h.op = op;
    h.payload_length = payload.size();
    h.masked = sender == role::client;
    h.key = {0x37, 0xfa, 0x21, 0x3d};
    bytes out(max_frame_header_size);
    out.resize(write_frame_header(h, out));
    if (h.masked) apply_mask(payload, h.key);
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

// An event copied out of the connection's buffers.
struct recorded {
    event_type type = event_type::none;
    bool text = false;
    bool fin = true;
    std::string data;
    close_code code = close_code::no_status;
    std::string reason;
    bool closed_by_peer = false;
    std::error_code ec;
};

inline std::vector<recorded> collect(connection& c) {
    std::vector<recorded> out;
    for (int guard = 0; guard < 1000000; ++guard) {
        const event ev = c.next_event();
        if (!ev) break;
        recorded r;
        r.type = ev.type;
        r.text = ev.text;
        r.fin = ev.fin;
        r.data = std::string(ev.data_view());
        r.code = ev.code;
        r.reason = std::string(ev.reason);
        r.closed_by_peer = ev.closed_by_peer;
        r.ec = ev.ec;
        out.push_back(std::move(r));
    }
    return out;
}

// Takes everything a connection wants to write (consuming it may queue a
// pong held back while the output was full: that is taken too).
inline bytes drain(connection& c) {
    bytes copy;
    while (c.pending_output_size() > 0) {
        const const_bytes out = c.pending_output();
        copy.insert(copy.end(), out.begin(), out.end());
        c.consume_output(out.size());
    }
    return copy;
}

enum class chunking { whole, bytewise, random };

// Feeds bytes in pieces chosen by `how`, collecting events after each piece.
inline std::vector<recorded> feed(connection& c, const bytes& data, chunking how, unsigned seed = 1) {
    std::vector<recorded> events;
    std::mt19937 rng(seed);
    std::size_t pos = 0;
    do {
        std::size_t n = data.size() - pos;
        if (how == chunking::bytewise) n = std::min<std::size_t>(n, 1);
        if (how == chunking::random) n = std::min<std::size_t>(n, 1 + rng() % 300);
        c.receive(const_bytes(data.data() + pos, n));
        pos += n;
        auto more = collect(c);
        events.insert(events.end(), more.begin(), more.end());
    } while (pos < data.size());
    return events;
}

inline std::vector<recorded> transfer(connection& from, connection& to, chunking how) {
    return feed(to, drain(from), how);
}

// A frame as parsed back from a connection's output.
struct parsed_frame {
    opcode op;
    bool fin;
    std::uint8_t rsv;
    bytes payload;
};

inline std::vector<parsed_frame> parse_frames(const bytes& wire, role receiver) {
    std::vector<parsed_frame> frames;
    std::size_t pos = 0;
    while (pos < wire.size()) {
        frame_header h;
        const auto r = parse_frame_header(const_bytes(wire.data() + pos, wire.size() - pos), receiver, h, 7);
        if (r.status != parse_status::complete) throw std::runtime_error("bad frame in output");
        pos += r.size;
        if (wire.size() - pos < h.payload_length) throw std::runtime_error("truncated frame in output");
        bytes payload(wire.begin() + static_cast<std::ptrdiff_t>(pos),
                      wire.begin() + static_cast<std::ptrdiff_t>(pos + h.payload_length));
        if (h.masked) apply_mask(payload, h.key);
        pos += static_cast<std::size_t>(h.payload_length);
        frames.push_back({h.op, h.fin, h.rsv, std::move(payload)});
    }
    return frames;
}

// A client and a server, opened without the HTTP handshake.
struct connection_pair {
    connection client;
    connection server;
    explicit connection_pair(connection_options options = fixed_options(),
                             std::optional<deflate_params> deflate = std::nullopt)
        : client(role::client, options), server(role::server, options) {
        client.open_without_handshake(deflate);
        server.open_without_handshake(deflate);
    }
    std::vector<recorded> client_to_server(chunking how) { return transfer(client, server, how); }
    std::vector<recorded> server_to_client(chunking how) { return transfer(server, client, how); }
};

} // namespace wsx::test
