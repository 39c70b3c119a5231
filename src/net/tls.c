#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

struct tls_ctx {
    SSL_CTX *ssl_ctx;
    bool client;    /* connections start the handshake */
    char *crl_file; /* tls_options.crl_file, or NULL */
    char *allowed_cn, *allowed_hostname; /* tls_ctx_allow_only, or NULL */
};

/* h2.c note 8: until its first TLS record (the ClientHello) is complete, a
 * connection costs this struct and that record's bytes; only then is the
 * SSL object made (a few kB, plus OpenSSL's 16 kB read and handshake
 * buffers), so clients that stall before or inside their first record
 * cannot make us hold OpenSSL's state. */
struct tls_conn {
    tls_ctx *ctx;
    SSL *ssl;       /* NULL until the first record is complete */
    uint8_t *first; /* the first record so far, while ssl is NULL */
    size_t first_len;
    BIO *rbio; /* network -> OpenSSL */
    BIO *wbio; /* OpenSSL -> network */
    bool ready;
    char failure[256]; /* tls_conn_failure */
};

static void openssl_errmsg(char *errmsg, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[200];
    ERR_error_string_n(e, buf, sizeof buf);
    errmsg_printf(errmsg, "%s: %s", what, e ? buf : "unknown OpenSSL error");
    ERR_clear_error();
}

/* Picks "h2" when the client offers it; otherwise no ALPN (the preface check
 * of the HTTP layer then answers HTTP/1.1 clients). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char h2[] = {2, 'h', '2'};
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, h2, sizeof h2, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* etcd's names (IANA's, as OpenSSL's standard names; Go's two CHACHA20
 * aliases lack the _SHA256) into an OpenSSL cipher list, in order. */
static int cipher_list(SSL_CTX *ctx, const char *names, char *out, size_t cap, char *errmsg)
{
    STACK_OF(SSL_CIPHER) *all = SSL_CTX_get_ciphers(ctx);
    size_t used = 0;
    out[0] = '\0';
    for (const char *s = names; *s != '\0';) {
        size_t len = strcspn(s, ",");
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)len, s);
        s += len + (s[len] == ',');
        if (strncmp(name, "TLS_AES_", 8) == 0 || strcmp(name, "TLS_CHACHA20_POLY1305_SHA256") == 0)
            continue; /* TLS 1.3: not configurable, as in Go */
        const char *found = NULL;
        size_t nlen = strlen(name);
        for (int i = 0; i < sk_SSL_CIPHER_num(all) && found == NULL; i++) {
            const SSL_CIPHER *c = sk_SSL_CIPHER_value(all, i);
            const char *std = SSL_CIPHER_standard_name(c);
            if (std != NULL && (strcmp(std, name) == 0 ||
                                (strncmp(std, name, nlen) == 0 && strcmp(std + nlen, "_SHA256") == 0)))
                found = SSL_CIPHER_get_name(c);
        }
        if (found == NULL) {
            errmsg_printf(errmsg, "--cipher-suites: %s is not offered by this OpenSSL "
                                  "(at its default security level)", name);
            return LSKV_EIO;
        }
        int n = snprintf(out + used, cap - used, "%s%s", used ? ":" : "", found);
        if (n < 0 || (size_t)n >= cap - used) {
            errmsg_printf(errmsg, "--cipher-suites: list too long");
            return LSKV_EIO;
        }
        used += (size_t)n;
    }
    return 0;
}

/* ---- --client-crl-file, allowed names ---- */

static int verify_ex_index = -1; /* the SSL_CTX's tls_ctx, for tls_verify */

/* The CRL at path (PEM, else DER); NULL if it cannot be read or parsed. */
static X509_CRL *crl_load(const char *path)
{
    BIO *in = BIO_new_file(path, "rb");
    if (in == NULL)
        return NULL;
    X509_CRL *crl = PEM_read_bio_X509_CRL(in, NULL, NULL, NULL);
    if (crl == NULL && BIO_reset(in) == 0)
        crl = d2i_X509_CRL_bio(in, NULL);
    BIO_free(in);
    ERR_clear_error();
    return crl;
}

static bool crl_lists(X509_CRL *crl, X509 *cert)
{
    STACK_OF(X509_REVOKED) *revoked = X509_CRL_get_REVOKED(crl);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    for (int i = 0; i < sk_X509_REVOKED_num(revoked); i++)
        if (ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i)),
                             serial) == 0)
            return true;
    return false;
}

