/* The ledger (see ledger.h; formats in chunk.h, sig.h, docs/ledger-format.md).
 *
 * Design notes.
 *
 * Terms. A chunk is one file: a header (the Merkle peaks of every leaf
 * before it) and entry frames. Exactly one chunk is open (name
 * "ledger_<first>"); sealed chunks are "ledger_<first>-<last>.committed".
 * The window is the open chunk's entries, kept in memory (leaf hashes in the
 * tree, a small record per entry, the signature payloads).
 *
 * Invariants.
 *  (1) Chunk names are contiguous: each first = previous last + 1, the first
 *      chunk starts at leaf 0, and only the last chunk is open.
 *  (2) A chunk is sealed only right after a signature entry, so every sealed
 *      chunk ends with a signature.
 *  (3) tree.base = open chunk's first leaf; the tree holds every leaf of the
 *      open chunk; win[i] describes leaf base + i.
 *  (4) Raft indexes strictly increase along the ledger; revisions never
 *      decrease.
 *  (5) signed_size (leaves covered by the last applied signature) never
 *      decreases: a stale signature is dropped, not appended.
 *  (6) A (key, nonce) pair seals one plaintext: the nonce is the txid, and
 *      a txid is appended once (4).
 *
 * State machine of the open file: OPEN -(signature, size >= chunk_bytes)->
 * UNSYNCED (rotate(): frames written, still named "ledger_<first>", its
 * fdatasync queued on the syncer thread; next chunk created; the loop does
 * no fsync) -(ledger_sync: wait for that fdatasync, usually long done)->
 * SEALED (rename to .committed; then one directory fsync). The syncer
 * only ever calls fdatasync on fds handed to it; everything else stays on
 * the owner's thread.
 * Any failed write/sync/rename -> STICKY (l->sticky), until reopened.
 *
 *  (7) Durability: a ".committed" file's bytes were fdatasynced before its
 *      rename, so sealed files are never torn. Chunks after the last
 *      .committed one are named "ledger_<first>" (several after a crash
 *      between a rotation and the next ledger_sync); every byte that was in
 *      them at the last ledger_sync is durable, later bytes may be lost.
 *      ledger_open walks them in order (repair_unsynced): a complete one
 *      (ends with a signature, the next chunk starts right after it) is
 *      synced and renamed; at the first torn, empty or non-contiguous one
 *      the torn tail is cut, every later chunk is deleted, and it becomes
 *      the open chunk. Raft replays everything after its snapshot, and
 *      ledger_sync runs before every snapshot, so nothing cut was needed.
 *
 * Transitions: ledger_open (scan + tail repair), append_frame (every
 * append), rotate, ledger_close. */
#include "ledger/ledger.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/err.h"
#include "common/file.h"
#include "common/hex.h"
#include "crypto/aead.h"
#include "ledger/chunk.h"
#include "ledger/anchor.h"
#include "ledger/hash.h"
#include "ledger/keys.h"
#include "ledger/merkle.h"
#include "ledger/receipt.h"
#include "ledger/sig.h"
#include "ledger/verify.h"

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
    char name[CHUNK_NAME_MAX];
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

/* Frames are written once per loop turn (ledger_flush), or as soon as this
 * many bytes are buffered. */
#define WBUF_FLUSH_BYTES (1u << 20)

/* --- Small helpers -------------------------------------------------------- */

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 64;
    while (c < need)
        c *= 2;
    void *p = realloc(*arr, c * elem);
    if (p == NULL)
        return LSKV_ENOMEM;
    *arr = p;
    *cap = c;
    return 0;
}

static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static void chunk_path(const ledger *l, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", l->dir, name);
}

static void clear_window(ledger *l)
{
    for (size_t i = 0; i < l->n_sigs; i++)
        free(l->sigs[i].payload);
    l->n_sigs = 0;
    l->n_win = 0;
}

/* Finds the chunk holding leaf (the open one if leaf is past every sealed one). */
static size_t chunk_of_leaf(const ledger *l, uint64_t leaf)
{
    size_t lo = 0, hi = l->n_chunks; /* first chunk with first > leaf */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->chunks[mid].first <= leaf)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? lo - 1 : 0;
}

/* --- Scanning chunk files --------------------------------------------------- */

struct scan {
    ledger *l;
    size_t chunk;       /* index into l->chunks */
    uint8_t *buf;
    size_t len, off;
    struct chunk_header h;
    uint64_t leaf;      /* leaf index of the next entry */
    char path[4200];
};

static int scan_load(struct scan *s, char *errmsg)
{
    free(s->buf);
    s->buf = NULL;
    chunk_path(s->l, s->l->chunks[s->chunk].name, s->path, sizeof s->path);
    int rv = file_read_all(s->path, &s->buf, &s->len, errmsg);
    if (rv != 0)
        return rv;
    rv = chunk_header_decode(s->buf, s->len, &s->h, &s->off, errmsg);
    if (rv == 0 && s->h.first_leaf != s->l->chunks[s->chunk].first) {
        errmsg_printf(errmsg, "header names first leaf %" PRIu64, s->h.first_leaf);
        rv = LSKV_ECORRUPT;
    }
    if (rv != 0) {
        errmsg_wrapf(errmsg, "%s", s->path);
        return rv;
    }
    s->leaf = s->h.first_leaf;
    return 0;
}

static int flush_frames(ledger *l);

static int scan_open(ledger *l, size_t chunk, struct scan *s, char *errmsg)
{
    memset(s, 0, sizeof *s);
    /* The files must hold every entry: write the buffered frames. */
    int rv = flush_frames(l);
    if (rv != 0) {
        errmsg_printf(errmsg, "ledger: write: %s", lskv_strerror(rv));
        return rv;
    }
    s->l = l;
    s->chunk = chunk;
    return scan_load(s, errmsg);
}

static void scan_close(struct scan *s)
{
    free(s->buf);
    s->buf = NULL;
}

/* 1: *e is the entry at leaf s->leaf - 1 (borrowing s->buf until the next
 * call); 0: no more entries; < 0: error. Crosses into later chunks. */
static int scan_next(struct scan *s, struct chunk_entry *e, char *errmsg)
{
    for (;;) {
        if (s->off < s->len) {
            bool trunc;
            int rv = chunk_entry_decode(s->buf + s->off, s->len - s->off, e, &trunc, errmsg);
            if (rv != 0) {
                errmsg_wrapf(errmsg, "%s: offset %zu", s->path, s->off);
                return rv;
            }
            s->off += e->frame_len;
            s->leaf++;
            return 1;
        }
        const struct chunk_info *c = &s->l->chunks[s->chunk];
        if (!c->open && s->leaf != c->last + 1) {
            errmsg_printf(errmsg, "%s: holds leaves up to %" PRIu64 ", name says %" PRIu64,
                          s->path, s->leaf - 1, c->last);
            return LSKV_ECORRUPT;
        }
        if (s->chunk + 1 >= s->l->n_chunks)
            return 0;
        s->chunk++;
        int rv = scan_load(s, errmsg);
        if (rv != 0)
            return rv;
    }
}

/* --- Opening -------------------------------------------------------------- */

