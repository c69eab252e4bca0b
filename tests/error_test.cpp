#include <wsx/error.hpp>

#include <catch2/catch.hpp>

#include <system_error>

TEST_CASE("wsx::error converts to std::error_code in the wsx category") {
    std::error_code ec = wsx::error::bad_opcode;
    CHECK(ec);
    CHECK(ec.category() == wsx::error_category());
    CHECK(std::string(ec.category().name()) == "wsx");
    CHECK(ec.message() == "reserved opcode");
    CHECK(ec == wsx::error::bad_opcode);
    CHECK(ec != wsx::error::invalid_utf8);
}

TEST_CASE("every cause has its own message") {
    for (int v = 1; v <= static_cast<int>(wsx::error::tls_failed); ++v) {
        std::error_code ec = static_cast<wsx::error>(v);
        CHECK(ec.message() != "unknown wsx error");
    }
    CHECK(std::error_code(static_cast<wsx::error>(9999)).message() == "unknown wsx error");
}

TEST_CASE("conditions group causes") {
    using wsx::condition;
    using wsx::error;
    CHECK(std::error_code(error::unmasked_client_frame) == condition::protocol_violation);
    CHECK(std::error_code(error::invalid_utf8) == condition::protocol_violation);
    CHECK(std::error_code(error::message_too_big) == condition::protocol_violation);
    CHECK(std::error_code(error::inflate_failed) == condition::protocol_violation);
    CHECK(std::error_code(error::bad_sec_accept) == condition::handshake_failed);
    CHECK(std::error_code(error::origin_not_allowed) == condition::handshake_failed);
    CHECK(std::error_code(error::http_bare_cr) == condition::handshake_failed);
    CHECK(std::error_code(error::bad_extension_response) == condition::handshake_failed);
    CHECK(std::error_code(error::open_timeout) == condition::handshake_failed);
    CHECK(std::error_code(error::unexpected_eof) == condition::closed);
    CHECK(std::error_code(error::connection_closed) == condition::closed);

    CHECK(std::error_code(error::bad_sec_accept) != condition::protocol_violation);
    CHECK(std::error_code(error::invalid_utf8) != condition::closed);
    CHECK(std::error_code(error::would_block) != condition::closed);
    // Codes of another category never match a wsx condition.
    CHECK(std::make_error_code(std::errc::connection_reset) != condition::closed);
}
