/* TLS (OpenSSL 3) over memory BIOs, so the socket stays libuv's.
 *
 * A tls_ctx made by tls_ctx_open is the client-facing server: it holds the
 * certificate and key and offers ALPN "h2" (TLS 1.2 and 1.3). tls_ctx_wrap
 * takes an SSL_CTX configured elsewhere (the peer network's mutual TLS,
 * net/peer.c), for either role. A tls_conn is one connection: ciphertext
 * from the network goes in with tls_conn_feed, plaintext comes out of
 * tls_conn_read; plaintext to send goes in with tls_conn_write and
 * ciphertext for the network comes out of tls_conn_take. The handshake runs
 * inside feed (and, for a client, starts in tls_conn_open). */
#ifndef LSKV_NET_TLS_H
#define LSKV_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct tls_ctx tls_ctx;
typedef struct tls_conn tls_conn;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
struct ssl_st;     /* OpenSSL's SSL */

/* What the server's side of TLS is made of (etcd's client TLS flags). */
struct tls_options {
    const char *cert_file, *key_file; /* PEM chain and key */
    /* CA (PEM) for client certificates: with it (or client_cert_auth) a
     * client must present one it signed or the handshake fails, as in etcd
     * 3.4, where a trusted CA alone requires them too. */
    const char *trusted_ca_file;
    bool client_cert_auth;
    /* TLS 1.2 suites, etcd's (Go's, IANA) names comma separated, in order of
     * preference; NULL: OpenSSL's defaults. TLS 1.3 names are skipped. */
    const char *cipher_suites;
    /* --client-crl-file: a certificate of the client's chain whose serial
     * this CRL (PEM or DER) lists is refused at the handshake. As etcd 3.4
     * (pkg/transport checkCRL), the file is read again at each handshake,
     * so an updated list applies at once, and only its serials count. */
    const char *crl_file;
    /* --client-cert-allowed-hostname: the client's certificate must be
     * valid for it (as tls_ctx_allow_only's hostname); NULL: any. */
    const char *allowed_hostname;
};

/* Errors: LSKV_EIO (a file or a cipher suite OpenSSL cannot take; errmsg
 * says which and why), LSKV_ENOMEM. */
int tls_ctx_open(const struct tls_options *o, tls_ctx **out, char *errmsg);
/* Wraps ssl_ctx (an SSL_CTX; its configuration is the caller's) for the
 * server (client false) or the client role. If this returns 0, ownership of
 * ssl_ctx passes to *out. Errors: LSKV_ENOMEM. */
int tls_ctx_wrap(struct ssl_ctx_st *ssl_ctx, bool client, tls_ctx **out);
void tls_ctx_close(tls_ctx *ctx);
/* etcd's --peer-cert-allowed-cn / --peer-cert-allowed-hostname: a verified
 * peer certificate (in the verify mode ctx's SSL_CTX has) must also have
 * exactly the common name cn, or (cn NULL) be valid for hostname as Go's
 * VerifyHostname has it (an IP address against its IP SANs, a name against
 * its DNS SANs, never the CN), or the handshake fails with a bad_certificate alert
 * and tls_conn_failure says "client certificate authentication failed",
 * etcd's words, in either role as in etcd. Errors: LSKV_ENOMEM. */
int tls_ctx_allow_only(tls_ctx *ctx, const char *cn, const char *hostname);

/* Errors: LSKV_ENOMEM; LSKV_EIO (client role: the ClientHello could not be
 * made). ctx must outlive the connection. Server role: OpenSSL's state is
 * made on the first bytes fed (h2.c note 8). Client role: the ClientHello is
 * pending (tls_conn_take) when this returns. */
int tls_conn_open(tls_ctx *ctx, tls_conn **out);
void tls_conn_close(tls_conn *c);

/* Consumes ciphertext and advances the handshake. Errors: LSKV_EIO (bad
 * record, failed handshake, peer alert); the connection is then dead. */
int tls_conn_feed(tls_conn *c, const uint8_t *data, size_t len);

/* True once the handshake completed. */
bool tls_conn_ready(const tls_conn *c);
/* Why the handshake failed (OpenSSL's reason, with the certificate
 * verification result when there is one); "" when it did not. */
const char *tls_conn_failure(const tls_conn *c);

/* The connection's SSL object, to inspect the peer's certificate once
 * ready; NULL before the first record (server role). Valid until
 * tls_conn_close. */
struct ssl_st *tls_conn_ssl(tls_conn *c);

/* The common name of the peer's certificate once the handshake is done and
 * the certificate was verified against the trusted CA (etcd's client-cert
 * user), into out (NUL-terminated). Errors: LSKV_ENOTFOUND (no verified
 * certificate, or no CN, or one longer than cap - 1 or holding a NUL). */
int tls_conn_peer_cn(tls_conn *c, char *out, size_t cap);

/* Decrypted bytes into buf: returns > 0 bytes, 0 when nothing is available
 * yet, LSKV_ESHUTDOWN after the peer's close_notify, LSKV_EIO on error. */
ssize_t tls_conn_read(tls_conn *c, uint8_t *buf, size_t cap);

/* Encrypts plaintext (only once ready). Errors: LSKV_EIO. */
int tls_conn_write(tls_conn *c, const uint8_t *data, size_t len);

/* Ciphertext waiting for the network. */
size_t tls_conn_pending(const tls_conn *c);
/* Moves up to cap bytes of pending ciphertext to buf; returns the count. */
size_t tls_conn_take(tls_conn *c, uint8_t *buf, size_t cap);

#endif
