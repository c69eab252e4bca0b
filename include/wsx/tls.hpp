// wsx/tls.hpp - TLS over any NextLayer byte stream, on OpenSSL (wss://).
//
// wsx::tls_stream<NextLayer> is itself a NextLayer (read_some, write_some,
// and teardown found by argument-dependent lookup), so wsx::stream can sit on
// it exactly as on a wsx::tcp_socket. NextLayer may be a reference
// (tls_stream<tcp_socket&>) or a value the stream owns (tls_stream<tcp_socket>).
// OpenSSL never touches a socket here: it reads and writes two memory BIOs,
// and the stream moves bytes between them and the layer below, so anything
// with read_some/write_some can carry TLS.
//
// wsx::tls_context wraps an SSL_CTX. A client context verifies the server's
// certificate chain (against the system store unless told otherwise) and,
// through set_hostname(), its name or IP address; TLS 1.2 is the minimum.
// A server context holds a certificate chain and its private key.
//
// Ownership: tls_context owns its SSL_CTX; each tls_stream owns its SSL (and
// through it both BIOs) and holds a reference on the SSL_CTX, so a context
// may be destroyed before the streams made from it. Destroying a stream does
// no I/O: call teardown() first to send close_notify.
//
// Errors: failures that OpenSSL reports carry its packed error code in
// tls_category(), whose message() is OpenSSL's reason text (for example
// "error:0A000126:SSL routines::unexpected eof while reading"). A failed
// certificate check carries the X509_V_ERR_* value in tls_verify_category()
// ("hostname mismatch", "unable to get local issuer certificate", ...).
// A close_notify from the peer reads as wsx::error::end_of_stream; a lower
// stream that ends without one is an error (is_stream_truncated() says so).
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/error.hpp>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

static_assert(OPENSSL_VERSION_NUMBER >= 0x10101000L, "wsx/tls.hpp needs OpenSSL 1.1.1 or later");

namespace wsx {

enum class tls_role { client, server };

// Which certificate authorities a client context trusts from the start.
enum class tls_ca_store {
    system, // the system's default store, plus any added later
    none,   // only those added with load_ca_file() / add_ca_pem()
};

namespace detail {

class tls_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "wsx.tls"; }
    std::string message(int value) const override {
        char text[256];
        ::ERR_error_string_n(static_cast<unsigned long>(static_cast<unsigned int>(value)), text, sizeof text);
        return text;
    }
};

class tls_verify_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "wsx.tls.verify"; }
    std::string message(int value) const override { return ::X509_verify_cert_error_string(value); }
};

} // namespace detail

// OpenSSL's packed error codes (ERR_get_error()).
inline const std::error_category& tls_category() noexcept {
    static const detail::tls_category_impl instance;
    return instance;
}

// Certificate verification results (X509_V_ERR_*).
inline const std::error_category& tls_verify_category() noexcept {
    static const detail::tls_verify_category_impl instance;
    return instance;
}

// True when the stream below ended without the peer's close_notify: the
// data may have been cut short by an attacker, or the peer just dropped the
// connection after its WebSocket close frame.
inline bool is_stream_truncated(const std::error_code& ec) noexcept {
#if defined(SSL_R_UNEXPECTED_EOF_WHILE_READING)
    if (ec.category() != tls_category()) return false;
    const auto code = static_cast<unsigned long>(static_cast<unsigned int>(ec.value()));
    return ERR_GET_LIB(code) == ERR_LIB_SSL && ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
#else
    // OpenSSL 1.1.1 reports a truncation with an empty error queue.
    return ec == error::tls_failed;
#endif
}

