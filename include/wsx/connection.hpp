// wsx/connection.hpp - the whole WebSocket protocol for one connection, with
// no I/O: bytes in, events out; calls in, bytes out.
//
//   connection c(role::server, options);
//   c.receive(bytes_from_socket);          // or prepare(n) + read + commit(n)
//   while (auto ev = c.next_event()) { ... } // request, message, ping, close...
//   write(c.pending_output()); c.consume_output(n);
//   switch (c.transport_action()) { ... }   // once the output is written
//   c.receive_transport_error(ec);          // a read or write failed
//
// Views handed out by next_event() (payloads, reasons, the request) point
// into the connection's buffers: they stay valid until the next call to
// next_event(), receive(), prepare() or commit(). A single-frame message is
// never copied: it is unmasked and validated where it was read. A large one
// (direct_payload_size or more) is read straight into a buffer of its own,
// which take_message() hands over to a std::string without copying.
//
// The connection owns its whole life: the close frames sent and received
// and the failure, if any, in one close_status (status()); what to do with
// the transport (transport_action()); and the answer to a plain HTTP
// request (the http_request event). A call made at the wrong time or with
// arguments that cannot be sent answers an error code; nothing is thrown
// out of the core but std::bad_alloc.
//
// Time belongs to the caller: tell the connection what time it is with
// tick(now), and ask next_deadline() when to call tick() again. Open, close,
// ping and pong deadlines are all handled there.
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/close_code.hpp>
#include <wsx/deflate.hpp>
#include <wsx/error.hpp>
#include <wsx/frame.hpp>
#include <wsx/handshake.hpp>
#include <wsx/http.hpp>
#include <wsx/mask.hpp>
#include <wsx/message.hpp>
#include <wsx/output_queue.hpp>
#include <wsx/prepared_message.hpp>
#include <wsx/random.hpp>
#include <wsx/utf8.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace wsx {

using clock_type = std::chrono::steady_clock;
using time_point = clock_type::time_point;
using duration = std::chrono::milliseconds;

// Every limit has a name and a default (see the README's limits table). A
// duration of zero turns that timer off.
struct connection_options {
    std::size_t max_message_size = 1024 * 1024;   // after inflation; close 1009
    std::size_t max_frame_size = 1024 * 1024;     // one frame's payload; close 1009
    std::size_t max_fragments = 100000;           // frames per message; close 1009
    std::size_t max_pending_output = 1024 * 1024; // above it, send_* answers would_block
    std::size_t fragment_size = 0;                // split outgoing messages above this (0: never)
    bool streaming = false;                       // deliver message_chunk events, frame by frame
    duration open_timeout{10000};
    duration close_timeout{10000};
    duration ping_interval{20000};
    duration ping_timeout{20000};
    http_limits http;                            // handshake head size and header count
    origin_policy origins;                       // server: which Origin headers are let in
    std::optional<deflate_options> deflate;      // permessage-deflate offered/accepted when set
    random_source random;                        // mask keys, Sec-WebSocket-Key; CSPRNG when empty
};

enum class state : std::uint8_t { connecting, open, closing, closed };

enum class event_type : std::uint8_t {
    none,
    request,  // server: a valid upgrade request; call accept() or reject()
    http_request, // server: a request that does not ask for a WebSocket at
                  // all (a browser's GET /): answer it with reject() (a page,
                  // a health check, a redirect) or refuse(); `ec` says why it
                  // is not an upgrade
    response, // client: the server's answer (101 or not)
    message,  // a whole text or binary message
    chunk,    // streaming: one piece of a message; `fin` on the last
    ping,
    pong,
    close,    // always the last event, exactly once
};

struct event {
    event_type type = event_type::none;
    bool text = false;      // message, chunk: a text message
    bool fin = true;        // chunk: the last piece of its message
    const_bytes data;       // message, chunk, ping, pong: the payload
    // close: the connection's close code - the one in the peer's close frame,
    // or the one we failed the connection with (1002, 1007, 1009, 1011), or
    // abnormal (1006) when it ended without close frames - with the peer's
    // reason, whether the peer started the closing handshake, and the error
    // that failed the connection, if one did.
    close_code code = close_code::no_status;
    std::string_view reason;
    bool closed_by_peer = false;
    std::error_code ec;

    explicit operator bool() const noexcept { return type != event_type::none; }
    std::string_view data_view() const noexcept { return as_string_view(data); }
};

// Called by adapters with each ping and pong read (the connection answers
// pings on its own).
using control_callback = std::function<void(event_type type, const_bytes payload)>;

// What to do with the transport, once the output is written.
enum class transport_action : std::uint8_t {
    none,           // keep reading and writing
    shutdown_write, // a client after the closing handshake: nothing more
                    // will be written; keep reading until the server ends
                    // the stream (receive_eof()) or the close timeout
    close,          // end the transport: the connection is over
};

// Server: how to answer an upgrade request.
struct accept_options {
    std::string subprotocol; // empty, or one the client offered (see select_subprotocol)
    http_fields headers;     // more response fields (Set-Cookie, ...)
};

class connection {
public:
    connection(role r, connection_options options = {})
        : connection(r, std::make_shared<const connection_options>(std::move(options))) {}
    // Options shared by many connections (a server's), never copied: an
    // idle connection then costs a pointer for them, not a copy.
    connection(role r, std::shared_ptr<const connection_options> options)
        : role_(r), options_(options ? std::move(options) : std::make_shared<const connection_options>()) {}

    role get_role() const noexcept { return role_; }
    state get_state() const noexcept { return state_; }
    const connection_options& options() const noexcept { return *options_; }
    const std::shared_ptr<const connection_options>& shared_options() const noexcept { return options_; }
    // How the connection ended - final from the close event on, or from
    // the moment it failed (its code then known before that event is read:
    // 1011 for a keepalive timeout) - and the close frames sent and received.
    const close_status& status() const noexcept { return status_; }
    // The error that failed the connection, if any: status().ec.
    std::error_code error() const noexcept { return status_.ec; }

    // ---- bytes in -------------------------------------------------------

    // A writable area of at least n bytes at the end of the input buffer.
    // While the payload of a large frame is being read, it is instead that
    // payload's missing part, however long: those bytes land where the
    // message will be handed out, so a read never copies them again.
    mutable_bytes prepare(std::size_t n) {
        if (filling_direct()) return mutable_bytes(message_).subspan(message_.size() - wanted_);
        if (in_read_ == in_end_) in_read_ = in_end_ = 0;
        if (in_.size() - in_end_ < n) {
            if (in_read_ > 0) { // compact what is unread to the front
                std::memmove(in_.data(), in_.data() + in_read_, in_end_ - in_read_);
                in_end_ -= in_read_;
                in_read_ = 0;
            }
            if (in_.size() - in_end_ < n) in_.resize(in_end_ + n);
        }
        return {in_.data() + in_end_, in_.size() - in_end_};
    }
    // Makes n bytes written into prepare()'s area part of the input.
    void commit(std::size_t n) noexcept {
        if (filling_direct()) {
            wanted_ -= std::min(n, wanted_);
            return;
        }
        in_end_ += std::min(n, in_.size() - in_end_);
    }

