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

/* Record format version: the first byte of every engine value, and part of
 * the AAD. docs/record-format.md. */
#define RECSTORE_FORMAT_VERSION 2
/* Version of the body plaintext (its first byte). */
#define RECSTORE_BODY_VERSION 1
/* Engine key of a record: main (i64 BE) || sub (i64 BE). */
#define RECSTORE_ID_BYTES 16
/* AAD: format version (1) || key id (u32 BE, 4) || id (16) || cluster id (u64 BE, 8). */
#define RECSTORE_AAD_BYTES 29
/* Fixed part of a body plaintext (before key and value). */
#define RECSTORE_BODY_HEADER_BYTES 42
/* Engine value = format version (1) || key id (4) || AEAD sealed body. */
#define RECSTORE_VALUE_HEADER_BYTES 5
#define RECSTORE_VALUE_OVERHEAD (RECSTORE_VALUE_HEADER_BYTES + AEAD_OVERHEAD)
/* Purpose label of the record keys (crypto/keyring.h). */
#define RECSTORE_KEY_PURPOSE "records"

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
    const uint8_t *data_key;             /* AEAD_KEY_BYTES, copied: the master of
                                            the record keys (crypto/keyring.h) */
    uint64_t key_epoch_size;             /* revisions per record key epoch;
                                            0 = KEYRING_DEFAULT_EPOCH_SIZE */
    uint64_t cluster_id;                 /* bound into every record's AAD */
    size_t cache_bytes;                  /* value cache bound; 0 disables */
    struct engine *engine;               /* NULL: LevelDB at path; else borrowed
                                            (tests: a tampering engine) */
};

/* Opens the store. errmsg (LSKV_ERRMSG_SIZE) gets the reason on failure.
 * Errors: LSKV_EIO (engine open failed), LSKV_ENOMEM. */
int recstore_open(const struct recstore_config *config, recstore **out, char *errmsg);
/* Drops the pending batch, wipes and frees cached plaintext, closes the
 * engine unless it was borrowed. NULL is a no-op. */
void recstore_close(recstore *rs);

/* Stages the record for id (main, sub) in the pending batch: sealed at once,
 * written by recstore_commit. rec (key and value too) is copied. The record
 * must be well formed: main >= 1, sub >= 0, rec->mod_revision == main, a key
 * of at least one byte, lease >= 0; a tombstone has create_revision 0,
 * version 0 and no value; a live record has 1 <= create_revision <= main and
 * version >= 1. An id has one record: putting it again (a Raft log replay
 * after a restart re-applies the same entries) must carry the same contents;
 * a second put in the same batch replaces the first.
 * Errors: LSKV_EINVAL (malformed record), LSKV_ETOOLARGE (key plus value over
 * 1 GiB), LSKV_ENOMEM, LSKV_EIO (the store is in its sticky error state, or
 * sealing failed). */
int recstore_put(recstore *rs, int64_t main, int64_t sub, const struct kv_record *rec);
/* Stages deletion of the record (compaction). From now on recstore_get of it
 * fails with LSKV_ECORRUPT (missing), as it will after the commit.
 * Errors: LSKV_ENOMEM, LSKV_EIO (sticky error state). */
int recstore_delete(recstore *rs, int64_t main, int64_t sub);
/* Writes the pending batch to the engine as one batch, without fsync; the
 * committed records enter the cache. Nothing pending: a no-op.
 * Errors: LSKV_EIO (sticky: the pending batch is dropped and every later
 * put, delete, commit and sync fails with LSKV_EIO until the store is
 * reopened; recstore_errmsg says why). */
int recstore_commit(recstore *rs);
/* Commits the pending batch, if any, then makes everything committed so far
 * durable (one synced engine write). Errors: LSKV_EIO (sticky, as above). */
int recstore_sync(recstore *rs);
/* The reason for the sticky error state, or "" if the store is healthy.
 * Borrowed: valid until recstore_close. */
const char *recstore_errmsg(const recstore *rs);

/* Reads and verifies the record for id (main, sub), from the cache or the
 * engine. Key and value in *out are allocated from a (valid until the arena
 * is closed). A record staged but not yet committed is visible.
 * Errors: LSKV_ECORRUPT (missing, fails authentication, or its contents do
 * not match the id), LSKV_EIO, LSKV_ENOMEM. errmsg (may be NULL) gets the
 * reason. */
int recstore_get(recstore *rs, int64_t main, int64_t sub, struct arena *a,
                 struct kv_record *out, char *errmsg);

/* Whether the store holds bytes for id (main, sub), unverified: a member
 * catching up asks which records to fetch; a record it then holds is
 * verified when read, as any. A pending delete: false. */
bool recstore_contains(recstore *rs, int64_t main, int64_t sub);

/* Approximate bytes on disk of the engine (Maintenance.Status db size, the
 * quota): measured at most every 100 ms, so up to that old. */
int64_t recstore_disk_bytes(recstore *rs);
/* The same measured now (after a defragment: the quota must see it). */
int64_t recstore_disk_bytes_now(recstore *rs);
/* Memory the untrusted engine holds for itself (0 if it cannot tell). */
int64_t recstore_engine_mem_bytes(recstore *rs);
/* The engine's defragment (engine.h compact): safe to call from a worker
 * thread while the loop thread goes on with rs; nothing else is. Errors:
 * LSKV_EIO (errmsg says why). */
int recstore_compact_engine(recstore *rs, char *errmsg);

struct recstore_stats {
    size_t cache_bytes;      /* bytes charged in the cache (<= cache_bytes config) */
    size_t cache_entries;    /* records in the cache */
    uint64_t cache_hits;     /* recstore_get served from the cache */
    uint64_t engine_reads;   /* recstore_get that read the engine */
    size_t pending_records;  /* puts and deletes staged, not yet committed */
};
void recstore_stats(const recstore *rs, struct recstore_stats *out);

/* Writes the engine key of (main, sub) into id. */
void recstore_make_id(int64_t main, int64_t sub, uint8_t id[RECSTORE_ID_BYTES]);
/* The AAD of a record (tests and tools that forge or check records). */
void recstore_make_aad(uint8_t version, uint32_t key_id, int64_t main, int64_t sub,
                       uint64_t cluster_id, uint8_t aad[RECSTORE_AAD_BYTES]);
/* Key epochs: the highest epoch sealed under and the seals under it. */
void recstore_key_stats(const recstore *rs, uint32_t *epoch, uint64_t *seals);

/* Decodes and checks a body plaintext (docs/record-format.md) in place:
 * pointers in *out point into body. main is the id's main, which the
 * mod_revision must equal. Exposed for the fuzzer and offline tools.
 * Errors: LSKV_ECORRUPT with the reason in errmsg (LSKV_ERRMSG_SIZE, not
 * NULL). */
int recstore_decode_body(const uint8_t *body, size_t len, int64_t main,
                         struct kv_record *out, char *errmsg);

#endif
