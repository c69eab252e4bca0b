// wsx/asio/ssl.hpp - wss:// for wsx::async_stream: how an Asio ssl::stream ends.
//
//   net::ssl::context tls(net::ssl::context::tls_server);
//   ... load the certificate and key ...
//   wsx::async_stream<net::ssl::stream<net::ip::tcp::socket>> ws(std::move(socket), tls);
//   co_await ws.next_layer().async_handshake(net::ssl::stream_base::server, net::use_awaitable);
//   co_await ws.async_accept(net::use_awaitable);
//
// The TLS handshake is the caller's (as with any Asio ssl::stream); the
// WebSocket then ends the stream with a TLS close_notify, bounded by the
// close timeout, before closing the socket. A peer that drops TCP without
// close_notify (a "truncated" stream) counts as the end of the stream.
#pragma once

#include <wsx/asio/async_stream.hpp>
#include <wsx/asio/config.hpp>

#if defined(WSX_ASIO_BOOST)
#include <boost/asio/ssl.hpp>
#else
#include <asio/ssl.hpp>
#endif

namespace wsx {

template <class Socket>
struct async_teardown<net::ssl::stream<Socket>> {
    static bool is_end_of_stream(const net_error_code& ec) noexcept {
        return ec == net::error::eof || ec == net::ssl::error::stream_truncated;
    }

    static net::awaitable<void> teardown(net::ssl::stream<Socket>& layer, bool graceful, duration timeout) {
        // A TLS shutdown cannot run beside a pending read on the same stream.
        if (graceful && layer.lowest_layer().is_open()) {
            detail::deadline_guard guard(layer.get_executor(), timeout, [&layer] { detail::close_lowest_layer(layer); });
            net_error_code ignored;
            co_await layer.async_shutdown(net::redirect_error(net::use_awaitable, ignored));
        }
        detail::close_lowest_layer(layer);
    }
};

} // namespace wsx
