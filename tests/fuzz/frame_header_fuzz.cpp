// Frame header parser invariants, for both roles and several sets of allowed
// RSV bits:
// - no crash, no undefined behaviour;
// - complete: writing the parsed header back gives exactly the bytes
//   consumed, and the header obeys every rule the parser enforces;
// - every prefix shorter than the header answers need_more, and an error is
//   final: no prefix disagrees with it;
// - need_more asks for more bytes than it was given.
#include <wsx/frame.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

void expect(bool condition) {
    if (!condition) std::abort();
}

void check(wsx::const_bytes input, wsx::role receiver, std::uint8_t allowed_rsv) {
    wsx::frame_header h;
    const wsx::header_parse_result result = wsx::parse_frame_header(input, receiver, h, allowed_rsv);

    switch (result.status) {
    case wsx::parse_status::need_more:
        expect(!result.ec);
        expect(result.size > input.size());
        expect(result.size >= 2 && result.size <= wsx::max_frame_header_size);
        break;
    case wsx::parse_status::error:
        expect(static_cast<bool>(result.ec));
        break;
    case wsx::parse_status::complete: {
        expect(!result.ec);
        expect(result.size >= 2 && result.size <= input.size());
        expect(result.size <= wsx::max_frame_header_size);
        std::array<std::uint8_t, wsx::max_frame_header_size> written{};
        const std::size_t n = wsx::write_frame_header(h, written);
        expect(n == result.size);
        expect(std::memcmp(written.data(), input.data(), n) == 0);
        // The rules the parser enforces hold for what it accepts.
        expect(wsx::is_known(h.op));
        expect((h.rsv & ~allowed_rsv) == 0);
        expect(h.masked == (receiver == wsx::role::server));
        if (wsx::is_control(h.op)) expect(h.fin && h.payload_length <= wsx::max_control_payload);
        expect((h.payload_length >> 63) == 0);
        break;
    }
    }

    // Prefixes: shorter than a complete header, need_more; an error is final.
    const std::size_t limit = result.status == wsx::parse_status::complete ? result.size : input.size();
    for (std::size_t k = 0; k < limit; ++k) {
        wsx::frame_header p;
        const wsx::header_parse_result part = wsx::parse_frame_header(input.first(k), receiver, p, allowed_rsv);
        if (part.status == wsx::parse_status::error) {
            expect(result.status == wsx::parse_status::error);
            expect(part.ec == result.ec);
        } else {
            expect(part.status == wsx::parse_status::need_more);
            expect(part.size > k);
        }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Headers are at most 14 bytes; longer inputs only add trailing payload.
    const wsx::const_bytes input(data, size < 32 ? size : 32);
    for (wsx::role receiver : {wsx::role::client, wsx::role::server}) {
        for (std::uint8_t allowed_rsv : {std::uint8_t{0}, wsx::rsv1_bit, std::uint8_t{0x7}}) {
            check(input, receiver, allowed_rsv);
        }
    }
    return 0;
}
