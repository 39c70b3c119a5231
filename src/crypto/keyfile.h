/* Secrets at rest in virtual mode: raw key bytes in a 0600 file. (With a TEE
 * this is where the platform's sealing key would wrap them.) */
#ifndef LSKV_CRYPTO_KEYFILE_H
#define LSKV_CRYPTO_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Loads exactly len bytes from path; if the file does not exist and create
 * is true, makes len random bytes and writes them durably (0600, fsync of the
 * file and its directory) first. *created tells which happened (may be NULL).
 * errmsg (LSKV_ERRMSG_SIZE) describes a failure.
 * Errors: negated errno, LSKV_ECORRUPT (wrong size or mode looser than 0600),
 * LSKV_EIO (no randomness). */
int keyfile_load_or_create(const char *path, uint8_t *key, size_t len, bool create,
                           bool *created, char *errmsg);

/* Writes len random bytes to out. Errors: LSKV_EIO. */
int crypto_random(uint8_t *out, size_t len);

#endif
