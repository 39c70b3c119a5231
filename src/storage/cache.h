/* A bounded LRU cache of verified, decrypted record bodies, keyed by record
 * id (main, sub). It lives in trusted memory: a hit is served without touching
 * the engine. The bound counts body bytes plus a fixed per-entry overhead
 * (CACHE_ENTRY_OVERHEAD); evicted and removed bodies are wiped before their
 * memory is freed. Not thread safe. */
#ifndef LSKV_STORAGE_CACHE_H
#define LSKV_STORAGE_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cache cache;

/* Bytes charged per entry on top of its body (bookkeeping, allocator slack). */
#define CACHE_ENTRY_OVERHEAD 96

/* Creates a cache holding at most max_bytes. max_bytes 0 makes a cache that
 * stores nothing. Errors: LSKV_ENOMEM. */
int cache_open(size_t max_bytes, cache **out);
/* Wipes and frees every entry. NULL is a no-op. */
void cache_close(cache *c);

/* Returns the body cached for (main, sub) and marks it most recently used,
 * or NULL. The pointer is borrowed: valid only until the next cache_put,
 * cache_remove or cache_close. */
const uint8_t *cache_get(cache *c, int64_t main, int64_t sub, size_t *len);
/* Copies body in as the entry for (main, sub), replacing any old one, then
 * evicts least recently used entries until the bound holds. A body too large
 * to ever fit is not cached (returns 0). Errors: LSKV_ENOMEM (nothing changed
 * but the old entry, if any, is gone). */
int cache_put(cache *c, int64_t main, int64_t sub, const uint8_t *body, size_t len);
/* Drops the entry for (main, sub) if present. */
void cache_remove(cache *c, int64_t main, int64_t sub);

/* Bytes charged now (never more than max_bytes), and the entry count. */
size_t cache_bytes(const cache *c);
size_t cache_count(const cache *c);

#endif
