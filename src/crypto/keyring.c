#include "crypto/keyring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "crypto/mac.h"

#define CACHE_SLOTS 8   /* the current epoch plus readers of a few old ones */
#define PURPOSE_MAX 32
#define COUNTED_EPOCHS 64 /* seal counters kept for the newest epochs */

struct slot {
    aead_key *key;
    uint32_t epoch;
    uint64_t used; /* LRU clock */
};

struct seal_count {
    uint32_t epoch;
    uint64_t n;
};

struct keyring {
    uint8_t master[AEAD_KEY_BYTES];
    char purpose[PURPOSE_MAX];
    uint64_t epoch_size;
    struct slot slots[CACHE_SLOTS];
    uint64_t clock;
    struct seal_count counts[COUNTED_EPOCHS]; /* ring, by epoch % COUNTED_EPOCHS */
    uint32_t last_epoch;
    uint32_t epochs_used;
};

int keyring_derive(const uint8_t master[AEAD_KEY_BYTES], const char *purpose, uint32_t epoch,
                   uint8_t out[AEAD_KEY_BYTES])
{
    static const char label[] = "lskv-data-key-v1";
    uint8_t msg[sizeof label - 1 + PURPOSE_MAX + 1 + 4];
    size_t p = strnlen(purpose, PURPOSE_MAX - 1);
    size_t n = 0;
    memcpy(msg, label, sizeof label - 1);
    n += sizeof label - 1;
    memcpy(msg + n, purpose, p);
    n += p;
    msg[n++] = 0;
    msg[n++] = (uint8_t)(epoch >> 24);
    msg[n++] = (uint8_t)(epoch >> 16);
    msg[n++] = (uint8_t)(epoch >> 8);
    msg[n++] = (uint8_t)epoch;
    return mac_hmac_sha256(master, AEAD_KEY_BYTES, msg, n, out);
}

int keyring_new(const uint8_t master[AEAD_KEY_BYTES], const char *purpose, uint64_t epoch_size,
                keyring **out)
{
    if (epoch_size == 0 || purpose == NULL || strlen(purpose) >= PURPOSE_MAX)
        return LSKV_EINVAL;
    keyring *k = calloc(1, sizeof *k);
    if (k == NULL)
        return LSKV_ENOMEM;
    memcpy(k->master, master, AEAD_KEY_BYTES);
    snprintf(k->purpose, sizeof k->purpose, "%s", purpose);
    k->epoch_size = epoch_size;
    *out = k;
    return 0;
}

void keyring_free(keyring *k)
{
    if (k == NULL)
        return;
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        aead_key_free(k->slots[i].key);
    explicit_bzero(k, sizeof *k);
    free(k);
}

uint32_t keyring_epoch_of(const keyring *k, uint64_t position)
{
    uint64_t e = position / k->epoch_size;
    return e > UINT32_MAX ? UINT32_MAX : (uint32_t)e;
}

int keyring_key(keyring *k, uint32_t epoch, aead_key **out)
{
    struct slot *lru = &k->slots[0];
    k->clock++;
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        struct slot *s = &k->slots[i];
        if (s->key != NULL && s->epoch == epoch) {
            s->used = k->clock;
            *out = s->key;
            return 0;
        }
        if (s->key == NULL || s->used < lru->used)
            lru = s;
    }
    uint8_t key[AEAD_KEY_BYTES];
    aead_key *ctx = NULL;
    int rv = keyring_derive(k->master, k->purpose, epoch, key);
    if (rv == 0)
        rv = aead_key_new(key, &ctx);
    explicit_bzero(key, sizeof key);
    if (rv != 0)
        return rv;
    aead_key_free(lru->key);
    *lru = (struct slot){.key = ctx, .epoch = epoch, .used = k->clock};
    *out = ctx;
    return 0;
}

int keyring_count_seal(keyring *k, uint32_t epoch)
{
    struct seal_count *c = &k->counts[epoch % COUNTED_EPOCHS];
    if (c->epoch != epoch || c->n == 0) {
        *c = (struct seal_count){.epoch = epoch, .n = 0};
        k->epochs_used++;
    }
    if (c->n >= KEYRING_SEAL_BUDGET)
        return LSKV_EIO;
    c->n++;
    if (epoch > k->last_epoch)
        k->last_epoch = epoch;
    return 0;
}

uint64_t keyring_seals(const keyring *k, uint32_t epoch)
{
    const struct seal_count *c = &k->counts[epoch % COUNTED_EPOCHS];
    return c->epoch == epoch ? c->n : 0;
}

uint32_t keyring_last_epoch(const keyring *k)
{
    return k->last_epoch;
}

uint32_t keyring_epochs_used(const keyring *k)
{
    return k->epochs_used;
}
