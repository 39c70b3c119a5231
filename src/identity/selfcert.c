#include "identity/selfcert.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/file.h"

static int make_dir(const char *path, char *errmsg)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: mkdir: %s", path, strerror(errno));
        return rv;
    }
    return 0;
}

/* "IP:127.0.0.1,DNS:localhost" for the X.509v3 config syntax. */
static void san_list(const char *const *hosts, size_t n, char *out, size_t size)
{
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && k < size; i++) {
        unsigned char buf[16];
        bool ip = inet_pton(AF_INET, hosts[i], buf) == 1 || inet_pton(AF_INET6, hosts[i], buf) == 1;
        k += (size_t)snprintf(out + k, size - k, "%s%s:%s", k ? "," : "", ip ? "IP" : "DNS",
                              hosts[i]);
    }
}

static int pem_write(const char *path, int (*write)(BIO *, void *), void *obj, unsigned mode,
                     char *errmsg)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return LSKV_ENOMEM;
    int rv = LSKV_EIO;
    if (write(b, obj) == 1) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        rv = file_write_durable(path, data, (size_t)n, mode, errmsg);
        OPENSSL_cleanse(data, (size_t)n);
    } else {
        errmsg_printf(errmsg, "%s: cannot encode", path);
    }
    BIO_free(b);
    return rv;
}

static int write_key(BIO *b, void *k)
{
    return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

static int write_cert(BIO *b, void *x)
{
    return PEM_write_bio_X509(b, x);
}

static X509 *make_cert(EVP_PKEY *key, const char *sans)
{
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    X509V3_CTX ctx;
    if (x == NULL || bn == NULL)
        goto err;
    /* etcd: a 128-bit random serial, one year, organisation "etcd" */
    if (X509_set_version(x, 2) != 1 || BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
        X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), 365, 0, NULL) == NULL)
        goto err;
    X509_NAME *name = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"etcd", -1,
                                   -1, 0) != 1 ||
        X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, key) != 1)
        goto err;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    const struct {
        int nid;
        const char *value;
    } exts[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
        {NID_ext_key_usage, "serverAuth"},
        {NID_subject_alt_name, sans},
    };
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        if (exts[i].value[0] == '\0')
            continue;
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid, exts[i].value);
        int ok = e != NULL && X509_add_ext(x, e, -1) == 1;
        X509_EXTENSION_free(e);
        if (!ok)
            goto err;
    }
    if (X509_sign(x, key, EVP_sha512()) <= 0)
        goto err;
    BN_free(bn);
    return x;
err:
    BN_free(bn);
    X509_free(x);
    return NULL;
}

int selfcert_ensure(const char *dir, const char *const *hosts, size_t n_hosts,
                    char *cert_path, char *key_path, bool *made, char *errmsg)
{
    *made = false;
    int n1 = snprintf(cert_path, SELFCERT_PATH_MAX, "%s/cert.pem", dir);
    int n2 = snprintf(key_path, SELFCERT_PATH_MAX, "%s/key.pem", dir);
    if (n1 < 0 || n1 >= SELFCERT_PATH_MAX || n2 < 0 || n2 >= SELFCERT_PATH_MAX) {
        errmsg_printf(errmsg, "%s: path too long", dir);
        return LSKV_EINVAL;
    }
    if (access(cert_path, F_OK) == 0 && access(key_path, F_OK) == 0)
        return 0;
    char parent[SELFCERT_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    int rv;
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        if ((rv = make_dir(parent, errmsg)) != 0)
            return rv;
    }
    if ((rv = make_dir(dir, errmsg)) != 0)
        return rv;
    char sans[4096];
    san_list(hosts, n_hosts, sans, sizeof sans);
    EVP_PKEY *key = EVP_EC_gen("P-521");
    X509 *x = key ? make_cert(key, sans) : NULL;
    if (x == NULL) {
        EVP_PKEY_free(key);
        errmsg_printf(errmsg, "%s: cannot make a self-signed certificate", dir);
        return LSKV_EIO;
    }
    rv = pem_write(key_path, write_key, key, 0600, errmsg);
    if (rv == 0)
        rv = pem_write(cert_path, write_cert, x, 0644, errmsg);
    X509_free(x);
    EVP_PKEY_free(key);
    *made = rv == 0;
    return rv;
}
