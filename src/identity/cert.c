/* Service and node identities (see cert.h).
 *
 * Why: OpenSSL objects stay inside this file; callers see PEM strings, node
 * ids and DER signatures only, so the ledger and lskvctl never touch key
 * material. Keys are PKCS#8 PEM (unencrypted: in virtual mode the 0600 file
 * is the sealing, as for crypto/keyfile.c). */
#include "identity/cert.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/file.h"
#include "common/hex.h"

struct cert_service {
    EVP_PKEY *key; /* NULL when verify-only */
    X509 *cert;
    char *pem;
};

struct cert_node {
    EVP_PKEY *key;
    X509 *cert;
    char *pem;
    char id[CERT_NODE_ID_HEX];
};

enum { CERT_VALID_DAYS = 36500 };

static char *bio_to_string(BIO *b)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

static char *cert_to_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (b != NULL && PEM_write_bio_X509(b, x) == 1)
        s = bio_to_string(b);
    BIO_free(b);
    return s;
}

static X509 *pem_to_cert(const char *pem, size_t len)
{
    if (len > INT32_MAX)
        return NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL)
        return NULL;
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return x;
}

static int load_key(const char *path, EVP_PKEY **out, char *errmsg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: open: %s", path, strerror(errno));
        return rv;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (st.st_mode & 077) != 0) {
        errmsg_printf(errmsg, "%s: mode %03o is readable by others, want 0600", path,
                      (unsigned)(st.st_mode & 0777));
        close(fd);
        return LSKV_ECORRUPT;
    }
    FILE *f = fdopen(fd, "rb");
    if (f == NULL) {
        close(fd);
        return LSKV_ENOMEM;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (k == NULL || !EVP_PKEY_is_a(k, "EC")) {
        EVP_PKEY_free(k);
        errmsg_printf(errmsg, "%s: not an EC private key", path);
        return LSKV_ECORRUPT;
    }
    *out = k;
    return 0;
}

/* PKCS#8 PEM of k's private key in a malloc'ed string: a secret, freed
 * with cert_secret_free. */
static int key_to_pem(EVP_PKEY *k, char **out, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return LSKV_ENOMEM;
    int rv = LSKV_EIO;
    if (PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        rv = LSKV_ENOMEM;
        if (n >= 0 && (*out = malloc((size_t)n + 1)) != NULL) {
            memcpy(*out, data, (size_t)n);
            (*out)[n] = '\0';
            *len = (size_t)n;
            rv = 0;
        }
        if (n > 0)
            OPENSSL_cleanse(data, (size_t)n);
    }
    BIO_free(b);
    return rv;
}

/* An EC private key from PEM (not copied; the key object wipes itself). */
static EVP_PKEY *pem_to_key(const char *pem, size_t len)
{
    if (len > INT32_MAX)
        return NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL)
        return NULL;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (k != NULL && !EVP_PKEY_is_a(k, "EC")) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    return k;
}

void cert_secret_free(char *secret)
{
    if (secret == NULL)
        return;
    OPENSSL_cleanse(secret, strlen(secret));
    free(secret);
}

static int save_key(const char *path, EVP_PKEY *k, char *errmsg)
{
    char *pem;
    size_t n;
    int rv = key_to_pem(k, &pem, &n);
    if (rv != 0) {
        errmsg_printf(errmsg, "%s: cannot encode key", path);
        return rv;
    }
    rv = file_write_durable(path, pem, n, 0600, errmsg);
    cert_secret_free(pem);
    return rv;
}

/* Writes dir/<name>.key (0600) then dir/<name>.pem: a crash between them
 * leaves a key without a certificate, which loading refuses by name. */
static int save_pair(const char *dir, const char *name, EVP_PKEY *k, const char *pem,
                     char *errmsg)
{
    char cpath[4096], kpath[4096];
    snprintf(cpath, sizeof cpath, "%s/%s.pem", dir, name);
    snprintf(kpath, sizeof kpath, "%s/%s.key", dir, name);
    int rv = save_key(kpath, k, errmsg);
    if (rv == 0)
        rv = file_write_durable(cpath, pem, strlen(pem), 0644, errmsg);
    return rv;
}

static int load_cert(const char *path, X509 **out, char **pem_out, char *errmsg)
{
    uint8_t *pem;
    size_t len;
    int rv = file_read_all(path, &pem, &len, errmsg);
    if (rv != 0)
        return rv;
    X509 *x = pem_to_cert((const char *)pem, len);
    if (x == NULL) {
        free(pem);
        errmsg_printf(errmsg, "%s: not a PEM certificate", path);
        return LSKV_ECORRUPT;
    }
    *out = x;
    *pem_out = (char *)pem;
    return 0;
}