static int cmp_chunk(const void *a, const void *b)
{
    const struct chunk_info *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

static int list_chunks(ledger *l, char *errmsg)
{
    DIR *d = opendir(l->dir);
    if (d == NULL) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: %s", l->dir, strerror(errno));
        return rv;
    }
    struct dirent *de;
    int rv = 0;
    while ((de = readdir(d)) != NULL) {
        struct chunk_info c = {0};
        if (!chunk_name_parse(de->d_name, &c.first, &c.last, &c.open))
            continue;
        c.open = !c.open; /* parse reports committed */
        if (strlen(de->d_name) >= sizeof c.name)
            continue;
        memcpy(c.name, de->d_name, strlen(de->d_name) + 1);
        c.first_rev = INT64_MAX;
        if ((rv = grow((void **)&l->chunks, &l->cap_chunks, l->n_chunks + 1, sizeof c)) != 0)
            break;
        l->chunks[l->n_chunks++] = c;
    }
    closedir(d);
    if (rv != 0)
        return rv;
    if (l->n_chunks > 1)
        qsort(l->chunks, l->n_chunks, sizeof l->chunks[0], cmp_chunk);
    struct verify_name *names = malloc((l->n_chunks ? l->n_chunks : 1) * sizeof *names);
    if (names == NULL)
        return LSKV_ENOMEM;
    for (size_t i = 0; i < l->n_chunks; i++)
        names[i] = (struct verify_name){l->chunks[i].first, l->chunks[i].last,
                                        !l->chunks[i].open};
    size_t bad;
    char why[LSKV_ERRMSG_SIZE];
    /* Several open-named chunks: repair_unsynced (invariant 7). */
    rv = verify_names(names, l->n_chunks, true, &bad, why);
    free(names);
    if (rv != 0)
        errmsg_printf(errmsg, "%s/%s: %s", l->dir, l->chunks[bad].name, why);
    return rv;
}

/* Creates the open chunk file starting at the tree's current size. With
 * sync, its header and name are made durable now; else by ledger_sync. */
static int create_open_chunk(ledger *l, bool sync, char *errmsg)
{
    uint64_t first = merkle_size(l->tree);
    struct chunk_header *h = calloc(1, sizeof *h);
    uint8_t *hb = malloc(chunk_header_size(MERKLE_MAX_DEPTH));
    int rv = LSKV_ENOMEM;
    if (h == NULL || hb == NULL)
        goto out;
    h->first_leaf = first;
    if ((rv = merkle_peaks(l->tree, first, h->peaks, &h->n_peaks)) != 0)
        goto out;
    chunk_header_encode(h, hb);
    struct chunk_info c = {.first = first, .open = true, .first_rev = INT64_MAX};
    chunk_name_format(c.name, first, 0, false);
    if ((rv = grow((void **)&l->chunks, &l->cap_chunks, l->n_chunks + 1, sizeof c)) != 0)
        goto out;
    char path[4200];
    chunk_path(l, c.name, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        rv = -errno;
        errmsg_printf(errmsg, "%s: create: %s", path, strerror(errno));
        goto out;
    }
    size_t hl = chunk_header_size(h->n_peaks);
    if ((rv = write_all(fd, hb, hl)) != 0 || (sync && fdatasync(fd) != 0 && (rv = -errno)) ||
        (sync && (rv = file_fsync_dir(l->dir)) != 0)) {
        errmsg_printf(errmsg, "%s: write header: %s", path, lskv_strerror(rv));
        close(fd);
        goto out;
    }
    /* The tree restarts at the chunk boundary (invariant 3). */
    merkle_tree *t;
    if ((rv = merkle_open(first, (const uint8_t(*)[MERKLE_HASH_BYTES])h->peaks, h->n_peaks,
                          &t)) != 0) {
        close(fd);
        goto out;
    }
    merkle_close(l->tree);
    l->tree = t;
    l->chunks[l->n_chunks++] = c;
    l->fd = fd;
    l->open_bytes = hl;
    if (!sync)
        l->dir_dirty = true;
    clear_window(l);
out:
    free(h);
    free(hb);
    return rv;
}

static int record_entry(ledger *l, const struct chunk_entry *e, const uint8_t wsd[32],
                        const uint8_t leaf[32], const uint8_t *sig_payload, size_t sig_len,
                        char *errmsg);

/* "<path>: offset N, txid T.I: why" (the message ledger_open fails with). */
static void where_msg(char *errmsg, const char *path, size_t off, bool have_txid, uint64_t term,
                      uint64_t index, const char *why)
{
    if (have_txid)
        errmsg_printf(errmsg, "%s: offset %zu, txid %" PRIu64 ".%" PRIu64 ": %s", path, off,
                      term, index, why);
    else
        errmsg_printf(errmsg, "%s: offset %zu: %s", path, off, why);
}

/* Reads the open chunk (last in l->chunks) into the window, checking every
 * entry with v and repairing a torn tail. */
static int load_open_chunk(ledger *l, verifier *v, bool *torn, char *errmsg)
{
    *torn = false;
    struct chunk_info *c = &l->chunks[l->n_chunks - 1];
    char path[4200], why[LSKV_ERRMSG_SIZE];
    chunk_path(l, c->name, path, sizeof path);
    uint8_t *buf;
    size_t len;
    int rv = file_read_all(path, &buf, &len, errmsg);
    if (rv != 0)
        return rv;
    struct chunk_header *h = calloc(1, sizeof *h);
    size_t off = 0;
    if (h == NULL) {
        free(buf);
        return LSKV_ENOMEM;
    }
    rv = chunk_header_decode(buf, len, h, &off, why);
    if (rv != 0 && len < chunk_header_size(__builtin_popcountll(c->first))) {
        /* Crashed while creating it: make it again. */
        free(buf);
        free(h);
        if (unlink(path) != 0)
            return -errno;
        l->n_chunks--;
        return create_open_chunk(l, true, errmsg);
    }
    if (rv == 0)
        rv = verify_chunk_begin(v, c->first, h, why);
    if (rv == 0) {
        merkle_tree *t;
        rv = merkle_open(h->first_leaf, (const uint8_t(*)[MERKLE_HASH_BYTES])h->peaks, h->n_peaks,
                         &t);
        if (rv == 0) {
            merkle_close(l->tree);
            l->tree = t;
        } else {
            errmsg_printf(why, "%s", lskv_strerror(rv));
        }
    }
    struct chunk_entry e = {0};
    bool have_txid = false;
    while (rv == 0 && off < len) {
        bool trunc;
        rv = chunk_entry_decode(buf + off, len - off, &e, &trunc, why);
        if (rv == LSKV_ECORRUPT && (trunc || off + 4 + (size_t)get_u32be(buf + off) == len)) {
            /* Torn tail: the last frame is incomplete or its checksum fails.
             * Raft still holds the entry and will apply it again. */
            if (truncate(path, (off_t)off) != 0) {
                rv = -errno;
                errmsg_printf(why, "truncate torn tail: %s", strerror(errno));
                break;
            }
            len = off;
            *torn = true;
            rv = 0;
            break;
        }
        if (rv != 0)
            break;
        have_txid = true;
        if ((rv = verify_entry(v, &e, why)) != 0)
            break;
        uint8_t wsd[32], leaf[32];
        chunk_entry_wsd(&e, wsd);
        merkle_leaf_hash_ced(wsd, e.commit_evidence_digest, e.claims_digest, leaf);
        if ((rv = record_entry(l, &e, wsd, leaf, e.public_part, e.public_len, why)) != 0)
            break;
        off += e.frame_len;
    }
    if (rv != 0)
        where_msg(errmsg, path, off, have_txid, e.term, e.index, why);
    free(buf);
    free(h);
    if (rv != 0)
        return rv;
    l->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (l->fd < 0) {
        rv = -errno;
        errmsg_printf(errmsg, "%s: open: %s", path, strerror(errno));
        return rv;
    }
    l->open_bytes = len;
    return 0;
}

/* Deletes chunks k.. (after a tear: invariant 7). */
static int drop_chunks_from(ledger *l, size_t k, char *errmsg)
{
    while (l->n_chunks > k) {
        char path[4200];
        chunk_path(l, l->chunks[l->n_chunks - 1].name, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT) {
            int rv = -errno;
            errmsg_printf(errmsg, "%s: unlink: %s", path, strerror(errno));
            return rv;
        }
        l->n_chunks--;
        l->dir_dirty = true;
    }
    return 0;
}

static int seal_file(ledger *l, struct chunk_info *c, int fd, char *errmsg);
static int syncer_wait(ledger *l, struct sync_job *j);
static void syncer_stop(ledger *l);

