// wsx/asio/config.hpp - which Asio the adapter uses, and its error codes.
//
// Standalone Asio (<asio.hpp>) by default; define WSX_ASIO_BOOST (before
// including any wsx/asio header, or with -DWSX_ASIO_BOOST) for Boost.Asio.
// Either way `wsx::net` names the chosen namespace:
//
//   wsx::net::io_context io;
//   wsx::net::ip::tcp::socket socket(io);
//
// Completion handlers receive a wsx::net_error_code: std::error_code with
// standalone Asio, boost::system::error_code with Boost.Asio. Boost 1.74's
// error_code cannot hold a std::error_code, so wsx's own errors travel in a
// Boost category of the same values; to_std_error() turns any of them back
// into a std::error_code that compares equal to wsx::error enumerators:
//
//   if (wsx::to_std_error(ec) == wsx::error::would_block) ...
#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#if defined(WSX_ASIO_BOOST)
#include <boost/asio.hpp>
#else
#include <asio.hpp>
#endif

#include <wsx/error.hpp>

#include <string>
#include <system_error>

// Separate compilation: define WSX_SEPARATE_COMPILATION in every translation
// unit and compile <wsx/asio/impl/src.hpp> in exactly one (CMake's
// wsx::asio_compiled target does). serve(), connect() and their machinery
// are then compiled once, in that unit, rather than in every one that
// includes server.hpp or client.hpp. Without it everything is inline.
#if defined(WSX_SEPARATE_COMPILATION)
#define WSX_DECL
#else
#define WSX_DECL inline
#endif

namespace wsx {

#if defined(WSX_ASIO_BOOST)

namespace net = boost::asio;
using net_error_code = boost::system::error_code;

namespace detail {

// wsx::error values in a Boost category, with wsx's messages.
class boost_error_category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "wsx"; }
    std::string message(int value) const override { return wsx::error_category().message(value); }
};

inline const boost_error_category& boost_wsx_category() noexcept {
    static const boost_error_category instance;
    return instance;
}

} // namespace detail

inline net_error_code to_net_error(const std::error_code& ec) {
    if (!ec) return {};
    if (ec.category() == error_category()) return {ec.value(), detail::boost_wsx_category()};
    if (ec.category() == std::generic_category()) return {ec.value(), boost::system::generic_category()};
    if (ec.category() == std::system_category()) return {ec.value(), boost::system::system_category()};
    // Another std category has no Boost twin: keep its meaning if it has a
    // generic one, else report an I/O error.
    const std::error_condition generic = ec.default_error_condition();
    if (generic.category() == std::generic_category()) return {generic.value(), boost::system::generic_category()};
    return {static_cast<int>(std::errc::io_error), boost::system::generic_category()};
}

inline std::error_code to_std_error(const net_error_code& ec) {
    if (ec.category() == detail::boost_wsx_category()) return {ec.value(), error_category()};
    return ec; // Boost's own conversion
}

#else

namespace net = ::asio;
using net_error_code = std::error_code;

inline net_error_code to_net_error(const std::error_code& ec) noexcept { return ec; }
inline std::error_code to_std_error(const net_error_code& ec) noexcept { return ec; }

#endif

inline net_error_code to_net_error(error e) { return to_net_error(make_error_code(e)); }

} // namespace wsx
