// tests/support/test_certificates.hpp - certificates made at run time for TLS tests.
//
// Tests need a certificate authority and a server certificate it signed,
// without shipping key files that would expire or be reused elsewhere. These
// helpers make them in memory with OpenSSL (EC P-256 keys, SHA-256
// signatures, valid from an hour ago for a day) and hand back PEM text, which
// wsx::tls_context takes directly. Keys are fresh each run; the outcome of
// every test using them is not random. Failures throw std::runtime_error.
#pragma once

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace wsx_test {

struct test_certificate {
    std::string certificate_pem;
    std::string private_key_pem;
};

namespace detail {

struct free_pkey {
    void operator()(EVP_PKEY* key) const noexcept { EVP_PKEY_free(key); }
};
struct free_pkey_ctx {
    void operator()(EVP_PKEY_CTX* ctx) const noexcept { EVP_PKEY_CTX_free(ctx); }
};
struct free_x509 {
    void operator()(X509* certificate) const noexcept { X509_free(certificate); }
};
struct free_bio {
    void operator()(BIO* bio) const noexcept { BIO_free(bio); }
};
struct free_extension {
    void operator()(X509_EXTENSION* extension) const noexcept { X509_EXTENSION_free(extension); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, free_pkey>;
using x509_ptr = std::unique_ptr<X509, free_x509>;
using bio_ptr = std::unique_ptr<BIO, free_bio>;

[[noreturn]] inline void fail(const char* what) {
    char reason[256] = "no OpenSSL error";
    if (const unsigned long code = ERR_get_error()) ERR_error_string_n(code, reason, sizeof reason);
    ERR_clear_error();
    throw std::runtime_error(std::string("test certificate: ") + what + ": " + reason);
}

inline void check(int result, const char* what) {
    if (result != 1) fail(what);
}

inline pkey_ptr make_p256_key() {
    std::unique_ptr<EVP_PKEY_CTX, free_pkey_ctx> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr));
    if (!ctx) fail("EVP_PKEY_CTX_new_id");
    check(EVP_PKEY_keygen_init(ctx.get()), "EVP_PKEY_keygen_init");
    check(EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_X9_62_prime256v1), "P-256");
    EVP_PKEY* key = nullptr;
    check(EVP_PKEY_keygen(ctx.get(), &key), "EVP_PKEY_keygen");
    return pkey_ptr(key);
}

inline void add_extension(X509* certificate, X509* issuer, int nid, std::string value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, certificate, nullptr, nullptr, 0);
    std::unique_ptr<X509_EXTENSION, free_extension> extension(X509V3_EXT_conf_nid(nullptr, &ctx, nid, &value[0]));
    if (!extension) fail(value.c_str());
    check(X509_add_ext(certificate, extension.get(), -1), "X509_add_ext");
}

// A certificate for `key` named `common_name`, not yet signed or extended.
inline x509_ptr make_unsigned(EVP_PKEY* key, const std::string& common_name, long serial) {
    x509_ptr certificate(X509_new());
    if (!certificate) fail("X509_new");
    X509* x = certificate.get();
    check(X509_set_version(x, 2), "X509_set_version"); // version 3
    check(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), "serial");
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -3600)) fail("notBefore");
    if (!X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600)) fail("notAfter");
    check(X509_set_pubkey(x, key), "X509_set_pubkey");
    X509_NAME* name = X509_get_subject_name(x);
    check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                     reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0),
          "common name");
    return certificate;
}

inline std::string bio_text(BIO* bio) {
    BUF_MEM* memory = nullptr;
    BIO_get_mem_ptr(bio, &memory);
    if (!memory) fail("BIO_get_mem_ptr");
    return std::string(memory->data, memory->length);
}

inline test_certificate to_pem(X509* certificate, EVP_PKEY* key) {
    test_certificate out;
    bio_ptr certificate_bio(BIO_new(BIO_s_mem()));
    bio_ptr key_bio(BIO_new(BIO_s_mem()));
    if (!certificate_bio || !key_bio) fail("BIO_new");
    check(PEM_write_bio_X509(certificate_bio.get(), certificate), "PEM_write_bio_X509");
    check(PEM_write_bio_PrivateKey(key_bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr),
          "PEM_write_bio_PrivateKey");
    out.certificate_pem = bio_text(certificate_bio.get());
    out.private_key_pem = bio_text(key_bio.get());
    return out;
}

