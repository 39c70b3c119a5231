/* Internals shared by the files of the ledger module (ledger.c: open,
 * close, repair; ledger_scan.c: chunk file reading; ledger_sync.c: syncer
 * thread, rotation, sealing; ledger_append.c: framing and appending;
 * ledger_replay.c: replay checks; ledger_sign.c: signatures;
 * ledger_index.c: the offset index, segment reads; ledger_lookup.c:
 * receipts, tx status, consistency proofs). The design
 * notes and invariants are at the top of ledger.c. Not part of the module
 * API. */
#ifndef LSKV_LEDGER_LEDGER_IMPL_H
#define LSKV_LEDGER_LEDGER_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/aead.h"
#include "ledger/chunk.h"
#include "crypto/hash.h"
#include "ledger/ledger.h"
#include "ledger/merkle.h"
#include "ledger/sig.h"

_Static_assert((int)LEDGER_ENTRY_KV == (int)CHUNK_ENTRY_KV &&
                   (int)LEDGER_ENTRY_SIGNATURE == (int)CHUNK_ENTRY_SIGNATURE &&
                   (int)LEDGER_ENTRY_OTHER == (int)CHUNK_ENTRY_OTHER,
               "ledger and chunk entry types agree");

/* A rotated chunk's fdatasync, done by the syncer thread (off the loop);
 * ledger_sync waits for it, then renames. done/rv under ledger.sy.mu. */
struct sync_job {
    int fd;
    int rv;
    bool done;
    struct sync_job *next; /* queue */
};

struct chunk_info {
    uint64_t first, last; /* last valid when sealed */
    bool open;
    bool unsynced;        /* sealed in memory, file still "ledger_<first>" (7) */
    struct sync_job *job; /* when unsynced: its background fdatasync, or NULL */
    int64_t first_rev;    /* revision of the first entry; INT64_MAX if none */
    uint64_t bytes;       /* file size once sealed (the open chunk: ledger.open_bytes) */
    char name[CHUNK_NAME_MAX];
};

/* One point of the offset index: where a segment of entries starts. A
 * segment is at most one block (LG_BLOCK_LEAVES leaves) and never crosses a
 * chunk: points are made at every chunk's first leaf and every block
 * boundary, and a segment runs to the next point (or its chunk's end).
 * Look-ups of old entries pread one segment instead of a whole chunk. */
struct lg_point {
    uint64_t leaf;        /* first leaf of the segment */
    uint64_t off;         /* file offset of its frame in chunks[chunk] */
    int64_t first_rev;    /* its revision */
    uint64_t sig_leaf;    /* the segment's first signature entry; UINT64_MAX if none */
    uint64_t sig_off;     /* its file offset */
    size_t chunk;         /* index into ledger.chunks */
};

struct win_entry {
    uint64_t term, index;
    int64_t revision;
    uint8_t type;
    uint8_t wsd[MERKLE_HASH_BYTES];
    uint8_t claims_digest[MERKLE_HASH_BYTES];
};

struct win_sig {
    uint64_t leaf;
    uint8_t *payload; /* owned copy */
    size_t len;
    struct sig_payload p; /* borrows payload */
};

struct ledger {
    char dir[4096];
    uint8_t secret[LEDGER_SECRET_BYTES];
    uint8_t enc_key[AEAD_KEY_BYTES];
    aead_key *seal;            /* keyed context of enc_key */
    struct hash_hmac ce_key;   /* HMAC keyed with K_ce (ledger_commit_evidence) */
    const cert_service *service;
    uint8_t service_digest[32]; /* named by every signature this node makes */
    uint64_t chunk_bytes, sig_tx_interval, sig_ms_interval;
    bool fsync_each;

    struct chunk_info *chunks; /* sorted; last is open */
    size_t n_chunks, cap_chunks;
    int fd;                    /* open chunk */
    uint64_t open_bytes;       /* its size, including wbuf */
    uint8_t *wbuf;             /* frames not written yet (ledger_flush) */
    size_t wlen, wcap;

    merkle_tree *tree;
    struct win_entry *win;
    size_t n_win, cap_win;
    struct win_sig *sigs;
    size_t n_sigs, cap_sigs;

    uint64_t last_term, last_index;
    int64_t last_rev;
    uint64_t signed_size;      /* invariant 5 */
    int64_t last_nonsig_leaf;  /* -1 if none */
    uint64_t last_sig_ms;
    int sticky;
    bool dir_dirty;            /* names created or renamed since the last dir fsync */

