/* The storage engine seam: an untrusted ordered byte store. It only ever sees
 * sealed records. LevelDB is the real one (engine_leveldb.c); tests supply a
 * tampering one with the same type.
 *
 * Return contract for every function: 0 on success; LSKV_ENOTFOUND from get
 * when the id is absent; LSKV_ECORRUPT from get when the engine's own
 * integrity checks fail; LSKV_EIO for any other engine failure. errmsg
 * (LSKV_ERRMSG_SIZE) is set on every failure but LSKV_ENOTFOUND. Engines are
 * not thread safe unless they say so. */
#ifndef LSKV_STORAGE_ENGINE_H
#define LSKV_STORAGE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct engine_batch;

struct engine {
    void *impl;
    /* Value returned in *val is malloc'ed; the caller frees it. */
    int (*get)(struct engine *e, const uint8_t *id, size_t id_len, uint8_t **val,
               size_t *val_len, char *errmsg);
    /* Returns NULL on out of memory. */
    struct engine_batch *(*batch_new)(struct engine *e);
    void (*batch_put)(struct engine_batch *b, const uint8_t *id, size_t id_len,
                      const uint8_t *val, size_t val_len);
    void (*batch_delete)(struct engine_batch *b, const uint8_t *id, size_t id_len);
    /* Writes and frees the batch; sync=true makes it and all earlier writes durable. */
    int (*batch_write)(struct engine *e, struct engine_batch *b, bool sync, char *errmsg);
    /* Frees a batch without writing it. */
    void (*batch_free)(struct engine_batch *b);
    /* Bytes the engine's files take now (0 if unknown). */
    int64_t (*disk_bytes)(struct engine *e);
    /* Bytes of memory the engine holds for itself (memtables, block cache),
     * 0 if unknown; may be NULL. Counted apart from the trusted core's
     * memory (lskv_trusted_bytes in /metrics). */
    int64_t (*mem_bytes)(struct engine *e);
    /* Rewrites the engine's files without deleted and overwritten data
     * (etcd's defragment); may be NULL (nothing to do). The only call that
     * may run on another thread while the loop thread uses e (LevelDB
     * allows it). */
    int (*compact)(struct engine *e, char *errmsg);
    /* Closes the engine and frees e. */
    void (*close)(struct engine *e);
};

/* Opens (creating if missing) a LevelDB engine at path. Errors: LSKV_EIO. */
int engine_leveldb_open(const char *path, struct engine **out, char *errmsg);

#endif
