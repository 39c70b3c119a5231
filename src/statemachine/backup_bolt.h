/* The bbolt face of a backup: `etcdctl snapshot status FILE` opens a
 * snapshot as a bbolt database, checks its pages (tx.Check) and reports the
 * main revision of the last key of its "key" bucket, the number of keys of
 * every bucket, a CRC of them and the database size. A backup starts with
 * such a database, made of the revisions the backup holds, and the lskv
 * backup (backup.h) follows at its high water mark, where bbolt no longer
 * looks:
 *
 *   page 0, 1   meta (txid 0 and 1, the same tree)
 *   page 2      freelist, empty
 *   page 3      root leaf: bucket "key" -> the key tree's root page
 *   page 4 ...  the key tree: leaves, then each level of branches, the root
 *               last; one key per revision, etcd's key bucket layout (u64
 *               main | '_' | u64 sub, big endian, then 't' for a tombstone),
 *               in revision order, with a one-byte value 0x00
 *
 * bbolt's own integers are little endian. The value is no mvccpb.KeyValue:
 * `etcdctl snapshot restore` stops on it ("failed to unmarshal") instead of
 * making an etcd data dir of nothing; `lskvctl snapshot restore` is the
 * restore. The database says only which revisions the backup holds, as an
 * etcd snapshot's key bucket does; keys and values stay sealed in the
 * backup after it. */
#ifndef LSKV_STATEMACHINE_BACKUP_BOLT_H
#define LSKV_STATEMACHINE_BACKUP_BOLT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BOLT_PAGE_BYTES 4096
#define BOLT_META_BYTES 80 /* page header + meta: what backup_bolt_skip reads */

struct bolt_rev {
    int64_t main, sub;
    bool tombstone;
};

/* The layout of the database over n revisions (borrowed, sorted by main
 * then sub, until the last backup_bolt_page call). */
struct backup_bolt {
    const struct bolt_rev *revs;
    size_t n;
    uint64_t pages;         /* the database's size in pages (its high water mark) */
    uint64_t root;          /* the key tree's root page */
    int levels;             /* 1: the root is a leaf */
    uint64_t start[8];      /* first page of each level (0: leaves) */
    uint64_t count[8];      /* pages of each level */
};

/* Lays the database out. Errors: LSKV_ETOOLARGE (more revisions than a
 * tree of 8 levels holds). */
int backup_bolt_layout(struct backup_bolt *b, const struct bolt_rev *revs, size_t n);
/* Page id (< b->pages) of the database. */
void backup_bolt_page(const struct backup_bolt *b, uint64_t id, uint8_t page[BOLT_PAGE_BYTES]);

/* Whether p (len >= BOLT_META_BYTES) starts with such a database's first
 * meta page (or any bbolt database's valid one); if so, *offset is its
 * high water mark in bytes, where the lskv backup starts. Errors:
 * LSKV_ECORRUPT (not a valid bbolt meta page; errmsg says why). */
int backup_bolt_skip(const uint8_t *p, size_t len, uint64_t *offset, char *errmsg);

#endif