    // Copies bytes in.
    void receive(const_bytes data) {
        while (!data.empty()) {
            const mutable_bytes area = prepare(data.size());
            const std::size_t n = std::min(area.size(), data.size());
            std::memcpy(area.data(), data.data(), n);
            commit(n);
            data = data.subspan(n);
        }
    }

    // The transport reached end of stream.
    void receive_eof() noexcept {
        eof_ = true;
        // RFC 6455 §7.1.1: a client that got the server's close frame waits
        // for the server to close TCP; this is that close, so stop waiting.
        if (state_ == state::closed) close_transport_ = true;
    }

    // A read or write of the transport failed: nothing more moves either
    // way. Unread input and unwritten output are dropped; a connection that
    // had not ended yet ends with 1006 (abnormal) and `ec`, reported by its
    // close event. One that had failed itself first (a keepalive timeout
    // whose close frame could not leave) keeps its own reason.
    void receive_transport_error(std::error_code ec) noexcept;

    // Bytes received but not turned into events yet.
    std::size_t buffered_input() const noexcept { return in_end_ - in_read_; }

    // How many bytes a read should ask for: the rest of the frame being
    // received when it is large, else a comfortable default.
    std::size_t read_size_hint() const noexcept {
        constexpr std::size_t minimum = 16 * 1024;
        return std::max(minimum, wanted_);
    }

    // ---- events out -----------------------------------------------------

    event next_event();

    // Puts the message of `ev`, the message event next_event() just
    // returned, into `into`. A large message the connection holds in a
    // buffer of its own is handed over by swapping buffers, not copied (the
    // connection keeps `into`'s old buffer for a later message); any other
    // is copied.
    void take_message(const event& ev, std::string& into);

    // A single-frame message at least this long is read into its own buffer.
    static constexpr std::size_t direct_payload_size = 64 * 1024;

    // ---- the opening handshake -------------------------------------------

    // Client: queue the upgrade request. `request` says what to ask for
    // (host, target, origin, subprotocols, extra headers).
    std::error_code start_handshake(client_request_options request);

    // Server: answer the request event with 101 Switching Protocols.
    std::error_code accept(accept_options answer = {});
    // Server: answer the request or http_request event with any final HTTP
    // response (a page, a health check, a redirect, 401 with
    // WWW-Authenticate). The connection then ends with handshake_rejected.
    std::error_code reject(int status, std::string_view body = {}, const http_fields& headers = {});
    // Server: answer the request or http_request event with the core's own
    // refusal: the HTTP error that names what the request lacks (426 with
    // Sec-WebSocket-Version for a plain GET, 405 for a POST...), or 403 for
    // a valid upgrade. The connection ends with that error.
    std::error_code refuse();
    // accept() and reject() answer std::errc::invalid_argument for an
    // answer that cannot be sent (a subprotocol the client never offered, a
    // status outside 200-999, a field wsx writes itself): that is the
    // server's mistake, so the client hears 500 and the connection ends.

    // The parsed request (server) or response (client) of the handshake,
    // valid until release_handshake().
    const server_request& request() const noexcept { return handshake().request; }
    const client_response& response() const noexcept { return handshake().response; }
    // Frees the handshake's head and parse state (a few KiB) once the caller
    // has taken what it needs from request() or response(); they are empty
    // afterwards.
    void release_handshake() noexcept {
        if (state_ != state::connecting) hs_.reset();
    }
    // The agreed subprotocol (empty when none) and permessage-deflate.
    std::string_view subprotocol() const noexcept { return subprotocol_; }
    bool deflate_enabled() const noexcept { return deflate_.has_value(); }

    // Skips the HTTP handshake: for callers who performed it themselves.
    void open_without_handshake(std::optional<deflate_params> deflate = {}) {
        set_open(std::move(deflate));
    }

    // ---- calls in ---------------------------------------------------------

    std::error_code send_text(std::string_view text) { return send_message(opcode::text, as_bytes(text)); }
    std::error_code send_binary(const_bytes data) { return send_message(opcode::binary, data); }
    // A message in pieces: begin_message, any number of continue_message,
    // finish_message. Control frames may be sent in between.
    std::error_code begin_message(bool text, const_bytes data);
    std::error_code continue_message(const_bytes data) { return send_fragment(data, false); }
    std::error_code finish_message(const_bytes data = {}) { return send_fragment(data, true); }
    std::error_code send_ping(const_bytes payload = {});
    std::error_code send_pong(const_bytes payload = {});
    // Starts the closing handshake (or, while connecting, abandons it).
    std::error_code close(close_code code = close_code::normal, std::string_view reason = {});

    // A whole message sent without a copy when its payload goes out as
    // given: a server's (a client masks), not compressed, not cut into
    // fragments, and at least direct_payload_size long. The output then
    // references the caller's memory, which must stay valid until
    // output_written() reaches the output_queued() read right after the
    // call; `borrowed` says whether that happened (else it was copied).
    std::error_code send_borrowed(bool text, const_bytes data, bool& borrowed);
    // Server: a message framed once for many connections
    // (wsx/prepared_message.hpp), referenced rather than copied when its
    // frame suits this connection; otherwise sent like send_text().
    std::error_code send_shared(const std::shared_ptr<prepared_message>& m);

    // ---- bytes out ----------------------------------------------------------

    // The bytes to write are a queue of segments (wsx/output_queue.hpp):
    // the first contiguous piece, or up to `max` pieces for a gather write
    // (writev, an Asio buffer sequence; returns how many). They stay where
    // they are until consumed, whatever is queued meanwhile, so a writer may
    // write them while the connection goes on queueing.
    const_bytes pending_output() const noexcept { return out_.front(); }
    std::size_t pending_output(const_bytes* buffers, std::size_t max) const noexcept {
        return out_.gather(buffers, max);
    }
    std::size_t pending_output_size() const noexcept { return out_.size(); }
    // Written bytes leave the queue. A pong held back while the output was
    // above max_pending_output (a ping flood) is queued once it drained.
    void consume_output(std::size_t n);
    // Positions in the output stream: the end of all bytes ever queued, and
    // of all bytes consumed (see send_borrowed()).
    std::uint64_t output_queued() const noexcept { return out_.queued(); }
    std::uint64_t output_written() const noexcept { return out_.written(); }
    // What to do with the transport once the output is written: close it
    // when the connection failed or the closing handshake is over (RFC 6455
    // §7.1.1: the server closes the TCP connection first); a client that
    // completed the closing handshake shuts down writing and waits for the
    // server's end of stream, up to the close timeout, before it closes.
    wsx::transport_action transport_action() const noexcept {
        if (close_transport_) return wsx::transport_action::close;
        if (role_ == role::client && state_ == state::closed && close_sent_ && status_.received)
            return wsx::transport_action::shutdown_write;
        return wsx::transport_action::none;
    }