namespace detail {

// Takes the oldest error (the root cause) off this thread's OpenSSL error
// queue and drops the rest; wsx::error::tls_failed if the queue was empty.
inline std::error_code take_tls_error() noexcept {
    const unsigned long code = ::ERR_get_error();
    ::ERR_clear_error();
    if (code == 0) return make_error_code(error::tls_failed);
    return {static_cast<int>(static_cast<unsigned int>(code)), tls_category()};
}

struct ssl_ctx_deleter {
    void operator()(SSL_CTX* ctx) const noexcept { ::SSL_CTX_free(ctx); }
};
struct ssl_deleter {
    void operator()(SSL* ssl) const noexcept { ::SSL_free(ssl); }
};
struct bio_deleter {
    void operator()(BIO* bio) const noexcept { ::BIO_free(bio); }
};
struct x509_deleter {
    void operator()(X509* certificate) const noexcept { ::X509_free(certificate); }
};
struct pkey_deleter {
    void operator()(EVP_PKEY* key) const noexcept { ::EVP_PKEY_free(key); }
};

// Encrypted private keys are not supported: without this callback OpenSSL
// would prompt for a password on the terminal.
inline int tls_no_password(char*, int, int, void*) { return 0; }

// A read-only BIO over PEM text held by the caller.
inline std::unique_ptr<BIO, bio_deleter> pem_bio(std::string_view pem, std::error_code& ec) {
    if (pem.size() > static_cast<std::size_t>(INT_MAX)) {
        ec = std::make_error_code(std::errc::invalid_argument);
        return nullptr;
    }
    std::unique_ptr<BIO, bio_deleter> bio(::BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) ec = take_tls_error();
    return bio;
}

// Reads every certificate in a PEM text; at least one must be there.
inline std::vector<std::unique_ptr<X509, x509_deleter>> read_certificates(std::string_view pem, std::error_code& ec) {
    std::vector<std::unique_ptr<X509, x509_deleter>> certificates;
    ::ERR_clear_error();
    auto bio = pem_bio(pem, ec);
    if (!bio) return certificates;
    while (X509* certificate = ::PEM_read_bio_X509(bio.get(), nullptr, tls_no_password, nullptr)) {
        certificates.emplace_back(certificate);
    }
    if (certificates.empty()) {
        ec = take_tls_error();
    } else {
        ::ERR_clear_error(); // the "no start line" that ends the loop
        ec.clear();
    }
    return certificates;
}

} // namespace detail

class tls_context {
public:
    // Throws std::system_error only if OpenSSL cannot allocate the context.
    explicit tls_context(tls_role role, tls_ca_store store = tls_ca_store::system) : role_(role) {
        ::ERR_clear_error();
        ctx_.reset(::SSL_CTX_new(role == tls_role::client ? ::TLS_client_method() : ::TLS_server_method()));
        if (!ctx_) throw std::system_error(detail::take_tls_error(), "SSL_CTX_new");
        SSL_CTX* ctx = ctx_.get();
        ::SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        // Renegotiation only adds attack surface (and reads inside writes).
        ::SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
        // Idle connections give their record buffers back.
        ::SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
        ::SSL_CTX_set_default_passwd_cb(ctx, detail::tls_no_password);
        if (role == tls_role::client) {
            ::SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
            // A missing system store only means fewer trusted roots, which
            // the handshake then reports; it is not an error here.
            if (store == tls_ca_store::system) ::SSL_CTX_set_default_verify_paths(ctx);
            ::ERR_clear_error();
        }
    }

    tls_role role() const noexcept { return role_; }
    SSL_CTX* native_handle() const noexcept { return ctx_.get(); }

