/* Bounded LRU of decrypted record bodies.
 *
 * A chained hash table (power-of-two buckets, grown at load 1) finds entries;
 * an intrusive doubly linked list orders them from most to least recently
 * used. Each entry is one allocation: header and body together. */
#include "storage/cache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/hash64.h"

struct cache_entry {
    struct cache_entry *hnext; /* bucket chain */
    struct cache_entry *prev;  /* towards most recently used */
    struct cache_entry *next;  /* towards least recently used */
    int64_t main;
    int64_t sub;
    size_t len;
    uint8_t body[];
};

struct cache {
    size_t max_bytes;
    size_t bytes;
    size_t count;
    struct cache_entry **buckets;
    size_t nbuckets; /* power of two */
    struct cache_entry *head; /* most recently used */
    struct cache_entry *tail; /* least recently used */
};

enum { INITIAL_BUCKETS = 64 };

static uint64_t mix(int64_t main, int64_t sub)
{
    return mix64((uint64_t)main * 0x9e3779b97f4a7c15ULL ^ (uint64_t)sub);
}

static size_t charge(size_t len)
{
    return CACHE_ENTRY_OVERHEAD + len;
}

int cache_open(size_t max_bytes, cache **out)
{
    cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return LSKV_ENOMEM;
    c->max_bytes = max_bytes;
    *out = c;
    return 0;
}

static void unlink_lru(cache *c, struct cache_entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(cache *c, struct cache_entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head != NULL)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
}

static void free_entry(struct cache_entry *e)
{
    explicit_bzero(e->body, e->len);
    free(e);
}

/* Unlinks e from its bucket chain, the LRU list and the accounting. */
static void drop(cache *c, struct cache_entry *e)
{
    struct cache_entry **pp = &c->buckets[mix(e->main, e->sub) & (c->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    unlink_lru(c, e);
    c->bytes -= charge(e->len);
    c->count--;
    free_entry(e);
}

void cache_close(cache *c)
{
    if (c == NULL)
        return;
    struct cache_entry *e = c->head;
    while (e != NULL) {
        struct cache_entry *next = e->next;
        free_entry(e);
        e = next;
    }
    free(c->buckets);
    free(c);
}

static struct cache_entry *find(const cache *c, int64_t main, int64_t sub)
{
    if (c->nbuckets == 0)
        return NULL;
    struct cache_entry *e = c->buckets[mix(main, sub) & (c->nbuckets - 1)];
    while (e != NULL && (e->main != main || e->sub != sub))
        e = e->hnext;
    return e;
}

const uint8_t *cache_get(cache *c, int64_t main, int64_t sub, size_t *len)
{
    struct cache_entry *e = find(c, main, sub);
    if (e == NULL)
        return NULL;
    if (c->head != e) {
        unlink_lru(c, e);
        push_front(c, e);
    }
    *len = e->len;
    return e->body;
}

void cache_remove(cache *c, int64_t main, int64_t sub)
{
    struct cache_entry *e = find(c, main, sub);
    if (e != NULL)
        drop(c, e);
}

static int grow(cache *c)
{
    size_t n = c->nbuckets ? c->nbuckets * 2 : INITIAL_BUCKETS;
    struct cache_entry **b = calloc(n, sizeof *b);
    if (b == NULL)
        return LSKV_ENOMEM;
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct cache_entry *e = c->buckets[i];
        while (e != NULL) {
            struct cache_entry *next = e->hnext;
            size_t h = mix(e->main, e->sub) & (n - 1);
            e->hnext = b[h];
            b[h] = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
    return 0;
}

int cache_put(cache *c, int64_t main, int64_t sub, const uint8_t *body, size_t len)
{
    cache_remove(c, main, sub);
    if (len > c->max_bytes || charge(len) > c->max_bytes)
        return 0;
    if (c->count + 1 > c->nbuckets && grow(c) != 0 && c->nbuckets == 0)
        return LSKV_ENOMEM;
    struct cache_entry *e = malloc(sizeof *e + len);
    if (e == NULL)
        return LSKV_ENOMEM;
    e->main = main;
    e->sub = sub;
    e->len = len;
    if (len > 0)
        memcpy(e->body, body, len);
    size_t h = mix(main, sub) & (c->nbuckets - 1);
    e->hnext = c->buckets[h];
    c->buckets[h] = e;
    push_front(c, e);
    c->bytes += charge(len);
    c->count++;
    while (c->bytes > c->max_bytes)
        drop(c, c->tail);
    return 0;
}

size_t cache_bytes(const cache *c)
{
    return c->bytes;
}

size_t cache_count(const cache *c)
{
    return c->count;
}