    // ---- time ----------------------------------------------------------------

    void tick(time_point now);
    std::optional<time_point> next_deadline() const noexcept;
    // Round-trip time of the last keepalive ping answered.
    std::optional<duration> latency() const noexcept {
        return latency_.count() < 0 ? std::nullopt : std::optional<duration>(latency_);
    }

    // ---- added for the Asio adapter (wsx/asio/): buffer lending, broadcast --

    // Idle: nothing unread, no message half received, nothing waiting to be
    // written. An idle connection needs no buffer, so an adapter may take
    // them back between messages (release_buffers) and lend them again when
    // bytes arrive (adopt_buffers): idle connections then hold none, and a
    // pool of buffers keeps steady state free of allocation.
    struct buffer_set;
    bool idle() const noexcept { return input_idle() && out_.empty() && !pong_owed_; }
    // Nothing unread and no message half received: the input side needs no
    // buffer until bytes arrive.
    bool input_idle() const noexcept { return in_read_ == in_end_ && !in_message_; }
    // Moves every buffer (capacity kept, contents dropped) into `into` when
    // idle(); returns false and changes nothing otherwise.
    bool release_buffers(buffer_set& into) noexcept;
    // Takes from `from` each buffer that the connection holds no memory for;
    // what it does not take stays in `from`.
    void adopt_buffers(buffer_set& from) noexcept;
    // The agreed permessage-deflate parameters (none when not agreed).
    const std::optional<deflate_params>& deflate_parameters() const noexcept { return deflate_; }

private:
    // The options' random source, else the CSPRNG (wsx/random.hpp).
    void random_fill(mutable_bytes out) const {
        if (options_->random) options_->random(out);
        else fill_random(out);
    }

    // The deflate options in force (the defaults when a caller opened the
    // connection with deflate parameters but without options for it).
    const deflate_options& deflate_settings() const noexcept {
        static const deflate_options defaults;
        return options_->deflate ? *options_->deflate : defaults;
    }

    static const_bytes as_bytes(std::string_view s) noexcept {
        return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
    }

    std::error_code send_message(opcode op, const_bytes data);
    std::error_code send_fragment(const_bytes data, bool fin);
    std::error_code check_can_send() const noexcept;
    void queue_data(opcode first_op, const_bytes data, bool fin, bool compressed);
    void queue_frame(opcode op, const_bytes payload, bool fin, std::uint8_t rsv = 0);
    void queue_close(close_code code, std::string_view reason);
    void flush_pending_pong();

    event handshake_event();
    template <class Parser, class Head>
    http_parse_result parse_head(Parser& parser, Head& head);
    void append_error_response_to_output(std::error_code ec);
    void queue_bytes(std::string_view bytes);
    std::uint8_t* append_output(std::size_t n);
    event process_frame(const frame_header& h, mutable_bytes payload, std::size_t checked = 0);
    bool partial_text(const frame_header& h) const noexcept;
    bool check_arrived_text(mutable_bytes arrived, mask_key key, bool masked, bool first);
    bool start_direct_payload(const frame_header& h, const_bytes payload_so_far);
    bool filling_direct() const noexcept { return direct_ && wanted_ > 0; }
    event finish_direct_payload();
    event truncated();
    event fail(std::error_code ec, close_code code);
    event close_event(close_code code, std::string_view reason, bool by_peer, std::error_code ec = {});
    void set_open(std::optional<deflate_params> deflate);
    void abandon(std::error_code ec, close_code code = close_code::abnormal);
    void end_handshake(std::string_view response, std::error_code ec);
    bool is_plain_http(std::error_code ec) const noexcept;

    static close_code close_code_for(std::error_code ec) noexcept;
    // The most n bytes can grow to as raw DEFLATE from any zlib settings: a
    // small memLevel makes stored blocks as short as a few hundred bytes, each
    // with a 5-byte header (the shape of zlib's own conservative deflateBound).
    static constexpr std::size_t deflate_bound(std::size_t n) noexcept {
        const std::size_t grown = n + (n >> 5) + (n >> 7) + (n >> 11) + 64;
        return grown < n ? n : grown;
    }

    role role_;
    state state_ = state::connecting;
    std::shared_ptr<const connection_options> options_;
    close_status status_;
    bool eof_ = false;
    bool close_sent_ = false;
    bool close_event_sent_ = false;
    bool close_transport_ = false;
    bool awaiting_answer_ = false; // server: request event delivered, accept/reject pending

    // Input: unread bytes are in_[in_read_, in_end_).
    std::vector<std::uint8_t> in_;
    std::size_t in_read_ = 0;
    std::size_t in_end_ = 0;
    std::size_t wanted_ = 0;
    // Bytes at the front of the text frame being received that are already
    // unmasked and validated (RFC 6455 §8.1: fail fast inside a frame).
    std::size_t checked_ = 0;

    // The message being received. message_ is a string so that a message
    // read into it can be handed to the application's std::string whole.
    bool in_message_ = false;
    bool message_text_ = false;
    bool message_compressed_ = false;
    // A large frame's payload is being read into message_ directly; wanted_
    // is what it still lacks, direct_key_ its mask key.
    bool direct_ = false;
    mask_key direct_key_{};
    std::size_t message_fragments_ = 0;
    std::size_t message_size_ = 0;
    std::string message_;
    utf8_validator utf8_;

    // The message being sent in pieces.
    bool sending_message_ = false;
    bool sending_compressed_ = false;

    // Output waiting to be written; frames are written into it in place.
    output_queue out_;
    std::vector<std::uint8_t> scratch_; // compressed payloads

    // A pong owed to the peer, coalesced while the output is above its limit
    // (RFC 6455 §5.5.3 allows answering only the most recent ping).
    bool pong_owed_ = false;
    // Its payload: a keepalive's few bytes fit inside the string itself.
    std::string pong_payload_;

    // The handshake, kept apart: only its bytes and parse results live here.
    struct handshake_state {
        std::string head; // the request or response head, copied out of the input
        http_request_parser request_parser;
        http_response_parser response_parser;
        server_request request;
        client_response response;
        client_request_options client_request;
        std::string key;
        std::error_code plain_http; // server: why the request is no upgrade (http_request event)
        handshake_state(const http_limits& limits) : request_parser(limits), response_parser(limits) {}
    };
    const handshake_state& handshake() const noexcept {
        static const handshake_state none{http_limits{}};
        return hs_ ? *hs_ : none;
    }
    std::unique_ptr<handshake_state> hs_;
    std::string subprotocol_;
    std::optional<deflate_params> deflate_;
    // permessage-deflate's streams, only for a connection that agreed on it
    // (a connection without it saves their room).
    struct compression {
        deflater out;
        inflater in;
    };
    std::unique_ptr<compression> zlib_;