static int add_ext(X509 *issuer, X509 *subject, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, subject, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(subject, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

/* Makes a certificate for pub, issued by issuer (NULL: self-signed) and
 * signed with issuer_key. */
static X509 *make_cert(EVP_PKEY *pub, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       bool ca)
{
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    if (x == NULL || bn == NULL)
        goto err;
    if (X509_set_version(x, 2) != 1 || BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
        goto err;
    if (X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), CERT_VALID_DAYS, 0, NULL) == NULL)
        goto err;
    X509_NAME *name = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                   -1, 0) != 1)
        goto err;
    if (X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) != 1 ||
        X509_set_pubkey(x, pub) != 1)
        goto err;
    X509 *iss = issuer ? issuer : x;
    if (add_ext(iss, x, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE") ||
        add_ext(iss, x, NID_key_usage,
                ca ? "critical,keyCertSign,cRLSign,digitalSignature" : "critical,digitalSignature") ||
        add_ext(iss, x, NID_subject_key_identifier, "hash") ||
        add_ext(iss, x, NID_authority_key_identifier, "keyid:always"))
        goto err;
    if (X509_sign(x, issuer_key, EVP_sha384()) <= 0)
        goto err;
    BN_free(bn);
    return x;
err:
    BN_free(bn);
    X509_free(x);
    return NULL;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

void cert_service_free(cert_service *s)
{
    if (s == NULL)
        return;
    EVP_PKEY_free(s->key);
    X509_free(s->cert);
    free(s->pem);
    free(s);
}

int cert_service_from_pem(const char *pem, size_t len, cert_service **out, char *errmsg)
{
    cert_service *s = calloc(1, sizeof *s);
    if (s == NULL)
        return LSKV_ENOMEM;
    s->cert = pem_to_cert(pem, len);
    s->pem = s->cert ? cert_to_pem(s->cert) : NULL;
    if (s->cert == NULL || s->pem == NULL) {
        cert_service_free(s);
        errmsg_printf(errmsg, "service certificate: not a PEM certificate");
        return LSKV_ECORRUPT;
    }
    *out = s;
    return 0;
}

int cert_service_from_file(const char *path, cert_service **out, char *errmsg)
{
    uint8_t *pem;
    size_t len;
    int rv = file_read_all(path, &pem, &len, errmsg);
    if (rv != 0)
        return rv;
    rv = cert_service_from_pem((const char *)pem, len, out, errmsg);
    free(pem);
    return rv;
}

int cert_service_new(const char *cn, cert_service **out, char *errmsg)
{
    cert_service *s = calloc(1, sizeof *s);
    if (s == NULL)
        return LSKV_ENOMEM;
    s->key = EVP_EC_gen("P-384");
    if (s->key == NULL || (s->cert = make_cert(s->key, cn, NULL, s->key, true)) == NULL ||
        (s->pem = cert_to_pem(s->cert)) == NULL) {
        cert_service_free(s);
        errmsg_printf(errmsg, "cannot make a service identity");
        return LSKV_EIO;
    }
    *out = s;
    return 0;
}

int cert_service_save(const cert_service *s, const char *dir, char *errmsg)
{
    if (s->key == NULL) {
        errmsg_printf(errmsg, "%s: service identity has no key to save", dir);
        return LSKV_EINVAL;
    }
    return save_pair(dir, "service", s->key, s->pem, errmsg);
}

int cert_service_from_pem_key(const char *cert_pem, size_t cert_len, const char *key_pem,
                              size_t key_len, cert_service **out, char *errmsg)
{
    cert_service *s;
    int rv = cert_service_from_pem(cert_pem, cert_len, &s, errmsg);
    if (rv != 0)
        return rv;
    s->key = pem_to_key(key_pem, key_len);
    if (s->key == NULL) {
        cert_service_free(s);
        errmsg_printf(errmsg, "service key: not a PEM EC private key");
        return LSKV_ECORRUPT;
    }
    if (X509_check_private_key(s->cert, s->key) != 1) {
        cert_service_free(s);
        errmsg_printf(errmsg, "service key does not match the service certificate");
        return LSKV_ECORRUPT;
    }
    *out = s;
    return 0;
}

int cert_service_key_pem(const cert_service *s, char **pem, size_t *len)
{
    if (s->key == NULL)
        return LSKV_EINVAL;
    return key_to_pem(s->key, pem, len);
}

int cert_node_key_pem(const cert_node *n, char **pem, size_t *len)
{
    return key_to_pem(n->key, pem, len);
}

int cert_service_load_or_create(const char *dir, const char *cn, bool create,
                                cert_service **out, bool *created, char *errmsg)
{
    char cpath[4096], kpath[4096];
    snprintf(cpath, sizeof cpath, "%s/service.pem", dir);
    snprintf(kpath, sizeof kpath, "%s/service.key", dir);
    if (created != NULL)
        *created = false;
    cert_service *s = calloc(1, sizeof *s);
    if (s == NULL)
        return LSKV_ENOMEM;
    int rv;
    if (!file_exists(cpath) && !file_exists(kpath) && create) {
        cert_service_free(s);
        if ((rv = cert_service_new(cn, &s, errmsg)) != 0) {
            errmsg_wrapf(errmsg, "%s", dir);
            return rv;
        }
        if ((rv = cert_service_save(s, dir, errmsg)) != 0)
            goto err;
        if (created != NULL)
            *created = true;
        *out = s;
        return 0;
    }
    if ((rv = load_cert(cpath, &s->cert, &s->pem, errmsg)) != 0)
        goto err;
    if (file_exists(kpath)) {
        if ((rv = load_key(kpath, &s->key, errmsg)) != 0)
            goto err;
        if (X509_check_private_key(s->cert, s->key) != 1) {
            rv = LSKV_ECORRUPT;
            errmsg_printf(errmsg, "%s: key does not match %s", kpath, cpath);
            goto err;
        }
    }
    *out = s;
    return 0;
err:
    cert_service_free(s);
    return rv;
}

const char *cert_service_pem(const cert_service *s)
{
    return s->pem;
}

int cert_service_digest(const cert_service *s, uint8_t out[CERT_DIGEST_BYTES])
{
    unsigned char *der = NULL;
    int n = i2d_X509(s->cert, &der);
    if (n <= 0)
        return LSKV_EIO;
    SHA256(der, (size_t)n, out);
    OPENSSL_free(der);
    return 0;
}

/* SHA-256 of the SubjectPublicKeyInfo DER of pub: node ids and what an
 * attestation report binds. */
static int key_digest(EVP_PKEY *pub, uint8_t out[CERT_DIGEST_BYTES])
{
    unsigned char *der = NULL;
    int n = pub ? i2d_PUBKEY(pub, &der) : -1;
    if (n <= 0)
        return LSKV_EINVAL;
    SHA256(der, (size_t)n, out);
    OPENSSL_free(der);
    return 0;
}

static int node_id_of_cert(X509 *x, char out[CERT_NODE_ID_HEX])
{
    uint8_t h[CERT_DIGEST_BYTES];
    int rv = key_digest(X509_get0_pubkey(x), h);
    if (rv == 0)
        hex_encode(h, sizeof h, out);
    return rv;
}

int cert_key_digest_of_pem(const char *pem, size_t pem_len, uint8_t out[CERT_DIGEST_BYTES])
{
    X509 *x = pem_to_cert(pem, pem_len);
    if (x == NULL)
        return LSKV_EINVAL;
    int rv = key_digest(X509_get0_pubkey(x), out);
    X509_free(x);
    return rv;
}

int cert_spki_of_pem(const char *pem, size_t pem_len, uint8_t **der, size_t *der_len)
{
    X509 *x = pem_to_cert(pem, pem_len);
    EVP_PKEY *pub = x ? X509_get0_pubkey(x) : NULL;
    unsigned char *d = NULL;
    int n = pub ? i2d_PUBKEY(pub, &d) : -1;
    X509_free(x);
    if (n <= 0)
        return LSKV_EINVAL;
    *der = malloc((size_t)n);
    if (*der != NULL)
        memcpy(*der, d, (size_t)n);
    OPENSSL_free(d);
    if (*der == NULL)
        return LSKV_ENOMEM;
    *der_len = (size_t)n;
    return 0;
}

/* A P-384 public key from SPKI DER that is exactly its canonical encoding,
 * so the digest of the bytes and of the key are one value. */
static EVP_PKEY *spki_to_key(const uint8_t *spki, size_t len)
{
    if (len == 0 || len > 1024)
        return NULL;
    const unsigned char *p = spki;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
    if (k == NULL)
        return NULL;
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k, &der);
    char group[32] = "";
    size_t glen = 0;
    bool ok = p == spki + len && n > 0 && (size_t)n == len && memcmp(der, spki, len) == 0 &&
              EVP_PKEY_is_a(k, "EC") &&
              EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof group, &glen) == 1 &&
              strcmp(group, "secp384r1") == 0;
    OPENSSL_free(der);
    if (!ok) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

