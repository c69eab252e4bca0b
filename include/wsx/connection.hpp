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
#include <wsx/connection_options.hpp>
#include <wsx/event.hpp>
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
        borrow_buffers();
        reading_ = true;
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
        reading_ = false;
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
        reading_ = false;
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

    // ---- buffers ---------------------------------------------------------------

    // Idle: nothing unread, no message half received, nothing waiting to be
    // written, no read between prepare() and commit(). An idle connection
    // needs no buffer: with connection_options::buffers it gives them to that
    // source the moment it becomes idle (after next_event() found nothing
    // more, or consume_output() emptied the output) and takes them back when
    // it needs them (wsx/buffer_source.hpp).
    bool idle() const noexcept { return input_idle() && out_.empty() && !pong_owed_ && !reading_; }
    // Nothing unread and no message half received: the input side needs no
    // buffer until bytes arrive.
    bool input_idle() const noexcept { return in_read_ == in_end_ && !in_message_; }
    // The agreed permessage-deflate parameters (none when not agreed).
    const std::optional<deflate_params>& deflate_parameters() const noexcept { return deflate_; }

private:
    // With a buffer source: takes what the connection lacks from it, and
    // gives everything back once idle.
    void borrow_buffers() {
        if (options_->buffers == nullptr || borrowed_) return;
        borrowed_ = true;
        connection_buffers lent;
        options_->buffers->lend(lent);
        adopt_buffers(lent);
        // What it did not need (it had a buffer of that kind already).
        if (!lent.empty()) options_->buffers->give_back(lent);
    }
    void return_buffers() noexcept {
        // Not after the transport failed: a write may still hold the output.
        if (options_->buffers == nullptr || !idle() || close_transport_) return;
        connection_buffers back;
        release_buffers(back);
        options_->buffers->give_back(back);
        borrowed_ = false;
    }
    void release_buffers(connection_buffers& into) noexcept;
    void adopt_buffers(connection_buffers& from) noexcept;
    event next_event_inner();

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
    bool reading_ = false;  // between prepare() and commit(): the input is in a reader's hands
    bool borrowed_ = false; // took buffers from options_->buffers and holds them
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

};

} // namespace wsx

// The implementation, by concept.
#include <wsx/impl/connection_read.hpp>
#include <wsx/impl/connection_handshake.hpp>
#include <wsx/impl/connection_write.hpp>
#include <wsx/impl/connection_time.hpp>