    // Whether a client checks the server's certificate (on by default).
    // Turning it off makes the connection open to any man in the middle.
    void set_verify_peer(bool verify) noexcept {
        ::SSL_CTX_set_verify(ctx_.get(), verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    }

    // Trusts the certificate authorities in a PEM file.
    void load_ca_file(const std::string& path, std::error_code& ec) {
        ::ERR_clear_error();
        if (::SSL_CTX_load_verify_locations(ctx_.get(), path.c_str(), nullptr) != 1) {
            ec = detail::take_tls_error();
        } else {
            ec.clear();
        }
    }

    // Trusts the certificate authorities in PEM text.
    void add_ca_pem(std::string_view pem, std::error_code& ec) {
        auto certificates = detail::read_certificates(pem, ec);
        if (ec) return;
        X509_STORE* store = ::SSL_CTX_get_cert_store(ctx_.get());
        for (auto& certificate : certificates) {
            if (::X509_STORE_add_cert(store, certificate.get()) != 1) {
                ec = detail::take_tls_error();
                return;
            }
        }
    }

    // The server's certificate followed by its intermediates, from a PEM file.
    void use_certificate_chain_file(const std::string& path, std::error_code& ec) {
        ::ERR_clear_error();
        if (::SSL_CTX_use_certificate_chain_file(ctx_.get(), path.c_str()) != 1) {
            ec = detail::take_tls_error();
            return;
        }
        check_key_matches(ec);
    }

    // The server's certificate followed by its intermediates, as PEM text.
    void use_certificate_chain_pem(std::string_view pem, std::error_code& ec) {
        auto certificates = detail::read_certificates(pem, ec);
        if (ec) return;
        SSL_CTX* ctx = ctx_.get();
        if (::SSL_CTX_use_certificate(ctx, certificates.front().get()) != 1 || ::SSL_CTX_clear_chain_certs(ctx) != 1) {
            ec = detail::take_tls_error();
            return;
        }
        for (std::size_t i = 1; i < certificates.size(); ++i) {
            if (::SSL_CTX_add1_chain_cert(ctx, certificates[i].get()) != 1) {
                ec = detail::take_tls_error();
                return;
            }
        }
        check_key_matches(ec);
    }

    // The private key of the certificate, from an unencrypted PEM file.
    void use_private_key_file(const std::string& path, std::error_code& ec) {
        ::ERR_clear_error();
        if (::SSL_CTX_use_PrivateKey_file(ctx_.get(), path.c_str(), SSL_FILETYPE_PEM) != 1) {
            ec = detail::take_tls_error();
            return;
        }
        check_key_matches(ec);
    }

    // The private key of the certificate, as unencrypted PEM text.
    void use_private_key_pem(std::string_view pem, std::error_code& ec) {
        ::ERR_clear_error();
        auto bio = detail::pem_bio(pem, ec);
        if (!bio) return;
        std::unique_ptr<EVP_PKEY, detail::pkey_deleter> key(
            ::PEM_read_bio_PrivateKey(bio.get(), nullptr, detail::tls_no_password, nullptr));
        if (!key || ::SSL_CTX_use_PrivateKey(ctx_.get(), key.get()) != 1) {
            ec = detail::take_tls_error();
            return;
        }
        check_key_matches(ec);
    }

private:
    // Once both a certificate and a key are loaded they must belong together.
    void check_key_matches(std::error_code& ec) {
        ec.clear();
        SSL_CTX* ctx = ctx_.get();
        if (::SSL_CTX_get0_certificate(ctx) == nullptr || ::SSL_CTX_get0_privatekey(ctx) == nullptr) return;
        ::ERR_clear_error();
        if (::SSL_CTX_check_private_key(ctx) != 1) ec = detail::take_tls_error();
    }

    std::unique_ptr<SSL_CTX, detail::ssl_ctx_deleter> ctx_;
    tls_role role_;
};

template <class NextLayer>
class tls_stream {
public:
    using next_layer_type = std::remove_reference_t<NextLayer>;

    // `next` initialises the layer below (a reference to it, or a value to
    // move in); `context` gives the role and the settings. Throws
    // std::system_error only if OpenSSL cannot allocate.
    template <class Next>
    tls_stream(Next&& next, tls_context& context)
        : next_(std::forward<Next>(next)), role_(context.role()) {
        ::ERR_clear_error();
        ssl_.reset(::SSL_new(context.native_handle()));
        if (!ssl_) throw std::system_error(detail::take_tls_error(), "SSL_new");
        input_ = ::BIO_new(::BIO_s_mem());
        output_ = ::BIO_new(::BIO_s_mem());
        if (!input_ || !output_) {
            ::BIO_free(input_);
            ::BIO_free(output_);
            throw std::system_error(detail::take_tls_error(), "BIO_new");
        }
        // An empty input BIO means "wait for more", not end of stream.
        BIO_set_mem_eof_return(input_, -1);
        ::SSL_set_bio(ssl_.get(), input_, output_); // the SSL owns both now
        if (role_ == tls_role::client) {
            ::SSL_set_connect_state(ssl_.get());
        } else {
            ::SSL_set_accept_state(ssl_.get());
        }
    }

    next_layer_type& next_layer() noexcept { return next_; }
    const next_layer_type& next_layer() const noexcept { return next_; }
    SSL* native_handle() const noexcept { return ssl_.get(); }

