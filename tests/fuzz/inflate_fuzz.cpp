// The inflater on arbitrary input: never crashes, never lets a message grow
// past its limit (plus the one byte that detects it), and stays usable.
// Inputs whose first byte is odd also run a round trip of the rest through
// the deflater under the parameters the first bytes pick.
#include <wsx/deflate.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    const std::uint8_t mode = data[0];
    const std::uint8_t shape = data[1];
    const std::uint8_t cut_byte = data[2];
    const wsx::const_bytes body(data + 3, size - 3);

    wsx::deflate_params params;
    params.peer_max_window_bits = static_cast<std::uint8_t>(8 + (shape & 7));
    params.our_max_window_bits = params.peer_max_window_bits;
    params.peer_no_context_takeover = (shape & 8) != 0;
    params.our_no_context_takeover = (shape & 16) != 0;
    wsx::deflate_options options;
    options.compression_level = (shape >> 5) + 1;
    options.memory_level = 1 + (cut_byte & 7);
    wsx::inflater inflater(params, options);

    if (mode & 1) {
        // Round trip: two messages sharing the window, the first in parts.
        wsx::deflate_params mirror = params;
        mirror.our_no_context_takeover = params.peer_no_context_takeover;
        wsx::deflater deflater(mirror, options);
        std::vector<std::uint8_t> payload;
        std::vector<std::uint8_t> plain;
        const std::size_t cut = body.size() * cut_byte / 256;
        for (int message = 0; message < 2; ++message) {
            payload.clear();
            plain.clear();
            if (deflater.compress(body.first(cut), false, payload)) std::abort();
            if (deflater.compress(body.subspan(cut), true, payload)) std::abort();
            const std::size_t half = payload.size() / 2;
            if (inflater.decompress(wsx::const_bytes(payload).first(half), false, plain, body.size())) std::abort();
            if (inflater.decompress(wsx::const_bytes(payload).subspan(half), true, plain, body.size())) std::abort();
            if (plain.size() != body.size() || !std::equal(plain.begin(), plain.end(), body.begin())) std::abort();
        }
        return 0;
    }

    // Arbitrary compressed input: messages separated where the cut byte
    // says, each in two fragments, under a small limit.
    const std::size_t limit = std::size_t{1} << (8 + (mode >> 4));
    std::vector<std::uint8_t> out;
    std::size_t offset = 0;
    const std::size_t step = 1 + cut_byte;
    while (offset < body.size()) {
        const std::size_t n = std::min(step, body.size() - offset);
        const wsx::const_bytes message = body.subspan(offset, n);
        offset += n;
        out.clear();
        std::error_code ec = inflater.decompress(message.first(n / 2), false, out, limit);
        if (!ec) ec = inflater.decompress(message.subspan(n / 2), true, out, limit);
        if (out.size() > limit + 1) std::abort();
        if (ec && ec != wsx::error::inflate_failed && ec != wsx::error::message_too_big) std::abort();
        if (!ec && out.size() > limit) std::abort();
    }
    // Still usable afterwards.
    static const std::uint8_t stored_hello[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 'H', 'e', 'l', 'l', 'o', 0x00};
    out.clear();
    if (inflater.decompress(wsx::const_bytes(stored_hello, sizeof stored_hello), true, out, limit)) std::abort();
    if (out.size() != 5) std::abort();
    return 0;
}