    // Time.
    std::optional<time_point> now_;
    std::optional<time_point> open_deadline_;
    std::optional<time_point> close_deadline_;
    time_point last_activity_{};
    std::optional<time_point> ping_sent_;
    std::uint8_t ping_payload_[4]{};
    duration latency_{-1}; // none yet while negative

public:
    // The buffers lent and taken back by release_buffers/adopt_buffers (for the
    // Asio adapter's pool).
    struct buffer_set {
        std::vector<std::uint8_t> input;
        std::string message;
        output_queue::storage output;
        std::vector<std::uint8_t> scratch;
    };
};


// ---- implementation ---------------------------------------------------------

inline close_code connection::close_code_for(std::error_code ec) noexcept {
    if (ec == error::invalid_utf8) return close_code::invalid_payload;
    if (ec == error::message_too_big || ec == error::frame_too_big || ec == error::too_many_fragments)
        return close_code::message_too_big;
    if (ec == error::ping_timeout || ec == error::deflate_failed) return close_code::internal_error;
    return close_code::protocol_error;
}

inline event connection::close_event(close_code code, std::string_view reason, bool by_peer,
                                     std::error_code ec) {
    state_ = state::closed;
    close_event_sent_ = true;
    status_.code = code;
    status_.reason = std::string(reason);
    status_.closed_by_peer = by_peer;
    status_.ec = ec;
    event ev;
    ev.type = event_type::close;
    ev.code = code;
    ev.reason = status_.reason;
    ev.closed_by_peer = by_peer;
    ev.ec = ec;
    return ev;
}

// RFC 6455 §7.1.7: "If _The WebSocket Connection is Established_ prior to the
// point where the endpoint is required to _Fail the WebSocket Connection_, the
// endpoint SHOULD send a Close frame with an appropriate status code (Section
// 7.4) before proceeding to _Close the WebSocket Connection_", and then
// "MUST NOT continue to attempt to process data ... including a responding
// Close frame".
inline event connection::fail(std::error_code ec, close_code code) {
    checked_ = 0;
    if ((state_ == state::open || state_ == state::closing) && !close_sent_) {
        queue_close(code, ec == error::ping_timeout ? std::string_view("keepalive ping timeout")
                                                    : std::string_view());
    }
    close_transport_ = true;
    in_read_ = in_end_ = 0;
    return close_event(code, {}, false, ec);
}

// Ends the connection without (more) close frames; next_event() reports it.
inline void connection::abandon(std::error_code ec, close_code code) {
    close_transport_ = true;
    state_ = state::closed;
    status_.code = code;
    status_.ec = ec;
}

inline void connection::receive_transport_error(std::error_code ec) noexcept {
    in_read_ = in_end_ = 0;
    direct_ = false;
    wanted_ = 0;
    checked_ = 0;
    out_.clear();
    pong_owed_ = false;
    eof_ = true;
    close_transport_ = true;
    // Ended already (its close event out or waiting): that status stands.
    if (state_ == state::closed) return;
    if (!ec) ec = std::make_error_code(std::errc::io_error);
    abandon(ec);
}

inline event connection::next_event() {
    if (close_event_sent_) return {};
    if (state_ == state::closed) {
        // Closed without its event yet: a handshake failure or a timeout.
        return close_event(status_.code, {}, false, status_.ec);
    }
    if (state_ == state::connecting) return handshake_event();

    for (;;) {
        if (pong_owed_) flush_pending_pong();
        if (direct_) {
            if (wanted_ > 0) {
                const mutable_bytes arrived = mutable_bytes(message_).first(message_.size() - wanted_);
                if (message_text_ && !check_arrived_text(arrived, direct_key_, role_ == role::server, true))
                    return fail(error::invalid_utf8, close_code::invalid_payload);
                return eof_ ? truncated() : event{};
            }
            event ev = finish_direct_payload();
            if (ev) return ev;
            continue;
        }
        const_bytes unread(in_.data() + in_read_, in_end_ - in_read_);
        frame_header h;
        const std::uint8_t allowed_rsv = deflate_ ? rsv1_bit : 0;
        const auto parsed = parse_frame_header(unread, role_, h, allowed_rsv);
        if (parsed.status == parse_status::error) return fail(parsed.ec, close_code_for(parsed.ec));
        if (parsed.status == parse_status::complete) {
            // Limits are checked on the header, before any payload is stored.
            // A compressed frame may be a little larger than what it inflates
            // to (incompressible data), so it gets DEFLATE's worst-case growth
            // on top: a message of exactly the limit still gets through.
            const bool compressed = (h.rsv & rsv1_bit) || (in_message_ && message_compressed_ && h.op == opcode::continuation);
            const std::size_t frame_limit = compressed ? deflate_bound(options_->max_frame_size) : options_->max_frame_size;
            if (!is_control(h.op) && h.payload_length > frame_limit)
                return fail(error::frame_too_big, close_code::message_too_big);
            // Only a continuation adds to the bytes already received; a
            // message that ended counts nothing against the next one.
            const std::size_t received =
                h.op == opcode::continuation && in_message_ ? std::min(message_size_, options_->max_message_size) : 0;
            if (!is_control(h.op) && !(h.rsv & rsv1_bit) && !(in_message_ && message_compressed_) &&
                h.payload_length > options_->max_message_size - received)
                return fail(error::message_too_big, close_code::message_too_big);
            const std::size_t total = parsed.size + static_cast<std::size_t>(h.payload_length);
            if (unread.size() >= total) {
                mutable_bytes payload(in_.data() + in_read_ + parsed.size,
                                      static_cast<std::size_t>(h.payload_length));
                in_read_ += total;
                wanted_ = 0;
                if (now_) last_activity_ = *now_;
                if (h.masked) apply_mask(payload.subspan(checked_), h.key, checked_);
                event ev = process_frame(h, payload, std::exchange(checked_, 0));
                if (ev) return ev;
                continue;
            }
            if (start_direct_payload(h, unread.subspan(parsed.size))) continue;
            if (partial_text(h)) {
                const mutable_bytes arrived(in_.data() + in_read_ + parsed.size, unread.size() - parsed.size);
                if (!check_arrived_text(arrived, h.key, h.masked, h.op == opcode::text))
                    return fail(error::invalid_utf8, close_code::invalid_payload);
            }
            wanted_ = total - unread.size();
        } else {
            wanted_ = parsed.size - unread.size();
        }
        // Not a whole frame yet.
        return eof_ ? truncated() : event{};
    }
}