    /* The syncer: one thread, started at the first rotation, fdatasyncs
     * rotated chunks so that ledger_sync finds them synced. */
    struct {
        bool started, quit;
        pthread_t thread;
        pthread_mutex_t mu;
        pthread_cond_t cv;        /* queue not empty, or quit */
        pthread_cond_t done_cv;   /* a job finished */
        struct sync_job *head, *tail;
    } sy;

    uint8_t (*blocks)[MERKLE_HASH_BYTES]; /* blocks[j]: MTH of block j */
    size_t n_blocks, cap_blocks;
    uint64_t slow_proofs;      /* consistency proofs that scanned chunk files (tests) */
    struct lg_point *points;   /* the offset index, by leaf, over every entry */
    size_t n_points, cap_points;
    bool points_failed;        /* a point could not be stored: ledger_open fails */
    uint64_t lookup_bytes;     /* bytes read by receipt and status look-ups (tests) */
    struct win_sig last_sig;   /* the last signature appended (leaf unused); payload
                                  NULL when none; survives rotation */

    /* Replay checks: raft index -> write set digest of one sealed chunk
     * (sealed chunks never change), so checking a run of replayed entries
     * reads each chunk once. */
    struct {
        bool valid;
        size_t chunk;
        uint64_t *index;
        uint8_t (*wsd)[MERKLE_HASH_BYTES];
        size_t n, cap;
    } rc;
};

/* Block hashes (MTH of aligned blocks of LG_BLOCK_LEAVES leaves) over the
 * whole ledger, kept so that consistency proofs from old sizes need not
 * re-read every chunk since (ledger_lookup.c). 32 bytes per 4096 leaves. */
#define LG_BLOCK_LOG2 12
#define LG_BLOCK_LEAVES ((uint64_t)1 << LG_BLOCK_LOG2)

/* Frames are written once per loop turn (ledger_flush), or as soon as this
 * many bytes are buffered. */
#define WBUF_FLUSH_BYTES (1u << 20)

/* --- ledger_scan.c: helpers and reading chunk files ------------------------ */

/* Grows *arr (of *cap elements of elem bytes) to hold need. LSKV_ENOMEM. */
int lg_grow(void **arr, size_t *cap, size_t need, size_t elem);
int lg_write_all(int fd, const uint8_t *buf, size_t len);
void lg_chunk_path(const ledger *l, const char *name, char *out, size_t n);
/* Forgets the window (the open chunk's entries in memory). */
void lg_clear_window(ledger *l);
/* The chunk holding leaf (the open one if leaf is past every sealed one). */
size_t lg_chunk_of_leaf(const ledger *l, uint64_t leaf);

/* Reads entries from chunk files in order, crossing into later chunks. */
struct lg_scan {
    ledger *l;
    size_t chunk;       /* index into l->chunks */
    uint8_t *buf;
    size_t len, off;
    struct chunk_header h;
    uint64_t leaf;      /* leaf index of the next entry */
    char path[4200];
};
/* Flushes buffered frames, then loads chunk `chunk`. */
int lg_scan_open(ledger *l, size_t chunk, struct lg_scan *s, char *errmsg);
/* 1: *e is the entry at leaf s->leaf - 1 (borrowing s->buf until the next
 * call); 0: no more entries; < 0: error. */
int lg_scan_next(struct lg_scan *s, struct chunk_entry *e, char *errmsg);
void lg_scan_close(struct lg_scan *s);
/* A tree for a scan opened at the chunk holding leaf `target`: from the
 * chunk header's peaks, or, when block hashes reach further, from the
 * block boundary at or below target (so fewer leaves are rehashed). Scan
 * consumers skip entries whose leaf index is below merkle_size(*t).
 * Errors: LSKV_ENOMEM. */
int lg_scan_tree(const ledger *l, const struct lg_scan *s, uint64_t target, merkle_tree **t);

/* Peaks of the first base leaves (a multiple of LG_BLOCK_LEAVES, at most
 * n_blocks blocks) folded from block hashes; *n = popcount(base). */
void lg_block_peaks(const ledger *l, uint64_t base, uint8_t (*peaks)[MERKLE_HASH_BYTES],
                    size_t *n);

/* --- ledger_index.c: the offset index and segment reads ---------------------- */

/* Indexes the entry at leaf, at offset off of the chunk holding it
 * (entries come in ledger order, once each). Errors: LSKV_ENOMEM. */
int lg_index_entry(ledger *l, uint64_t leaf, uint64_t off, const struct chunk_entry *e);
/* verify_config.on_entry for the sealed chunks verified at open (a failure
 * sets points_failed). */
