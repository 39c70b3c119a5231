/* 64-bit hashing for the in-memory hash tables (key index, value cache,
 * leases): splitmix64's finaliser, and a byte-string hash built on it.
 * Not for anything an adversary must not collide: tables that hold client
 * keys take a random seed and bound their probes. */
#ifndef LSKV_COMMON_HASH64_H
#define LSKV_COMMON_HASH64_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Eight bytes at a time through mix64, the length folded into the start. */
static inline uint64_t hash_bytes64(uint64_t seed, const uint8_t *p, size_t len)
{
    uint64_t h = seed ^ 0x9e3779b97f4a7c15ULL ^ (uint64_t)len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = mix64(h ^ w);
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, p + i, len - i);
        h = mix64(h ^ w ^ 0x5555555555555555ULL);
    }
    return h;
}

#endif
