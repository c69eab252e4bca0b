// wsx/impl/connection_write.hpp - sending: messages, control frames and the close, into the output queue.
// Part of wsx::connection's implementation; <wsx/connection.hpp> includes it.
#pragma once

#include <wsx/connection.hpp>

namespace wsx {

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

// Every buffer, capacity kept and contents dropped, into `into` (idle only).
inline void connection::release_buffers(connection_buffers& into) noexcept {
    in_read_ = in_end_ = 0;
    scratch_.clear();
    out_.release(into.output);
    into.input = std::move(in_);
    into.message = std::move(message_);
    into.scratch = std::move(scratch_);
    in_.clear();
    message_.clear();
    scratch_.clear();
}

// Takes from `from` each buffer that the connection holds no memory for;
// what it does not take stays in `from`.
inline void connection::adopt_buffers(connection_buffers& from) noexcept {
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
    if (out_.empty()) return_buffers();
}

} // namespace wsx
