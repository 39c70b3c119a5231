/* The LevelDB storage engine: the only file that talks to LevelDB.
 *
 * LevelDB only ever sees sealed records (storage/recstore.c), so its options
 * are tuned for that: no compression (ciphertext does not compress), a bloom
 * filter (reads are point lookups by id), and a modest write buffer. Writes
 * are unsynced unless asked: the Raft log and the ledger are the source of
 * truth, and a synced LevelDB write flushes its log, making every earlier
 * write durable too. */
#include "storage/engine.h"

#include <dirent.h>
#include <leveldb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/err.h"

enum {
    WRITE_BUFFER_BYTES = 4 << 20,
    BLOCK_CACHE_BYTES = 8 << 20,
    BLOOM_BITS_PER_KEY = 10,
};

struct leveldb_engine {
    struct engine base; /* first: the engine pointer is the impl pointer */
    leveldb_t *db;
    leveldb_options_t *options;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *filter;
    leveldb_readoptions_t *read_options;
    leveldb_writeoptions_t *write_async;
    leveldb_writeoptions_t *write_sync;
    char *path;
};

/* LevelDB reports errors as "<Status kind>: <detail>". Corruption means the
 * engine's own checksums caught bad bytes; anything else is I/O. */
static int translate_error(char *err, const char *what, char *errmsg)
{
    int rv = strncmp(err, "Corruption", 10) == 0 ? LSKV_ECORRUPT : LSKV_EIO;
    if (errmsg != NULL)
        errmsg_printf(errmsg, "leveldb %s: %s", what, err);
    leveldb_free(err);
    return rv;
}

static int ldb_get(struct engine *e, const uint8_t *id, size_t id_len, uint8_t **val,
                   size_t *val_len, char *errmsg)
{
    struct leveldb_engine *l = e->impl;
    char *err = NULL;
    size_t len = 0;
    char *v = leveldb_get(l->db, l->read_options, (const char *)id, id_len, &len, &err);
    if (err != NULL)
        return translate_error(err, "get", errmsg);
    if (v == NULL)
        return LSKV_ENOTFOUND;
    /* The C API's values are malloc'ed (leveldb_free is free), as the
     * engine contract promises. */
    *val = (uint8_t *)v;
    *val_len = len;
    return 0;
}

static struct engine_batch *ldb_batch_new(struct engine *e)
{
    (void)e;
    return (struct engine_batch *)leveldb_writebatch_create();
}

static void ldb_batch_put(struct engine_batch *b, const uint8_t *id, size_t id_len,
                          const uint8_t *val, size_t val_len)
{
    leveldb_writebatch_put((leveldb_writebatch_t *)b, (const char *)id, id_len,
                           (const char *)val, val_len);
}

static void ldb_batch_delete(struct engine_batch *b, const uint8_t *id, size_t id_len)
{
    leveldb_writebatch_delete((leveldb_writebatch_t *)b, (const char *)id, id_len);
}

static int ldb_batch_write(struct engine *e, struct engine_batch *b, bool sync,
                           char *errmsg)
{
    struct leveldb_engine *l = e->impl;
    leveldb_writebatch_t *wb = (leveldb_writebatch_t *)b;
    char *err = NULL;
    leveldb_write(l->db, sync ? l->write_sync : l->write_async, wb, &err);
    leveldb_writebatch_destroy(wb);
    if (err != NULL) {
        int rv = translate_error(err, sync ? "synced write" : "write", errmsg);
        return rv == LSKV_ECORRUPT ? LSKV_EIO : rv;
    }
    return 0;
}

static void ldb_batch_free(struct engine_batch *b)
{
    leveldb_writebatch_destroy((leveldb_writebatch_t *)b);
}

/* The sum of the directory's file sizes: SST files, the log (memtable
 * contents not yet flushed), MANIFEST. What etcd reports is its bolt file size,
 * the same notion. */
static int64_t ldb_disk_bytes(struct engine *e)
{
    struct leveldb_engine *l = e->impl;
    DIR *d = opendir(l->path);
    if (d == NULL)
        return 0;
    int64_t total = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        struct stat st;
        if (ent->d_name[0] == '.')
            continue;
        if (fstatat(dirfd(d), ent->d_name, &st, 0) == 0 && S_ISREG(st.st_mode))
            total += (int64_t)st.st_size;
    }
    closedir(d);
    return total;
}

/* LevelDB's own estimate: memtables plus the block cache's charge. Index
 * and filter blocks of open tables (the table cache) are not in it, so the
 * trusted figure that subtracts this one overstates, never understates. */
static int64_t ldb_mem_bytes(struct engine *e)
{
    struct leveldb_engine *l = e->impl;
    char *v = leveldb_property_value(l->db, "leveldb.approximate-memory-usage");
    if (v == NULL)
        return 0;
    int64_t n = strtoll(v, NULL, 10);
    leveldb_free(v);
    return n > 0 ? n : 0;
}

