#include "crypto/jwt.h"

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/file.h"

enum jwt_family { JWT_RS, JWT_PS, JWT_ES, JWT_HS };

struct jwt_key {
    char alg[8];          /* "RS256" */
    enum jwt_family family;
    const EVP_MD *md;
    size_t es_half;       /* ES: bytes of r and of s */
    EVP_PKEY *priv, *pub; /* pub: the private key's, or the file's */
    uint8_t *secret;      /* HS */
    size_t secret_len;
};

/* ---- base64url without padding (RFC 7515) -------------------------------- */

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *b64u_encode(const uint8_t *in, size_t n)
{
    char *out = malloc(n / 3 * 4 + 5);
    if (out == NULL)
        return NULL;
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64u[v >> 18];
        out[o++] = b64u[(v >> 12) & 63];
        out[o++] = b64u[(v >> 6) & 63];
        out[o++] = b64u[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64u[v >> 18];
        out[o++] = b64u[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64u[v >> 18];
        out[o++] = b64u[(v >> 12) & 63];
        out[o++] = b64u[(v >> 6) & 63];
    }
    out[o] = '\0';
    return out;
}

/* Decodes n chars of base64url (no padding) into a malloc'ed buffer; NULL
 * on a bad character or length. */
static uint8_t *b64u_decode(const char *in, size_t n, size_t *out_len)
{
    if (n % 4 == 1)
        return NULL;
    uint8_t *out = malloc(n / 4 * 3 + 3);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = in[i] ? strchr(b64u, in[i]) : NULL;
        if (p == NULL) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)(p - b64u);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out_len = o;
    return out;
}

/* ---- keys ------------------------------------------------------------------ */

static int set_method(jwt_key *k, const char *method)
{
    static const struct {
        const char *prefix;
        enum jwt_family f;
    } fams[] = {{"RS", JWT_RS}, {"PS", JWT_PS}, {"ES", JWT_ES}, {"HS", JWT_HS}};
    if (method == NULL || strlen(method) != 5)
        return LSKV_EINVAL;
    int bits = atoi(method + 2);
    const EVP_MD *md = bits == 256 ? EVP_sha256() : bits == 384 ? EVP_sha384()
                                                   : bits == 512 ? EVP_sha512() : NULL;
    if (md == NULL || strcmp(method + 2, bits == 256 ? "256" : bits == 384 ? "384" : "512"))
        return LSKV_EINVAL;
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        if (strncmp(method, fams[i].prefix, 2) == 0) {
            k->family = fams[i].f;
            k->md = md;
            k->es_half = bits == 256 ? 32 : bits == 384 ? 48 : 66;
            snprintf(k->alg, sizeof k->alg, "%s", method);
            return 0;
        }
    }
    return LSKV_EINVAL;
}

static EVP_PKEY *read_pem(const char *file, bool private_key, char *errmsg)
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        errmsg_printf(errmsg, "open %s: %s", file, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = private_key ? PEM_read_PrivateKey(f, NULL, NULL, NULL)
                              : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    if (k == NULL && !private_key) {
        /* jwt-go's ParseRSAPublicKeyFromPEM also takes a certificate */
        rewind(f);
        X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
        if (cert != NULL)
            k = X509_get_pubkey(cert);
        X509_free(cert);
    }
    fclose(f);
    if (k == NULL)
        errmsg_printf(errmsg, "%s: not a PEM %s key", file, private_key ? "private" : "public");
    return k;
}

void jwt_key_free(jwt_key *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->priv);
    EVP_PKEY_free(k->pub);
    if (k->secret != NULL)
        OPENSSL_cleanse(k->secret, k->secret_len);
    free(k->secret);
    free(k);
}

