// wsx/impl/connection_read.hpp - reading: frames in, events out, and how a connection ends.
// Part of wsx::connection's implementation; <wsx/connection.hpp> includes it.
#pragma once

#include <wsx/connection.hpp>

namespace wsx {

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
    reading_ = false;
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
    event ev = next_event_inner();
    if (!ev) return_buffers(); // nothing more to do until bytes arrive
    return ev;
}

inline event connection::next_event_inner() {
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

} // namespace wsx
