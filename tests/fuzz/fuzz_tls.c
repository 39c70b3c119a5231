/* Fuzzes the TLS server side of a connection (net/tls.c) with the bytes a
 * client sends: the first-record collector that runs before OpenSSL is
 * involved (h2.c note 8), then OpenSSL's handshake and record layer over
 * memory BIOs, fed at once or in chunks. The server key and a self-signed
 * certificate are made once, in a temporary directory. Nothing here may
 * crash, leak or read out of bounds, whatever the bytes. */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/err.h"
#include "net/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tls_ctx *make_ctx(void)
{
    char dir[] = "/tmp/fuzz_tls_XXXXXX";
    if (mkdtemp(dir) == NULL)
        abort();
    char cert[64], key[64];
    snprintf(cert, sizeof cert, "%s/c.pem", dir);
    snprintf(key, sizeof key, "%s/k.pem", dir);
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (pk == NULL || x == NULL)
        abort();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_sign(x, pk, EVP_sha256());
    FILE *f = fopen(cert, "w"), *g = fopen(key, "w");
    if (f == NULL || g == NULL || PEM_write_X509(f, x) != 1 ||
        PEM_write_PrivateKey(g, pk, NULL, NULL, 0, NULL, NULL) != 1)
        abort();
    fclose(f);
    fclose(g);
    X509_free(x);
    EVP_PKEY_free(pk);
    tls_ctx *ctx = NULL;
    char errmsg[LSKV_ERRMSG_SIZE];
    /* Client certificates asked for and checked: their parsing is fuzzed
     * too (--client-cert-auth). */
    struct tls_options o = {.cert_file = cert, .key_file = key, .trusted_ca_file = cert,
                            .client_cert_auth = true};
    if (tls_ctx_open(&o, &ctx, errmsg) != 0)
        abort();
    unlink(cert);
    unlink(key);
    rmdir(dir);
    return ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tls_ctx *ctx;
    if (ctx == NULL)
        ctx = make_ctx();
    tls_conn *c;
    if (tls_conn_open(ctx, &c) != 0)
        return 0;
    size_t chunk = 1 + size % 97;
    uint8_t out[16384];
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (tls_conn_feed(c, data + off, n) != 0)
            break;
        while (tls_conn_pending(c) > 0)
            tls_conn_take(c, out, sizeof out);
        while (tls_conn_read(c, out, sizeof out) > 0)
            ;
        if (tls_conn_ready(c))
            tls_conn_write(c, (const uint8_t *)"x", 1);
    }
    tls_conn_close(c);
    return 0;
}
