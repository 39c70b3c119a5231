#include "auth/tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/err.h"
#include "crypto/password.h"

struct token {
    char token[AUTH_TOKEN_MAX];
    char *user;
    char hash[PASSWORD_HASH_MAX]; /* the user's hash when made */
    uint64_t rev;                 /* auth revision when made */
    uint64_t expires_ms;
};

struct auth_tokens {
    uint64_t ttl_ms;
    uint64_t counter;
    struct token *v;
    size_t n, cap;
};

int auth_tokens_new(uint64_t ttl_ms, auth_tokens **out)
{
    auth_tokens *t = calloc(1, sizeof *t);
    if (t == NULL)
        return LSKV_ENOMEM;
    t->ttl_ms = ttl_ms;
    *out = t;
    return 0;
}

static void drop(auth_tokens *t, size_t i)
{
    free(t->v[i].user);
    explicit_bzero(&t->v[i], sizeof t->v[i]);
    t->v[i] = t->v[--t->n];
}

void auth_tokens_free(auth_tokens *t)
{
    if (t == NULL)
        return;
    while (t->n > 0)
        drop(t, t->n - 1);
    free(t->v);
    free(t);
}

size_t auth_tokens_count(const auth_tokens *t)
{
    return t->n;
}

/* Whether token i still stands for its user in as at now_ms. */
static bool alive(const struct token *k, const struct authstore *as, uint64_t now_ms)
{
    if (now_ms >= k->expires_ms || !as->enabled || k->rev < as->enabled_at)
        return false;
    const struct auth_user *u = authstore_user(as, k->user);
    return u != NULL && !u->no_password && strcmp(u->hash, k->hash) == 0;
}

static void sweep(auth_tokens *t, const struct authstore *as, uint64_t now_ms)
{
    for (size_t i = t->n; i-- > 0;)
        if (!alive(&t->v[i], as, now_ms))
            drop(t, i);
}

int auth_tokens_assign(auth_tokens *t, const struct authstore *as, const char *user,
                       uint64_t now_ms, char out[AUTH_TOKEN_MAX])
{
    const struct auth_user *u = authstore_user(as, user);
    if (u == NULL || u->no_password || strlen(u->hash) >= PASSWORD_HASH_MAX)
        return LSKV_EAUTHFAILED;
    sweep(t, as, now_ms);
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct token *v = realloc(t->v, cap * sizeof *v);
        if (v == NULL)
            return LSKV_ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    /* etcd's genTokenPrefix: 16 letters from a crypto source. */
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return LSKV_EIO;
    struct token *k = &t->v[t->n];
    memset(k, 0, sizeof *k);
    char prefix[17];
    for (size_t i = 0; i < 16; i++)
        prefix[i] = letters[rnd[i] % 52];
    prefix[16] = '\0';
    snprintf(k->token, sizeof k->token, "%s.%llu", prefix, (unsigned long long)++t->counter);
    if ((k->user = strdup(user)) == NULL)
        return LSKV_ENOMEM;
    memcpy(k->hash, u->hash, strlen(u->hash) + 1);
    k->rev = as->revision;
    k->expires_ms = now_ms + t->ttl_ms;
    t->n++;
    memcpy(out, k->token, sizeof k->token);
    return 0;
}

int auth_tokens_lookup(auth_tokens *t, const struct authstore *as, const char *token,
                       uint64_t now_ms, const char **user)
{
    for (size_t i = 0; i < t->n; i++) {
        struct token *k = &t->v[i];
        if (strcmp(k->token, token) != 0)
            continue;
        if (!alive(k, as, now_ms)) {
            drop(t, i);
            return LSKV_EINVALIDTOKEN;
        }
        k->expires_ms = now_ms + t->ttl_ms; /* etcd's resetSimpleToken */
        *user = k->user;
        return 0;
    }
    return LSKV_EINVALIDTOKEN;
}