/* Two keys around every record id (ids are 16 bytes, the first a
 * non-negative revision's high byte: below 0x80), for ldb_compact. */
static const char SENTINEL_LOW[] = "";
static const char SENTINEL_HIGH[] = "\xff lskv defragment sentinel";

/* Writes or deletes both sentinels, synced. */
static int sentinels(struct leveldb_engine *l, bool put, char *errmsg)
{
    leveldb_writebatch_t *b = leveldb_writebatch_create();
    if (put) {
        leveldb_writebatch_put(b, SENTINEL_LOW, 0, "", 0);
        leveldb_writebatch_put(b, SENTINEL_HIGH, sizeof SENTINEL_HIGH - 1, "", 0);
    } else {
        leveldb_writebatch_delete(b, SENTINEL_LOW, 0);
        leveldb_writebatch_delete(b, SENTINEL_HIGH, sizeof SENTINEL_HIGH - 1);
    }
    char *err = NULL;
    leveldb_write(l->db, l->write_sync, b, &err);
    leveldb_writebatch_destroy(b);
    if (err != NULL) {
        errmsg_printf(errmsg, "defragment: %s", err);
        leveldb_free(err);
        return LSKV_EIO;
    }
    return 0;
}

/* LevelDB's CompactRange alone does not rewrite the files at the deepest
 * level holding data: a memtable flushed there (LevelDB places a flush up
 * to level 2 when nothing overlaps) keeps every overwritten record and
 * every deletion in it, so a compaction's space would never come back. A
 * flush that spans the whole key range lands above those files and is
 * merged into them, dropping what is deleted: the two sentinels make that
 * flush, and their deletion makes a second one that drops them too. */
static int ldb_compact(struct engine *e, char *errmsg)
{
    struct leveldb_engine *l = e->impl;
    int rv = sentinels(l, true, errmsg);
    leveldb_compact_range(l->db, NULL, 0, NULL, 0);
    if (rv == 0)
        rv = sentinels(l, false, errmsg);
    leveldb_compact_range(l->db, NULL, 0, NULL, 0);
    return rv;
}

static void ldb_close(struct engine *e)
{
    if (e == NULL)
        return;
    struct leveldb_engine *l = e->impl;
    if (l->db != NULL)
        leveldb_close(l->db);
    if (l->options != NULL)
        leveldb_options_destroy(l->options);
    if (l->filter != NULL)
        leveldb_filterpolicy_destroy(l->filter);
    if (l->cache != NULL)
        leveldb_cache_destroy(l->cache);
    if (l->read_options != NULL)
        leveldb_readoptions_destroy(l->read_options);
    if (l->write_async != NULL)
        leveldb_writeoptions_destroy(l->write_async);
    if (l->write_sync != NULL)
        leveldb_writeoptions_destroy(l->write_sync);
    free(l->path);
    free(l);
}

int engine_leveldb_open(const char *path, struct engine **out, char *errmsg)
{
    struct leveldb_engine *l = calloc(1, sizeof *l);
    if (l == NULL) {
        errmsg_printf(errmsg, "leveldb open %s: out of memory", path);
        return LSKV_ENOMEM;
    }
    l->base = (struct engine){
        .impl = l,
        .get = ldb_get,
        .batch_new = ldb_batch_new,
        .batch_put = ldb_batch_put,
        .batch_delete = ldb_batch_delete,
        .batch_write = ldb_batch_write,
        .batch_free = ldb_batch_free,
        .disk_bytes = ldb_disk_bytes,
        .mem_bytes = ldb_mem_bytes,
        .compact = ldb_compact,
        .close = ldb_close,
    };
    l->path = strdup(path);
    if (l->path == NULL) {
        ldb_close(&l->base);
        errmsg_printf(errmsg, "leveldb open %s: out of memory", path);
        return LSKV_ENOMEM;
    }
    l->options = leveldb_options_create();
    leveldb_options_set_create_if_missing(l->options, 1);
    leveldb_options_set_compression(l->options, leveldb_no_compression);
    leveldb_options_set_write_buffer_size(l->options, WRITE_BUFFER_BYTES);
    l->cache = leveldb_cache_create_lru(BLOCK_CACHE_BYTES);
    leveldb_options_set_cache(l->options, l->cache);
    l->filter = leveldb_filterpolicy_create_bloom(BLOOM_BITS_PER_KEY);
    leveldb_options_set_filter_policy(l->options, l->filter);
    l->read_options = leveldb_readoptions_create();
    l->write_async = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(l->write_async, 0);
    l->write_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(l->write_sync, 1);

    char *err = NULL;
    l->db = leveldb_open(l->options, path, &err);
    if (err != NULL) {
        translate_error(err, "open", errmsg);
        l->db = NULL;
        ldb_close(&l->base);
        return LSKV_EIO;
    }
    *out = &l->base;
    return 0;
}