/* tls_ctx_allow_only's rule (tls.h); both NULL: allowed. */
static bool cert_allowed(X509 *cert, const char *cn, const char *hostname)
{
    if (cn != NULL) {
        char got[256];
        X509_NAME *subject = X509_get_subject_name(cert);
        int n = subject ? X509_NAME_get_text_by_NID(subject, NID_commonName, got, sizeof got) : -1;
        return n >= 0 && (size_t)n == strlen(cn) && strcmp(got, cn) == 0;
    }
    if (hostname != NULL) {
        /* Go's VerifyHostname: an IP address against the IP SANs, a name
         * against the DNS SANs (never the CN). */
        int rv = X509_check_ip_asc(cert, hostname, 0);
        if (rv < 0) /* not an IP address */
            rv = X509_check_host(cert, hostname, 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL);
        ERR_clear_error();
        return rv == 1;
    }
    return true;
}

/* OpenSSL's verification, then each certificate of the chain against the
 * CRL as the file holds it now, and the leaf against the allowed names
 * (etcd's "client certificate authentication failed": a bad_certificate
 * alert, X509_V_ERR_CERT_REJECTED, as Go's VerifyPeerCertificate error). */
static int tls_verify(int ok, X509_STORE_CTX *sctx)
{
    if (!ok)
        return 0;
    SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    const tls_ctx *ctx = ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), verify_ex_index) : NULL;
    X509 *cert = X509_STORE_CTX_get_current_cert(sctx);
    if (ctx == NULL || cert == NULL)
        return 1;
    if (X509_STORE_CTX_get_error_depth(sctx) == 0 &&
        !cert_allowed(cert, ctx->allowed_cn, ctx->allowed_hostname)) {
        X509_STORE_CTX_set_error(sctx, X509_V_ERR_CERT_REJECTED);
        return 0;
    }
    if (ctx->crl_file == NULL)
        return 1;
    X509_CRL *crl = crl_load(ctx->crl_file);
    if (crl == NULL) {
        X509_STORE_CTX_set_error(sctx, X509_V_ERR_UNABLE_TO_GET_CRL);
        return 0;
    }
    bool revoked = crl_lists(crl, cert);
    X509_CRL_free(crl);
    if (revoked) {
        X509_STORE_CTX_set_error(sctx, X509_V_ERR_CERT_REVOKED);
        return 0;
    }
    return 1;
}

/* tls_verify runs for ctx's handshakes (in the verify mode set). */
static int verify_hook(tls_ctx *ctx)
{
    if (verify_ex_index < 0)
        verify_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (verify_ex_index < 0 || SSL_CTX_set_ex_data(ctx->ssl_ctx, verify_ex_index, ctx) != 1)
        return LSKV_ENOMEM;
    SSL_CTX_set_verify(ctx->ssl_ctx, SSL_CTX_get_verify_mode(ctx->ssl_ctx), tls_verify);
    return 0;
}

/* etcd's client TLS on top of the certificate: client certificates and
 * cipher suites. */
static int client_options(SSL_CTX *ctx, const struct tls_options *o, char *errmsg)
{
    if (o->trusted_ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, o->trusted_ca_file, NULL) != 1) {
            openssl_errmsg(errmsg, o->trusted_ca_file);
            return LSKV_EIO;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->trusted_ca_file);
        if (names != NULL)
            SSL_CTX_set_client_CA_list(ctx, names);
        ERR_clear_error();
    }
    /* etcd 3.4 (pkg/transport): a trusted CA alone requires them too. */
    if (o->client_cert_auth || o->trusted_ca_file != NULL)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    if (o->cipher_suites != NULL && o->cipher_suites[0] != '\0') {
        char list[2048];
        int rv = cipher_list(ctx, o->cipher_suites, list, sizeof list, errmsg);
        if (rv != 0)
            return rv;
        if (list[0] != '\0' && SSL_CTX_set_cipher_list(ctx, list) != 1) {
            openssl_errmsg(errmsg, "--cipher-suites");
            return LSKV_EIO;
        }
    }
    return 0;
}

int tls_ctx_open(const struct tls_options *o, tls_ctx **out, char *errmsg)
{
    const char *cert_file = o->cert_file, *key_file = o->key_file;
    tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return LSKV_ENOMEM;
    ctx->ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (ctx->ssl_ctx == NULL) {
        openssl_errmsg(errmsg, "SSL_CTX_new");
        goto err;
    }
    SSL_CTX_set_min_proto_version(ctx->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                          SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx->ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx->ssl_ctx, cert_file) != 1) {
        openssl_errmsg(errmsg, cert_file);
        goto err;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx->ssl_ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        openssl_errmsg(errmsg, key_file);
        goto err;
    }
    if (SSL_CTX_check_private_key(ctx->ssl_ctx) != 1) {
        openssl_errmsg(errmsg, "key does not match certificate");
        goto err;
    }
    if (client_options(ctx->ssl_ctx, o, errmsg) != 0)
        goto err;
    if (o->crl_file != NULL) {
        X509_CRL *crl = crl_load(o->crl_file);
        if (crl == NULL) {
            errmsg_printf(errmsg, "--client-crl-file=%s: not a readable CRL (PEM or DER)",
                          o->crl_file);
            goto err;
        }
        X509_CRL_free(crl);
        if ((ctx->crl_file = strdup(o->crl_file)) == NULL || verify_hook(ctx) != 0) {
            errmsg_printf(errmsg, "--client-crl-file: out of memory");
            goto err;
        }
    }
    if (o->allowed_hostname != NULL && tls_ctx_allow_only(ctx, NULL, o->allowed_hostname) != 0) {
        errmsg_printf(errmsg, "--client-cert-allowed-hostname: out of memory");
        goto err;
    }
    SSL_CTX_set_alpn_select_cb(ctx->ssl_ctx, alpn_select, NULL);
    *out = ctx;
    return 0;
