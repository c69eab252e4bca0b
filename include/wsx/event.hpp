// wsx/event.hpp - what a connection reports (next_event()) and what it
// asks of its transport (transport_action()).
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/close_code.hpp>
#include <wsx/handshake.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>

namespace wsx {

enum class state : std::uint8_t { connecting, open, closing, closed };

enum class event_type : std::uint8_t {
    none,
    request,  // server: a valid upgrade request; call accept() or reject()
    http_request, // server: a request that does not ask for a WebSocket at
                  // all (a browser's GET /): answer it with reject() (a page,
                  // a health check, a redirect) or refuse(); `ec` says why it
                  // is not an upgrade
    response, // client: the server's answer (101 or not)
    message,  // a whole text or binary message
    chunk,    // streaming: one piece of a message; `fin` on the last
    ping,
    pong,
    close,    // always the last event, exactly once
};

struct event {
    event_type type = event_type::none;
    bool text = false;      // message, chunk: a text message
    bool fin = true;        // chunk: the last piece of its message
    const_bytes data;       // message, chunk, ping, pong: the payload
    // close: the connection's close code - the one in the peer's close frame,
    // or the one we failed the connection with (1002, 1007, 1009, 1011), or
    // abnormal (1006) when it ended without close frames - with the peer's
    // reason, whether the peer started the closing handshake, and the error
    // that failed the connection, if one did.
    close_code code = close_code::no_status;
    std::string_view reason;
    bool closed_by_peer = false;
    std::error_code ec;

    explicit operator bool() const noexcept { return type != event_type::none; }
    std::string_view data_view() const noexcept { return as_string_view(data); }
};

// Called by adapters with each ping and pong read (the connection answers
// pings on its own).
using control_callback = std::function<void(event_type type, const_bytes payload)>;

// What to do with the transport, once the output is written.
enum class transport_action : std::uint8_t {
    none,           // keep reading and writing
    shutdown_write, // a client after the closing handshake: nothing more
                    // will be written; keep reading until the server ends
                    // the stream (receive_eof()) or the close timeout
    close,          // end the transport: the connection is over
};

// Server: how to answer an upgrade request.
struct accept_options {
    std::string subprotocol; // empty, or one the client offered (see select_subprotocol)
    http_fields headers;     // more response fields (Set-Cookie, ...)
};

} // namespace wsx