/* Loads the open-named chunks from k on (invariant 7): every one but the
 * last was rotated and maybe not synced. v has checked every chunk before k. */
static int repair_unsynced(ledger *l, size_t k, verifier *v, char *errmsg)
{
    size_t total = l->n_chunks;
    int rv = 0;
    for (; k < total; k++) {
        bool torn;
        l->n_chunks = k + 1; /* load_open_chunk and record_entry work on the last chunk */
        struct chunk_info *c = &l->chunks[k];
        uint64_t first = c->first;
        if ((rv = load_open_chunk(l, v, &torn, errmsg)) != 0)
            break;
        if (k + 1 == total)
            break;
        uint64_t size = merkle_size(l->tree);
        bool complete = !torn && l->n_win > 0 && l->n_sigs > 0 &&
                        l->sigs[l->n_sigs - 1].leaf == size - 1 && l->chunks[k].first == first &&
                        l->chunks[k + 1].first == size;
        if (!complete) {
            l->n_chunks = total;
            rv = drop_chunks_from(l, k + 1, errmsg);
            break;
        }
        /* A complete chunk: seal it now. */
        c = &l->chunks[k];
        c->last = size - 1;
        int fd = l->fd;
        l->fd = -1;
        if ((rv = seal_file(l, c, fd, errmsg)) != 0)
            break;
        clear_window(l);
    }
    if (rv == 0 && l->dir_dirty) {
        if ((rv = file_fsync_dir(l->dir)) != 0)
            errmsg_printf(errmsg, "%s: fsync: %s", l->dir, strerror(-rv));
        l->dir_dirty = false;
    }
    return rv;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Verifies every sealed chunk (all but the open-named ones at the end) with
 * v and leaves l's tree, window-less, at their end. */
static int verify_sealed(ledger *l, const struct ledger_config *config, verifier *v,
                         size_t n_sealed, char *errmsg)
{
    uint64_t total = 0, done = 0;
    char path[4200], why[LSKV_ERRMSG_SIZE];
    for (size_t i = 0; i < l->n_chunks; i++) {
        struct stat sb;
        chunk_path(l, l->chunks[i].name, path, sizeof path);
        if (stat(path, &sb) == 0)
            total += (uint64_t)sb.st_size;
    }
    double last = mono_s();
    int rv = 0;
    for (size_t i = 0; i < n_sealed && rv == 0; i++) {
        struct chunk_info *c = &l->chunks[i];
        uint8_t *buf;
        size_t len;
        chunk_path(l, c->name, path, sizeof path);
        if ((rv = file_read_all(path, &buf, &len, errmsg)) != 0)
            break;
        struct verify_chunk_result r;
        rv = verify_chunk(v, buf, len, c->first, c->last, true, false, &r, why);
        free(buf);
        if (rv != 0) {
            where_msg(errmsg, path, r.offset, r.have_txid, r.term, r.index, why);
            break;
        }
        c->first_rev = r.first_rev;
        done += len;
        double now = mono_s();
        if (config->progress != NULL && (now - last >= 1.0 || i + 1 == n_sealed)) {
            struct verify_state st;
            verify_get_state(v, &st);
            config->progress(config->progress_arg, done, total, st.size);
            last = now;
        }
    }
    if (rv != 0)
        return rv;
    struct verify_state st;
    verify_get_state(v, &st);
    uint8_t(*peaks)[MERKLE_HASH_BYTES] = malloc(MERKLE_MAX_DEPTH * MERKLE_HASH_BYTES);
    if (peaks == NULL)
        return LSKV_ENOMEM;
    size_t np;
    verify_peaks(v, peaks, &np);
    rv = merkle_open(st.size, (const uint8_t(*)[MERKLE_HASH_BYTES])peaks, np, &l->tree);
    free(peaks);
    l->signed_size = st.signed_size;
    l->last_nonsig_leaf = st.last_nonsig_leaf;
    l->last_term = st.last_term;
    l->last_index = st.last_index;
    l->last_rev = st.last_rev;
    return rv;
}

int ledger_open(const struct ledger_config *config, ledger **out, char *errmsg)
{
    if (config->dir == NULL || config->secret == NULL || strlen(config->dir) >= 4000) {
        errmsg_printf(errmsg, "ledger: dir and secret are required");
        return LSKV_EINVAL;
    }
    ledger *l = calloc(1, sizeof *l);
    if (l == NULL)
        return LSKV_ENOMEM;
    snprintf(l->dir, sizeof l->dir, "%s", config->dir);
    memcpy(l->secret, config->secret, LEDGER_SECRET_BYTES);
    ledger_private_key(l->secret, l->enc_key);
    keys_ce_init(&l->ce_key, l->secret);
    l->service = config->service;
    l->chunk_bytes = config->chunk_bytes ? config->chunk_bytes : LEDGER_DEFAULT_CHUNK_BYTES;
    l->sig_tx_interval = config->sig_tx_interval ? config->sig_tx_interval
                                                 : LEDGER_DEFAULT_SIG_TX_INTERVAL;
    l->sig_ms_interval = config->sig_ms_interval ? config->sig_ms_interval
                                                 : LEDGER_DEFAULT_SIG_MS_INTERVAL;
    l->fsync_each = config->fsync_each;
    l->fd = -1;
    l->last_nonsig_leaf = -1;
    verifier *v = NULL;
    int rv;
    if (l->service != NULL && (rv = cert_service_digest(l->service, l->service_digest)) != 0) {
        errmsg_printf(errmsg, "ledger: cannot hash the service certificate");
        goto err;
    }
    if ((rv = aead_key_new(l->enc_key, &l->seal)) != 0) {
        errmsg_printf(errmsg, "ledger: cannot set up the sealing key");
        goto err;
    }
    if (mkdir(l->dir, 0700) != 0 && errno != EEXIST) {
        rv = -errno;
        errmsg_printf(errmsg, "%s: mkdir: %s", l->dir, strerror(errno));
        goto err;
    }
    if ((rv = list_chunks(l, errmsg)) != 0)
        goto err;
    /* Everything is checked before anything is served (docs/ledger-format.md
     * section 7): the sealed chunks here, the open-named ones as they load. */
    struct verify_config vc = {.service = config->service, .secret = l->secret};
    if ((rv = verify_open(&vc, &v)) != 0)
        goto err;
    size_t n_sealed = 0;
    while (n_sealed < l->n_chunks && !l->chunks[n_sealed].open)
        n_sealed++;
    if ((rv = verify_sealed(l, config, v, n_sealed, errmsg)) != 0)
        goto err;
    if (n_sealed < l->n_chunks)
        rv = repair_unsynced(l, n_sealed, v, errmsg);
    else /* no open chunk (first start, or a crash right after sealing) */
        rv = create_open_chunk(l, true, errmsg);
    if (rv != 0)
        goto err;
    verify_close(v);
    *out = l;
    return 0;
err:
    verify_close(v);
    ledger_close(l);
    return rv;
}

void ledger_close(ledger *l)
{
    if (l == NULL)
        return;
    if (l->fd >= 0) {
        ledger_sync(l); /* best effort: reopening repairs (invariant 7) */
        close(l->fd);
    }
    for (size_t i = 0; i < l->n_chunks; i++) {
        if (l->chunks[i].job != NULL) /* a failed ledger_sync left it */
            syncer_wait(l, l->chunks[i].job);
    }
    syncer_stop(l);
    clear_window(l);
    free(l->rc.index);
    free(l->rc.wsd);
    free(l->sigs);
    free(l->win);
    free(l->chunks);
    free(l->wbuf);
    merkle_close(l->tree);
    OPENSSL_cleanse(l->secret, sizeof l->secret);
    OPENSSL_cleanse(l->enc_key, sizeof l->enc_key);
    aead_key_free(l->seal);
    hash_hmac_wipe(&l->ce_key);
    free(l);
}

/* --- Appending ------------------------------------------------------------ */

/* Records an entry already in the open chunk's file in memory. */
static int record_entry(ledger *l, const struct chunk_entry *e, const uint8_t wsd[32],
                        const uint8_t leaf[32], const uint8_t *sig_payload, size_t sig_len,
                        char *errmsg)
{
    int rv = grow((void **)&l->win, &l->cap_win, l->n_win + 1, sizeof l->win[0]);
    if (rv == 0 && e->type == CHUNK_ENTRY_SIGNATURE)
        rv = grow((void **)&l->sigs, &l->cap_sigs, l->n_sigs + 1, sizeof l->sigs[0]);
    if (rv != 0)
        return rv;
    uint64_t leaf_index = merkle_size(l->tree);
    if (e->type == CHUNK_ENTRY_SIGNATURE) {
        struct win_sig *ws = &l->sigs[l->n_sigs];
        ws->payload = malloc(sig_len);
        if (ws->payload == NULL)
            return LSKV_ENOMEM;
        memcpy(ws->payload, sig_payload, sig_len);
        ws->len = sig_len;
        ws->leaf = leaf_index;
        if ((rv = sig_payload_decode(ws->payload, sig_len, &ws->p, errmsg)) != 0) {
            free(ws->payload);
            return rv;
        }
    }
    if ((rv = merkle_append(l->tree, leaf)) != 0) {
        if (e->type == CHUNK_ENTRY_SIGNATURE)
            free(l->sigs[l->n_sigs].payload);
        return rv;
    }
    if (e->type == CHUNK_ENTRY_SIGNATURE) {
        if (l->sigs[l->n_sigs].p.tree_size > l->signed_size)
            l->signed_size = l->sigs[l->n_sigs].p.tree_size;
        l->n_sigs++;
    } else {
        l->last_nonsig_leaf = (int64_t)leaf_index;
    }
    struct win_entry *w = &l->win[l->n_win++];
    w->term = e->term;
    w->index = e->index;
    w->revision = e->revision;
    w->type = e->type;
    memcpy(w->wsd, wsd, 32);
    memcpy(w->claims_digest, e->claims_digest, 32);
    struct chunk_info *c = &l->chunks[l->n_chunks - 1];
    if (c->first_rev == INT64_MAX)
        c->first_rev = e->revision;
    l->last_term = e->term;
    l->last_index = e->index;
    l->last_rev = e->revision;
    return 0;
}

static void *syncer_main(void *arg)
{
    ledger *l = arg;
    pthread_mutex_lock(&l->sy.mu);
    for (;;) {
        while (l->sy.head == NULL && !l->sy.quit)
            pthread_cond_wait(&l->sy.cv, &l->sy.mu);
        if (l->sy.head == NULL)
            break;
        struct sync_job *j = l->sy.head;
        l->sy.head = j->next;
        if (l->sy.head == NULL)
            l->sy.tail = NULL;
        pthread_mutex_unlock(&l->sy.mu);
        int rv = fdatasync(j->fd) != 0 ? -errno : 0;
        pthread_mutex_lock(&l->sy.mu);
        j->rv = rv;
        j->done = true;
        pthread_cond_broadcast(&l->sy.done_cv);
    }
    pthread_mutex_unlock(&l->sy.mu);
    return NULL;
}

/* Queues fd's fdatasync on the syncer. NULL when the thread cannot start
 * (then ledger_sync syncs by name). */
static struct sync_job *syncer_submit(ledger *l, int fd)
{
    if (!l->sy.started) {
        if (pthread_mutex_init(&l->sy.mu, NULL) != 0)
            return NULL;
        if (pthread_cond_init(&l->sy.cv, NULL) != 0 ||
            pthread_cond_init(&l->sy.done_cv, NULL) != 0 ||
            pthread_create(&l->sy.thread, NULL, syncer_main, l) != 0) {
            /* leaked cv on a partial failure: only when the system is broken */
            pthread_mutex_destroy(&l->sy.mu);
            return NULL;
        }
        l->sy.started = true;
    }
    struct sync_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->fd = fd;
    pthread_mutex_lock(&l->sy.mu);
    if (l->sy.tail)
        l->sy.tail->next = j;
    else
        l->sy.head = j;
    l->sy.tail = j;
    pthread_cond_signal(&l->sy.cv);
    pthread_mutex_unlock(&l->sy.mu);
    return j;
}

/* Waits for job j, frees it and closes its fd; returns its result. */
static int syncer_wait(ledger *l, struct sync_job *j)
{
    pthread_mutex_lock(&l->sy.mu);
    while (!j->done)
        pthread_cond_wait(&l->sy.done_cv, &l->sy.mu);
    pthread_mutex_unlock(&l->sy.mu);
    int rv = j->rv;
    if (close(j->fd) != 0 && rv == 0)
        rv = -errno;
    free(j);
    return rv;
}

static void syncer_stop(ledger *l)
{
    if (!l->sy.started)
        return;
    pthread_mutex_lock(&l->sy.mu);
    l->sy.quit = true;
    pthread_cond_signal(&l->sy.cv);
    pthread_mutex_unlock(&l->sy.mu);
    pthread_join(l->sy.thread, NULL);
    pthread_cond_destroy(&l->sy.cv);
    pthread_cond_destroy(&l->sy.done_cv);
    pthread_mutex_destroy(&l->sy.mu);
    l->sy.started = false;
}

/* fdatasync of a sealed chunk's file (fd, or opened by name when -1), then
 * rename to its .committed name (invariant 7). Closes fd. The caller fsyncs
 * the directory (l->dir_dirty). */
static int seal_file(ledger *l, struct chunk_info *c, int fd, char *errmsg)
{
    char from[4200], to[4200], name[CHUNK_NAME_MAX];
    chunk_name_format(name, c->first, c->last, true);
    chunk_path(l, c->name, from, sizeof from);
    chunk_path(l, name, to, sizeof to);
    if (c->job != NULL) { /* synced by the syncer (usually long done) */
        struct sync_job *j = c->job;
        c->job = NULL;
        int rv = syncer_wait(l, j);
        if (rv != 0) {
            errmsg_printf(errmsg, "%s: sync: %s", from, strerror(-rv));
            return rv;
        }
        if (rename(from, to) != 0) {
            rv = -errno;
            errmsg_printf(errmsg, "%s: rename: %s", from, strerror(errno));
            return rv;
        }
        goto renamed;
    }
    if (fd < 0 && (fd = open(from, O_RDONLY | O_CLOEXEC)) < 0) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: open: %s", from, strerror(errno));
        return rv;
    }
    if (fdatasync(fd) != 0) {
        int rv = -errno;
        close(fd);
        errmsg_printf(errmsg, "%s: sync: %s", from, strerror(-rv));
        return rv;
    }
    if (close(fd) != 0 || rename(from, to) != 0) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: rename: %s", from, strerror(errno));
        return rv;
    }