int jwt_key_load(const char *method, const char *pub_file, const char *priv_file,
                 jwt_key **out, char *errmsg)
{
    jwt_key *k = calloc(1, sizeof *k);
    if (k == NULL)
        return LSKV_ENOMEM;
    int rv = LSKV_EINVAL;
    if (set_method(k, method) != 0) {
        errmsg_printf(errmsg, "auth: invalid auth signature method");
        goto err;
    }
    if (k->family == JWT_HS) {
        char ignored[LSKV_ERRMSG_SIZE];
        if (priv_file == NULL ||
            file_read_all(priv_file, &k->secret, &k->secret_len, ignored) != 0 ||
            k->secret_len == 0) {
            errmsg_printf(errmsg, "auth: missing key data");
            goto err;
        }
        *out = k;
        return 0;
    }
    if (priv_file != NULL && (k->priv = read_pem(priv_file, true, errmsg)) == NULL)
        goto err;
    if (pub_file != NULL && (k->pub = read_pem(pub_file, false, errmsg)) == NULL)
        goto err;
    if (k->priv == NULL && k->pub == NULL) {
        errmsg_printf(errmsg, "auth: missing key data");
        goto err;
    }
    int want = k->family == JWT_ES ? EVP_PKEY_EC : EVP_PKEY_RSA;
    if ((k->priv && EVP_PKEY_get_base_id(k->priv) != want) ||
        (k->pub && EVP_PKEY_get_base_id(k->pub) != want)) {
        errmsg_printf(errmsg, "auth: key type does not fit signature method %s", k->alg);
        goto err;
    }
    if (k->priv != NULL && k->pub != NULL && EVP_PKEY_eq(k->priv, k->pub) != 1) {
        errmsg_printf(errmsg, "auth: public and private keys don't match");
        goto err;
    }
    if (k->priv != NULL && k->pub == NULL) {
        k->pub = k->priv;
        EVP_PKEY_up_ref(k->pub);
    }
    *out = k;
    return 0;
err:
    jwt_key_free(k);
    return rv;
}

bool jwt_key_can_sign(const jwt_key *k)
{
    return k->family == JWT_HS || k->priv != NULL;
}

/* ---- signatures --------------------------------------------------------------- */

static int pad_ctx(const jwt_key *k, EVP_PKEY_CTX *pctx, bool signing)
{
    if (k->family != JWT_PS)
        return 1;
    /* jwt-go: salt length = hash length to sign, any to verify */
    return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, signing ? RSA_PSS_SALTLEN_DIGEST
                                                          : RSA_PSS_SALTLEN_AUTO) > 0;
}

/* The JWS signature of msg into a malloc'ed buffer. */
static int sign_bytes(const jwt_key *k, const char *msg, size_t n, uint8_t **sig, size_t *sig_len)
{
    if (k->family == JWT_HS) {
        unsigned int len = EVP_MAX_MD_SIZE;
        *sig = malloc(EVP_MAX_MD_SIZE);
        if (*sig == NULL)
            return LSKV_ENOMEM;
        if (HMAC(k->md, k->secret, (int)k->secret_len, (const uint8_t *)msg, n, *sig, &len) ==
            NULL) {
            free(*sig);
            return LSKV_EIO;
        }
        *sig_len = len;
        return 0;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    uint8_t *der = NULL;
    size_t der_len = 0;
    int rv = LSKV_EIO;
    if (ctx == NULL || EVP_DigestSignInit(ctx, &pctx, k->md, NULL, k->priv) != 1 ||
        !pad_ctx(k, pctx, true) ||
        EVP_DigestSign(ctx, NULL, &der_len, (const uint8_t *)msg, n) != 1 ||
        (der = malloc(der_len)) == NULL ||
        EVP_DigestSign(ctx, der, &der_len, (const uint8_t *)msg, n) != 1)
        goto out;
    if (k->family != JWT_ES) {
        *sig = der;
        *sig_len = der_len;
        der = NULL;
        rv = 0;
        goto out;
    }
    /* ECDSA: DER to JWS's fixed-size r || s */
    const uint8_t *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    uint8_t *raw = malloc(2 * k->es_half);
    if (es != NULL && raw != NULL &&
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)k->es_half) == (int)k->es_half &&
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + k->es_half, (int)k->es_half) ==
            (int)k->es_half) {
        *sig = raw;
        *sig_len = 2 * k->es_half;
        raw = NULL;
        rv = 0;
    }
    free(raw);
    ECDSA_SIG_free(es);
out:
    free(der);
    EVP_MD_CTX_free(ctx);
    return rv;
}

