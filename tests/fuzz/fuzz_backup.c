/* Fuzzes the backup reader (statemachine/backup.h, docs/backup-format.md),
 * which `lskvctl snapshot restore` runs on a file the operator hands it:
 * any bytes must give 0, LSKV_ECORRUPT or LSKV_EFORMAT without crashing or
 * reading out of bounds. The key is fixed (0x11 x 32). The first input byte
 * picks the mode:
 *   0: the rest is the file (trailer, header, framing, seals, padding);
 *   1: the rest is u16 split | plaintext items: the harness seals them as
 *      two frames (the second the last) of an otherwise valid file, so that
 *      mutations reach the items, the state machine snapshot and the index
 *      walk behind the seal.
 * tests/unit/test_backup.c writes the seeds of both modes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "crypto/aead.h"
#include "crypto/hash.h"
#include "crypto/keyring.h"
#include "crypto/mac.h"
#include "statemachine/backup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_record(void *arg, int64_t main, int64_t sub, const struct kv_record *rec)
{
    (void)arg;
    (void)main;
    (void)sub;
    volatile uint8_t x = 0; /* touch every byte handed over */
    for (size_t i = 0; i < rec->key_len; i++)
        x ^= rec->key[i];
    for (size_t i = 0; i < rec->value_len; i++)
        x ^= rec->value[i];
    (void)x;
    return 0;
}

/* Appends frame i (plain, flags) sealed as backup.c seals it. */
static size_t seal(uint8_t *out, const uint8_t *header, const uint8_t *fkey, uint64_t i,
                   uint8_t flags, const uint8_t *plain, size_t len)
{
    uint8_t nonce[AEAD_NONCE_BYTES] = {0}, aad[BACKUP_HEADER_BYTES + 9];
    put_u64be(nonce + 4, i);
    memcpy(aad, header, BACKUP_HEADER_BYTES);
    put_u64be(aad + BACKUP_HEADER_BYTES, i);
    aad[BACKUP_HEADER_BYTES + 8] = flags;
    out[0] = flags;
    put_u32be(out + 1, (uint32_t)(len + AEAD_OVERHEAD));
    if (aead_seal_with_nonce(fkey, nonce, aad, sizeof aad, plain, len, out + 5) != 0)
        abort();
    return 5 + len + AEAD_OVERHEAD;
}

static uint8_t *seal_items(const uint8_t *data, size_t size, const uint8_t *key, size_t *len)
{
    if (size < 2)
        return NULL;
    size_t split = get_u32be((const uint8_t[]){0, 0, data[0], data[1]});
    data += 2;
    size -= 2;
    if (split > size)
        split = size;
    uint8_t header[BACKUP_HEADER_BYTES] = {'L', 'S', 'K', 'V', 'B', 'K', 'U', 'P', 0, 0, 0, 1};
    put_u64be(header + 16, 0x1234);
    put_u64be(header + 24, 0x5678);
    header[32] = 7; /* salt 07 00 .. 00 */
    uint8_t k[AEAD_KEY_BYTES], fkey[AEAD_KEY_BYTES];
    uint8_t msg[14 + BACKUP_SALT_BYTES];
    memcpy(msg, "lskv-backup-v1", 14);
    memcpy(msg + 14, header + 32, BACKUP_SALT_BYTES);
    if (keyring_derive(key, "backup", 0, k) != 0 || mac_hmac_sha256(k, 32, msg, sizeof msg, fkey))
        abort();
    size_t cap = BACKUP_HEADER_BYTES + 2 * (5 + AEAD_OVERHEAD) + size + BACKUP_ALIGN + 32;
    uint8_t *out = calloc(1, cap);
    if (out == NULL)
        abort();
    memcpy(out, header, sizeof header);
    size_t n = sizeof header;
    n += seal(out + n, header, fkey, 0, 0, data, split);
    n += seal(out + n, header, fkey, 1, 1, data + split, size - split);
    n = (n + BACKUP_ALIGN - 1) / BACKUP_ALIGN * BACKUP_ALIGN; /* zero padding */
    hash_sha256(out, n, out + n);
    *len = n + 32;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t key[BACKUP_KEY_BYTES];
    memset(key, 0x11, sizeof key);
    if (size < 1 || data[0] > 1)
        return 0;
    uint8_t *sealed = NULL;
    if (data[0] == 1) {
        sealed = seal_items(data + 1, size - 1, key, &size);
        if (sealed == NULL)
            return 0;
        data = sealed;
    } else {
        data++;
        size--;
    }
    FILE *f = fmemopen((void *)data, size ? size : 1, "rb");
    if (f == NULL) {
        free(sealed);
        return 0;
    }
    struct backup_visitor v = {.record = on_record};
    struct backup_summary sum;
    char errmsg[LSKV_ERRMSG_SIZE];
    int rv = backup_read(f, size, key, &v, &sum, errmsg);
    fclose(f);
    free(sealed);
    if (rv != 0 && rv != LSKV_ECORRUPT && rv != LSKV_EFORMAT)
        abort();
    return 0;
}