// The transport ended inside a frame.
inline event connection::truncated() {
    in_read_ = in_end_ = 0;
    direct_ = false;
    wanted_ = 0;
    close_transport_ = true;
    return close_event(close_code::abnormal, {}, false, error::unexpected_eof);
}

// A large frame that is a whole message (the only kind that can be handed
// out as it was read) continues straight into message_; what arrived of its
// payload so far, all of the unread input, moves there first. Its limits
// were checked on its header; the rest of the checks run once it is whole.
inline bool connection::start_direct_payload(const frame_header& h, const_bytes payload_so_far) {
    if (!h.fin || (h.op != opcode::text && h.op != opcode::binary) || h.rsv != 0 || in_message_ ||
        options_->streaming || h.payload_length < direct_payload_size)
        return false;
    const auto size = static_cast<std::size_t>(h.payload_length);
    // Growing zero-fills only past the largest message this buffer held:
    // it keeps its length between messages, and take_message() swaps in
    // the application's last one.
    message_.resize(size);
    std::memcpy(message_.data(), payload_so_far.data(), payload_so_far.size());
    in_read_ = in_end_ = 0;
    wanted_ = size - payload_so_far.size();
    direct_ = true;
    direct_key_ = h.key;
    in_message_ = true; // not idle: message_ is in use
    message_text_ = h.op == opcode::text;
    return true;
}

inline event connection::finish_direct_payload() {
    direct_ = false;
    in_message_ = false;
    frame_header h;
    h.op = message_text_ ? opcode::text : opcode::binary;
    h.masked = role_ == role::server; // parse_frame_header let in no other
    h.key = direct_key_;
    h.payload_length = message_.size();
    const mutable_bytes payload(message_);
    if (now_) last_activity_ = *now_;
    if (h.masked) apply_mask(payload.subspan(checked_), h.key, checked_);
    return process_frame(h, payload, std::exchange(checked_, 0));
}

// RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as UTF-8
// but finds that the byte stream is not, in fact, a valid UTF-8 stream, that
// endpoint MUST _Fail the WebSocket Connection_." So the part of a text frame
// that has arrived is validated before the rest of the frame comes: only an
// uncompressed one that process_frame() will take as text (a frame it would
// refuse for another reason keeps that reason).
inline bool connection::partial_text(const frame_header& h) const noexcept {
    if (h.rsv != 0) return false;
    if (h.op == opcode::text) return !in_message_;
    return h.op == opcode::continuation && in_message_ && message_text_ && !message_compressed_ &&
           message_fragments_ < options_->max_fragments;
}

// Unmasks and validates the bytes of `arrived` (the frame's payload so far)
// past checked_, once each: the frame's completion starts where this ended.
inline bool connection::check_arrived_text(mutable_bytes arrived, mask_key key, bool masked, bool first) {
    if (arrived.size() <= checked_) return true;
    if (first && checked_ == 0) utf8_.reset();
    const mutable_bytes fresh = arrived.subspan(checked_);
    if (masked) apply_mask(fresh, key, checked_);
    checked_ = arrived.size();
    return utf8_.feed(fresh);
}

inline void connection::take_message(const event& ev, std::string& into) {
    const bool own = ev.type == event_type::message && ev.data.size() >= direct_payload_size &&
                     ev.data.data() == const_bytes(message_).data() &&
                     ev.data.size() == message_.size() && message_.capacity() / 2 <= message_.size();
    if (own) {
        // The application's old buffer serves the next large message.
        into.swap(message_);
        return;
    }
    into.assign(reinterpret_cast<const char*>(ev.data.data()), ev.data.size());
}

// `checked`: how many bytes at the front of an uncompressed text payload
// check_arrived_text() already validated.
inline event connection::process_frame(const frame_header& h, mutable_bytes payload, std::size_t checked) {
    // Frames that arrive after the peer's close frame are ignored: RFC 6455
    // §5.5.1 "the endpoint ... MUST NOT send any more data frames after
    // sending a Close frame"; we have nothing more to deliver either.
    switch (h.op) {
    case opcode::ping:
    case opcode::pong:
    case opcode::close: {
        // RFC 7692 §6.1: permessage-deflate sets RSV1 only on data frames.
        if (h.rsv & rsv1_bit) return fail(error::reserved_bits_set, close_code::protocol_error);
        event ev;
        ev.data = payload;
        if (h.op == opcode::ping) {
            // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST
            // send a Pong frame in response ... with identical Application data".
            if (!close_sent_) {
                pong_owed_ = true;
                pong_payload_.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
                flush_pending_pong();
            }
            ev.type = event_type::ping;
            return ev;
        }
        if (h.op == opcode::pong) {
            // RFC 6455 §5.5.3: "A Pong frame MAY be sent unsolicited" and needs
            // no answer. One that echoes our keepalive ping ends its wait.
            if (ping_sent_ && payload.size() == sizeof ping_payload_ &&
                std::memcmp(payload.data(), ping_payload_, sizeof ping_payload_) == 0) {
                if (now_) latency_ = std::max(duration::zero(), std::chrono::duration_cast<duration>(*now_ - *ping_sent_));
                ping_sent_.reset();
            }
            ev.type = event_type::pong;
            return ev;
        }
        close_payload received;
        if (auto ec = parse_close_payload(payload, received)) return fail(ec, close_code_for(ec));
        status_.received = received.code;
        const bool by_peer = !close_sent_;
        if (!close_sent_) {
            // RFC 6455 §5.5.1: "If an endpoint receives a Close frame and did
            // not previously send a Close frame, the endpoint MUST send a Close
            // frame in response. ... typically echoing the status code it received".
            queue_close(received.code, {});
        }
        // RFC 6455 §7.1.1: "the server SHOULD ... close the underlying TCP
        // connection" first; a client waits for that, up to the close timeout.
        if (role_ == role::server || eof_) {
            close_transport_ = true;
        } else if (now_ && options_->close_timeout.count() > 0) {
            close_deadline_ = *now_ + options_->close_timeout;
        } else if (options_->close_timeout.count() == 0) {
            close_transport_ = true;
        }
        return close_event(received.code, received.reason, by_peer);
    }
    case opcode::continuation:
    case opcode::text:
    case opcode::binary:
        break;
    }

    const bool first = h.op != opcode::continuation;
    if (first) {
        // RFC 6455 §5.4: a new message may not start inside a fragmented one.
        if (in_message_) return fail(error::expected_continuation, close_code::protocol_error);
        in_message_ = true;
        message_text_ = h.op == opcode::text;
        message_compressed_ = (h.rsv & rsv1_bit) != 0;
        message_fragments_ = 0;
        message_size_ = 0;
        if (checked == 0) utf8_.reset();
    } else {
        // RFC 6455 §5.4: a continuation needs a message to continue.
        if (!in_message_) return fail(error::unexpected_continuation, close_code::protocol_error);
        // RFC 7692 §6.1: RSV1 is set on the first frame of a message only.
        if (h.rsv & rsv1_bit) return fail(error::reserved_bits_set, close_code::protocol_error);
    }
    if (++message_fragments_ > options_->max_fragments)
        return fail(error::too_many_fragments, close_code::message_too_big);

    const_bytes data = payload;
    if (message_compressed_) {
        // RFC 7692 §8: bound the inflated size while inflating, not after.
        // In streaming mode each chunk starts the buffer afresh.
        if (first || options_->streaming) message_.clear();
        const std::size_t before = message_.size();
        if (auto ec = zlib_->in.decompress(payload, h.fin, message_, options_->max_message_size))
            return fail(ec, close_code_for(ec));
        data = const_bytes(message_).subspan(before);
    }
    message_size_ += data.size();

    // RFC 6455 §8.1: text must be valid UTF-8; failing at the first invalid
    // byte, fragment by fragment, not at the end of the message.
    if (message_text_ && !utf8_.feed(data.subspan(checked))) return fail(error::invalid_utf8, close_code::invalid_payload);
    if (h.fin) {
        in_message_ = false;
        if (message_text_ && !utf8_.complete()) return fail(error::invalid_utf8, close_code::invalid_payload);
    }
    event ev;
    ev.text = message_text_;
    ev.fin = h.fin;
    if (options_->streaming) {
        ev.type = event_type::chunk;
        ev.data = data;
        return ev;
    }
    if (!message_compressed_) {
        if (first && h.fin) { // the common case: one frame, no copy
            ev.type = event_type::message;
            ev.data = data;
            return ev;
        }
        if (first) message_.clear();
        message_.append(reinterpret_cast<const char*>(data.data()), data.size());
    }
    if (!h.fin) return {};
    ev.type = event_type::message;
    ev.data = const_bytes(message_);
    return ev;
}

