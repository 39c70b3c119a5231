/* Password hashes for the auth store: bcrypt ("$2b$") through libcrypt
 * (crypt_gensalt_rn, crypt_rn), etcd's algorithm and its default cost.
 *
 * A password lives only in the request that carries it: the proposing
 * member hashes it here before the command is built, so the raft log, the
 * ledger and the snapshot hold the hash alone (auth/authstore.h). Hashing
 * costs tens of milliseconds on purpose: callers run it off the event loop. */
#ifndef LSKV_CRYPTO_PASSWORD_H
#define LSKV_CRYPTO_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWORD_HASH_MAX 128   /* a "$2b$10$..." hash is 60 bytes */
#define PASSWORD_DEFAULT_COST 10 /* etcd's --bcrypt-cost default */

/* A new salted bcrypt hash of password with 2^cost rounds (4..31) into
 * out, NUL-terminated. Errors: LSKV_EINVAL (cost out of range), LSKV_EIO
 * (no randomness or libcrypt refused). */
int password_hash(const char *password, unsigned cost, char out[PASSWORD_HASH_MAX]);

/* Whether password matches hash (a bcrypt hash from password_hash or
 * etcd's "$2a$"); false for an empty or malformed hash. The comparison
 * takes the same time wherever the outputs differ. */
bool password_verify(const char *password, const char *hash);

#endif
