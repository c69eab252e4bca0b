// wsx/prepared_message.hpp - one message framed once for many connections.
//
//   auto m = std::make_shared<wsx::prepared_message>(true, wsx::as_bytes(text));
//   for (auto& c : servers) c.send_shared(m);   // each references the frame
//
// RFC 6455 §5.1: a server MUST NOT mask its frames, so the same bytes serve
// every server connection. The plain frame is made at once; a compressed
// one is made on first use for each permessage-deflate setting whose
// compressor starts every message afresh (our side without context
// takeover), and then shared too. Connections that cannot take a shared
// frame (a client, which masks; a compressor with a history; a frame larger
// than fragment_size) send the payload like any message. Thread-safe: the
// connections of several threads may share one.
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/deflate.hpp>
#include <wsx/frame.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace wsx {

class prepared_message {
public:
    prepared_message(bool text, const_bytes payload) : text_(text) { header_size_ = frame(payload, false, plain_); }
    prepared_message(const prepared_message&) = delete;
    prepared_message& operator=(const prepared_message&) = delete;

    bool text() const noexcept { return text_; }
    // The payload is kept once, inside the plain frame.
    const_bytes payload() const noexcept {
        return const_bytes(plain_.data() + header_size_, plain_.size() - header_size_);
    }
    const_bytes plain_frame() const noexcept { return plain_; }

    // The whole frame compressed for `params` (which must not let our side
    // take over context) and `options`: empty when it cannot be made.
    const_bytes compressed_frame(const deflate_params& params, const deflate_options& options) {
        if (!params.our_no_context_takeover) return {};
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& entry : compressed_) {
            if (entry->window_bits == params.our_max_window_bits && entry->level == options.compression_level &&
                entry->memory_level == options.memory_level)
                return entry->frame;
        }
        deflater compressor(params, options);
        std::vector<std::uint8_t> compressed;
        if (compressor.compress(payload(), true, compressed)) return {};
        auto entry = std::make_unique<compressed_entry>();
        entry->window_bits = params.our_max_window_bits;
        entry->level = options.compression_level;
        entry->memory_level = options.memory_level;
        frame(compressed, true, entry->frame);
        compressed_.push_back(std::move(entry));
        return compressed_.back()->frame; // stays where it is: entries are never moved
    }

private:
    struct compressed_entry {
        std::uint8_t window_bits = 0;
        int level = 0;
        int memory_level = 0;
        std::vector<std::uint8_t> frame;
    };

    // Writes one whole unmasked frame into `out`; returns its header's size.
    std::size_t frame(const_bytes payload, bool compressed, std::vector<std::uint8_t>& out) const {
        frame_header h;
        h.fin = true;
        h.op = text_ ? opcode::text : opcode::binary;
        // RFC 7692 §6.1: RSV1 marks a compressed message.
        h.rsv = compressed ? rsv1_bit : 0;
        h.masked = false;
        h.payload_length = payload.size();
        const std::size_t header_size = frame_header_size(h.payload_length, false);
        out.resize(header_size + payload.size());
        write_frame_header(h, mutable_bytes(out.data(), header_size));
        std::copy(payload.begin(), payload.end(), out.begin() + static_cast<std::ptrdiff_t>(header_size));
        return header_size;
    }

    bool text_;
    std::size_t header_size_ = 0;
    std::vector<std::uint8_t> plain_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<compressed_entry>> compressed_;
};

} // namespace wsx