// ---- the opening handshake ------------------------------------------------------

inline void connection::set_open(std::optional<deflate_params> deflate) {
    state_ = state::open;
    open_deadline_.reset();
    if (now_) last_activity_ = *now_;
    deflate_ = std::move(deflate);
    if (deflate_) {
        zlib_ = std::make_unique<compression>(
            compression{deflater(*deflate_, deflate_settings()), inflater(*deflate_, deflate_settings())});
    }
}

// Makes room for n more bytes of output; returns where they go.
inline std::uint8_t* connection::append_output(std::size_t n) { return out_.append(n); }

inline void connection::queue_bytes(std::string_view bytes) {
    if (!bytes.empty()) std::memcpy(append_output(bytes.size()), bytes.data(), bytes.size());
}

inline std::error_code connection::start_handshake(client_request_options request) {
    if (role_ != role::client || state_ != state::connecting || hs_) return error::connection_closed;
    hs_ = std::make_unique<handshake_state>(options_->http);
    if (options_->deflate && request.extensions.empty()) request.extensions = make_deflate_offer(*options_->deflate);
    hs_->key = make_sec_key(options_->random);
    std::string head;
    try {
        append_client_request(head, request, hs_->key);
    } catch (const std::invalid_argument&) {
        // Options that cannot be put in a request (a host with a space, a
        // header wsx writes itself): the caller's mistake; nothing started.
        hs_.reset();
        return std::make_error_code(std::errc::invalid_argument);
    }
    hs_->client_request = std::move(request);
    queue_bytes(head);
    return {};
}

// Parses the handshake head at the front of the input; on success its bytes
// are copied out (so the views in request()/response() outlive the input
// buffer) and consumed.
template <class Parser, class Head>
inline http_parse_result connection::parse_head(Parser& parser, Head& head) {
    const const_bytes unread(in_.data() + in_read_, in_end_ - in_read_);
    http_parse_result r = parser.parse(unread, head);
    if (r.status != parse_status::complete) return r;
    hs_->head.assign(reinterpret_cast<const char*>(unread.data()), r.consumed);
    in_read_ += r.consumed;
    parser.reset();
    return parser.parse(const_bytes(reinterpret_cast<const std::uint8_t*>(hs_->head.data()), hs_->head.size()), head);
}

inline event connection::handshake_event() {
    if (!hs_) {
        if (role_ == role::client) return {}; // start_handshake() not called yet
        hs_ = std::make_unique<handshake_state>(options_->http);
    }
    if (awaiting_answer_) return {};
    const bool server = role_ == role::server;
    const http_parse_result r = server ? parse_head(hs_->request_parser, hs_->request.http)
                                       : parse_head(hs_->response_parser, hs_->response.http);
    if (r.status == parse_status::need_more) {
        if (!eof_) return {};
        abandon(error::unexpected_eof);
        return next_event();
    }
    if (r.status == parse_status::error) {
        // A malformed head: the server answers 400 (431 when too large).
        if (server) append_error_response_to_output(r.ec);
        abandon(r.ec);
        return next_event();
    }
    event ev;
    if (server) {
        // RFC 6455 §4.2.1: the server's checks; a failure is answered with the
        // HTTP status that names it (400, 403, 426...).
        if (auto ec = validate_request(hs_->request, options_->origins)) {
            if (is_plain_http(ec)) {
                // Not an upgrade at all: the application answers it.
                hs_->plain_http = ec;
                awaiting_answer_ = true;
                ev.type = event_type::http_request;
                ev.ec = ec;
                return ev;
            }
            append_error_response_to_output(ec);
            abandon(ec);
            return next_event();
        }
        awaiting_answer_ = true;
        ev.type = event_type::request;
        return ev;
    }

    ev.type = event_type::response;
    std::error_code ec = validate_response(hs_->response, hs_->client_request, hs_->key);
    std::optional<deflate_params> agreed;
    if (!ec && options_->deflate) {
        // RFC 7692 §7.1: the client checks the server's answer to its offer.
        std::vector<extension> answered;
        ec = parse_extensions(hs_->response.extensions(), answered);
        if (ec) ec = error::bad_extension_response;
        if (!ec) ec = check_deflate_response(answered, *options_->deflate, agreed);
    }
    if (ec) {
        abandon(ec); // the close event follows this response event
        return ev;
    }
    subprotocol_ = std::string(hs_->response.subprotocol);
    set_open(agreed);
    return ev;
}

inline void connection::append_error_response_to_output(std::error_code ec) {
    std::string response;
    append_error_response(response, ec);
    queue_bytes(response);
}

// A request that does not ask for a WebSocket at all: one the checks refuse
// before they look at Upgrade, or for its absence, without "Upgrade:
// websocket" among its fields.
inline bool connection::is_plain_http(std::error_code ec) const noexcept {
    const bool early = ec == error::bad_method || ec == error::bad_http_version || ec == error::missing_host ||
                       ec == error::missing_upgrade;
    return early && !hs_->request.http.headers.has_token("Upgrade", "websocket");
}

