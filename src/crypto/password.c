#include "crypto/password.h"

#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

int password_hash(const char *password, unsigned cost, char out[PASSWORD_HASH_MAX])
{
    if (cost < 4 || cost > 31)
        return LSKV_EINVAL;
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    /* NULL random bytes: libcrypt reads them from the OS. */
    if (crypt_gensalt_rn("$2b$", cost, NULL, 0, setting, sizeof setting) == NULL)
        return LSKV_EIO;
    struct crypt_data *cd = calloc(1, sizeof *cd); /* ~32 KiB: not on the stack */
    if (cd == NULL)
        return LSKV_ENOMEM;
    int rv = LSKV_EIO;
    const char *h = crypt_rn(password, setting, cd, sizeof *cd);
    if (h != NULL && h[0] == '$' && strlen(h) < PASSWORD_HASH_MAX) {
        memcpy(out, h, strlen(h) + 1);
        rv = 0;
    }
    explicit_bzero(cd, sizeof *cd);
    free(cd);
    return rv;
}

bool password_verify(const char *password, const char *hash)
{
    if (hash == NULL || strncmp(hash, "$2", 2) != 0)
        return false;
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (cd == NULL)
        return false;
    const char *h = crypt_rn(password, hash, cd, sizeof *cd);
    bool ok = false;
    size_t n = strlen(hash);
    if (h != NULL && h[0] == '$' && strlen(h) == n) {
        unsigned char diff = 0;
        for (size_t i = 0; i < n; i++)
            diff |= (unsigned char)(h[i] ^ hash[i]);
        ok = diff == 0;
    }
    explicit_bzero(cd, sizeof *cd);
    free(cd);
    return ok;
}