err:
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx->crl_file);
    free(ctx->allowed_hostname);
    free(ctx);
    return LSKV_EIO;
}

int tls_ctx_allow_only(tls_ctx *ctx, const char *cn, const char *hostname)
{
    if ((cn != NULL && (ctx->allowed_cn = strdup(cn)) == NULL) ||
        (hostname != NULL && (ctx->allowed_hostname = strdup(hostname)) == NULL))
        return LSKV_ENOMEM;
    return verify_hook(ctx);
}

int tls_ctx_wrap(SSL_CTX *ssl_ctx, bool client, tls_ctx **out)
{
    tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return LSKV_ENOMEM;
    ctx->ssl_ctx = ssl_ctx;
    ctx->client = client;
    *out = ctx;
    return 0;
}

void tls_ctx_close(tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx->crl_file);
    free(ctx->allowed_cn);
    free(ctx->allowed_hostname);
    free(ctx);
}

static int ssl_create(tls_conn *c)
{
    c->ssl = SSL_new(c->ctx->ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        c->ssl = NULL;
        c->rbio = c->wbio = NULL;
        ERR_clear_error();
        return LSKV_ENOMEM;
    }
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the SSL owns both BIOs now */
    if (c->ctx->client)
        SSL_set_connect_state(c->ssl);
    else
        SSL_set_accept_state(c->ssl);
    return 0;
}

int tls_conn_open(tls_ctx *ctx, tls_conn **out)
{
    tls_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return LSKV_ENOMEM;
    c->ctx = ctx;
    if (ctx->client) {
        /* A client speaks first: make the ClientHello now. */
        int rv = ssl_create(c);
        if (rv == 0) {
            int r = SSL_do_handshake(c->ssl); /* cannot finish without the server */
            if (r != -1 || SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ)
                rv = LSKV_EIO;
            ERR_clear_error();
        }
        if (rv != 0) {
            tls_conn_close(c);
            return rv;
        }
    }
    *out = c;
    return 0;
}

SSL *tls_conn_ssl(tls_conn *c)
{
    return c->ssl;
}

int tls_conn_peer_cn(tls_conn *c, char *out, size_t cap)
{
    if (c->ssl == NULL || !tls_conn_ready(c) || SSL_get_verify_result(c->ssl) != X509_V_OK)
        return LSKV_ENOTFOUND;
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    X509_NAME *subject = cert ? X509_get_subject_name(cert) : NULL;
    int i = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
    if (i < 0)
        return LSKV_ENOTFOUND;
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    int rv = LSKV_ENOTFOUND;
    if (n > 0 && (size_t)n < cap && memchr(utf8, 0, (size_t)n) == NULL) {
        memcpy(out, utf8, (size_t)n);
        out[n] = '\0';
        rv = 0;
    }
    OPENSSL_free(utf8);
    return rv;
}

void tls_conn_close(tls_conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl);
    free(c->first);
    free(c);
}

/* Keeps why the handshake failed, for the log (h2.c), and clears
 * OpenSSL's error queue. */
static void note_failure(tls_conn *c)
{
    unsigned long e = ERR_peek_last_error();
    char reason[120] = "handshake failed";
    int r = ERR_GET_REASON(e);
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && r > SSL_AD_REASON_OFFSET &&
        r < SSL_AD_REASON_OFFSET + 256) /* the peer's alert: Go's words, as etcd logs it */
        snprintf(reason, sizeof reason, "remote error: tls: %s",
                 SSL_alert_desc_string_long(r - SSL_AD_REASON_OFFSET));
    else if (e != 0)
        ERR_error_string_n(e, reason, sizeof reason);
    long v = SSL_get_verify_result(c->ssl);
    if (v == X509_V_ERR_CERT_REJECTED) /* tls_verify: not an allowed name */
        snprintf(c->failure, sizeof c->failure, "%s (%s certificate: client certificate "
                 "authentication failed: not the allowed %s)", reason,
                 c->ctx->client ? "server" : "client",
                 c->ctx->allowed_cn ? "CN" : "hostname");
    else if (v != X509_V_OK)
        snprintf(c->failure, sizeof c->failure, "%s (%s certificate: %s)", reason,
                 c->ctx->client ? "server" : "client", X509_verify_cert_error_string(v));
    else
        snprintf(c->failure, sizeof c->failure, "%s", reason);
    ERR_clear_error();
}

