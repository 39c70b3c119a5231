/* Fuzzes the JWT token parser (crypto/jwt.c jwt_verify) with client bytes:
 * never a crash or an overread; anything but a token this key signed is
 * LSKV_EINVALIDTOKEN. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "crypto/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static jwt_key *key(void)
{
    static jwt_key *k;
    if (k == NULL) {
        char path[] = "/tmp/lskv-fuzz-jwt-XXXXXX";
        int fd = mkstemp(path);
        if (fd < 0 || write(fd, "fuzz secret", 11) != 11)
            abort();
        close(fd);
        char errmsg[LSKV_ERRMSG_SIZE];
        if (jwt_key_load("HS256", NULL, path, &k, errmsg) != 0)
            abort();
        unlink(path);
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *token = malloc(size + 1);
    if (token == NULL)
        return 0;
    memcpy(token, data, size);
    token[size] = '\0';
    char user[64];
    uint64_t rev;
    int rv = jwt_verify(key(), token, 0, user, sizeof user, &rev);
    if (rv != 0 && rv != LSKV_EINVALIDTOKEN)
        abort();
    free(token);
    return 0;
}