renamed:
    c->open = false;
    c->unsynced = false;
    snprintf(c->name, sizeof c->name, "%s", name);
    l->dir_dirty = true;
    return 0;
}

/* Seals the open chunk in memory and starts the next one, without any
 * fsync: the file keeps its open name until ledger_sync (invariant 7). */
static int rotate(ledger *l, char *errmsg)
{
    struct chunk_info *c = &l->chunks[l->n_chunks - 1];
    int rv = flush_frames(l);
    if (rv != 0) {
        errmsg_printf(errmsg, "%s: write: %s", c->name, lskv_strerror(rv));
        return rv;
    }
    /* The syncer fdatasyncs it now, off the loop; ledger_sync renames it. */
    c->job = syncer_submit(l, l->fd);
    if (c->job == NULL && close(l->fd) != 0) {
        rv = -errno;
        l->fd = -1;
        errmsg_printf(errmsg, "%s: close: %s", c->name, strerror(errno));
        return rv;
    }
    l->fd = -1;
    c->open = false;
    c->unsynced = true;
    c->last = merkle_size(l->tree) - 1;
    return create_open_chunk(l, false, errmsg);
}

/* Prepares e for framing (commit evidence digest, sealed length) and
 * returns the frame's size. */
static size_t frame_prepare(ledger *l, struct chunk_entry *e, size_t plain_len)
{
    char ce[LEDGER_CE_MAX];
    keys_ce_format(&l->ce_key, e->term, e->index, ce);
    hash_sha256(ce, strlen(ce), e->commit_evidence_digest);
    e->sealed = NULL;
    e->sealed_len = plain_len ? (uint32_t)(plain_len + AEAD_OVERHEAD) : 0;
    return chunk_entry_size(e->public_len, e->sealed_len);
}