// Queues the final answer to the request (not 101) and ends with `ec`.
inline void connection::end_handshake(std::string_view response, std::error_code ec) {
    queue_bytes(response);
    awaiting_answer_ = false;
    abandon(ec);
}

inline std::error_code connection::accept(accept_options answer) {
    if (role_ != role::server || !awaiting_answer_) return error::connection_closed;
    if (hs_->plain_http) return hs_->plain_http; // reject() or refuse() it
    std::optional<deflate_agreement> agreement;
    if (options_->deflate) {
        // RFC 7692 §5.1: the server accepts at most one offer. A header it
        // cannot parse offers nothing it could accept.
        std::vector<extension> offers;
        if (!parse_extensions(hs_->request.extensions(), offers))
            agreement = negotiate_deflate_server(offers, *options_->deflate);
    }
    std::string response;
    try {
        append_accept_response(response, hs_->request, answer.subprotocol,
                               agreement ? std::string_view(agreement->response) : std::string_view(),
                               answer.headers);
    } catch (const std::invalid_argument&) {
        response.clear();
        append_http_response(response, 500);
        end_handshake(response, std::make_error_code(std::errc::invalid_argument));
        return std::make_error_code(std::errc::invalid_argument);
    }
    queue_bytes(response);
    awaiting_answer_ = false;
    subprotocol_ = std::move(answer.subprotocol);
    set_open(agreement ? std::optional<deflate_params>(agreement->params) : std::nullopt);
    return {};
}

inline std::error_code connection::reject(int status, std::string_view body, const http_fields& headers) {
    if (role_ != role::server || !awaiting_answer_) return error::connection_closed;
    std::string response;
    std::error_code result;
    try {
        append_http_response(response, status, body, headers);
    } catch (const std::invalid_argument&) {
        response.clear();
        append_http_response(response, 500);
        result = std::make_error_code(std::errc::invalid_argument);
    }
    end_handshake(response, result ? result : make_error_code(error::handshake_rejected));
    return result;
}

inline std::error_code connection::refuse() {
    if (role_ != role::server || !awaiting_answer_) return error::connection_closed;
    const std::error_code why = hs_->plain_http ? hs_->plain_http : make_error_code(error::handshake_rejected);
    std::string response;
    append_error_response(response, why);
    end_handshake(response, why);
    return {};
}

// ---- sending ----------------------------------------------------------------

inline std::error_code connection::check_can_send() const noexcept {
    // RFC 6455 §5.5.1: "The application MUST NOT send any more data frames
    // after sending a Close frame."
    if (state_ != state::open || close_sent_) return error::connection_closed;
    // Backpressure: refuse more while the output is above its limit; what
    // is already queued is never dropped.
    if (out_.size() > options_->max_pending_output) return error::would_block;
    return {};
}

inline std::error_code connection::send_message(opcode op, const_bytes data) {
    if (sending_message_) return error::expected_continuation;
    if (auto ec = check_can_send()) return ec;
    if (deflate_ && data.size() >= deflate_settings().compress_threshold) {
        scratch_.clear();
        if (auto ec = zlib_->out.compress(data, true, scratch_)) return ec;
        queue_data(op, scratch_, true, true);
    } else {
        queue_data(op, data, true, false);
    }
    return {};
}

inline std::error_code connection::begin_message(bool text, const_bytes data) {
    if (sending_message_) return error::expected_continuation;
    if (auto ec = check_can_send()) return ec;
    sending_message_ = true;
    // A message sent in pieces is compressed whole or not at all: its size is
    // unknown, so the threshold does not apply.
    sending_compressed_ = deflate_.has_value();
    const opcode op = text ? opcode::text : opcode::binary;
    if (sending_compressed_) {
        scratch_.clear();
        if (auto ec = zlib_->out.compress(data, false, scratch_)) return ec;
        queue_data(op, scratch_, false, true);
    } else {
        queue_data(op, data, false, false);
    }
    return {};
}

inline std::error_code connection::send_fragment(const_bytes data, bool fin) {
    if (!sending_message_) return error::unexpected_continuation;
    if (auto ec = check_can_send()) return ec;
    if (sending_compressed_) {
        scratch_.clear();
        if (auto ec = zlib_->out.compress(data, fin, scratch_)) return ec;
        queue_data(opcode::continuation, scratch_, fin, false);
    } else {
        queue_data(opcode::continuation, data, fin, false);
    }
    if (fin) sending_message_ = false;
    return {};
}

// Frames a data payload, split at fragment_size when that is set. RSV1 marks
// the first frame of a compressed message only (RFC 7692 §6.1).
inline void connection::queue_data(opcode first_op, const_bytes data, bool fin, bool compressed) {
    const std::size_t limit = options_->fragment_size;
    opcode op = first_op;
    std::uint8_t rsv = compressed ? rsv1_bit : 0;
    while (limit > 0 && data.size() > limit) {
        queue_frame(op, data.first(limit), false, rsv);
        data = data.subspan(limit);
        op = opcode::continuation;
        rsv = 0;
    }
    queue_frame(op, data, fin, rsv);
}

inline void connection::queue_frame(opcode op, const_bytes payload, bool fin, std::uint8_t rsv) {
    frame_header h;
    h.fin = fin;
    h.op = op;
    h.rsv = rsv;
    h.payload_length = payload.size();
    // RFC 6455 §5.3: the masking key "MUST be derived from a strong source
    // of entropy", fresh for each frame.
    h.masked = role_ == role::client;
    if (h.masked) random_fill(mutable_bytes(h.key.data(), h.key.size()));

    const std::size_t header_size = frame_header_size(h.payload_length, h.masked);
    std::uint8_t* const at = append_output(header_size + payload.size());
    write_frame_header(h, mutable_bytes(at, header_size));
    if (!payload.empty()) {
        std::memcpy(at + header_size, payload.data(), payload.size());
        if (h.masked) apply_mask(mutable_bytes(at + header_size, payload.size()), h.key);
    }
}

inline std::error_code connection::send_borrowed(bool text, const_bytes data, bool& borrowed) {
    borrowed = false;
    const bool as_given = role_ == role::server && data.size() >= direct_payload_size &&
                          !(deflate_ && data.size() >= deflate_settings().compress_threshold) &&
                          (options_->fragment_size == 0 || data.size() <= options_->fragment_size);
    if (!as_given) return send_message(text ? opcode::text : opcode::binary, data);
    if (sending_message_) return error::expected_continuation;
    if (auto ec = check_can_send()) return ec;
    frame_header h;
    h.op = text ? opcode::text : opcode::binary;
    h.payload_length = data.size();
    const std::size_t header_size = frame_header_size(h.payload_length, false);
    write_frame_header(h, mutable_bytes(append_output(header_size), header_size));
    out_.append_borrowed(data);
    borrowed = true;
    return {};
}

