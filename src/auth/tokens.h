/* etcd's simple tokens (auth/simple_token.go): what Authenticate hands a
 * client, held by this member only, in memory.
 *
 * A token is 16 random letters, '.', a counter ("XkFjbAkFmTLzsYNK.22", as
 * etcd's shape). It names a user and lives ttl_ms after its last use
 * (etcd's --auth-token-ttl, default 300 s, reset by each use). A token
 * dies with its user, with a password change (it remembers the hash it was
 * made under), and with an AuthDisable (it remembers the auth revision it
 * was made at; see authstore.h: disable moves the revision and enable does
 * not, so auth_tokens_lookup compares with the revision of the last enable
 * it saw). Not replicated: a token works on the member that made it. */
#ifndef LSKV_AUTH_TOKENS_H
#define LSKV_AUTH_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "auth/authstore.h"

#define AUTH_TOKEN_MAX 64

typedef struct auth_tokens auth_tokens;

/* Errors: LSKV_ENOMEM. */
int auth_tokens_new(uint64_t ttl_ms, auth_tokens **out);
void auth_tokens_free(auth_tokens *t);

/* A new token for user (who must exist in as, with a password) at now_ms
 * into out. Errors: LSKV_EAUTHFAILED (no such user), LSKV_EIO (no
 * randomness), LSKV_ENOMEM. */
int auth_tokens_assign(auth_tokens *t, const struct authstore *as, const char *user,
                       uint64_t now_ms, char out[AUTH_TOKEN_MAX]);

/* The user of token at now_ms (borrowed: valid until the next call on t),
 * renewing its life; LSKV_EINVALIDTOKEN when unknown, expired, or no longer
 * valid for as (auth disabled, user gone, password changed). */
int auth_tokens_lookup(auth_tokens *t, const struct authstore *as, const char *token,
                       uint64_t now_ms, const char **user);

/* Tokens held now (for tests and /metrics). */
size_t auth_tokens_count(const auth_tokens *t);

#endif
