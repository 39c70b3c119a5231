/* The syncer thread, sealing and rotation of chunks, ledger_sync
 * (invariant 7 in ledger.c). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/file.h"
#include "ledger/ledger_impl.h"

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
struct sync_job *lg_syncer_submit(ledger *l, int fd)
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
int lg_syncer_wait(ledger *l, struct sync_job *j)
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

void lg_syncer_stop(ledger *l)
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
int lg_seal_file(ledger *l, struct chunk_info *c, int fd, char *errmsg)
{
    char from[4200], to[4200], name[CHUNK_NAME_MAX];
    chunk_name_format(name, c->first, c->last, true);
    lg_chunk_path(l, c->name, from, sizeof from);
    lg_chunk_path(l, name, to, sizeof to);
    if (c->job != NULL) { /* synced by the syncer (usually long done) */
        struct sync_job *j = c->job;
        c->job = NULL;
        int rv = lg_syncer_wait(l, j);
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
int lg_rotate(ledger *l, char *errmsg)
{
    struct chunk_info *c = &l->chunks[l->n_chunks - 1];
    int rv = lg_flush_frames(l);
    if (rv != 0) {
        errmsg_printf(errmsg, "%s: write: %s", c->name, lskv_strerror(rv));
        return rv;
    }
    /* The syncer fdatasyncs it now, off the loop; ledger_sync renames it. */
    c->job = lg_syncer_submit(l, l->fd);
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
    c->bytes = l->open_bytes;
    return lg_create_open_chunk(l, false, errmsg);
}

int ledger_sync(ledger *l)
{
    int rv = lg_flush_frames(l);
    if (rv != 0)
        return rv;
    char errmsg[LSKV_ERRMSG_SIZE];
    for (size_t i = 0; i < l->n_chunks; i++) {
        if (l->chunks[i].unsynced && (rv = lg_seal_file(l, &l->chunks[i], -1, errmsg)) != 0) {
            l->sticky = rv;
            return rv;
        }
    }
    if (l->fd >= 0 && fdatasync(l->fd) != 0) {
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