inline std::error_code connection::send_shared(const std::shared_ptr<prepared_message>& m) {
    if (!m) return std::make_error_code(std::errc::invalid_argument);
    const opcode op = m->text() ? opcode::text : opcode::binary;
    // RFC 6455 §5.3: a client masks each frame with a fresh key: nothing to share.
    if (role_ != role::server) return send_message(op, m->payload());
    if (sending_message_) return error::expected_continuation;
    if (auto ec = check_can_send()) return ec;
    const_bytes frame = m->plain_frame();
    if (deflate_ && m->payload().size() >= deflate_settings().compress_threshold) {
        // A compressor with a history compresses for this connection alone.
        frame = m->compressed_frame(*deflate_, deflate_settings());
        if (frame.empty()) return send_message(op, m->payload());
    }
    // A frame that fragment_size would cut goes the ordinary way (this
    // errs on the side of cutting: the limit is compared with the header
    // and payload together).
    const std::size_t limit = options_->fragment_size;
    if (limit > 0 && frame.size() > limit) return send_message(op, m->payload());
    out_.append_shared(std::shared_ptr<const void>(m, m.get()), frame);
    return {};
}

// Added for the Asio adapter's buffer pool.
inline bool connection::release_buffers(buffer_set& into) noexcept {
    if (!idle()) return false;
    // The input keeps its size (prepare() reads into size(), not capacity()).
    in_read_ = in_end_ = 0;
    scratch_.clear();
    out_.release(into.output);
    into.input = std::move(in_);
    into.message = std::move(message_);
    into.scratch = std::move(scratch_);
    in_.clear();
    message_.clear();
    scratch_.clear();
    return true;
}

inline void connection::adopt_buffers(buffer_set& from) noexcept {
    if (in_.capacity() == 0 && in_end_ == 0) std::swap(in_, from.input);
    if (message_.capacity() <= std::string().capacity() && !in_message_) std::swap(message_, from.message);
    out_.adopt(from.output);
    if (scratch_.capacity() == 0) std::swap(scratch_, from.scratch);
    scratch_.clear();
}

inline std::error_code connection::send_ping(const_bytes payload) {
    if (payload.size() > max_control_payload) return error::control_frame_too_long;
    if (state_ != state::open || close_sent_) return error::connection_closed;
    queue_frame(opcode::ping, payload, true);
    return {};
}

inline std::error_code connection::send_pong(const_bytes payload) {
    if (payload.size() > max_control_payload) return error::control_frame_too_long;
    if (state_ != state::open || close_sent_) return error::connection_closed;
    queue_frame(opcode::pong, payload, true);
    return {};
}

inline void connection::flush_pending_pong() {
    if (!pong_owed_ || out_.size() > options_->max_pending_output || close_sent_) return;
    pong_owed_ = false;
    queue_frame(opcode::pong, as_bytes(pong_payload_), true);
}

inline void connection::queue_close(close_code code, std::string_view reason) {
    std::uint8_t payload[max_close_payload];
    const std::size_t n = format_close_payload(code, reason, mutable_bytes(payload, sizeof payload));
    queue_frame(opcode::close, const_bytes(payload, n), true);
    close_sent_ = true;
    status_.sent = n >= 2 ? code : close_code::no_status;
    pong_owed_ = false;
}

inline std::error_code connection::close(close_code code, std::string_view reason) {
    switch (state_) {
    case state::connecting:
        // Nothing to close politely yet: drop the transport.
        abandon(error::connection_closed);
        return {};
    case state::open:
        // RFC 6455 §7.4.1: 1005, 1006 and 1015 are never sent; a caller who
        // asks for them gets a close frame without a status code.
        if (!is_valid_on_wire(code)) code = close_code::no_status;
        queue_close(code, reason);
        state_ = state::closing;
        if (now_ && options_->close_timeout.count() > 0) close_deadline_ = *now_ + options_->close_timeout;
        return {};
    case state::closing:
    case state::closed:
        return {};
    }
    return {};
}

// ---- output -------------------------------------------------------------------

inline void connection::consume_output(std::size_t n) {
    out_.consume(n);
    // RFC 6455 §5.5.2: the pong owed for the last ping of a flood must not
    // wait for the peer's next frame.
    if (pong_owed_) flush_pending_pong();
}

// ---- time ---------------------------------------------------------------------

inline void connection::tick(time_point now) {
    const bool first = !now_;
    now_ = now;
    if (first) {
        last_activity_ = now;
        if (state_ == state::connecting && options_->open_timeout.count() > 0)
            open_deadline_ = now + options_->open_timeout;
        if (state_ == state::closing && options_->close_timeout.count() > 0)
            close_deadline_ = now + options_->close_timeout;
    }
    switch (state_) {
    case state::connecting:
        if (open_deadline_ && now >= *open_deadline_) abandon(error::open_timeout);
        return;
    case state::open:
        if (ping_sent_) {
            // Any frame received since the ping shows the peer is alive.
            if (last_activity_ >= *ping_sent_) {
                ping_sent_.reset();
            } else if (options_->ping_timeout.count() > 0 && now >= *ping_sent_ + options_->ping_timeout) {
                // RFC 6455 §7.1.7 with 1011, as Python websockets does.
                queue_close(close_code::internal_error, "keepalive ping timeout");
                abandon(error::ping_timeout, close_code::internal_error);
                return;
            }
        }
        if (!ping_sent_ && options_->ping_interval.count() > 0 && now >= last_activity_ + options_->ping_interval) {
            random_fill(mutable_bytes(ping_payload_, sizeof ping_payload_));
            queue_frame(opcode::ping, const_bytes(ping_payload_, sizeof ping_payload_), true);
            ping_sent_ = now;
        }
        return;
    case state::closing:
        if (close_deadline_ && now >= *close_deadline_) abandon(error::close_timeout);
        return;
    case state::closed:
        // A client waiting for the server to close TCP stops waiting.
        if (close_deadline_ && now >= *close_deadline_) close_transport_ = true;
        return;
    }
}

inline std::optional<time_point> connection::next_deadline() const noexcept {
    if (!now_) return std::nullopt;
    switch (state_) {
    case state::connecting:
        return open_deadline_;
    case state::open:
        if (ping_sent_ && options_->ping_timeout.count() > 0) return *ping_sent_ + options_->ping_timeout;
        if (!ping_sent_ && options_->ping_interval.count() > 0) return last_activity_ + options_->ping_interval;
        return std::nullopt;
    case state::closing:
        return close_deadline_;
    case state::closed:
        return close_transport_ ? std::nullopt : close_deadline_;
    }
    return std::nullopt;
}

} // namespace wsx