/* Seals e (prepared by frame_prepare) into frame (flen bytes) as
 * append_frame writes it; *d decodes it (borrowing frame), wsd and leaf are
 * its write set digest and Merkle leaf. plain may be NULL. */
static int build_frame(ledger *l, struct chunk_entry *e, const uint8_t *plain, size_t plain_len,
                       uint8_t *frame, size_t flen, struct chunk_entry *d, uint8_t wsd[32],
                       uint8_t leaf[32], char *errmsg)
{
    size_t aad_off, aad_len, sealed_off;
    chunk_entry_begin(e, frame, &aad_off, &aad_len, &sealed_off);
    int rv = 0;
    if (plain_len) {
        uint8_t nonce[AEAD_NONCE_BYTES];
        ledger_nonce(e->term, e->index, nonce);
        rv = aead_key_seal_with_nonce(l->seal, nonce, frame + aad_off, aad_len, plain,
                                      plain_len, frame + sealed_off);
        if (rv != 0) {
            errmsg_printf(errmsg, "ledger: seal failed");
            return rv;
        }
    }
    chunk_entry_finish(frame, flen);
    bool trunc;
    if ((rv = chunk_entry_decode(frame, flen, d, &trunc, errmsg)) != 0)
        return rv;
    chunk_entry_wsd(d, wsd);
    merkle_leaf_hash_ced(wsd, d->commit_evidence_digest, d->claims_digest, leaf);
    return 0;
}

/* Writes the buffered frames to the open chunk. A failed write is sticky
 * (the partial tail is cut if possible; reopening repairs it otherwise). */
static int flush_frames(ledger *l)
{
    if (l->sticky != 0)
        return l->sticky;
    if (l->wlen == 0)
        return 0;
    int rv = write_all(l->fd, l->wbuf, l->wlen);
    if (rv == 0 && l->fsync_each && fdatasync(l->fd) != 0)
        rv = -errno;
    if (rv != 0) {
        if (ftruncate(l->fd, (off_t)(l->open_bytes - l->wlen)) != 0) {
            /* nothing more to do: reopen repairs a torn tail */
        }
        l->sticky = rv;
    }
    l->wlen = 0;
    return rv;
}

int ledger_flush(ledger *l)
{
    return flush_frames(l);
}

/* Seals and writes one entry, then records it. plain may be NULL. */
static int append_frame(ledger *l, struct chunk_entry *e, const uint8_t *plain,
                        size_t plain_len, char *errmsg)
{
    if (l->sticky != 0) {
        errmsg_printf(errmsg, "ledger: failed earlier (%s); reopen it", lskv_strerror(l->sticky));
        return l->sticky;
    }
    bool empty = merkle_size(l->tree) == 0;
    const char *why = NULL;
    int rv = LSKV_EINVAL;
    if (!empty && e->index <= l->last_index)
        why = "raft index is not above the last entry's";
    else if (e->term > UINT32_MAX)
        why = "term does not fit the 32-bit nonce field";
    else if (!empty && e->term < l->last_term)
        why = "term is below the last entry's";
    else if (!empty && e->revision < l->last_rev)
        why = "revision is below the last entry's";
    else if (plain_len > CHUNK_MAX_FRAME_BYTES / 2)
        why = "private part exceeds the frame limit", rv = LSKV_ETOOLARGE;
    else if (e->public_len > CHUNK_MAX_FRAME_BYTES / 2)
        why = "public part exceeds the frame limit", rv = LSKV_ETOOLARGE;
    if (why != NULL) {
        errmsg_printf(errmsg, "ledger: entry %" PRIu64 ".%" PRIu64 " rev %" PRId64 ": %s (last %"
                      PRIu64 ".%" PRIu64 " rev %" PRId64 ")", e->term, e->index, e->revision,
                      why, l->last_term, l->last_index, l->last_rev);
        return rv;
    }
    size_t flen = frame_prepare(l, e, plain_len);
    rv = grow((void **)&l->wbuf, &l->wcap, l->wlen + flen, 1);
    if (rv != 0)
        return rv;
    uint8_t *frame = l->wbuf + l->wlen;
    struct chunk_entry d;
    uint8_t wsd[32], leaf[32];
    if ((rv = build_frame(l, e, plain, plain_len, frame, flen, &d, wsd, leaf, errmsg)) != 0)
        return rv;
    /* Buffered until ledger_flush (once per loop turn) unless the buffer is
     * big or every append must be synced. */
    l->wlen += flen;
    l->open_bytes += flen;
    rv = record_entry(l, &d, wsd, leaf, d.public_part, d.public_len, errmsg);
    if (rv != 0) {
        l->sticky = rv; /* in the chunk but not in memory */
        return rv;
    }
    if (l->fsync_each || l->wlen >= WBUF_FLUSH_BYTES) {
        if ((rv = flush_frames(l)) != 0) {
            errmsg_printf(errmsg, "ledger: write %s: %s", l->chunks[l->n_chunks - 1].name,
                          lskv_strerror(rv));
            return rv;
        }
    }
    if (e->type == CHUNK_ENTRY_SIGNATURE && l->open_bytes >= l->chunk_bytes) {
        rv = rotate(l, errmsg);
        if (rv != 0)
            l->sticky = rv;
    }
    return rv;
}

/* --- Replay: entries the ledger already holds ------------------------------- */

bool ledger_has_index(const ledger *l, uint64_t index)
{
    return merkle_size(l->tree) > 0 && index <= l->last_index;
}

/* Loads raft index -> write set digest of sealed chunk k into l->rc. */
static int cache_chunk(ledger *l, size_t k, char *errmsg)
{
    if (l->rc.valid && l->rc.chunk == k)
        return 0;
    l->rc.valid = false;
    l->rc.n = 0;
    struct scan s;
    int rv = scan_open(l, k, &s, errmsg);
    if (rv != 0)
        return rv;
    while (s.chunk == k && s.off < s.len) {
        struct chunk_entry e;
        if ((rv = scan_next(&s, &e, errmsg)) != 1)
            break;
        rv = 0;
        if (l->rc.n == l->rc.cap) {
            size_t cap = l->rc.cap ? l->rc.cap * 2 : 1024;
            uint64_t *ix = realloc(l->rc.index, cap * sizeof *ix);
            if (ix != NULL)
                l->rc.index = ix;
            uint8_t(*w)[MERKLE_HASH_BYTES] = realloc(l->rc.wsd, cap * sizeof *w);
            if (w != NULL)
                l->rc.wsd = w;
            if (ix == NULL || w == NULL) {
                rv = LSKV_ENOMEM;
                break;
            }
            l->rc.cap = cap;
        }
        l->rc.index[l->rc.n] = e.index;
        chunk_entry_wsd(&e, l->rc.wsd[l->rc.n]);
        l->rc.n++;
    }
    scan_close(&s);
    if (rv < 0)
        return rv;
    l->rc.valid = true;
    l->rc.chunk = k;
    return 0;
}