    // Client: the name (or IP address) the server's certificate must match,
    // also sent as SNI when it is a name. Give IPv6 without brackets
    // (wsx::uri::host is in that form). Required before a verifying
    // client's handshake.
    void set_hostname(std::string_view host, std::error_code& ec) {
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
        const std::string name(host);
        if (name.empty() || name.find('\0') != std::string::npos) {
            ec = std::make_error_code(std::errc::invalid_argument);
            return;
        }
        ::ERR_clear_error();
        SSL* ssl = ssl_.get();
        if (ASN1_OCTET_STRING* ip = ::a2i_IPADDRESS(name.c_str())) {
            ::ASN1_OCTET_STRING_free(ip);
            // RFC 6066 §3: SNI carries host names only, never IP literals.
            if (::X509_VERIFY_PARAM_set1_ip_asc(::SSL_get0_param(ssl), name.c_str()) != 1) {
                ec = detail::take_tls_error();
                return;
            }
        } else {
            ::SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (SSL_set_tlsext_host_name(ssl, name.c_str()) != 1 || ::SSL_set1_host(ssl, name.c_str()) != 1) {
                ec = detail::take_tls_error();
                return;
            }
        }
        hostname_set_ = true;
        ec.clear();
    }

    // Runs the TLS handshake in the context's role. A verifying client
    // without set_hostname() fails with std::errc::invalid_argument rather
    // than accept any certificate of a trusted authority.
    void handshake(std::error_code& ec) {
        ec.clear();
        if (role_ == tls_role::client && !hostname_set_ &&
            (::SSL_get_verify_mode(ssl_.get()) & SSL_VERIFY_PEER) != 0) {
            ec = std::make_error_code(std::errc::invalid_argument);
            return;
        }
        run([this] { return ::SSL_do_handshake(ssl_.get()); }, ec);
    }

    // Reads at least one byte of plaintext unless buffer is empty. The
    // peer's close_notify gives 0 and wsx::error::end_of_stream.
    std::size_t read_some(mutable_bytes buffer, std::error_code& ec) {
        ec.clear();
        if (buffer.empty() || !ensure_handshake(ec)) return 0;
        const int size = buffer.size() > static_cast<std::size_t>(INT_MAX) ? INT_MAX : static_cast<int>(buffer.size());
        const int n = run([&] { return ::SSL_read(ssl_.get(), buffer.data(), size); }, ec);
        return ec ? 0 : static_cast<std::size_t>(n);
    }

    // Writes at least one byte of plaintext unless buffer is empty: up to
    // max_write_size bytes per call, encrypted and handed to the layer below
    // before returning.
    static constexpr std::size_t max_write_size = 4 * 16384; // four full records
    std::size_t write_some(const_bytes buffer, std::error_code& ec) {
        ec.clear();
        if (buffer.empty() || !ensure_handshake(ec)) return 0;
        const int size = static_cast<int>(buffer.size() < max_write_size ? buffer.size() : max_write_size);
        const int n = run([&] { return ::SSL_write(ssl_.get(), buffer.data(), size); }, ec);
        return ec ? 0 : static_cast<std::size_t>(n);
    }

    // Sends close_notify (once the handshake is done and nothing failed) and
    // leaves the layer below open; teardown() also closes that.
    void shutdown(std::error_code& ec) {
        ec.clear();
        SSL* ssl = ssl_.get();
        if (broken_ || ::SSL_is_init_finished(ssl) == 0 || (::SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN) != 0) return;
        ::ERR_clear_error();
        // 0 means "sent, the peer's not seen yet": we do not wait for it,
        // as TLS 1.3 (RFC 8446 §6.1) and 1.2 in practice allow.
        if (::SSL_shutdown(ssl) < 0) {
            ec = detail::take_tls_error();
            broken_ = true;
        }
        std::error_code flush_ec;
        flush(flush_ec);
        // A peer that closed first may be gone already; our close_notify
        // was only a courtesy then.
        if (!ec && (::SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN) == 0) ec = flush_ec;
    }

private:
    bool ensure_handshake(std::error_code& ec) {
        if (::SSL_is_init_finished(ssl_.get()) == 0) handshake(ec);
        return !ec;
    }

