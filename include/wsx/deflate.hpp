// wsx/deflate.hpp - permessage-deflate (RFC 7692): parameters, negotiation
// for both roles, and a deflater/inflater pair on zlib.
//
// Negotiation (RFC 7692 §5, §7.1) works on parsed Sec-WebSocket-Extensions
// values (wsx/extension.hpp):
//   client: make_deflate_offer(options) -> header value;
//           check_deflate_response(response extensions, options, agreed)
//   server: negotiate_deflate_server(offered extensions, options)
//           -> the agreement and the header value to answer with, or none.
// The agreement (deflate_params) is seen from our side: "our" compressor and
// "the peer's" compressor (which our inflater must match).
//
// Data (RFC 7692 §7.2): one deflater and one inflater per connection, each
// holding ONE z_stream for the connection's life, created on first use (an
// idle connection pays nothing) and reset with deflateReset/inflateReset when
// no context takeover was agreed. Output goes into the caller's vector, which
// the caller reuses: in steady state no message allocates.
//
// Window bits 8: zlib refuses to produce a raw DEFLATE stream with a 256-byte
// window (deflateInit2 with windowBits -8 fails since zlib 1.2.9). When our
// compressor is held to 8 bits, it runs with zlib's 9-bit window but the Z_RLE
// strategy, which emits only literals and matches at distance 1, so no match
// ever reaches back further than a 256-byte window allows. (zlib 1.2.x keeps
// its matches within window - 262 bytes, so its 9-bit output would fit too,
// but that is an internal detail; Z_RLE is the documented guarantee.) Such
// offers are therefore accepted, not declined. Our inflater, told that the
// peer uses 8 bits, inflates with 9 bits: old zlib versions silently
// compress with 9 when asked for 8, and the larger window costs 256 bytes.
//
// Defaults (deflate_options), from tests/bench/deflate_bench.cpp on streams
// of JSON-like messages (zlib 1.2.13, 64-bit):
//   compressor memory = 2^(windowBits+2) + 2^(memLevel+9) + 5.8 KiB:
//     15/8: 262 KiB   12/5: 38 KiB   12/4: 30 KiB   11/4: 22 KiB   9/1: 9 KiB
//   inflater memory = 2^windowBits + 7 KiB (zlib allocates the window only
//     when the first compressed message arrives): 15: 39 KiB, 12: 11 KiB.
//   compressed/original, context takeover, 1 KiB messages: 15/8 0.204,
//     12/5 0.213, 12/4 0.213, 11/4 0.218, 10/4 0.249, 9/4 0.306;
//     64 KiB messages: 15/8 0.172, 12/5 0.185, 12/4 0.187, 11/4 0.191.
//   Window 12 and memLevel 5 cost a sixth of zlib's defaults (38 + 11 KiB
//   per connection instead of 262 + 39) for output 4-7% larger. Below 11
//   bits the ratio falls off quickly; memLevel 4 saves 8 KiB more but starts
//   to cost on large messages, so 5 keeps a margin. Level 6 (zlib's default)
//   compresses about 20% smaller than level 1 for about 40% more CPU; level 1
//   is the knob for CPU-bound servers.
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/error.hpp>
#include <wsx/extension.hpp>

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace wsx {

// RFC 7692 §5: the extension name.
inline constexpr std::string_view permessage_deflate_name = "permessage-deflate";

// RFC 7692 §7.1.2: window bits run from 8 to 15.
inline constexpr std::uint8_t min_window_bits = 8;
inline constexpr std::uint8_t max_window_bits = 15;

// The four parameters (RFC 7692 §7.1) as one offer or one response writes
// them. In a response, client_max_window_bits always has a value.
struct deflate_offer {
    bool server_no_context_takeover = false;
    bool client_no_context_takeover = false;
    std::uint8_t server_max_window_bits = 0; // 8..15, or 0 when absent
    bool has_client_max_window_bits = false; // the parameter is present...
    std::uint8_t client_max_window_bits = 0; // ...with this value (8..15), or 0 without one
};

// Optional zlib allocation hooks (zalloc/zfree/opaque of the z_stream), for
// pooling or for counting memory; all null: zlib's malloc/free.
struct zlib_allocator {
    alloc_func allocate = Z_NULL;
    free_func deallocate = Z_NULL;
    void* opaque = Z_NULL;
};

// What one side wants and allows. The window and context-takeover fields use
// the RFC's names; which of them describes "our" compressor depends on the
// role:
//   server: server_max_window_bits caps our compressor, and is answered when
//     it is below 15 or when the client asked for a limit (we answer the
//     smaller of the two). client_max_window_bits is what we ask of the
//     client's compressor (our inflater's memory); it can be answered only to
//     a client that offered the parameter. server_/client_no_context_takeover,
//     when set, are answered whether offered or not.
//   client: client_max_window_bits caps our compressor and is offered with a
//     value when below 15, without one when 15 and
//     offer_client_max_window_bits is set. server_max_window_bits, when below
//     15, asks the server for a smaller window; since a server that cannot
//     honour it must decline the whole offer, a second offer without it
//     follows. The no_context_takeover flags are offered when set.
struct deflate_options {
    std::uint8_t server_max_window_bits = 12;
    std::uint8_t client_max_window_bits = 12;
    bool server_no_context_takeover = false;
    bool client_no_context_takeover = false;
    bool offer_client_max_window_bits = true;
    // Client: the offers to send, in order of preference, instead of the
    // ones made from the fields above. Our compressor still never exceeds
    // client_max_window_bits.
    std::vector<deflate_offer> client_offers;

    int compression_level = 6; // zlib level, 0..9
    int memory_level = 5;      // zlib memLevel, 1..9: compressor memory vs ratio
    // Messages smaller than this are sent uncompressed (RSV1 clear): below a
    // few dozen bytes the block header and flush cost more than they save.
    std::size_t compress_threshold = 64;
    zlib_allocator allocator;
};

// What was agreed, from our side: the window and context takeover of our
// compressor and of the peer's (which our inflater follows).
struct deflate_params {
    std::uint8_t our_max_window_bits = max_window_bits;
    std::uint8_t peer_max_window_bits = max_window_bits;
    bool our_no_context_takeover = false;
    bool peer_no_context_takeover = false;
};

// Server: the agreement and the Sec-WebSocket-Extensions value to answer with.
struct deflate_agreement {
    deflate_params params;
    std::string response;
};

namespace detail::deflate_negotiation {

// RFC 7692 §7.1.2.1, §7.1.2.2: a decimal integer from 8 to 15, without
// leading zeroes.
inline std::uint8_t parse_window_bits(std::string_view value) noexcept {
    if (value.size() == 1 && value[0] >= '8' && value[0] <= '9') return static_cast<std::uint8_t>(value[0] - '0');
    if (value.size() == 2 && value[0] == '1' && value[1] >= '0' && value[1] <= '5')
        return static_cast<std::uint8_t>(10 + (value[1] - '0'));
    return 0;
}

constexpr std::uint8_t clamp_window_bits(std::uint8_t bits) noexcept {
    return bits < min_window_bits ? min_window_bits : bits > max_window_bits ? max_window_bits : bits;
}

inline void append_param(extension& ext, std::string_view name, std::uint8_t value = 0) {
    extension_param param;
    param.name = std::string(name);
    if (value != 0) param.value = std::to_string(value);
    ext.params.push_back(std::move(param));
}

} // namespace detail::deflate_negotiation

// Reads the parameters of one permessage-deflate offer or response.
// RFC 7692 §7: an unknown parameter, a parameter given twice, or an invalid
// value makes the offer one to decline (error::bad_extension_offer).
inline std::error_code parse_deflate_offer(const extension& ext, deflate_offer& out) {
    using detail::deflate_negotiation::parse_window_bits;
    out = deflate_offer{};
    if (ext.name != permessage_deflate_name) return error::bad_extension_offer;
    bool seen_server_bits = false;
    for (const extension_param& param : ext.params) {
        const std::string_view name = param.name;
        if (name == "server_no_context_takeover" || name == "client_no_context_takeover") {
            bool& flag = name[0] == 's' ? out.server_no_context_takeover : out.client_no_context_takeover;
            // RFC 7692 §7.1.1.1, §7.1.1.2: these parameters take no value.
            if (flag || param.value) return error::bad_extension_offer;
            flag = true;
        } else if (name == "server_max_window_bits") {
            // RFC 7692 §7.1.2.1: the value is required.
            if (seen_server_bits || !param.value) return error::bad_extension_offer;
            seen_server_bits = true;
            out.server_max_window_bits = parse_window_bits(*param.value);
            if (out.server_max_window_bits == 0) return error::bad_extension_offer;
        } else if (name == "client_max_window_bits") {
            // RFC 7692 §7.1.2.2: in an offer, the value may be left out.
            if (out.has_client_max_window_bits) return error::bad_extension_offer;
            out.has_client_max_window_bits = true;
            if (param.value) {
                out.client_max_window_bits = parse_window_bits(*param.value);
                if (out.client_max_window_bits == 0) return error::bad_extension_offer;
            }
        } else {
            return error::bad_extension_offer;
        }
    }
    return {};
}

inline extension to_extension(const deflate_offer& offer) {
    using detail::deflate_negotiation::append_param;
    extension ext;
    ext.name = std::string(permessage_deflate_name);
    if (offer.server_no_context_takeover) append_param(ext, "server_no_context_takeover");
    if (offer.client_no_context_takeover) append_param(ext, "client_no_context_takeover");
    if (offer.server_max_window_bits != 0) append_param(ext, "server_max_window_bits", offer.server_max_window_bits);
    if (offer.has_client_max_window_bits) append_param(ext, "client_max_window_bits", offer.client_max_window_bits);
    return ext;
}

// Client: the offers the options describe, in order of preference.
inline std::vector<deflate_offer> deflate_client_offers(const deflate_options& options) {
    using detail::deflate_negotiation::clamp_window_bits;
    if (!options.client_offers.empty()) return options.client_offers;
    deflate_offer first;
    first.server_no_context_takeover = options.server_no_context_takeover;
    first.client_no_context_takeover = options.client_no_context_takeover;
    const std::uint8_t server_bits = clamp_window_bits(options.server_max_window_bits);
    if (server_bits < max_window_bits) first.server_max_window_bits = server_bits;
    const std::uint8_t client_bits = clamp_window_bits(options.client_max_window_bits);
    if (client_bits < max_window_bits) {
        first.has_client_max_window_bits = true;
        first.client_max_window_bits = client_bits;
    } else {
        // RFC 7692 §7.1.2.2: without the parameter the server may not limit
        // our window; with it (no value) it may.
        first.has_client_max_window_bits = options.offer_client_max_window_bits;
    }
    std::vector<deflate_offer> offers{first};
    if (first.server_max_window_bits != 0) {
        // RFC 7692 §7.1.2.1: a server that cannot limit its window declines
        // the offer; the fallback keeps compression on with such servers.
        deflate_offer fallback = first;
        fallback.server_max_window_bits = 0;
        offers.push_back(fallback);
    }
    return offers;
}

// Client: the Sec-WebSocket-Extensions value offering permessage-deflate.
inline std::string make_deflate_offer(const deflate_options& options) {
    std::string header;
    for (const deflate_offer& offer : deflate_client_offers(options)) {
        if (!header.empty()) header += ", ";
        append_extension(header, to_extension(offer));
    }
    return header;
}

namespace detail::deflate_negotiation {

// Client: whether `response` validly accepts `offer`, and what it agrees.
inline std::optional<deflate_params> match_response(const deflate_offer& offer, const deflate_offer& response,
                                                    const deflate_options& options) {
    // RFC 7692 §7.1.1.1: a server accepts an offer holding
    // server_no_context_takeover by including it in the response.
    if (offer.server_no_context_takeover && !response.server_no_context_takeover) return std::nullopt;
    // RFC 7692 §7.1.2.1: a server accepts server_max_window_bits by
    // answering it with the same or a smaller value.
    if (offer.server_max_window_bits != 0 &&
        (response.server_max_window_bits == 0 || response.server_max_window_bits > offer.server_max_window_bits))
        return std::nullopt;
    // RFC 7692 §7.1.2.2: a client that did not offer client_max_window_bits
    // accepts no response holding it.
    if (response.has_client_max_window_bits && !offer.has_client_max_window_bits) return std::nullopt;

    deflate_params params;
    params.peer_max_window_bits =
        response.server_max_window_bits != 0 ? response.server_max_window_bits : max_window_bits;
    params.peer_no_context_takeover = response.server_no_context_takeover;
    // RFC 7692 §7.1.1.2: offering client_no_context_takeover is a promise
    // not to use context takeover, answered or not.
    params.our_no_context_takeover = response.client_no_context_takeover || offer.client_no_context_takeover;
    // Our window: the smallest of our own cap, the value we offered and the
    // value the server answered (a larger answer than our offer is harmless:
    // we keep to the smaller window we announced).
    std::uint8_t ours = clamp_window_bits(options.client_max_window_bits);
    if (offer.client_max_window_bits != 0) ours = std::min(ours, offer.client_max_window_bits);
    if (response.client_max_window_bits != 0) ours = std::min(ours, response.client_max_window_bits);
    params.our_max_window_bits = ours;
    return params;
}

} // namespace detail::deflate_negotiation

// Client: checks the server's answer, `response` being every extension its
// Sec-WebSocket-Extensions lines name (parse_extensions over each line; a
// parse error there is a bad_extension_response for the caller to report).
// Call it only when permessage-deflate was offered with `options`.
// On success `agreed` holds the agreement, or nothing when the server did not
// accept permessage-deflate.
//   error::unexpected_extension   - an extension other than permessage-deflate
//   error::bad_extension_response - permessage-deflate answered twice, with an
//     unknown, duplicate or invalid parameter, or not matching any offer
inline std::error_code check_deflate_response(const std::vector<extension>& response, const deflate_options& options,
                                              std::optional<deflate_params>& agreed) {
    agreed.reset();
    const extension* answer = nullptr;
    for (const extension& ext : response) {
        // RFC 6455 §4.1: the client fails on "the use of an extension that
        // was not present in the client's handshake".
        if (ext.name != permessage_deflate_name) return error::unexpected_extension;
        // RFC 7692 §5: a response accepting two extensions that both use
        // RSV1 fails the connection; permessage-deflate twice is such a pair.
        if (answer != nullptr) return error::bad_extension_response;
        answer = &ext;
    }
    if (answer == nullptr) return {};
    deflate_offer answered;
    // RFC 7692 §7: a response with an unknown, duplicate or invalid
    // parameter makes the client _Fail the WebSocket Connection_.
    if (parse_deflate_offer(*answer, answered)) return error::bad_extension_response;
    // RFC 7692 §7.1.2.2: in a response client_max_window_bits has a value.
    if (answered.has_client_max_window_bits && answered.client_max_window_bits == 0)
        return error::bad_extension_response;
    for (const deflate_offer& offer : deflate_client_offers(options)) {
        if (auto params = detail::deflate_negotiation::match_response(offer, answered, options)) {
            agreed = *params;
            return {};
        }
    }
    return error::bad_extension_response;
}

// Server: accepts the first permessage-deflate offer it can (RFC 7692 §5), in
// the order the client listed them. Offers with an unknown or duplicate
// parameter or an invalid value are declined, not repaired (RFC 7692 §7),
// and the next one is tried. Extensions with other names are skipped.
// No value: no offer was acceptable; answer without permessage-deflate.
inline std::optional<deflate_agreement> negotiate_deflate_server(const std::vector<extension>& offers,
                                                                 const deflate_options& options) {
    using detail::deflate_negotiation::clamp_window_bits;
    for (const extension& ext : offers) {
        if (ext.name != permessage_deflate_name) continue;
        deflate_offer offer;
        if (parse_deflate_offer(ext, offer)) continue;

        deflate_offer answer;
        deflate_params params;
        // RFC 7692 §7.1.1.1, §7.1.1.2: the server may add either
        // no_context_takeover parameter even when it was not offered.
        answer.server_no_context_takeover = offer.server_no_context_takeover || options.server_no_context_takeover;
        answer.client_no_context_takeover = offer.client_no_context_takeover || options.client_no_context_takeover;
        params.our_no_context_takeover = answer.server_no_context_takeover;
        params.peer_no_context_takeover = answer.client_no_context_takeover;

        // RFC 7692 §7.1.2.1: answer with the same or a smaller value than
        // offered; and the server may include it even when not offered.
        std::uint8_t ours = clamp_window_bits(options.server_max_window_bits);
        if (offer.server_max_window_bits != 0) ours = std::min(ours, offer.server_max_window_bits);
        if (offer.server_max_window_bits != 0 || ours < max_window_bits) answer.server_max_window_bits = ours;
        params.our_max_window_bits = ours;

        // RFC 7692 §7.1.2.2: client_max_window_bits may be answered only
        // when offered, with a value no larger than the offered one.
        params.peer_max_window_bits = max_window_bits;
        if (offer.has_client_max_window_bits) {
            std::uint8_t theirs = clamp_window_bits(options.client_max_window_bits);
            if (offer.client_max_window_bits != 0) theirs = std::min(theirs, offer.client_max_window_bits);
            if (theirs < max_window_bits) {
                answer.has_client_max_window_bits = true;
                answer.client_max_window_bits = theirs;
            }
            params.peer_max_window_bits = theirs;
        }

        deflate_agreement agreement;
        agreement.params = params;
        append_extension(agreement.response, to_extension(answer));
        return agreement;
    }
    return std::nullopt;
}

namespace detail {

struct deflate_stream_deleter {
    void operator()(z_stream* stream) const noexcept {
        deflateEnd(stream); // harmless on a stream whose init failed
        delete stream;
    }
};

struct inflate_stream_deleter {
    void operator()(z_stream* stream) const noexcept {
        inflateEnd(stream);
        delete stream;
    }
};

// zlib counts in uInt; larger inputs go in slices of this size.
inline constexpr std::size_t zlib_slice = std::size_t{1} << 30;

// The tail RFC 7692 §7.2.1 removes and §7.2.2 puts back.
inline constexpr std::uint8_t deflate_tail[4] = {0x00, 0x00, 0xff, 0xff};

inline std::uint8_t* byte_pointer(const std::uint8_t* p) noexcept { return const_cast<std::uint8_t*>(p); }

} // namespace detail

// Compresses messages, given whole or in parts, for one connection.
class deflater {
public:
    deflater() noexcept = default;
    deflater(const deflate_params& agreed, const deflate_options& options) noexcept
        : window_bits_(detail::deflate_negotiation::clamp_window_bits(agreed.our_max_window_bits)),
          no_context_takeover_(agreed.our_no_context_takeover),
          level_(std::clamp(options.compression_level, 0, 9)),
          memory_level_(std::clamp(options.memory_level, 1, 9)),
          allocator_(options.allocator) {}

    // Appends to `out` the compressed bytes of the next part of a message.
    // With end_of_message, flushes and ends the message's DEFLATE data, so
    // `out` then holds whole payload bytes. An empty message is the single
    // byte 00.
    std::error_code compress(const_bytes part, bool end_of_message, std::vector<std::uint8_t>& out) {
        if (part.empty() && !end_of_message) return {};
        if (!stream_) {
            if (auto ec = start()) return ec;
        }
        z_stream& s = *stream_;
        const std::size_t message_start = out.size();
        std::size_t used = out.size();
        // Room for the output of a slice: roughly half the input for text,
        // grown as needed; at least enough for the flush (zlib asks for > 6).
        std::size_t step = std::max<std::size_t>(part.size() / 2, 256);
        const std::uint8_t* in = part.data();
        std::size_t remaining = part.size();
        bool failed = false;
        for (;;) {
            const std::size_t slice = std::min(remaining, detail::zlib_slice);
            const bool last_slice = slice == remaining;
            s.next_in = detail::byte_pointer(in);
            s.avail_in = static_cast<uInt>(slice);
            // RFC 7692 §7.2.1: end the message with an empty stored block
            // (a sync flush) so that it ends on a byte boundary.
            const int flush = (last_slice && end_of_message) ? Z_SYNC_FLUSH : Z_NO_FLUSH;
            do {
                // zlib asks for more than 6 bytes of room on a flush, lest
                // it repeat the flush marker.
                if (out.size() - used < 64) {
                    out.resize(used + step);
                    step = std::min(step * 2, detail::zlib_slice);
                }
                const std::size_t room = std::min(out.size() - used, detail::zlib_slice);
                s.next_out = out.data() + used;
                s.avail_out = static_cast<uInt>(room);
                const int rc = deflate(&s, flush);
                used += room - s.avail_out;
                if (rc != Z_OK && rc != Z_BUF_ERROR) {
                    failed = true;
                    break;
                }
                // Output space left over means zlib took all the input.
            } while (s.avail_out == 0);
            if (failed) break;
            in += slice;
            remaining -= slice;
            if (last_slice) break;
        }
        out.resize(used);
        message_input_ += part.size();
        if (!failed && end_of_message && message_input_ == 0 && used == message_start) {
            // An empty message right after another: zlib skips a second
            // flush in a row, but the stream already sits on a byte boundary,
            // so the empty stored block's first byte is all it takes.
            out.push_back(0x00);
        } else if (!failed && end_of_message) {
            // RFC 7692 §7.2.1: remove the 4 octets 00 00 ff ff the flush
            // left at the end.
            const std::size_t produced = used - message_start;
            if (produced < 4 || !std::equal(out.end() - 4, out.end(), detail::deflate_tail)) {
                failed = true;
            } else {
                out.resize(used - 4);
                // RFC 7692 §7.1.1: without context takeover each message
                // starts from an empty window.
                if (no_context_takeover_ && deflateReset(&s) != Z_OK) failed = true;
            }
        }
        if (end_of_message || failed) message_input_ = 0;
        if (failed) {
            out.resize(message_start);
            stream_.reset(); // the next message starts over
            return error::deflate_failed;
        }
        return {};
    }

    // Whether the z_stream exists yet (it is made on the first message).
    bool started() const noexcept { return stream_ != nullptr; }

private:
    std::error_code start() {
        std::unique_ptr<z_stream, detail::deflate_stream_deleter> s(new (std::nothrow) z_stream{});
        if (!s) return error::deflate_failed;
        s->zalloc = allocator_.allocate;
        s->zfree = allocator_.deallocate;
        s->opaque = allocator_.opaque;
        int bits = window_bits_;
        int strategy = Z_DEFAULT_STRATEGY;
        if (bits == 8) {
            // zlib has no raw 8-bit window: a 9-bit window with matches at
            // distance 1 only stays within 256 bytes (see the top of this file).
            bits = 9;
            strategy = Z_RLE;
        }
        // Negative window bits: raw DEFLATE, no zlib header (RFC 7692 §7.2.1).
        if (deflateInit2(s.get(), level_, Z_DEFLATED, -bits, memory_level_, strategy) != Z_OK)
            return error::deflate_failed;
        stream_ = std::move(s);
        return {};
    }

    std::unique_ptr<z_stream, detail::deflate_stream_deleter> stream_;
    std::size_t message_input_ = 0; // uncompressed bytes of the current message so far
    std::uint8_t window_bits_ = max_window_bits;
    bool no_context_takeover_ = false;
    int level_ = Z_DEFAULT_COMPRESSION;
    int memory_level_ = 8;
    zlib_allocator allocator_;
};

// Decompresses messages fragment by fragment for one connection, holding the
// output of each message to a size limit while inflating.
class inflater {
public:
    inflater() noexcept = default;
    inflater(const deflate_params& agreed, const deflate_options& options) noexcept
        : window_bits_(detail::deflate_negotiation::clamp_window_bits(agreed.peer_max_window_bits)),
          no_context_takeover_(agreed.peer_no_context_takeover),
          allocator_(options.allocator) {}

    // Appends to `out` the bytes that the next fragment of a compressed
    // message inflates to. The message's inflated size (all its fragments)
    // may not exceed max_message_size: past it, error::message_too_big, and
    // `out` never grew by more than max_message_size + 1 for the message.
    // A corrupt stream: error::inflate_failed. After an error the rest of
    // the message must not be passed in; the next message starts afresh.
    // `out` is a std::vector<std::uint8_t> or a std::string.
    template <class Buffer>
    std::error_code decompress(const_bytes part, bool end_of_message, Buffer& out, std::size_t max_message_size) {
        if (!stream_) {
            if (auto ec = start()) return ec;
        }
        message_input_ += part.size();
        std::error_code ec = inflate_bytes(part, out, max_message_size);
        if (!ec && end_of_message) {
            // RFC 7692 §7.2.2: append the 4 octets 00 00 ff ff to the
            // payload before inflating it. An empty payload is
            // taken as an empty message; a stream that ended with a BFINAL
            // block (RFC 7692 §7.2.3.4) needs no tail.
            if (message_input_ != 0 && !stream_ended_) {
                ec = inflate_bytes(const_bytes(detail::deflate_tail, sizeof detail::deflate_tail), out,
                                   max_message_size);
                // The payload must end where a block ends: the tail is
                // then an empty stored block. Anything else is a truncated
                // or corrupt stream.
                if (!ec && !stream_ended_ && (stream_->data_type & 128) == 0) ec = error::inflate_failed;
            }
            if (!ec) {
                // RFC 7692 §7.1.1: without context takeover the peer starts
                // each message from an empty window. After a BFINAL block the
                // DEFLATE stream is over and a new one begins.
                if (no_context_takeover_ || stream_ended_) reset_stream();
                if (message_input_ != 0) {
                    // In sixteenths, with an eighth more for the next message's variation.
                    const std::size_t ratio = message_size_ / message_input_ * 16 +
                                              message_size_ % message_input_ * 16 / message_input_;
                    expansion_ = std::clamp<std::size_t>(ratio + ratio / 8 + 1, 16, 64 * 16);
                }
                message_input_ = 0;
                message_size_ = 0;
            }
        }
        if (ec) {
            reset_stream();
            message_input_ = 0;
            message_size_ = 0;
        }
        return ec;
    }

    bool started() const noexcept { return stream_ != nullptr; }

private:
    std::error_code start() {
        std::unique_ptr<z_stream, detail::inflate_stream_deleter> s(new (std::nothrow) z_stream{});
        if (!s) return error::inflate_failed;
        s->zalloc = allocator_.allocate;
        s->zfree = allocator_.deallocate;
        s->opaque = allocator_.opaque;
        // A peer held to 8 bits is inflated with 9 (see the top of this file).
        const int bits = std::max<int>(window_bits_, 9);
        if (inflateInit2(s.get(), -bits) != Z_OK) return error::inflate_failed;
        stream_ = std::move(s);
        return {};
    }

    void reset_stream() noexcept {
        inflateReset(stream_.get());
        stream_ended_ = false;
    }

    template <class Buffer>
    std::error_code inflate_bytes(const_bytes input, Buffer& out, std::size_t max_message_size) {
        if (input.empty()) return {};
        z_stream& s = *stream_;
        std::size_t used = out.size();
        // The most this message may still add, plus one byte to see it go
        // over; out never grows past used_limit.
        const std::size_t allowed = max_message_size - std::min(message_size_, max_message_size);
        const std::size_t headroom = allowed == SIZE_MAX ? allowed : allowed + 1;
        const std::size_t used_limit = used + std::min(headroom, SIZE_MAX - used);
        // Output space comes in steps sized from the last message's
        // expansion, so that little of it is zero-filled for nothing.
        std::size_t step = std::clamp<std::size_t>(std::min<std::size_t>(input.size(), 1 << 20) * expansion_ / 16,
                                                   256, std::size_t{1} << 20);
        const std::uint8_t* in = input.data();
        std::size_t remaining = input.size();
        std::error_code ec;
        do {
            const std::size_t slice = std::min(remaining, detail::zlib_slice);
            in += slice;
            remaining -= slice;
            s.next_in = detail::byte_pointer(in - slice);
            s.avail_in = static_cast<uInt>(slice);
            for (;;) {
                if (stream_ended_) {
                    if (s.avail_in == 0) break;
                    // More bytes after a BFINAL block begin a new stream.
                    reset_stream();
                }
                if (used == out.size()) {
                    const std::size_t grow = std::min(step, used_limit - used);
                    if (used + grow > out.capacity()) {
                        // Grow geometrically, but never past what the limit allows.
                        out.reserve(std::min(std::max(used + grow, out.capacity() * 2), used_limit));
                    }
                    out.resize(used + grow);
                    step = std::min(step * 2, std::size_t{1} << 20);
                    if (grow == 0) { // unreachable: the limit stops us first
                        ec = error::message_too_big;
                        break;
                    }
                }
                const std::size_t room = std::min(out.size() - used, detail::zlib_slice);
                s.next_out = reinterpret_cast<Bytef*>(out.data()) + used;
                s.avail_out = static_cast<uInt>(room);
                const int rc = inflate(&s, Z_SYNC_FLUSH);
                const std::size_t produced = room - s.avail_out;
                used += produced;
                message_size_ += produced;
                // RFC 7692 §8: bound the inflated size while inflating.
                if (message_size_ > max_message_size) {
                    ec = error::message_too_big;
                    break;
                }
                if (rc == Z_STREAM_END) {
                    stream_ended_ = true;
                    continue;
                }
                if (rc != Z_OK && rc != Z_BUF_ERROR) {
                    ec = error::inflate_failed;
                    break;
                }
                // Done when the input is used up and output space is left
                // (so nothing is held back). Z_BUF_ERROR with input left
                // would mean no progress: treat as corrupt rather than spin.
                if (s.avail_in == 0 && s.avail_out != 0) break;
                if (rc == Z_BUF_ERROR && s.avail_out != 0) {
                    ec = error::inflate_failed;
                    break;
                }
            }
        } while (!ec && remaining != 0);
        out.resize(used);
        return ec;
    }

    std::unique_ptr<z_stream, detail::inflate_stream_deleter> stream_;
    std::uint8_t window_bits_ = max_window_bits;
    bool no_context_takeover_ = false;
    bool stream_ended_ = false;        // the current DEFLATE stream had a BFINAL block
    std::size_t message_input_ = 0;    // compressed bytes of the current message so far
    std::size_t message_size_ = 0;     // inflated bytes of the current message so far
    std::size_t expansion_ = 4 * 16;   // inflated bytes per compressed byte of the last message, in 16ths
    zlib_allocator allocator_;
};

} // namespace wsx