inline bio_ptr read_bio(const std::string& pem) {
    bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) fail("BIO_new_mem_buf");
    return bio;
}

} // namespace detail

// A self-signed certificate authority.
inline test_certificate make_test_ca(const std::string& common_name) {
    detail::pkey_ptr key = detail::make_p256_key();
    detail::x509_ptr certificate = detail::make_unsigned(key.get(), common_name, 1);
    X509* x = certificate.get();
    detail::check(X509_set_issuer_name(x, X509_get_subject_name(x)), "X509_set_issuer_name");
    detail::add_extension(x, x, NID_basic_constraints, "critical,CA:TRUE");
    detail::add_extension(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    detail::add_extension(x, x, NID_subject_key_identifier, "hash");
    if (X509_sign(x, key.get(), EVP_sha256()) <= 0) detail::fail("X509_sign");
    return detail::to_pem(x, key.get());
}

// A server certificate signed by `ca` for the given DNS names and IP
// addresses (subjectAltName entries; the first DNS name is also the CN).
inline test_certificate make_test_server_certificate(const test_certificate& ca,
                                                     const std::vector<std::string>& dns_names,
                                                     const std::vector<std::string>& ip_addresses) {
    detail::bio_ptr ca_certificate_bio = detail::read_bio(ca.certificate_pem);
    detail::x509_ptr ca_certificate(PEM_read_bio_X509(ca_certificate_bio.get(), nullptr, nullptr, nullptr));
    detail::bio_ptr ca_key_bio = detail::read_bio(ca.private_key_pem);
    detail::pkey_ptr ca_key(PEM_read_bio_PrivateKey(ca_key_bio.get(), nullptr, nullptr, nullptr));
    if (!ca_certificate || !ca_key) detail::fail("reading the CA");

    detail::pkey_ptr key = detail::make_p256_key();
    const std::string common_name = dns_names.empty() ? std::string("wsx test server") : dns_names.front();
    detail::x509_ptr certificate = detail::make_unsigned(key.get(), common_name, 2);
    X509* x = certificate.get();
    detail::check(X509_set_issuer_name(x, X509_get_subject_name(ca_certificate.get())), "X509_set_issuer_name");
    detail::add_extension(x, ca_certificate.get(), NID_basic_constraints, "critical,CA:FALSE");
    detail::add_extension(x, ca_certificate.get(), NID_key_usage, "critical,digitalSignature");
    detail::add_extension(x, ca_certificate.get(), NID_ext_key_usage, "serverAuth");
    detail::add_extension(x, ca_certificate.get(), NID_subject_key_identifier, "hash");
    detail::add_extension(x, ca_certificate.get(), NID_authority_key_identifier, "keyid:always");
    std::string alt_names;
    for (const std::string& name : dns_names) alt_names += (alt_names.empty() ? "DNS:" : ",DNS:") + name;
    for (const std::string& ip : ip_addresses) alt_names += (alt_names.empty() ? "IP:" : ",IP:") + ip;
    if (!alt_names.empty()) detail::add_extension(x, ca_certificate.get(), NID_subject_alt_name, alt_names);
    if (X509_sign(x, ca_key.get(), EVP_sha256()) <= 0) detail::fail("X509_sign");
    return detail::to_pem(x, key.get());
}

// The usual pair: a CA and a certificate it signed for localhost,
// 127.0.0.1 and ::1.
struct test_pki {
    test_certificate ca;
    test_certificate server;
};

inline test_pki make_localhost_pki(const std::string& ca_name = "wsx test CA") {
    test_pki pki;
    pki.ca = make_test_ca(ca_name);
    pki.server = make_test_server_certificate(pki.ca, {"localhost"}, {"127.0.0.1", "::1"});
    return pki;
}

} // namespace wsx_test