void lg_index_verified(void *l, uint64_t leaf, size_t off, const struct chunk_entry *e);
/* The point whose segment holds leaf (leaf below the ledger's size). */
size_t lg_point_of_leaf(const ledger *l, uint64_t leaf);

/* Entries of one segment (or part of one), read with a single pread,
 * counted in lookup_bytes. */
struct lg_seg {
    size_t point;       /* index into l->points */
    uint8_t *buf;
    size_t len, off;
    uint64_t file_off;  /* of buf[0] */
    uint64_t leaf;      /* leaf index of the next entry */
    bool whole;         /* to the segment's end: its leaves are checked */
    char path[4200];
};
/* Reads point p's segment up to file offset `to` (0: its end). Flushes
 * buffered frames first. Errors: negated errno, LSKV_ENOMEM. */
int lg_seg_read(ledger *l, size_t p, uint64_t to, struct lg_seg *s, char *errmsg);
/* Reads the frame of point p's first signature entry alone.
 * Errors: as lg_seg_read, LSKV_ECORRUPT. */
int lg_seg_read_sig(ledger *l, size_t p, struct lg_seg *s, char *errmsg);
/* 1: *e is the entry at leaf s->leaf - 1 (borrowing s->buf until
 * lg_seg_close); 0: the bytes read are used up; < 0: error (LSKV_ECORRUPT
 * with the file and offset; a whole segment must hold exactly the leaves
 * up to the next point). */
int lg_seg_next(const ledger *l, struct lg_seg *s, struct chunk_entry *e, char *errmsg);
void lg_seg_close(struct lg_seg *s);
/* A tree at point p's first leaf, summarised from block hashes, or from its
 * chunk's header when p starts a chunk. *t NULL (and 0) when neither
 * applies (a block hash is missing): start at an earlier point.
 * Errors: LSKV_ECORRUPT (header), negated errno, LSKV_ENOMEM. */
int lg_point_tree(ledger *l, size_t p, merkle_tree **t, char *errmsg);

/* --- ledger.c -------------------------------------------------------------- */

/* Creates the open chunk file at the tree's current size (sync: durable now). */
int lg_create_open_chunk(ledger *l, bool sync, char *errmsg);

/* --- ledger_sync.c: the syncer thread, sealing, rotation --------------------- */

struct sync_job *lg_syncer_submit(ledger *l, int fd);
int lg_syncer_wait(ledger *l, struct sync_job *j);
void lg_syncer_stop(ledger *l);
/* fdatasync + rename to .committed (invariant 7); closes fd. */
int lg_seal_file(ledger *l, struct chunk_info *c, int fd, char *errmsg);
/* Seals the open chunk in memory and starts the next one. */
int lg_rotate(ledger *l, char *errmsg);

/* --- ledger_append.c: framing and appending ----------------------------------- */

/* Records an entry already in the open chunk's file, at offset off, in
 * memory. */
int lg_record_entry(ledger *l, const struct chunk_entry *e, uint64_t off, const uint8_t wsd[32],
                    const uint8_t leaf[32], const uint8_t *sig_payload, size_t sig_len,
                    char *errmsg);
size_t lg_frame_prepare(ledger *l, struct chunk_entry *e, size_t plain_len);
int lg_build_frame(ledger *l, struct chunk_entry *e, const uint8_t *plain, size_t plain_len,
                   uint8_t *frame, size_t flen, struct chunk_entry *d, uint8_t wsd[32],
                   uint8_t leaf[32], char *errmsg);
/* Writes the buffered frames (a failure is sticky). */
int lg_flush_frames(ledger *l);
/* Seals and writes one entry, then records it. plain may be NULL. */
int lg_append_frame(ledger *l, struct chunk_entry *e, const uint8_t *plain, size_t plain_len,
                    char *errmsg);

/* Records block `block`'s hash if it is the next one (verify callback). */
void lg_add_block(void *l, uint64_t block, const uint8_t hash[MERKLE_HASH_BYTES]);
/* Keeps a copy of the last signature payload. Errors: LSKV_ENOMEM,
 * LSKV_ECORRUPT (does not decode). */
int lg_set_last_sig(ledger *l, const uint8_t *payload, size_t len, char *errmsg);

/* --- ledger_replay.c ------------------------------------------------------- */

/* Builds e's frame and compares it with the entry at its raft index. */
int lg_check_frame(ledger *l, struct chunk_entry *e, const uint8_t *plain, size_t plain_len,
                   bool absent_ok, char *errmsg);
/* The frame of a signature entry: the payload is its public part. */
struct chunk_entry lg_signature_entry(uint64_t term, uint64_t index, int64_t revision,
                                      const uint8_t *payload, size_t len);

#endif
