// wsx/asio/impl/client.ipp - connect()'s machinery: resolving, TCP and
// TLS, the opening handshake and redirects. Inline through
// <wsx/asio/client.hpp>, or compiled once with WSX_SEPARATE_COMPILATION
// (see wsx/asio/config.hpp).
#pragma once

#include <wsx/asio/async_stream.hpp>
#include <wsx/asio/client.hpp>
#include <wsx/asio/config.hpp>
#include <wsx/asio/detail/stream_backend.hpp>
#include <wsx/asio/ssl.hpp>
#include <wsx/asio/websocket.hpp>
#include <wsx/connection.hpp>
#include <wsx/error.hpp>
#include <wsx/handshake.hpp>
#include <wsx/uri.hpp>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <openssl/ssl.h>

namespace wsx {
namespace detail {

// The Location of a redirect, as a ws:// or wss:// URI: absolute (ws, wss,
// http, https) or an absolute path on the same server.
inline std::optional<std::string> redirect_target(const uri& from, std::string_view location) {
    const auto starts = [&](std::string_view prefix) {
        return location.size() >= prefix.size() &&
               std::equal(prefix.begin(), prefix.end(), location.begin(),
                          [](char a, char b) { return a == (b >= 'A' && b <= 'Z' ? char(b - 'A' + 'a') : b); });
    };
    if (starts("ws://") || starts("wss://")) return std::string(location);
    if (starts("http://")) return "ws://" + std::string(location.substr(7));
    if (starts("https://")) return "wss://" + std::string(location.substr(8));
    if (!location.empty() && location.front() == '/' && (location.size() < 2 || location[1] != '/'))
        return std::string(from.secure ? "wss://" : "ws://") + from.host_header + std::string(location);
    return std::nullopt;
}

inline bool is_redirect(int status) noexcept { return status == 301 || status == 302 || status == 307 || status == 308; }

template <class Layer>
net::awaitable<connect_outcome> finish_connect(std::shared_ptr<stream_backend<Layer>> backend, const uri& where,
                                               const client_options& options) {
    connect_outcome out;
    auto& stream = backend->stream;
    stream.set_options(options.connection);
    stream.set_low_water_mark(options.low_water_mark);
    const net_error_code ec = co_await stream.co_handshake(where, options.handshake);
    if (ec) {
        out.ec = to_std_error(ec);
        if (const wsx::connection* core = stream.connection()) {
            out.status = core->response().http.status;
            if (auto location = core->response().http.headers.find("Location")) out.location = std::string(*location);
        }
        co_return out;
    }
    backend->id = websocket::next_id();
    backend->target = where.target;
    backend->subprotocol = std::string(stream.subprotocol());
    backend->start_reading(options.max_queue); // in the background from now on
    out.ws = websocket(backend);
    co_return out;
}

WSX_DECL net::awaitable<connect_outcome> connect_once(const uri& where, const client_options& options) {
    using tcp = net::ip::tcp;
    connect_outcome out;
    const auto executor = co_await net::this_coro::executor;
    const duration limit = options.connection.open_timeout;
    const auto started = clock_type::now();

    // Resolve and connect within the open timeout.
    tcp::resolver resolver(executor);
    tcp::socket socket(executor);
    detail::deadline_guard guard(executor, limit.count() > 0 ? limit : duration(std::chrono::hours(24)), [&] {
        resolver.cancel();
        net_error_code ignored;
        socket.close(ignored);
    });
    net_error_code ec;
    const auto endpoints = co_await resolver.async_resolve(where.host, std::to_string(where.port),
                                                           net::redirect_error(net::use_awaitable, ec));
    if (!ec) co_await net::async_connect(socket, endpoints, net::redirect_error(net::use_awaitable, ec));
    guard.disarm();
    if (guard.fired()) ec = to_net_error(error::open_timeout);
    if (ec) {
        out.ec = to_std_error(ec);
        co_return out;
    }
    socket.set_option(tcp::no_delay(true), ec);
    const tcp::endpoint remote = socket.remote_endpoint(ec);

    // What is left of the open timeout, for TLS and the handshake.
    client_options rest = options;
    if (limit.count() > 0) {
        const auto spent = std::chrono::duration_cast<duration>(clock_type::now() - started);
        rest.connection.open_timeout = std::max(duration(1), limit - spent);
    }

    if (!where.secure) {
        auto backend = std::make_shared<stream_backend<tcp::socket>>(std::move(socket));
        backend->remote = remote;
        co_return co_await finish_connect(backend, where, rest);
    }

    std::shared_ptr<net::ssl::context> context = options.tls;
    if (!context) {
        context = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
        context->set_default_verify_paths();
        context->set_verify_mode(net::ssl::verify_peer);
    }
    using layer = net::ssl::stream<tcp::socket>;
    auto backend = std::make_shared<stream_backend<layer>>(std::move(socket), *context);
    backend->keep_alive = context;
    backend->remote = remote;
    layer& tls = backend->stream.next_layer();
    // RFC 6066 §3: SNI carries a host name, never an address literal.
    if (where.host_kind == uri_host_kind::name) SSL_set_tlsext_host_name(tls.native_handle(), where.host.c_str());
    tls.set_verify_callback(net::ssl::host_name_verification(where.host));
    detail::deadline_guard tls_guard(executor, rest.connection.open_timeout.count() > 0 ? rest.connection.open_timeout
                                                                                         : duration(std::chrono::hours(24)),
                                     [&tls] { close_lowest_layer(tls); });
    co_await tls.async_handshake(net::ssl::stream_base::client, net::redirect_error(net::use_awaitable, ec));
    tls_guard.disarm();
    const bool tls_timed_out = tls_guard.fired();
    if (ec) {
        out.ec = tls_timed_out ? make_error_code(error::open_timeout) : make_error_code(error::tls_failed);
        co_return out;
    }
    if (limit.count() > 0) {
        const auto spent = std::chrono::duration_cast<duration>(clock_type::now() - started);
        rest.connection.open_timeout = std::max(duration(1), limit - spent);
    }
    co_return co_await finish_connect(backend, where, rest);
}

// connect() with its redirects; the outcome of the last attempt.
WSX_DECL net::awaitable<connect_outcome> connect_following(std::string_view text, const client_options& options) {
    std::string current(text);
    for (std::size_t redirects = 0;; ++redirects) {
        std::error_code ec;
        const uri where = parse_uri(current, ec);
        if (ec) {
            connect_outcome out;
            out.ec = ec;
            co_return out;
        }
        connect_outcome out = co_await connect_once(where, options);
        if (!out.ec || !is_redirect(out.status) || redirects >= options.max_redirects) co_return out;
        const std::optional<std::string> next = redirect_target(where, out.location);
        if (!next) co_return out;
        if (options.log) options.log(log_level::info, "redirect " + std::to_string(out.status) + " to " + *next);
        current = *next;
    }
}

} // namespace detail

namespace detail {

WSX_DECL net::awaitable<websocket> connect_or_throw(std::string uri_text, client_options options) {
    connect_outcome out = co_await connect_following(uri_text, options);
    if (out.ec) {
        if (out.status != 0 || out.ec == error::unexpected_status)
            throw handshake_failed(out.ec, out.status, std::move(out.location));
        throw std::system_error(out.ec, "connect");
    }
    co_return std::move(out.ws);
}

WSX_DECL net::awaitable<websocket> connect_with_error(std::string uri_text, client_options options, std::error_code& ec) {
    connect_outcome out = co_await connect_following(uri_text, options);
    ec = out.ec;
    co_return std::move(out.ws);
}

} // namespace detail


} // namespace wsx
