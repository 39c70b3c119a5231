/* etcd's JWT auth tokens (auth/jwt.go with jwt-go): a compact JWS whose
 * header is {"alg":M,"typ":"JWT"} and whose claims are {"exp":unix
 * seconds,"revision":auth revision,"username":name}, signed with one of
 * RS256/384/512, PS256/384/512, ES256/384/512 or HS256/384/512 (OpenSSL).
 *
 * Keys come from PEM files as etcd's options say (a public key may also be
 * given as a certificate, as jwt-go takes it): a private key signs and
 * verifies; a public key alone only verifies (a member that cannot hand out
 * tokens but checks them); HS* take the private key file's bytes as the
 * secret. Any member with the key verifies any member's token (unlike
 * simple tokens). */
#ifndef LSKV_CRYPTO_JWT_H
#define LSKV_CRYPTO_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct jwt_key jwt_key;

/* Loads the key for method from the PEM files (either may be NULL).
 * Errors, with etcd's texts in errmsg: LSKV_EINVAL ("auth: invalid auth
 * signature method", "auth: missing key data", "auth: public and private
 * keys don't match", or a file that does not read or parse), LSKV_ENOMEM. */
int jwt_key_load(const char *method, const char *pub_file, const char *priv_file,
                 jwt_key **out, char *errmsg);
void jwt_key_free(jwt_key *k);
/* Whether k can sign (it holds a private key or a secret). */
bool jwt_key_can_sign(const jwt_key *k);

/* A token for username at revision expiring at exp (unix seconds), as a
 * malloc'ed string. Errors: LSKV_EINVAL (verify-only key), LSKV_EIO
 * (OpenSSL), LSKV_ENOMEM. */
int jwt_sign(const jwt_key *k, const char *username, uint64_t revision, int64_t exp,
             char **out);

/* Checks token's form, algorithm, signature and expiry at now (unix
 * seconds); the username (into user, NUL-terminated) and revision claims.
 * Errors: LSKV_EINVALIDTOKEN. */
int jwt_verify(const jwt_key *k, const char *token, int64_t now, char *user, size_t cap,
               uint64_t *revision);

#endif