int cert_spki_digest(const uint8_t *spki, size_t len, uint8_t out[CERT_DIGEST_BYTES])
{
    EVP_PKEY *k = spki_to_key(spki, len);
    if (k == NULL)
        return LSKV_EINVAL;
    SHA256(spki, len, out);
    EVP_PKEY_free(k);
    return 0;
}

int cert_cn_of_pem(const char *pem, size_t pem_len, char *out, size_t size)
{
    X509 *x = pem_to_cert(pem, pem_len);
    int n = x ? X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, NULL, 0)
              : -1;
    int rv = LSKV_EINVAL;
    if (n >= 0 && (size_t)n < size &&
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out,
                                  (int)size) == n)
        rv = 0;
    X509_free(x);
    return rv;
}

int cert_key_new(const char *cn, char **key_pem, char **cert_pem, char *errmsg)
{
    EVP_PKEY *k = EVP_EC_gen("P-384");
    X509 *x = k ? make_cert(k, cn, NULL, k, false) : NULL;
    size_t n;
    int rv = LSKV_EIO;
    *key_pem = *cert_pem = NULL;
    if (x != NULL && (*cert_pem = cert_to_pem(x)) != NULL &&
        (rv = key_to_pem(k, key_pem, &n)) == 0) {
        X509_free(x);
        EVP_PKEY_free(k);
        return 0;
    }
    free(*cert_pem);
    *cert_pem = NULL;
    X509_free(x);
    EVP_PKEY_free(k);
    errmsg_printf(errmsg, "cannot make a node key");
    return rv;
}