/* Write set digest of the entry with raft index `index` at revision rev:
 * 0 and *found, or an error. */
static int find_index(ledger *l, uint64_t index, int64_t rev, uint8_t wsd[32], bool *found,
                      char *errmsg)
{
    *found = false;
    if (l->n_win > 0 && index >= l->win[0].index) {
        size_t lo = 0, hi = l->n_win;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (l->win[mid].index < index)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < l->n_win && l->win[lo].index == index) {
            memcpy(wsd, l->win[lo].wsd, 32);
            *found = true;
        }
        return 0;
    }
    /* From the sealed chunks: revisions never decrease, so the entry is at
     * or after the last chunk whose first revision is below rev. */
    size_t k = 0;
    for (size_t i = 0; i < l->n_chunks; i++)
        if (l->chunks[i].first_rev < rev)
            k = i;
    for (; k < l->n_chunks && !l->chunks[k].open; k++) {
        int rv = cache_chunk(l, k, errmsg);
        if (rv != 0)
            return rv;
        size_t n = l->rc.n;
        if (n == 0 || index > l->rc.index[n - 1])
            continue;
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (l->rc.index[mid] < index)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (l->rc.index[lo] == index) {
            memcpy(wsd, l->rc.wsd[lo], 32);
            *found = true;
        }
        return 0;
    }
    return 0;
}

static int check_frame(ledger *l, struct chunk_entry *e, const uint8_t *plain, size_t plain_len,
                       bool absent_ok, char *errmsg)
{
    struct chunk_entry d;
    uint8_t wsd[32], leaf[32], have[32];
    bool found;
    size_t flen = frame_prepare(l, e, plain_len);
    uint8_t *frame = malloc(flen);
    if (frame == NULL)
        return LSKV_ENOMEM;
    int rv = build_frame(l, e, plain, plain_len, frame, flen, &d, wsd, leaf, errmsg);
    free(frame);
    if (rv != 0)
        return rv;
    if ((rv = find_index(l, e->index, e->revision, have, &found, errmsg)) != 0)
        return rv;
    if (!found && absent_ok)
        return 0;
    if (!found || memcmp(have, wsd, 32) != 0) {
        errmsg_printf(errmsg, "ledger: replayed entry %" PRIu64 ".%" PRIu64 " %s the ledger's",
                      e->term, e->index, found ? "differs from" : "is missing from");
        return LSKV_ECORRUPT;
    }
    return 0;
}

/* The frame of a signature entry: the payload is its public part. */
static struct chunk_entry signature_entry(uint64_t term, uint64_t index, int64_t revision,
                                          const uint8_t *payload, size_t len)
{
    return (struct chunk_entry){.type = CHUNK_ENTRY_SIGNATURE,
                                .term = term,
                                .index = index,
                                .revision = revision,
                                .public_part = payload,
                                .public_len = (uint32_t)len};
}

/* Appends entry in, or (check) checks it against the one the ledger holds:
 * both build the same frame from the same private part. */
static int append_or_check(ledger *l, const struct ledger_entry *in, bool check, char *errmsg)
{
    if (in->type < LEDGER_ENTRY_KV || in->type > LEDGER_ENTRY_OTHER ||
        in->type == LEDGER_ENTRY_SIGNATURE) {
        errmsg_printf(errmsg, "ledger: entry %" PRIu64 ".%" PRIu64 ": bad entry type %u",
                      in->term, in->index, in->type);
        return LSKV_EINVAL;
    }
    if ((in->write_set_len && in->write_set == NULL) || (in->claims_len && in->claims == NULL)) {
        errmsg_printf(errmsg, "ledger: entry %" PRIu64 ".%" PRIu64 ": NULL write set or claims "
                      "with a length", in->term, in->index);
        return LSKV_EINVAL;
    }
    struct chunk_entry e = {.type = (uint8_t)in->type,
                            .term = in->term,
                            .index = in->index,
                            .revision = in->revision};
    if (in->claims != NULL)
        hash_sha256(in->claims, in->claims_len, e.claims_digest);
    if (in->write_set_len > LEDGER_MAX_WRITE_SET_BYTES) {
        errmsg_printf(errmsg, "ledger: entry %" PRIu64 ".%" PRIu64 ": write set of %zu bytes "
                      "exceeds the ledger's limit of %u", in->term, in->index,
                      in->write_set_len, LEDGER_MAX_WRITE_SET_BYTES);
        return LSKV_ETOOLARGE;
    }
    /* Only the claims' digest is kept (it is what receipts need): the
     * client holds its own request and response. */
    size_t plen = chunk_private_size(in->write_set_len);
    uint8_t *plain = malloc(plen);
    if (plain == NULL)
        return LSKV_ENOMEM;
    chunk_private_encode(in->write_set, in->write_set_len, plain);
    int rv = check ? check_frame(l, &e, plain, plen, false, errmsg)
                   : append_frame(l, &e, plain, plen, errmsg);
    OPENSSL_cleanse(plain, plen);
    free(plain);
    return rv;
}

int ledger_check(ledger *l, const struct ledger_entry *in, char *errmsg)
{
    return append_or_check(l, in, true, errmsg);
}

int ledger_check_signature(ledger *l, uint64_t term, uint64_t index, int64_t revision,
                           const uint8_t *payload, size_t len, char *errmsg)
{
    struct chunk_entry e = signature_entry(term, index, revision, payload, len);
    /* A stale signature was dropped, not appended: absent is fine. */
    return check_frame(l, &e, NULL, 0, true, errmsg);
}

int ledger_append(ledger *l, const struct ledger_entry *in, char *errmsg)
{
    return append_or_check(l, in, false, errmsg);
}

void ledger_position(const ledger *l, struct ledger_position *out)
{
    out->size = merkle_size(l->tree);
    out->term = l->last_term;
    out->index = l->last_index;
    out->revision = l->last_rev;
    out->signed_size = l->signed_size;
}

int ledger_sync(ledger *l)
{
    int rv = flush_frames(l);
    if (rv != 0)
        return rv;
    char errmsg[LSKV_ERRMSG_SIZE];
    for (size_t i = 0; i < l->n_chunks; i++) {
        if (l->chunks[i].unsynced && (rv = seal_file(l, &l->chunks[i], -1, errmsg)) != 0) {
            l->sticky = rv;
            return rv;
        }
    }
    if (fdatasync(l->fd) != 0) {
        l->sticky = -errno;
        return l->sticky;
    }
    if (l->dir_dirty) {
        if ((rv = file_fsync_dir(l->dir)) != 0) {
            l->sticky = rv;
            return rv;
        }
        l->dir_dirty = false;
    }
    return 0;
}

/* --- Signatures ------------------------------------------------------------ */

bool ledger_signature_due(const ledger *l, uint64_t now_ms)
{
    if (l->last_nonsig_leaf < 0 || (uint64_t)l->last_nonsig_leaf < l->signed_size)
        return false;
    uint64_t unsigned_n = merkle_size(l->tree) - l->signed_size;
    return unsigned_n >= l->sig_tx_interval || now_ms - l->last_sig_ms >= l->sig_ms_interval ||
           now_ms < l->last_sig_ms;
}

int ledger_make_signature(ledger *l, const cert_node *node, uint64_t now_ms,
                          uint8_t **payload, size_t *len)
{
    if (l->sticky)
        return l->sticky;
    uint64_t n = merkle_size(l->tree);
    if (n == 0 || l->service == NULL) /* a signature names the service */
        return LSKV_EINVAL;
    uint8_t root[32];
    int rv = merkle_root(l->tree, n, root);
    if (rv == 0)
        rv = sig_make(node, l->service_digest, n, root, payload, len);
    if (rv == 0)
        l->last_sig_ms = now_ms;
    return rv;
}