static bool verify_bytes(const jwt_key *k, const char *msg, size_t n, const uint8_t *sig,
                         size_t sig_len)
{
    if (k->family == JWT_HS) {
        uint8_t mac[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        if (HMAC(k->md, k->secret, (int)k->secret_len, (const uint8_t *)msg, n, mac, &len) ==
            NULL)
            return false;
        return len == sig_len && CRYPTO_memcmp(mac, sig, len) == 0;
    }
    uint8_t *der = NULL;
    int der_len = 0;
    if (k->family == JWT_ES) {
        if (sig_len != 2 * k->es_half)
            return false;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)k->es_half, NULL);
        BIGNUM *s = BN_bin2bn(sig + k->es_half, (int)k->es_half, NULL);
        if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return false;
        }
        der_len = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (der_len <= 0)
            return false;
        sig = der;
        sig_len = (size_t)der_len;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    bool ok = ctx != NULL && EVP_DigestVerifyInit(ctx, &pctx, k->md, NULL, k->pub) == 1 &&
              pad_ctx(k, pctx, false) &&
              EVP_DigestVerify(ctx, sig, sig_len, (const uint8_t *)msg, n) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return ok;
}

/* ---- tokens --------------------------------------------------------------------- */

static char *encode_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (s == NULL)
        return NULL;
    char *e = b64u_encode((const uint8_t *)s, strlen(s));
    free(s);
    return e;
}

int jwt_sign(const jwt_key *k, const char *username, uint64_t revision, int64_t exp, char **out)
{
    if (!jwt_key_can_sign(k))
        return LSKV_EINVAL; /* etcd's ErrVerifyOnly */
    char *h = encode_json(json_pack("{s:s,s:s}", "alg", k->alg, "typ", "JWT"));
    char *c = encode_json(json_pack("{s:I,s:I,s:s}", "exp", (json_int_t)exp, "revision",
                                    (json_int_t)revision, "username", username));
    int rv = LSKV_ENOMEM;
    char *msg = NULL, *s64 = NULL;
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    if (h == NULL || c == NULL || (msg = malloc(strlen(h) + strlen(c) + 2)) == NULL)
        goto out;
    sprintf(msg, "%s.%s", h, c);
    if ((rv = sign_bytes(k, msg, strlen(msg), &sig, &sig_len)) != 0)
        goto out;
    rv = LSKV_ENOMEM;
    if ((s64 = b64u_encode(sig, sig_len)) == NULL)
        goto out;
    if ((*out = malloc(strlen(msg) + strlen(s64) + 2)) == NULL)
        goto out;
    sprintf(*out, "%s.%s", msg, s64);
    rv = 0;
out:
    free(h);
    free(c);
    free(msg);
    free(s64);
    free(sig);
    return rv;
}

static json_t *decode_json(const char *p, size_t n)
{
    size_t len;
    uint8_t *raw = b64u_decode(p, n, &len);
    if (raw == NULL)
        return NULL;
    json_t *j = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

int jwt_verify(const jwt_key *k, const char *token, int64_t now, char *user, size_t cap,
               uint64_t *revision)
{
    const char *d1 = strchr(token, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (d2 == NULL || strchr(d2 + 1, '.') != NULL)
        return LSKV_EINVALIDTOKEN;
    int rv = LSKV_EINVALIDTOKEN;
    json_t *h = decode_json(token, (size_t)(d1 - token));
    json_t *c = decode_json(d1 + 1, (size_t)(d2 - d1 - 1));
    size_t sig_len = 0;
    uint8_t *sig = b64u_decode(d2 + 1, strlen(d2 + 1), &sig_len);
    const char *alg = h ? json_string_value(json_object_get(h, "alg")) : NULL;
    if (c == NULL || sig == NULL || alg == NULL || strcmp(alg, k->alg) != 0 ||
        !verify_bytes(k, token, (size_t)(d2 - token), sig, sig_len))
        goto out;
    /* jwt-go's MapClaims.Valid: exp, iat, nbf when present */
    json_t *exp = json_object_get(c, "exp"), *nbf = json_object_get(c, "nbf"),
           *iat = json_object_get(c, "iat");
    if ((exp && (!json_is_number(exp) || now > (int64_t)json_number_value(exp))) ||
        (nbf && (!json_is_number(nbf) || now < (int64_t)json_number_value(nbf))) ||
        (iat && (!json_is_number(iat) || now < (int64_t)json_number_value(iat))))
        goto out;
    const char *name = json_string_value(json_object_get(c, "username"));
    json_t *r = json_object_get(c, "revision");
    if (name == NULL || !json_is_number(r) || json_number_value(r) < 0 || strlen(name) >= cap)
        goto out;
    memcpy(user, name, strlen(name) + 1);
    *revision = (uint64_t)json_number_value(r);
    rv = 0;
out:
    json_decref(h);
    json_decref(c);
    free(sig);
    return rv;
}
