// wsx/message.hpp - what every adapter hands out: a whole message, and how a
// connection ended. The core (wsx/connection.hpp) keeps the close_status;
// the blocking and Asio adapters report the core's.
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/close_code.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace wsx {

// A whole message. Text and binary payloads both live in a std::string,
// which holds any bytes; reading into the same message again reuses its
// capacity, so a read loop does not allocate per message.
struct message {
    bool text = false;
    std::string data;

    std::string_view view() const noexcept { return data; }
    const_bytes bytes() const noexcept { return data; }
};

// How the connection ended, once it has, and the close frames on the way.
struct close_status {
    close_code code = close_code::no_status; // the peer's code, or the one we failed with, or 1006
    std::string reason;                      // the peer's reason
    bool closed_by_peer = false;             // the peer started the closing handshake
    std::error_code ec;                      // what failed the connection, if anything did
    // The close frames themselves, once sent or received: their codes
    // (no_status for a frame without one).
    std::optional<close_code> sent;
    std::optional<close_code> received;
};

} // namespace wsx
