/* See keys.h. */
#include "ledger/keys.h"

#include <openssl/crypto.h>
#include <string.h>

#include "common/bytes.h"

/* One-off HMAC-SHA256 through crypto/hash.h (no provider fetch). */
static void hmac(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t len,
                 uint8_t out[32])
{
    struct hash_hmac h;
    hash_hmac_init(&h, key, key_len);
    hash_hmac(&h, msg, len, out);
    hash_hmac_wipe(&h);
}

void ledger_private_key(const uint8_t secret[LEDGER_SECRET_BYTES], uint8_t out[32])
{
    static const char label[] = "lskv-ledger-private-v1";
    hmac(secret, LEDGER_SECRET_BYTES, (const uint8_t *)label, sizeof label - 1, out);
}

void keys_ce_init(struct hash_hmac *k, const uint8_t secret[LEDGER_SECRET_BYTES])
{
    static const char label[] = "lskv-ledger-commit-evidence-v1";
    uint8_t kce[32];
    hmac(secret, LEDGER_SECRET_BYTES, (const uint8_t *)label, sizeof label - 1, kce);
    hash_hmac_init(k, kce, sizeof kce);
    OPENSSL_cleanse(kce, sizeof kce);
}

/* Decimal of v at out; returns the digits written (no NUL). */
static size_t put_dec(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* Formatted by hand: it runs for every entry at start-up and on append,
 * where snprintf was a tenth of the verification time. */
void keys_ce_format(const struct hash_hmac *k, uint64_t term, uint64_t index,
                    char out[LEDGER_CE_MAX])
{
    uint8_t msg[10 + 16], h[32];
    memcpy(msg, "lskv-ce-v1", 10);
    put_u64be(msg + 10, term);
    put_u64be(msg + 18, index);
    hash_hmac(k, msg, sizeof msg, h);
    static const char digits[] = "0123456789abcdef";
    size_t n = 0;
    memcpy(out, "ce:", 3);
    n = 3;
    n += put_dec(out + n, term);
    out[n++] = '.';
    n += put_dec(out + n, index);
    out[n++] = ':';
    for (size_t i = 0; i < sizeof h; i++) { /* 3 + 2*20 + 2 + 64 + 1 <= LEDGER_CE_MAX */
        out[n++] = digits[h[i] >> 4];
        out[n++] = digits[h[i] & 15];
    }
    out[n] = '\0';
}

void keys_ce_digest(const struct hash_hmac *k, uint64_t term, uint64_t index,
                    uint8_t out[HASH_BYTES])
{
    char ce[LEDGER_CE_MAX];
    keys_ce_format(k, term, index, ce);
    hash_sha256(ce, strlen(ce), out);
}

void ledger_commit_evidence(const uint8_t secret[LEDGER_SECRET_BYTES], uint64_t term,
                            uint64_t index, char out[LEDGER_CE_MAX])
{
    struct hash_hmac k;
    keys_ce_init(&k, secret);
    keys_ce_format(&k, term, index, out);
    hash_hmac_wipe(&k);
}

void ledger_nonce(uint64_t term, uint64_t index, uint8_t out[12])
{
    put_u64be(out, index);
    put_u32be(out + 8, (uint32_t)term);
}
