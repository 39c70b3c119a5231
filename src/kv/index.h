/* The trusted key index: an ordered map from key to the generations of
 * revisions that key has had, as etcd's treeIndex/keyIndex (mvcc/key_index.go).
 *
 * A generation is the life of a key from its creation to its deletion: the
 * (main, sub) revisions of its puts, the last one a tombstone if the key was
 * deleted, plus its created revision and version counter (how many puts and
 * tombstones it has had, kept across compaction). A key's last generation is
 * the open one; it is empty when the key is currently deleted.
 *
 *   put(1.0) put(2.0) del(3.0) put(4.0) on "foo":  {1.0 2.0 3.0t} {4.0}
 *
 * The index holds nothing else: values, leases etc. live in sealed records
 * (storage/recstore.h) found by revision. It is the keyset: every revision in
 * it must have a record. Memory: a key with one put takes one 40-byte
 * allocation plus the key and 2-4 hash slots of 8 bytes; a longer history
 * adds its generations and 12 bytes per revision.
 *
 * Invariants (checked by kvindex_check, relied upon everywhere):
 * (1) revisions of a key strictly increase across its generations;
 * (2) every generation but the last is non-empty and ends with a tombstone;
 * (3) a key whose only generation is empty is not in the map;
 * (4) in a generation, version of revs[i] = ver - (n - 1 - i) >= 1.
 *
 * Lookups are O(log keys + log generations + log revisions); iteration is in
 * key order. Not thread safe. */
#ifndef LSKV_KV_INDEX_H
#define LSKV_KV_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kvindex kvindex;
/* One key of the map. Borrowed pointers to entries stay valid until the
 * entry is removed (kvindex_undo of the put that created it, kvindex_compact,
 * kvindex_free). */
typedef struct kvindex_entry kvindex_entry;

struct kvindex_rev {
    int64_t main;
    int64_t sub;
};

/* A key as seen at some revision. */
struct kvindex_hit {
    struct kvindex_rev mod; /* the revision holding the key's record */
    int64_t create_revision;
    int64_t version;
};

/* Errors: LSKV_ENOMEM. */
int kvindex_new(kvindex **out);
void kvindex_free(kvindex *ix);

size_t kvindex_size(const kvindex *ix); /* entries, including currently deleted keys */
size_t kvindex_live(const kvindex *ix); /* keys that currently exist */
size_t kvindex_revisions(const kvindex *ix); /* revisions held, all keys */

/* The entry for key, or NULL. */
kvindex_entry *kvindex_find(const kvindex *ix, const uint8_t *key, size_t key_len);
/* The first entry with key >= key (key_len 0: the first entry), or NULL. */
kvindex_entry *kvindex_seek(const kvindex *ix, const uint8_t *key, size_t key_len);
/* The entry after e in key order, or NULL. */
kvindex_entry *kvindex_next(const kvindex_entry *e);
const uint8_t *kvindex_entry_key(const kvindex_entry *e, size_t *key_len);
/* Whether the key currently exists (its last generation is non-empty). */
bool kvindex_entry_live(const kvindex_entry *e);

/* The key's revision at at_rev: the newest revision with main <= at_rev, if
 * the key existed then. Returns false if it did not (never created yet,
 * deleted, or compacted away). */
bool kvindex_entry_get(const kvindex_entry *e, int64_t at_rev, struct kvindex_hit *out);
bool kvindex_get(const kvindex *ix, const uint8_t *key, size_t key_len, int64_t at_rev,
                 struct kvindex_hit *out);

/* Revisions of e with main >= since_main, oldest first, through cb; for
 * revisions sharing a main only the last (highest sub) is reported, as etcd's
 * keyIndex.since. tombstone says whether the revision is a deletion. Stops and
 * returns cb's value when cb returns non-zero. */
typedef int (*kvindex_rev_cb)(void *arg, const kvindex_entry *e, struct kvindex_rev rev,
                              bool tombstone);
int kvindex_entry_since(const kvindex_entry *e, int64_t since_main, kvindex_rev_cb cb,
                        void *arg);

/* Appends revision rev (greater than every revision of the key) as a put,
 * creating the entry and/or a generation as needed. *entry (may be NULL) gets
 * the key's entry. Errors: LSKV_ENOMEM (index unchanged). */
int kvindex_put(kvindex *ix, const uint8_t *key, size_t key_len, struct kvindex_rev rev,
                kvindex_entry **entry);
/* Appends rev as the tombstone of e's current generation and opens a new
 * empty one. Errors: LSKV_ENOTFOUND (the key does not currently exist),
 * LSKV_ENOMEM (index unchanged). */
int kvindex_tombstone(kvindex *ix, kvindex_entry *e, struct kvindex_rev rev);
/* Undoes the latest kvindex_put or kvindex_tombstone on e (undo in reverse
 * order of the writes). If that put created the entry, the entry is removed
 * and e becomes invalid. Never fails. */
void kvindex_undo(kvindex *ix, kvindex_entry *e);

/* Compacts every key at at_rev, as etcd's keyIndex.compact: drops the
 * revisions with main <= at_rev except the newest one of each key, drops that
 * one too if it is a tombstone, drops emptied generations, and removes keys
 * left with no revisions. drop(arg, rev) is called for every revision removed.
 * Never fails. */
void kvindex_compact(kvindex *ix, int64_t at_rev,
                     void (*drop)(void *arg, struct kvindex_rev rev), void *arg);

/* Serialisation of the whole index (the key section of the snapshot format,
 * docs/snapshot-format.md). kvindex_encoded_size gives the exact byte count
 * kvindex_encode writes. */
size_t kvindex_encoded_size(const kvindex *ix);
void kvindex_encode(const kvindex *ix, uint8_t *buf);
/* Decodes an index from buf[0..len), checking the invariants above, that
 * keys are non-empty and strictly increasing, and that every revision lies in
 * [1, max_rev]. *used gets the bytes consumed. Errors: LSKV_ECORRUPT,
 * LSKV_ENOMEM. */
int kvindex_decode(const uint8_t *buf, size_t len, int64_t max_rev, kvindex **out,
                   size_t *used);

/* The hash of the exact-key lookup table (fixed, unkeyed) and the number of
 * entries that did not fit in the table (found through the tree instead: a
 * slower lookup, never a wrong one). For tests. */
uint64_t kvindex_key_hash(const uint8_t *key, size_t len);
size_t kvindex_unhashed(const kvindex *ix);

/* Checks the invariants and the tree's balance and order and
 * the hash table's placement; 0 or
 * LSKV_ECORRUPT. For tests and debugging: O(n). */
int kvindex_check(const kvindex *ix);

#endif
