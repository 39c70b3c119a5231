/* Tests for crypto/jwt.c: etcd's JWT auth tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "crypto/jwt.h"
#include "runner.h"

/* A test-only P-256 key pair (made with openssl ecparam for this test). */
static const char EC_KEY[] =
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIA9X586acqXEnJLQZ6QpgnBymiweR9h+ewaH+uFUwavCoAoGCCqGSM49\n"
    "AwEHoUQDQgAEGSLc6un6uNSbI9ig/8tV2x/Mq4RfGwucMFHFRZSZYq4k+I8OXPL2\n"
    "h1Y8nuXW0phhGJ7sYMzkbuLc+f/4jkWy0Q==\n"
    "-----END EC PRIVATE KEY-----\n";
static const char EC_PUB[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEGSLc6un6uNSbI9ig/8tV2x/Mq4Rf\n"
    "GwucMFHFRZSZYq4k+I8OXPL2h1Y8nuXW0phhGJ7sYMzkbuLc+f/4jkWy0Q==\n"
    "-----END PUBLIC KEY-----\n";

static const char *write_file(const char *name, const char *text)
{
    static char path[8][4096];
    static int i;
    char *p = path[i++ % 8];
    snprintf(p, 4096, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(p, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
    return p;
}

TEST(jwt, es256_sign_verify_tamper_expire)
{
    char errmsg[LSKV_ERRMSG_SIZE];
    const char *priv = write_file("es.key", EC_KEY), *pub = write_file("es.pub", EC_PUB);
    jwt_key *k, *v;
    ASSERT_EQ(jwt_key_load("ES256", pub, priv, &k, errmsg), 0);
    ASSERT_EQ(jwt_key_load("ES256", pub, NULL, &v, errmsg), 0);
    ASSERT(jwt_key_can_sign(k) && !jwt_key_can_sign(v));
    char *t;
    ASSERT_EQ(jwt_sign(k, "alice", 7, 1000, &t), 0);
    /* etcd's header and claims, base64url without padding */
    ASSERT(strncmp(t, "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.", 37) == 0);
    char user[64];
    uint64_t rev = 0;
    ASSERT_EQ(jwt_verify(v, t, 999, user, sizeof user, &rev), 0); /* the public key checks */
    ASSERT_STR_EQ(user, "alice");
    ASSERT_EQ(rev, 7u);
    ASSERT_EQ(jwt_verify(v, t, 1001, user, sizeof user, &rev), LSKV_EINVALIDTOKEN); /* expired */
    t[40] = t[40] == 'A' ? 'B' : 'A'; /* a changed claim */
    ASSERT_EQ(jwt_verify(v, t, 999, user, sizeof user, &rev), LSKV_EINVALIDTOKEN);
    ASSERT_EQ(jwt_verify(v, "a.b", 999, user, sizeof user, &rev), LSKV_EINVALIDTOKEN);
    ASSERT_EQ(jwt_verify(v, "", 999, user, sizeof user, &rev), LSKV_EINVALIDTOKEN);
    char *none;
    ASSERT_EQ(jwt_sign(v, "alice", 7, 1000, &none), LSKV_EINVAL); /* verify-only */
    free(t);
    jwt_key_free(k);
    jwt_key_free(v);
}

TEST(jwt, hs256_and_alg_confusion)
{
    char errmsg[LSKV_ERRMSG_SIZE];
    const char *secret = write_file("hs", "a shared secret");
    const char *pub = write_file("es2.pub", EC_PUB);
    jwt_key *hs, *es, *hs384;
    ASSERT_EQ(jwt_key_load("HS256", NULL, secret, &hs, errmsg), 0);
    ASSERT_EQ(jwt_key_load("HS384", NULL, secret, &hs384, errmsg), 0);
    ASSERT_EQ(jwt_key_load("ES256", pub, NULL, &es, errmsg), 0);
    char *t;
    ASSERT_EQ(jwt_sign(hs, "bob", 3, 50, &t), 0);
    char user[8];
    uint64_t rev;
    ASSERT_EQ(jwt_verify(hs, t, 10, user, sizeof user, &rev), 0);
    ASSERT_STR_EQ(user, "bob");
    ASSERT_EQ(jwt_verify(es, t, 10, user, sizeof user, &rev), LSKV_EINVALIDTOKEN); /* alg */
    ASSERT_EQ(jwt_verify(hs384, t, 10, user, sizeof user, &rev), LSKV_EINVALIDTOKEN);
    free(t);
    ASSERT_EQ(jwt_sign(hs, "a-name-too-long", 3, 50, &t), 0);
    ASSERT_EQ(jwt_verify(hs, t, 10, user, sizeof user, &rev), LSKV_EINVALIDTOKEN);
    free(t);
    jwt_key_free(hs);
    jwt_key_free(hs384);
    jwt_key_free(es);
    /* etcd's option errors */
    jwt_key *x;
    ASSERT_EQ(jwt_key_load("XS256", NULL, secret, &x, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "auth: invalid auth signature method") != NULL);
    ASSERT_EQ(jwt_key_load("ES256", NULL, NULL, &x, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "auth: missing key data") != NULL);
    ASSERT_EQ(jwt_key_load("RS256", pub, NULL, &x, errmsg), LSKV_EINVAL); /* an EC key */
}
