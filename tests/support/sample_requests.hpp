// tests/support/sample_requests.hpp - an upgrade request as a browser sends
// it, shared by the handshake tests and the handshake benchmark so that both
// work on the same bytes.
#pragma once

#include <string>

namespace wsx::test {

// Chromium's opening handshake as its developer tools show it, with the
// RFC 6455 §1.3 sample key and a permessage-deflate offer.
inline const std::string chromium_request =
    "GET /chat HTTP/1.1\r\n"
    "Host: example.com:8000\r\n"
    "Connection: Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36\r\n"
    "Upgrade: websocket\r\n"
    "Origin: http://example.com:8000\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "\r\n";

} // namespace wsx::test
