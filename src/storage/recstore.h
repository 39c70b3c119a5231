/* Sealed MVCC records over an untrusted storage engine (TEE-KV).
 *
 * Each (main, sub) revision has one immutable record stored in the engine
 * under its 16-byte id main||sub (big endian). The body is AES-256-GCM sealed
 * under the data key with AAD = format version || id || cluster id, so the
 * engine never sees keys or values, and tampering, swapping and replay of
 * records fail authentication. The trusted key index (kv/) knows which ids
 * must exist, so omission is detected too: a missing or failing record is
 * LSKV_ECORRUPT, never data. A bounded LRU cache (in trusted memory) keeps
 * verified records. docs/record-format.md gives the byte layout.
 *
 * Writes are staged into a batch and written (unsynced) by recstore_commit;
 * recstore_sync makes everything written so far durable (used before a Raft
 * snapshot lets the log be truncated). Not thread safe: the loop thread owns it. */
#ifndef LSKV_STORAGE_RECSTORE_H
#define LSKV_STORAGE_RECSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "crypto/aead.h"

typedef struct recstore recstore;
struct engine; /* storage/engine.h */

/* A decrypted record. */
struct kv_record {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int64_t create_revision; /* 0 for a tombstone */
    int64_t mod_revision;    /* = main of the id */
    int64_t version;         /* 0 for a tombstone */
    int64_t lease;
    bool tombstone;
};

struct recstore_config {
    const char *path;                    /* engine directory, created if missing */
    const uint8_t *data_key;             /* AEAD_KEY_BYTES, copied */
    uint64_t cluster_id;                 /* bound into every record's AAD */
    size_t cache_bytes;                  /* value cache bound; 0 disables */
    struct engine *engine;               /* NULL: LevelDB at path; else borrowed
                                            (tests: a tampering engine) */
};

/* Errors: LSKV_EIO (engine open failed), LSKV_ENOMEM. */
int recstore_open(const struct recstore_config *config, recstore **out, char *errmsg);
void recstore_close(recstore *rs);

/* Stages the record for id (main, sub) in the pending batch. rec is copied.
 * Errors: LSKV_ENOMEM, LSKV_EIO. */
int recstore_put(recstore *rs, int64_t main, int64_t sub, const struct kv_record *rec);
/* Stages deletion of the record (compaction). */
int recstore_delete(recstore *rs, int64_t main, int64_t sub);
/* Writes the pending batch to the engine, without fsync. Errors: LSKV_EIO
 * (sticky: the store refuses further writes). */
int recstore_commit(recstore *rs);
/* Makes all committed batches durable. Errors: LSKV_EIO (sticky). */
int recstore_sync(recstore *rs);

/* Reads and verifies the record for id (main, sub), from the cache or the
 * engine. Key and value in *out are allocated from a (valid until the arena
 * is closed). A record staged but not yet committed is visible.
 * Errors: LSKV_ECORRUPT (missing, fails authentication, or its contents do
 * not match the id), LSKV_EIO, LSKV_ENOMEM. errmsg (may be NULL) gets the
 * reason. */
int recstore_get(recstore *rs, int64_t main, int64_t sub, struct arena *a,
                 struct kv_record *out, char *errmsg);

/* Approximate bytes on disk of the engine (for Maintenance.Status db size). */
int64_t recstore_disk_bytes(recstore *rs);

#endif