#define RECORD_HEADER_BYTES 5
#define RECORD_MAX_BYTES (RECORD_HEADER_BYTES + 16384 + 2048)

/* Bytes of the first record still missing, or 0 when it is complete (or is
 * not a handshake record of a plausible size: OpenSSL then answers it). */
static size_t first_record_missing(const tls_conn *c)
{
    if (c->first_len < RECORD_HEADER_BYTES)
        return RECORD_HEADER_BYTES - c->first_len;
    size_t total = RECORD_HEADER_BYTES + ((size_t)c->first[3] << 8 | c->first[4]);
    if (c->first[0] != 22 || total > RECORD_MAX_BYTES || c->first_len >= total)
        return 0;
    return total - c->first_len;
}

/* Collects the first record (see struct tls_conn); 1 once it is complete
 * and the SSL object holds it, 0 while incomplete. */
static int collect_first(tls_conn *c, const uint8_t **data, size_t *len)
{
    while (*len > 0) {
        size_t n = first_record_missing(c);
        if (n == 0)
            break;
        if (n > *len)
            n = *len;
        uint8_t *p = realloc(c->first, c->first_len + n);
        if (p == NULL)
            return LSKV_ENOMEM;
        c->first = p;
        memcpy(c->first + c->first_len, *data, n);
        c->first_len += n;
        *data += n;
        *len -= n;
    }
    if (first_record_missing(c) > 0)
        return 0;
    if (ssl_create(c) != 0)
        return LSKV_ENOMEM;
    int n = BIO_write(c->rbio, c->first, (int)c->first_len);
    free(c->first);
    c->first = NULL;
    c->first_len = 0;
    return n > 0 ? 1 : LSKV_EIO;
}

int tls_conn_feed(tls_conn *c, const uint8_t *data, size_t len)
{
    if (c->ssl == NULL) {
        int rv = collect_first(c, &data, &len);
        if (rv <= 0)
            return rv;
    }
    while (len > 0) {
        int n = BIO_write(c->rbio, data, len > 1 << 30 ? 1 << 30 : (int)len);
        if (n <= 0)
            return LSKV_EIO;
        data += n;
        len -= (size_t)n;
    }
    if (!c->ready) {
        int rv = SSL_do_handshake(c->ssl);
        if (rv == 1) {
            c->ready = true;
        } else {
            int e = SSL_get_error(c->ssl, rv);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                note_failure(c);
                return LSKV_EIO;
            }
            /* Waiting for the client's next flight: SSL_MODE_RELEASE_BUFFERS
             * does not apply inside a handshake, so give back the record
             * buffers now (it fails, harmlessly, while bytes are pending). */
            if (SSL_free_buffers(c->ssl) != 1)
                ERR_clear_error();
        }
    }
    return 0;
}

bool tls_conn_ready(const tls_conn *c)
{
    return c->ready;
}

const char *tls_conn_failure(const tls_conn *c)
{
    return c->failure;
}

ssize_t tls_conn_read(tls_conn *c, uint8_t *buf, size_t cap)
{
    if (!c->ready)
        return 0;
    size_t got = 0;
    int rv = SSL_read_ex(c->ssl, buf, cap, &got);
    if (rv == 1)
        return (ssize_t)got;
    int e = SSL_get_error(c->ssl, rv);
    if (e == SSL_ERROR_SSL) { /* e.g. the peer's alert (TLS 1.3: a refused client
                                 certificate arrives after the handshake) */
        note_failure(c);
        return LSKV_EIO;
    }
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return LSKV_ESHUTDOWN;
    return LSKV_EIO;
}

int tls_conn_write(tls_conn *c, const uint8_t *data, size_t len)
{
    if (!c->ready)
        return LSKV_EIO;
    while (len > 0) {
        size_t n = 0;
        if (SSL_write_ex(c->ssl, data, len, &n) != 1) {
            ERR_clear_error();
            return LSKV_EIO;
        }
        data += n;
        len -= n;
    }
    return 0;
}

size_t tls_conn_pending(const tls_conn *c)
{
    if (c->wbio == NULL)
        return 0;
    return BIO_ctrl_pending(c->wbio);
}

size_t tls_conn_take(tls_conn *c, uint8_t *buf, size_t cap)
{
    if (c->wbio == NULL)
        return 0;
    int n = BIO_read(c->wbio, buf, cap > 1 << 30 ? 1 << 30 : (int)cap);
    return n > 0 ? (size_t)n : 0;
}