int cert_issue_node(const cert_service *s, const uint8_t *spki, size_t spki_len,
                    const char *cn, char **pem_out, char *errmsg)
{
    if (s->key == NULL) {
        errmsg_printf(errmsg, "no service key to endorse a node with");
        return LSKV_EINVAL;
    }
    EVP_PKEY *pub = spki_to_key(spki, spki_len);
    if (pub == NULL) {
        errmsg_printf(errmsg, "node public key: not a P-384 SubjectPublicKeyInfo");
        return LSKV_EINVAL;
    }
    X509 *x = make_cert(pub, cn, s->cert, s->key, false);
    *pem_out = x ? cert_to_pem(x) : NULL;
    X509_free(x);
    EVP_PKEY_free(pub);
    if (*pem_out == NULL) {
        errmsg_printf(errmsg, "cannot issue a node certificate");
        return LSKV_EIO;
    }
    return 0;
}

int cert_node_id_of_pem(const char *pem, size_t pem_len, char out[CERT_NODE_ID_HEX])
{
    X509 *x = pem_to_cert(pem, pem_len);
    if (x == NULL)
        return LSKV_EINVAL;
    int rv = node_id_of_cert(x, out);
    X509_free(x);
    return rv;
}

static int check_endorsed(const cert_service *s, X509 *node, char *errmsg)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int rv = LSKV_ENOMEM;
    if (store == NULL || ctx == NULL)
        goto out;
    rv = LSKV_EIO;
    if (X509_STORE_add_cert(store, s->cert) != 1 ||
        X509_STORE_CTX_init(ctx, store, node, NULL) != 1)
        goto out;
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_NO_CHECK_TIME);
    if (X509_verify_cert(ctx) == 1) {
        rv = 0;
    } else {
        rv = LSKV_ECORRUPT;
        errmsg_printf(errmsg, "node certificate not endorsed by the service certificate: %s",
                      X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    }
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rv;
}

int cert_check_endorsed(const cert_service *s, const char *node_pem, size_t pem_len,
                        char *errmsg)
{
    X509 *x = pem_to_cert(node_pem, pem_len);
    if (x == NULL) {
        errmsg_printf(errmsg, "node certificate: not a PEM certificate");
        return LSKV_EINVAL;
    }
    int rv = check_endorsed(s, x, errmsg);
    X509_free(x);
    return rv;
}

void cert_node_free(cert_node *n)
{
    if (n == NULL)
        return;
    EVP_PKEY_free(n->key);
    X509_free(n->cert);
    free(n->pem);
    free(n);
}