/* Root over the first n leaves from chunk files (n below the window). */
static int disk_root(ledger *l, uint64_t n, uint8_t out[32], char *errmsg)
{
    struct scan s;
    int rv = scan_open(l, chunk_of_leaf(l, n - 1), &s, errmsg);
    if (rv != 0)
        return rv;
    merkle_tree *t;
    rv = merkle_open(s.h.first_leaf, (const uint8_t(*)[MERKLE_HASH_BYTES])s.h.peaks, s.h.n_peaks,
                     &t);
    struct chunk_entry e;
    while (rv == 0 && merkle_size(t) < n) {
        rv = scan_next(&s, &e, errmsg);
        if (rv == 0) {
            rv = LSKV_ECORRUPT;
            errmsg_printf(errmsg, "ledger: chunk files end before leaf %" PRIu64, n);
        }
        if (rv != 1)
            break;
        uint8_t leaf[32];
        chunk_entry_leaf(&e, leaf);
        rv = merkle_append(t, leaf);
    }
    if (rv == 0)
        rv = merkle_root(t, n, out);
    if (t != NULL)
        merkle_close(t);
    scan_close(&s);
    return rv;
}

int ledger_root_at(ledger *l, uint64_t size, uint8_t out[32], char *errmsg)
{
    if (size == 0 || size > merkle_size(l->tree)) {
        errmsg_printf(errmsg, "ledger has %" PRIu64 " entries, not %" PRIu64,
                      merkle_size(l->tree), size);
        return LSKV_ENOTFOUND;
    }
    if (size >= merkle_base(l->tree))
        return merkle_root(l->tree, size, out);
    return disk_root(l, size, out, errmsg);
}

int ledger_apply_signature(ledger *l, uint64_t term, uint64_t index, int64_t revision,
                           const uint8_t *payload, size_t len, bool *appended, char *errmsg)
{
    if (appended != NULL)
        *appended = false;
    struct sig_payload p;
    int rv = sig_payload_decode(payload, len, &p, errmsg);
    if (rv != 0)
        return rv == LSKV_EFORMAT ? rv : LSKV_ECORRUPT;
    uint64_t n = merkle_size(l->tree);
    if (p.tree_size == 0 || p.tree_size > n) {
        errmsg_printf(errmsg, "signature covers %" PRIu64 " leaves, this node has %" PRIu64,
                      p.tree_size, n);
        return LSKV_ECORRUPT;
    }
    if ((rv = sig_verify(&p, l->service, errmsg)) != 0)
        return LSKV_ECORRUPT;
    uint8_t root[32];
    if (p.tree_size >= merkle_base(l->tree))
        rv = merkle_root(l->tree, p.tree_size, root);
    else
        rv = disk_root(l, p.tree_size, root, errmsg);
    if (rv != 0)
        return rv;
    if (memcmp(root, p.root, 32) != 0) {
        errmsg_printf(errmsg, "signature root over %" PRIu64 " leaves differs from this node's",
                      p.tree_size);
        return LSKV_ECORRUPT;
    }
    if (p.tree_size < l->signed_size)
        return 0; /* stale: invariant 5 */
    struct chunk_entry e = signature_entry(term, index, revision, payload, len);
    rv = append_frame(l, &e, NULL, 0, errmsg);
    if (rv == 0 && appended != NULL)
        *appended = true;
    return rv;
}

/* --- Receipts and status ----------------------------------------------------- */

struct found {
    uint64_t leaf, term, index;
    int64_t revision;
    uint8_t type;
    uint8_t wsd[32], claims_digest[32];
};

static int make_receipt(ledger *l, const struct found *f, const struct sig_payload *sp,
                        merkle_tree *t, struct arena *a, Lskvserverpb__Receipt **out,
                        char *errmsg)
{
    struct merkle_step steps[MERKLE_MAX_DEPTH];
    size_t n;
    int rv = merkle_proof(t, f->leaf, sp->tree_size, steps, &n);
    if (rv != 0)
        return rv;
    uint8_t leaf[32], root[32], ced[32];
    char ce[LEDGER_CE_MAX];
    keys_ce_format(&l->ce_key, f->term, f->index, ce);
    hash_sha256(ce, strlen(ce), ced);
    merkle_leaf_hash_ced(f->wsd, ced, f->claims_digest, leaf);
    merkle_fold(leaf, steps, n, root);
    if (memcmp(root, sp->root, 32) != 0) {
        errmsg_printf(errmsg, "ledger: proof of leaf %" PRIu64 " does not reach the signed root",
                      f->leaf);
        return LSKV_ECORRUPT;
    }
    char id[CERT_NODE_ID_HEX];
    if (cert_node_id_of_pem(sp->cert_pem, sp->cert_len, id) != 0)
        return LSKV_ECORRUPT;
    struct receipt_parts rp = {.cert_pem = sp->cert_pem,
                               .cert_len = sp->cert_len,
                               .sig = sp->sig,
                               .sig_len = sp->sig_len,
                               .node_id = id,
                               .commit_evidence = ce,
                               .steps = steps,
                               .n_steps = n,
                               .leaf_index = f->leaf,
                               .tree_size = sp->tree_size};
    memcpy(rp.service_digest, sp->service_digest, 32);
    memcpy(rp.write_set_digest, f->wsd, 32);
    memcpy(rp.claims_digest, f->claims_digest, 32);
    return receipt_build(&rp, a, out);
}

static int receipt_from_disk(ledger *l, uint64_t leaf, struct arena *a,
                             Lskvserverpb__Receipt **out, char *errmsg)
{
    struct scan s;
    int rv = scan_open(l, chunk_of_leaf(l, leaf), &s, errmsg);
    if (rv != 0)
        return rv;
    merkle_tree *t = NULL;
    rv = merkle_open(s.h.first_leaf, (const uint8_t(*)[MERKLE_HASH_BYTES])s.h.peaks, s.h.n_peaks,
                     &t);
    struct found f = {0};
    bool have = false;
    while (rv == 0) {
        struct chunk_entry e;
        rv = scan_next(&s, &e, errmsg);
        if (rv == 0) {
            rv = have ? LSKV_ENOTREADY : LSKV_ENOTFOUND;
            errmsg_printf(errmsg, "ledger: leaf %" PRIu64 " %s", leaf,
                          have ? "is not signed yet" : "does not exist");
            break;
        }
        if (rv != 1)
            break;
        rv = 0;
        uint64_t i = s.leaf - 1;
        uint8_t wsd[32], lh[32];
        chunk_entry_wsd(&e, wsd);
        merkle_leaf_hash_ced(wsd, e.commit_evidence_digest, e.claims_digest, lh);
        if ((rv = merkle_append(t, lh)) != 0)
            break;
        if (i == leaf) {
            have = true;
            f = (struct found){.leaf = i, .term = e.term, .index = e.index,
                               .revision = e.revision, .type = e.type};
            memcpy(f.wsd, wsd, 32);
            memcpy(f.claims_digest, e.claims_digest, 32);
        }
        if (have && e.type == CHUNK_ENTRY_SIGNATURE) {
            struct sig_payload sp;
            if ((rv = sig_payload_decode(e.public_part, e.public_len, &sp, errmsg)) != 0)
                break;
            if (sp.tree_size > leaf) {
                rv = make_receipt(l, &f, &sp, t, a, out, errmsg);
                break;
            }
        }
    }
    merkle_close(t);
    scan_close(&s);
    return rv;
}

