/* The backup file (Maintenance.Snapshot, `etcdctl snapshot save`,
 * `lskvctl snapshot restore`): the state machine snapshot (snapshot.h) and
 * every record its key index names, sealed for the cluster and cut into
 * frames so that neither end holds the whole store. docs/backup-format.md
 * has the bytes; all integers big endian:
 *
 *   header (48) | frame* | zero padding to a multiple of 512 | SHA-256 of
 *   all of the preceding
 *   header = "LSKVBKUP" | u32 version | u32 0 | u64 cluster id | u64 member id
 *            | salt[16]
 *   frame  = u8 flags (1: last) | u32 n | n sealed bytes
 *
 * Frame i is AES-256-GCM under K = HMAC-SHA256(keyring_derive(data key,
 * "backup", 0), "lskv-backup-v1" || salt), nonce 0^4 || u64 i, AAD = header
 * || u64 i || flags: a frame cannot be altered, moved, dropped or taken
 * from another backup or cluster. The padding and trailer make the size
 * 512 k + 32, which etcdctl requires; the trailer only catches accidents
 * (anyone can recompute it), the seal is the check. */
#ifndef LSKV_STATEMACHINE_BACKUP_H
#define LSKV_STATEMACHINE_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "statemachine/backup_bolt.h"
#include "storage/recstore.h"

#define BACKUP_FORMAT_VERSION 1
#define BACKUP_HEADER_BYTES 48
#define BACKUP_SALT_BYTES 16
#define BACKUP_KEY_BYTES 32
#define BACKUP_FRAME_TARGET (256u << 10) /* a frame is sealed once this full */
#define BACKUP_FRAME_MAX (64u << 20)     /* largest plaintext frame (one record) */
#define BACKUP_PIECE_MAX (64u << 10)     /* state machine snapshot bytes per item */
#define BACKUP_ALIGN 512                 /* etcdctl: size = 512 k + 32 */
#define BACKUP_TRAILER_BYTES 32
#define BOLT_CHUNK_PAGES 8 /* bbolt pages made at a time: etcd's 32 KiB blob */

struct backup_header {
    uint32_t version;
    uint64_t cluster_id; /* the cluster the backup was taken from */
    uint64_t member_id;  /* the member that took it */
    uint8_t salt[BACKUP_SALT_BYTES];
};

/* --- The revisions a snapshot names ---------------------------------------- */

/* Walks the revisions of a state machine snapshot's key index in key order,
 * each key's oldest first: the records a backup must hold, in the order it
 * holds them. Owns a decoded copy of the index. */
struct kvindex;
struct kvindex_entry;
struct backup_cursor {
    struct kvindex *ix;
    const struct kvindex_entry *e;     /* the key being walked */
    struct backup_rev *revs;           /* its revisions */
    size_t n, i, cap;
    int64_t revision;                  /* the snapshot's store revision */
};
struct backup_rev {
    int64_t main, sub;
    bool tombstone;
};
/* Decodes sm (a state machine snapshot: its KV section). Errors:
 * LSKV_ECORRUPT (errmsg says why), LSKV_EFORMAT, LSKV_ENOMEM. */
int backup_cursor_open(struct backup_cursor *c, const uint8_t *sm, size_t len, char *errmsg);
void backup_cursor_close(struct backup_cursor *c);
/* The next revision and its key (borrowed until close); false at the end.
 * Errors: none (LSKV_ENOMEM shows as *rv). */
bool backup_cursor_next(struct backup_cursor *c, struct backup_rev *rev, const uint8_t **key,
                        size_t *key_len, int *rv);

/* --- Writing -------------------------------------------------------------- */

typedef struct backup_writer backup_writer;

/* Starts a backup of cluster_id taken by member_id under data_key (copied;
 * the derived key is wiped by backup_writer_free). salt must be random: it
 * makes the frame key unique to this backup. bolt (borrowed until the
 * writer is freed; NULL: none): the bbolt face of the revisions the backup
 * will hold (backup_bolt.h), output first; then the header. Errors:
 * LSKV_ENOMEM, LSKV_EIO. */