int cert_node_load_or_create(const char *dir, const cert_service *s, const char *cn,
                             bool create, cert_node **out, bool *created, char *errmsg)
{
    char cpath[4096], kpath[4096];
    snprintf(cpath, sizeof cpath, "%s/node.pem", dir);
    snprintf(kpath, sizeof kpath, "%s/node.key", dir);
    if (created != NULL)
        *created = false;
    cert_node *n = calloc(1, sizeof *n);
    if (n == NULL)
        return LSKV_ENOMEM;
    int rv;
    if (!file_exists(cpath) && !file_exists(kpath) && create) {
        if (s->key == NULL) {
            rv = LSKV_EINVAL;
            errmsg_printf(errmsg, "%s: no service key to endorse a new node with", dir);
            goto err;
        }
        rv = LSKV_EIO;
        n->key = EVP_EC_gen("P-384");
        if (n->key == NULL || (n->cert = make_cert(n->key, cn, s->cert, s->key, false)) == NULL ||
            (n->pem = cert_to_pem(n->cert)) == NULL) {
            errmsg_printf(errmsg, "%s: cannot make node identity", dir);
            goto err;
        }
        if ((rv = save_pair(dir, "node", n->key, n->pem, errmsg)) != 0)
            goto err;
        if (created != NULL)
            *created = true;
    } else {
        if ((rv = load_cert(cpath, &n->cert, &n->pem, errmsg)) != 0 ||
            (rv = load_key(kpath, &n->key, errmsg)) != 0)
            goto err;
        if (X509_check_private_key(n->cert, n->key) != 1) {
            rv = LSKV_ECORRUPT;
            errmsg_printf(errmsg, "%s: key does not match %s", kpath, cpath);
            goto err;
        }
    }
    if ((rv = check_endorsed(s, n->cert, errmsg)) != 0)
        goto err;
    if ((rv = node_id_of_cert(n->cert, n->id)) != 0)
        goto err;
    *out = n;
    return 0;
err:
    cert_node_free(n);
    return rv;
}

int cert_node_install(const char *dir, const cert_service *s, const char *cert_pem,
                      size_t cert_len, const char *key_pem, size_t key_len, char *errmsg)
{
    X509 *x = pem_to_cert(cert_pem, cert_len);
    EVP_PKEY *k = x ? pem_to_key(key_pem, key_len) : NULL;
    char *pem = x ? cert_to_pem(x) : NULL;
    int rv = LSKV_ECORRUPT;
    if (x == NULL || k == NULL || pem == NULL)
        errmsg_printf(errmsg, "node identity: not a PEM certificate and EC private key");
    else if (X509_check_private_key(x, k) != 1)
        errmsg_printf(errmsg, "node key does not match the node certificate");
    else if ((rv = check_endorsed(s, x, errmsg)) == 0)
        rv = save_pair(dir, "node", k, pem, errmsg);
    free(pem);
    EVP_PKEY_free(k);
    X509_free(x);
    return rv;
}

const char *cert_node_pem(const cert_node *n)
{
    return n->pem;
}

const char *cert_node_id(const cert_node *n)
{
    return n->id;
}

int cert_node_sign(const cert_node *n, const uint8_t digest[CERT_DIGEST_BYTES], uint8_t *sig,
                   size_t *sig_len)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(n->key, NULL);
    size_t len = CERT_SIG_MAX_BYTES;
    int rv = LSKV_EIO;
    if (ctx != NULL && EVP_PKEY_sign_init(ctx) == 1 &&
        EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
        EVP_PKEY_sign(ctx, sig, &len, digest, CERT_DIGEST_BYTES) == 1) {
        *sig_len = len;
        rv = 0;
    }
    EVP_PKEY_CTX_free(ctx);
    return rv;
}

int cert_verify_digest(const char *cert_pem, size_t pem_len,
                       const uint8_t digest[CERT_DIGEST_BYTES], const uint8_t *sig,
                       size_t sig_len, char *errmsg)
{
    X509 *x = pem_to_cert(cert_pem, pem_len);
    EVP_PKEY *pub = x ? X509_get0_pubkey(x) : NULL;
    if (pub == NULL || !EVP_PKEY_is_a(pub, "EC")) {
        X509_free(x);
        errmsg_printf(errmsg, "node certificate: not a PEM EC certificate");
        return LSKV_EINVAL;
    }
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
    int rv = LSKV_ECORRUPT;
    if (ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
        EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
        EVP_PKEY_verify(ctx, sig, sig_len, digest, CERT_DIGEST_BYTES) == 1)
        rv = 0;
    else
        errmsg_printf(errmsg, "signature does not verify with the node certificate");
    EVP_PKEY_CTX_free(ctx);
    X509_free(x);
    return rv;
}
