/* Bump allocator for one request's short-lived memory: decoded records,
 * response messages. Everything is freed at once by arena_reset/arena_close.
 * Its ProtobufCAllocator lets protobuf-c unpack into the arena. */
#ifndef LSKV_COMMON_ARENA_H
#define LSKV_COMMON_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

struct arena_block;

struct arena {
    struct arena_block *head; /* newest block first */
    ProtobufCAllocator pb;    /* allocator view for protobuf-c; free is a no-op */
};

void arena_init(struct arena *a);
/* Frees every block. The arena may be reused after arena_init. */
void arena_close(struct arena *a);
/* Returns 16-byte aligned memory valid until arena_close, or NULL on ENOMEM. */
void *arena_alloc(struct arena *a, size_t size);
/* Zeroed arena_alloc. */
void *arena_calloc(struct arena *a, size_t n, size_t size);
/* Copies len bytes (len may be 0: returns a valid non-NULL pointer). */
void *arena_memdup(struct arena *a, const void *p, size_t len);
/* The first n bytes of s as a NUL-terminated string. */
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* Lower-case hex of n bytes, NUL-terminated. */
char *arena_hex(struct arena *a, const uint8_t *in, size_t n);

#endif
