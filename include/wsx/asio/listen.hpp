// wsx/asio/listen.hpp - listening sockets for a host name or an address, as
// Python's websockets.serve() opens them.
//
//   std::vector<tcp::acceptor> acceptors = wsx::open_acceptors(executor, "localhost", 8765);
//
// An address ("127.0.0.1", "::", "::1") gives one acceptor. A name is
// resolved and gives one acceptor per address it has: "localhost" listens on
// 127.0.0.1 and ::1, as Python does. With port 0 the first acceptor's port,
// chosen by the system, is used for the others too. IPv6 acceptors beside
// IPv4 ones are IPv6-only, so that both can hold the same port. An address of
// a name that this machine cannot bind (no IPv6 here) is skipped while
// another one is bound. Failures throw std::system_error naming what failed:
// "wsx: listen on nosuch.invalid: cannot resolve the name: Host not found".
#pragma once

#include <wsx/asio/config.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace wsx {

struct listen_options {
    bool reuse_address = true;
    int backlog = net::socket_base::max_listen_connections;
};

// HOST:PORT, with an IPv6 address in brackets ("[::1]:8765").
inline std::string endpoint_text(const net::ip::tcp::endpoint& endpoint) {
    const net::ip::address address = endpoint.address();
    std::string text;
    if (address.is_v6()) text += '[';
    text += address.to_string();
    if (address.is_v6()) text += ']';
    text += ':';
    text += std::to_string(endpoint.port());
    return text;
}

namespace detail {

// An operating system error as std::system_category's, which compares equal
// to std::errc values (Asio's own system category does not).
inline std::error_code os_error(const net_error_code& ec) {
    if (ec.category() == net::error::get_system_category()) return {ec.value(), std::system_category()};
    return to_std_error(ec);
}

// Where to listen for `host`, without duplicates, IPv4 first.
inline std::vector<net::ip::tcp::endpoint> listen_endpoints(const net::any_io_executor& executor,
                                                             const std::string& host, std::uint16_t port) {
    using tcp = net::ip::tcp;
    net_error_code ec;
    const net::ip::address address = net::ip::make_address(host, ec);
    if (!ec) return {tcp::endpoint(address, port)};
    tcp::resolver resolver(executor);
    const auto results = resolver.resolve(host, std::to_string(port), tcp::resolver::passive, ec);
    if (ec) throw std::system_error(to_std_error(ec), "wsx: listen on " + host + ": cannot resolve the name");
    std::vector<tcp::endpoint> endpoints;
    for (const auto& entry : results) {
        const tcp::endpoint endpoint = entry.endpoint();
        bool seen = false;
        for (const tcp::endpoint& known : endpoints) seen = seen || known == endpoint;
        if (!seen) endpoints.push_back(endpoint);
    }
    std::stable_partition(endpoints.begin(), endpoints.end(), [](const tcp::endpoint& e) { return e.address().is_v4(); });
    if (endpoints.empty()) throw std::system_error(std::make_error_code(std::errc::address_not_available),
                                                   "wsx: listen on " + host + ": the name has no address");
    return endpoints;
}

} // namespace detail

// Acceptors listening on every address of `host` (see the top of this file).
inline std::vector<net::ip::tcp::acceptor> open_acceptors(const net::any_io_executor& executor, const std::string& host,
                                                          std::uint16_t port, const listen_options& options = {}) {
    using tcp = net::ip::tcp;
    const std::vector<tcp::endpoint> endpoints = detail::listen_endpoints(executor, host, port);
    std::vector<tcp::acceptor> acceptors;
    std::system_error skipped(std::error_code{});
    for (tcp::endpoint endpoint : endpoints) {
        if (port == 0 && !acceptors.empty()) endpoint.port(acceptors.front().local_endpoint().port());
        tcp::acceptor acceptor(executor);
        net_error_code ec;
        acceptor.open(endpoint.protocol(), ec);
        if (!ec && options.reuse_address) acceptor.set_option(net::socket_base::reuse_address(true), ec);
        if (!ec && endpoint.address().is_v6() && endpoints.size() > 1) acceptor.set_option(net::ip::v6_only(true), ec);
        if (!ec) acceptor.bind(endpoint, ec);
        if (!ec) acceptor.listen(options.backlog, ec);
        if (!ec) {
            acceptors.push_back(std::move(acceptor));
            continue;
        }
        const std::error_code why = detail::os_error(ec);
        std::system_error failure(why, "wsx: listen on " + endpoint_text(endpoint));
        // An address of a name may be one this machine cannot bind (no
        // IPv6): the others serve. An address given as such must bind.
        const bool skippable = endpoints.size() > 1 && (why == std::errc::address_not_available ||
                                                        why == std::errc::address_family_not_supported);
        if (!skippable) throw failure;
        skipped = failure;
    }
    if (acceptors.empty()) throw skipped;
    return acceptors;
}

} // namespace wsx