    // Runs one OpenSSL operation to completion, moving bytes through the
    // layer below whenever it wants them. Returns the operation's result.
    template <class Operation>
    int run(Operation operation, std::error_code& ec) {
        if (broken_) {
            ec = make_error_code(error::tls_failed);
            return 0;
        }
        for (;;) {
            ::ERR_clear_error();
            const int result = operation();
            const int status = result > 0 ? SSL_ERROR_NONE : ::SSL_get_error(ssl_.get(), result);
            if (status == SSL_ERROR_ZERO_RETURN) {
                std::error_code ignored;
                flush(ignored); // anything OpenSSL queued on the way out
                ec = make_error_code(error::end_of_stream);
                return 0;
            }
            if (status != SSL_ERROR_NONE && status != SSL_ERROR_WANT_READ && status != SSL_ERROR_WANT_WRITE) {
                // Read the cause before any I/O below can touch the queue,
                // then still send the alert OpenSSL queued for the peer.
                ec = failure_reason();
                broken_ = true;
                std::error_code ignored;
                flush(ignored);
                return 0;
            }
            // Whatever OpenSSL produced (records, handshake messages) goes
            // out before we wait for the peer's answer.
            if (!flush(ec)) return 0;
            if (status == SSL_ERROR_NONE) return result;
            if (status == SSL_ERROR_WANT_READ && !fill(ec)) return 0;
            // SSL_ERROR_WANT_WRITE: memory BIOs never refuse a write; the
            // flush above made room anyway, so just try again.
        }
    }

    std::error_code failure_reason() noexcept {
        const unsigned long code = ::ERR_peek_error();
        const long verify_result = ::SSL_get_verify_result(ssl_.get());
        if (ERR_GET_LIB(code) == ERR_LIB_SSL && ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
            verify_result != X509_V_OK) {
            ::ERR_clear_error();
            return {static_cast<int>(verify_result), tls_verify_category()};
        }
        return detail::take_tls_error();
    }

    std::vector<std::uint8_t>& transfer_buffer() {
        if (transfer_.empty()) transfer_.resize(17 * 1024);
        return transfer_;
    }

    // Hands every byte OpenSSL wrote to the layer below.
    bool flush(std::error_code& ec) {
        ec.clear();
        while (::BIO_ctrl_pending(output_) > 0) {
            std::vector<std::uint8_t>& buffer = transfer_buffer();
            const int n = ::BIO_read(output_, buffer.data(), static_cast<int>(buffer.size()));
            if (n <= 0) break;
            const_bytes pending(buffer.data(), static_cast<std::size_t>(n));
            while (!pending.empty()) {
                const std::size_t written = next_.write_some(pending, ec);
                if (!ec && written == 0) ec = std::make_error_code(std::errc::io_error);
                if (ec) {
                    // Part of a record is gone: the TLS stream cannot go on.
                    broken_ = true;
                    return false;
                }
                pending = pending.subspan(written);
            }
        }
        return true;
    }

    // Feeds OpenSSL what the layer below has. When that layer ends, OpenSSL
    // is told so and decides: a close_notify before it is a clean end,
    // anything else a truncation.
    bool fill(std::error_code& ec) {
        if (input_ended_) {
            // OpenSSL wants more after being told there is none.
            ec = make_error_code(error::tls_failed);
            broken_ = true;
            return false;
        }
        std::vector<std::uint8_t>& buffer = transfer_buffer();
        const std::size_t n = next_.read_some(mutable_bytes(buffer), ec);
        if (ec == error::end_of_stream) {
            ec.clear();
            input_ended_ = true;
            BIO_set_mem_eof_return(input_, 0);
            return true;
        }
        if (ec) return false;
        if (n == 0) return true;
        if (::BIO_write(input_, buffer.data(), static_cast<int>(n)) != static_cast<int>(n)) {
            ec = detail::take_tls_error();
            broken_ = true;
            return false;
        }
        return true;
    }

    NextLayer next_;
    std::unique_ptr<SSL, detail::ssl_deleter> ssl_;
    BIO* input_ = nullptr;  // owned by ssl_: ciphertext from the peer
    BIO* output_ = nullptr; // owned by ssl_: ciphertext for the peer
    std::vector<std::uint8_t> transfer_; // reused between calls, 17 KiB once used
    tls_role role_;
    bool hostname_set_ = false;
    bool input_ended_ = false;
    bool broken_ = false; // after a fatal error no record may be sent
};

// Closing TLS: send close_notify, then tear the layer below down (found by
// argument-dependent lookup, so any NextLayer can bring its own). The first
// error is reported; the layer below is torn down either way.
template <class NextLayer>
void teardown(tls_stream<NextLayer>& stream, std::error_code& ec) {
    std::error_code shutdown_ec;
    stream.shutdown(shutdown_ec);
    std::error_code lower_ec;
    teardown(stream.next_layer(), lower_ec);
    ec = shutdown_ec ? shutdown_ec : lower_ec;
}

} // namespace wsx