int ledger_receipt_at(ledger *l, uint64_t leaf, struct arena *a, Lskvserverpb__Receipt **out,
                      char *errmsg)
{
    uint64_t base = merkle_base(l->tree);
    if (leaf >= merkle_size(l->tree)) {
        errmsg_printf(errmsg, "ledger: leaf %" PRIu64 " does not exist", leaf);
        return LSKV_ENOTFOUND;
    }
    if (leaf < base)
        return receipt_from_disk(l, leaf, a, out, errmsg);
    for (size_t i = 0; i < l->n_sigs; i++) {
        const struct win_sig *ws = &l->sigs[i];
        if (ws->leaf > leaf && ws->p.tree_size > leaf) {
            const struct win_entry *w = &l->win[leaf - base];
            struct found f = {.leaf = leaf, .term = w->term, .index = w->index,
                              .revision = w->revision, .type = w->type};
            memcpy(f.wsd, w->wsd, 32);
            memcpy(f.claims_digest, w->claims_digest, 32);
            return make_receipt(l, &f, &ws->p, l->tree, a, out, errmsg);
        }
    }
    errmsg_printf(errmsg, "ledger: leaf %" PRIu64 " is not signed yet", leaf);
    return LSKV_ENOTREADY;
}

/* The first KV entry with revision rev: 0 and *f, LSKV_ENOTFOUND, or an
 * error. Revisions never decrease along the ledger (invariant 4). */
static int find_revision(ledger *l, int64_t rev, struct found *f, char *errmsg)
{
    uint64_t base = merkle_base(l->tree);
    const struct chunk_info *open = &l->chunks[l->n_chunks - 1];
    if (rev > l->last_rev || rev <= 0)
        return LSKV_ENOTFOUND;
    if (l->n_win > 0 && rev > open->first_rev) {
        /* Only in the window: binary search for the first entry >= rev. */
        size_t lo = 0, hi = l->n_win;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (l->win[mid].revision < rev)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t i = lo; i < l->n_win && l->win[i].revision == rev; i++) {
            if (l->win[i].type == CHUNK_ENTRY_KV) {
                f->leaf = base + i;
                f->term = l->win[i].term;
                return 0;
            }
        }
        return LSKV_ENOTFOUND;
    }
    /* From the files: start at the last chunk whose first revision is below
     * rev (entries with rev may begin at its end); the scan runs on into the
     * open chunk. */
    size_t k = 0;
    for (size_t i = 0; i < l->n_chunks; i++)
        if (l->chunks[i].first_rev < rev)
            k = i;
    struct scan s;
    int rv = scan_open(l, k, &s, errmsg);
    if (rv != 0)
        return rv;
    struct chunk_entry e;
    bool found = false;
    while ((rv = scan_next(&s, &e, errmsg)) == 1) {
        if (e.revision > rev)
            break;
        if (e.revision == rev && e.type == CHUNK_ENTRY_KV) {
            f->leaf = s.leaf - 1;
            f->term = e.term;
            found = true;
            break;
        }
    }
    scan_close(&s);
    if (rv < 0)
        return rv;
    return found ? 0 : LSKV_ENOTFOUND;
}

int ledger_receipt(ledger *l, int64_t revision, uint64_t raft_term, struct arena *a,
                   Lskvserverpb__Receipt **out, char *errmsg)
{
    struct found f = {0};
    int rv = find_revision(l, revision, &f, errmsg);
    if (rv == LSKV_ENOTFOUND || (rv == 0 && raft_term != 0 && f.term != raft_term)) {
        errmsg_printf(errmsg, "ledger: no entry made revision %" PRId64 " in term %" PRIu64,
                      revision, raft_term);
        return LSKV_ENOTFOUND;
    }
    if (rv != 0)
        return rv;
    return ledger_receipt_at(l, f.leaf, a, out, errmsg);
}

int ledger_tx_status(ledger *l, int64_t revision, uint64_t raft_term,
                     enum ledger_tx_status *out, char *errmsg)
{
    struct found f = {0};
    int rv = find_revision(l, revision, &f, errmsg);
    if (rv == LSKV_ENOTFOUND) {
        *out = LEDGER_TX_UNKNOWN;
        return 0;
    }
    if (rv != 0)
        return rv;
    *out = raft_term == 0 || f.term == raft_term ? LEDGER_TX_COMMITTED : LEDGER_TX_INVALID;
    return 0;
}

/* --- Consistency proofs ------------------------------------------------------ */

int ledger_consistency(ledger *l, uint64_t from_size, uint64_t to_size, struct arena *a,
                       Lskvserverpb__GetConsistencyProofResponse **out, char *errmsg)
{
    if (to_size == 0)
        to_size = l->signed_size;
    if (to_size == 0) {
        errmsg_printf(errmsg, "ledger: nothing is signed yet");
        return LSKV_ENOTREADY;
    }
    if (from_size > to_size || to_size > l->signed_size) {
        errmsg_printf(errmsg, "ledger: no consistency proof from %" PRIu64 " to %" PRIu64
                      " leaves (signed: %" PRIu64 ")", from_size, to_size, l->signed_size);
        return from_size > to_size ? LSKV_EINVAL : LSKV_ENOTFOUND;
    }
    /* One pass from the chunk holding leaf from_size - 1: the tree from its
     * header, and the signature entries for both sizes (each comes after
     * the last leaf it covers). */
    uint64_t start = from_size ? from_size - 1 : to_size - 1;
    struct scan s;
    int rv = scan_open(l, chunk_of_leaf(l, start), &s, errmsg);
    if (rv != 0)
        return rv;
    merkle_tree *t = NULL;
    rv = merkle_open(s.h.first_leaf, (const uint8_t(*)[MERKLE_HASH_BYTES])s.h.peaks, s.h.n_peaks,
                     &t);
    Lskvserverpb__SignedRoot *from = NULL, *to = NULL;
    struct chunk_entry e;
    while (rv == 0 && (to == NULL || (from_size && from == NULL))) {
        rv = scan_next(&s, &e, errmsg);
        if (rv == 0) {
            rv = LSKV_ENOTFOUND;
            errmsg_printf(errmsg, "ledger: no signature covers exactly %" PRIu64 " leaves",
                          from_size && from == NULL ? from_size : to_size);
        }
        if (rv != 1)
            break;
        uint8_t leaf[32];
        chunk_entry_leaf(&e, leaf);
        if ((rv = merkle_append(t, leaf)) != 0 || e.type != CHUNK_ENTRY_SIGNATURE)
            continue;
        struct sig_payload p;
        if ((rv = sig_payload_decode(e.public_part, e.public_len, &p, errmsg)) != 0)
            break;
        if (from_size && from == NULL && p.tree_size == from_size)
            rv = anchor_from_sig(&p, a, &from);
        if (rv == 0 && to == NULL && p.tree_size == to_size)
            rv = anchor_from_sig(&p, a, &to);
        if (rv == 0 && from_size && from == NULL && p.tree_size > from_size) {
            rv = LSKV_ENOTFOUND;
            errmsg_printf(errmsg, "ledger: no signature covers exactly %" PRIu64 " leaves",
                          from_size);
        }
    }
    Lskvserverpb__GetConsistencyProofResponse *r = NULL;
    if (rv == 0) {
        r = arena_alloc(a, sizeof *r);
        rv = r ? 0 : LSKV_ENOMEM;
    }
    if (rv == 0) {
        lskvserverpb__get_consistency_proof_response__init(r);
        r->from = from;
        r->to = to;
    }
    if (rv == 0 && from_size) {
        uint8_t proof[MERKLE_MAX_CONSISTENCY][MERKLE_HASH_BYTES];
        size_t n;
        rv = merkle_consistency(t, from_size, to_size, proof, &n);
        r->proof = arena_calloc(a, n ? n : 1, sizeof *r->proof);
        if (rv == 0 && r->proof == NULL)
            rv = LSKV_ENOMEM;
        for (size_t i = 0; rv == 0 && i < n; i++) {
            r->proof[i] = arena_alloc(a, 2 * MERKLE_HASH_BYTES + 1);
            if (r->proof[i] == NULL)
                rv = LSKV_ENOMEM;
            else
                hex_encode(proof[i], MERKLE_HASH_BYTES, r->proof[i]);
        }
        r->n_proof = n;
    }
    merkle_close(t);
    scan_close(&s);
    if (rv == 0)
        *out = r;
    return rv;
}
