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
 * UNSYNCED (lg_rotate(): frames written, still named "ledger_<first>", its
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
 *  (8) blocks[j] is MTH of leaves [j * 4096, (j + 1) * 4096) for every
 *      complete block of verified or appended entries, in order (from the
 *      verifier at open, from lg_record_entry after); with the last
 *      signature's copy they let proofs for old sizes skip most rehashing.
 *  (9) points (the offset index) hold one entry per chunk start and per
 *      block boundary of every verified or appended entry, in leaf order,
 *      each with the file offset of its frame and the first signature
 *      before the next point; a segment (point to next point, or to its
 *      chunk's end) never crosses a chunk. Chunk indexes in points stay
 *      valid: chunks are only appended (and dropped at open, before any
 *      of their entries is indexed).
 *
 * Transitions: ledger_open (verify + tail repair), lg_append_frame (every
 * append), lg_rotate, ledger_close.
 *
 * Files (internals shared through ledger_impl.h, prefix lg_): this one
 * opens (verify.c checks everything first), repairs (invariant 7) and
 * closes; ledger_scan.c reads chunk files; ledger_sync.c runs the syncer
 * thread, rotates and seals chunks; ledger_append.c frames, seals and
 * appends; ledger_replay.c checks replayed entries; ledger_sign.c makes and
 * applies signatures; ledger_index.c keeps the offset index (invariant 9)
 * and reads segments; ledger_lookup.c serves receipts, tx status and
 * consistency proofs; keys.c derives keys and commit evidence. */
#include "ledger/ledger.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/err.h"
#include "common/file.h"
#include "ledger/keys.h"
#include "ledger/ledger_impl.h"
#include "ledger/verify.h"

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
        if ((rv = lg_grow((void **)&l->chunks, &l->cap_chunks, l->n_chunks + 1, sizeof c)) != 0)
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
int lg_create_open_chunk(ledger *l, bool sync, char *errmsg)
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
    if ((rv = lg_grow((void **)&l->chunks, &l->cap_chunks, l->n_chunks + 1, sizeof c)) != 0)
        goto out;
    char path[4200];
    lg_chunk_path(l, c.name, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        rv = -errno;
        errmsg_printf(errmsg, "%s: create: %s", path, strerror(errno));
        goto out;
    }
    size_t hl = chunk_header_size(h->n_peaks);
    if ((rv = lg_write_all(fd, hb, hl)) != 0 || (sync && fdatasync(fd) != 0 && (rv = -errno)) ||
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
    lg_clear_window(l);
out:
    free(h);
    free(hb);
    return rv;
}

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
    lg_chunk_path(l, c->name, path, sizeof path);
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
        return lg_create_open_chunk(l, true, errmsg);
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
        if ((rv = lg_record_entry(l, &e, off, wsd, leaf, e.public_part, e.public_len, why)) != 0)
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
        lg_chunk_path(l, l->chunks[l->n_chunks - 1].name, path, sizeof path);
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

/* Loads the open-named chunks from k on (invariant 7): every one but the
 * last was rotated and maybe not synced. v has checked every chunk before k. */
static int repair_unsynced(ledger *l, size_t k, verifier *v, char *errmsg)
{
    size_t total = l->n_chunks;
    int rv = 0;
    for (; k < total; k++) {
        bool torn;
        l->n_chunks = k + 1; /* load_open_chunk and lg_record_entry work on the last chunk */
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
        c->bytes = l->open_bytes;
        int fd = l->fd;
        l->fd = -1;
        if ((rv = lg_seal_file(l, c, fd, errmsg)) != 0)
            break;
        lg_clear_window(l);
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
        lg_chunk_path(l, l->chunks[i].name, path, sizeof path);
        if (stat(path, &sb) == 0)
            total += (uint64_t)sb.st_size;
    }
    double last = mono_s();
    int rv = 0;
    for (size_t i = 0; i < n_sealed && rv == 0; i++) {
        struct chunk_info *c = &l->chunks[i];
        uint8_t *buf;
        size_t len;
        lg_chunk_path(l, c->name, path, sizeof path);
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
        c->bytes = len;
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
    const uint8_t *sp;
    size_t sl;
    verify_last_signature(v, &sp, &sl);
    if (rv == 0 && sp != NULL)
        rv = lg_set_last_sig(l, sp, sl, errmsg);
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
    struct verify_config vc = {.service = config->service, .secret = l->secret,
                               .on_block = lg_add_block, .block_arg = l,
                               .block_log2 = LG_BLOCK_LOG2,
                               .on_entry = lg_index_verified, .entry_arg = l};
    if ((rv = verify_open(&vc, &v)) != 0)
        goto err;
    size_t n_sealed = 0;
    while (n_sealed < l->n_chunks && !l->chunks[n_sealed].open)
        n_sealed++;
    if ((rv = verify_sealed(l, config, v, n_sealed, errmsg)) != 0)
        goto err;
    if (l->points_failed) {
        rv = LSKV_ENOMEM;
        errmsg_printf(errmsg, "ledger: no memory for the offset index");
        goto err;
    }
    if (n_sealed < l->n_chunks)
        rv = repair_unsynced(l, n_sealed, v, errmsg);
    else if (!config->defer_open_chunk) /* no open chunk (a first start, a crash
                                           right after sealing) */
        rv = lg_create_open_chunk(l, true, errmsg);
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

int ledger_begin_writes(ledger *l, char *errmsg)
{
    if (l->n_chunks > 0 && l->chunks[l->n_chunks - 1].open)
        return 0;
    return lg_create_open_chunk(l, true, errmsg);
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
            lg_syncer_wait(l, l->chunks[i].job);
    }
    lg_syncer_stop(l);
    lg_clear_window(l);
    free(l->blocks);
    free(l->points);
    free(l->last_sig.payload);
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

void ledger_position(const ledger *l, struct ledger_position *out)
{
    out->size = merkle_size(l->tree);
    out->term = l->last_term;
    out->index = l->last_index;
    out->revision = l->last_rev;
    out->signed_size = l->signed_size;
}