int backup_writer_new(const uint8_t data_key[BACKUP_KEY_BYTES],
                      const uint8_t salt[BACKUP_SALT_BYTES], uint64_t cluster_id,
                      uint64_t member_id, const struct backup_bolt *bolt,
                      backup_writer **out);
/* Wipes the key and any plaintext held. NULL is a no-op. */
void backup_writer_free(backup_writer *w);
/* Adds the state machine snapshot (copied, in pieces); called once, before
 * any record. Errors: LSKV_EINVAL (called twice, or after a record),
 * LSKV_ENOMEM, LSKV_EIO. */
int backup_writer_sm(backup_writer *w, const uint8_t *buf, size_t len);
/* Adds the record of (main, sub) (copied); ids must strictly increase and
 * the record be well formed (recstore_put's rules). Errors: LSKV_EINVAL,
 * LSKV_ETOOLARGE (over BACKUP_FRAME_MAX), LSKV_ENOMEM, LSKV_EIO. */
int backup_writer_record(backup_writer *w, int64_t main, int64_t sub,
                         const struct kv_record *rec);
/* Ends the backup: the summary item, the last frame, padding and trailer.
 * revision: the store's revision in the snapshot. Errors: LSKV_EINVAL (no
 * snapshot was added), LSKV_ENOMEM, LSKV_EIO. */
int backup_writer_end(backup_writer *w, int64_t revision);
/* Output bytes ready to go (borrowed until the next writer call), and
 * dropping the first n of them once sent. While the bbolt pages go out,
 * a chunk of them at a time (backup_writer_in_bolt): send what is there. */
const uint8_t *backup_writer_output(const backup_writer *w, size_t *len);
void backup_writer_consume(backup_writer *w, size_t n);
bool backup_writer_in_bolt(const backup_writer *w);
/* Bytes produced so far (sent or not). */
uint64_t backup_writer_total(const backup_writer *w);

/* --- Reading -------------------------------------------------------------- */

/* What the reader hands over, in file order. Each callback returns 0 to go
 * on or an error code that stops the read (and is returned). Pointers are
 * borrowed for the duration of the call. progress may be NULL. */
struct backup_visitor {
    int (*header)(void *arg, const struct backup_header *h);
    /* The state machine snapshot, whole (sm_snapshot_decode decodes it). */
    int (*snapshot)(void *arg, const uint8_t *buf, size_t len);
    int (*record)(void *arg, int64_t main, int64_t sub, const struct kv_record *rec);
    void (*progress)(void *arg, uint64_t bytes_done, uint64_t bytes_total);
    void *arg;
};

struct backup_summary {
    int64_t revision;   /* from the summary item */
    uint64_t records;   /* records read */
    uint64_t frames;
    uint64_t sm_bytes;  /* size of the state machine snapshot */
};

/* Reads and checks a whole backup of size bytes from f (positioned at its
 * start): first the trailer over every byte, then (past the bbolt face,
 * if it has one: backup_bolt_skip; backups of earlier builds have none)
 * the header, every frame
 * (opened with data_key, in order, the last one flagged), every item, the
 * padding. Nothing is handed to v before the trailer and header check out;
 * records come only after the snapshot, and the caller must treat all it
 * was handed as void unless this returns 0 (a later frame may fail).
 * Errors: LSKV_ECORRUPT (errmsg says where and why: wrong size or trailer,
 * bad magic, a frame that fails authentication, a malformed item),
 * LSKV_EFORMAT (another version), LSKV_ENOMEM, negated errno (read), or
 * what a callback returned. */
int backup_read(FILE *f, uint64_t size, const uint8_t data_key[BACKUP_KEY_BYTES],
                const struct backup_visitor *v, struct backup_summary *out, char *errmsg);

#endif
