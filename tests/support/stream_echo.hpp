// tests/support/stream_echo.hpp - the server side of the echo tests of
// wsx::stream: every message goes back as it came, text as text and binary
// as binary.
#pragma once

#include <wsx/stream.hpp>

#include <cstddef>
#include <system_error>

namespace wsx::test {

// Writes `m` back with its own type.
template <class Layer>
void write_back(stream<Layer>& ws, const message& m, std::error_code& ec) {
    if (m.text) {
        ws.write_text(m.data, ec);
    } else {
        ws.write_binary(m.data, ec);
    }
}

// Echoes messages on an open stream until a read or write fails; `end_ec`
// gets what ended it (connection_closed after a clean closing handshake) and
// `echoed` counts the messages sent back.
template <class Layer>
void echo_messages(stream<Layer>& ws, std::error_code& end_ec, std::size_t& echoed) {
    message m;
    for (;;) {
        ws.read(m, end_ec);
        if (end_ec) return;
        write_back(ws, m, end_ec);
        if (end_ec) return;
        ++echoed;
    }
}

} // namespace wsx::test
