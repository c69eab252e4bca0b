// wsx/detail/crypto.hpp - SHA-1 and base64 for the opening handshake
// (RFC 6455 §4.1, §4.2.2), through OpenSSL's libcrypto.
//
// These never see untrusted sizes larger than a handshake head, but every
// length is still checked before it reaches OpenSSL's int parameters. A
// failure inside OpenSSL here can only be an allocation failure; it throws
// std::system_error, like fill_random().
#pragma once

#include <wsx/bytes.hpp>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>

#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace wsx::detail {

[[noreturn]] inline void throw_crypto_failure(const char* what) {
    const unsigned long code = ERR_get_error();
    char reason[256] = "no OpenSSL error queued";
    if (code != 0) ERR_error_string_n(code, reason, sizeof reason);
    ERR_clear_error();
    throw std::system_error(std::make_error_code(std::errc::not_enough_memory),
                            std::string("wsx: ") + what + " failed: " + reason);
}

inline constexpr std::size_t sha1_size = 20;
using sha1_digest = std::array<std::uint8_t, sha1_size>;

inline const EVP_MD* sha1_algorithm() noexcept {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    // OpenSSL 3 looks EVP_sha1() up in its provider tables on every use; one
    // explicit fetch, kept for the life of the process, halves the cost of a
    // handshake's digest.
    static EVP_MD* const fetched = EVP_MD_fetch(nullptr, "SHA1", nullptr);
    if (fetched != nullptr) return fetched;
#endif
    return EVP_sha1();
}

// SHA-1 of `first` followed by `second` (the handshake hashes key + GUID
// without gluing them together first).
inline sha1_digest sha1(const_bytes first, const_bytes second = {}) {
    struct context_deleter {
        void operator()(EVP_MD_CTX* context) const noexcept { EVP_MD_CTX_free(context); }
    };
    // One digest context per thread, reset for each use: no allocation per hash.
    thread_local std::unique_ptr<EVP_MD_CTX, context_deleter> context(EVP_MD_CTX_new());
    if (!context) throw_crypto_failure("EVP_MD_CTX_new");
    sha1_digest digest{};
    unsigned int size = 0;
    if (EVP_DigestInit_ex(context.get(), sha1_algorithm(), nullptr) != 1 ||
        EVP_DigestUpdate(context.get(), first.data(), first.size()) != 1 ||
        EVP_DigestUpdate(context.get(), second.data(), second.size()) != 1 ||
        EVP_DigestFinal_ex(context.get(), digest.data(), &size) != 1 || size != sha1_size)
        throw_crypto_failure("SHA-1");
    return digest;
}

// RFC 4648 §4: 4 characters for every 3 bytes or part of 3, padded with '='.
constexpr std::size_t base64_encoded_size(std::size_t size) noexcept { return (size + 2) / 3 * 4; }

// Appends base64(`in`) to `out`.
inline void append_base64(std::string& out, const_bytes in) {
    // EVP_EncodeBlock takes an int length: encode in slices, each a multiple
    // of 3 bytes so no padding appears before the end.
    constexpr std::size_t slice = 3 * 1024 * 1024;
    std::size_t done = 0;
    do {
        const std::size_t part = in.size() - done < slice ? in.size() - done : slice;
        const std::size_t at = out.size();
        // EVP_EncodeBlock writes a terminating NUL after the text.
        out.resize(at + base64_encoded_size(part) + 1);
        const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(&out[at]),
                                            in.data() + done, static_cast<int>(part));
        out.resize(at + static_cast<std::size_t>(written));
        done += part;
    } while (done < in.size());
}

// base64 of a small fixed-size value (a digest, a nonce) without allocating:
// the characters followed by a NUL.
template <std::size_t Size>
std::array<char, base64_encoded_size(Size) + 1> base64_encode(const std::array<std::uint8_t, Size>& in) noexcept {
    static_assert(Size <= 3 * 1024, "for small values");
    std::array<char, base64_encoded_size(Size) + 1> out{};
    EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), in.data(), static_cast<int>(Size));
    return out;
}

inline std::string base64_encode(const_bytes in) {
    std::string out;
    append_base64(out, in);
    return out;
}

// The largest decoded size of `size` base64 characters (before padding is
// taken off): what EVP_DecodeBlock writes.
constexpr std::size_t base64_decoded_capacity(std::size_t size) noexcept { return size / 4 * 3; }

inline bool is_base64_alphabet(char c) noexcept {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

// Decodes padded base64 (RFC 4648 §4) into `out`, which must hold
// base64_decoded_capacity(in.size()) bytes. Returns the decoded size, or
// nothing when `in` is not canonical-length padded base64: a length that is
// not a multiple of 4, a character outside the alphabet, whitespace, or '='
// anywhere but the last one or two places.
inline std::optional<std::size_t> base64_decode(std::string_view in, mutable_bytes out) noexcept {
    if (in.size() % 4 != 0 || in.size() > static_cast<std::size_t>(INT_MAX)) return std::nullopt;
    if (out.size() < base64_decoded_capacity(in.size())) return std::nullopt;
    std::size_t padding = 0;
    if (!in.empty() && in.back() == '=') padding = (in[in.size() - 2] == '=') ? 2 : 1;
    // EVP_DecodeBlock would skip leading and trailing whitespace and accepts
    // '=' where it should not be: check the alphabet ourselves first.
    for (std::size_t i = 0; i < in.size() - padding; ++i)
        if (!is_base64_alphabet(in[i])) return std::nullopt;
    if (in.empty()) return 0;
    const int written = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(in.data()),
                                        static_cast<int>(in.size()));
    if (written < 0) return std::nullopt;
    // EVP_DecodeBlock counts the zero bytes that padding stands for: the real
    // size is one byte less per '='.
    return static_cast<std::size_t>(written) - padding;
}

} // namespace wsx::detail
