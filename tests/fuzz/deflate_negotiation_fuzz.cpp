// permessage-deflate negotiation on arbitrary header values. The input is
// split at the first NUL: the left part is an offer a server negotiates, the
// right part a response the client checks. Whatever the server agrees must
// be in range, parse again, and satisfy the client that sent the offer.
#include <wsx/deflate.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <vector>

namespace {

bool in_range(const wsx::deflate_params& p) {
    return p.our_max_window_bits >= 8 && p.our_max_window_bits <= 15 && p.peer_max_window_bits >= 8 &&
           p.peer_max_window_bits <= 15;
}

wsx::deflate_options policy(std::uint8_t selector) {
    wsx::deflate_options o;
    o.server_max_window_bits = static_cast<std::uint8_t>(8 + (selector & 7));
    o.client_max_window_bits = static_cast<std::uint8_t>(8 + ((selector >> 3) & 7));
    o.server_no_context_takeover = (selector & 0x40) != 0;
    o.client_no_context_takeover = (selector & 0x80) != 0;
    return o;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const wsx::deflate_options options = policy(data[0]);
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    const std::size_t nul = input.find('\0');
    const std::string_view offer_text = input.substr(0, nul);
    const std::string_view response_text = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);

    // Server side.
    std::vector<wsx::extension> offers;
    if (!wsx::parse_extensions(offer_text, offers)) {
        const auto agreement = wsx::negotiate_deflate_server(offers, options);
        if (agreement) {
            if (!in_range(agreement->params)) std::abort();
            std::vector<wsx::extension> answered;
            if (wsx::parse_extensions(agreement->response, answered) || answered.size() != 1) std::abort();
            // The offer the server took is the first valid permessage-deflate one.
            wsx::deflate_offer taken;
            bool found = false;
            for (const auto& ext : offers) {
                if (ext.name == wsx::permessage_deflate_name && !wsx::parse_deflate_offer(ext, taken)) {
                    found = true;
                    break;
                }
            }
            if (!found) std::abort();
            wsx::deflate_options client = policy(static_cast<std::uint8_t>(data[0] * 7 + 3));
            client.client_offers = {taken};
            std::optional<wsx::deflate_params> agreed;
            if (wsx::check_deflate_response(answered, client, agreed) || !agreed || !in_range(*agreed)) std::abort();
            if (agreed->our_max_window_bits > agreement->params.peer_max_window_bits) std::abort();
            if (agreement->params.our_max_window_bits > agreed->peer_max_window_bits) std::abort();
            if (agreed->peer_no_context_takeover != agreement->params.our_no_context_takeover) std::abort();
            if (agreement->params.peer_no_context_takeover && !agreed->our_no_context_takeover) std::abort();
        }
    }

    // Client side.
    std::vector<wsx::extension> response;
    if (!wsx::parse_extensions(response_text, response)) {
        std::optional<wsx::deflate_params> agreed;
        const std::error_code ec = wsx::check_deflate_response(response, options, agreed);
        if (ec && agreed) std::abort();
        if (!ec && agreed && !in_range(*agreed)) std::abort();
        if (ec && ec != wsx::error::bad_extension_response && ec != wsx::error::unexpected_extension) std::abort();
    }
    return 0;
}
