/* The disk-space guard: the NOSPACE alarm, --quota-backend-bytes, and the
 * free space lskvd keeps on the data dir's filesystem.
 *
 * Why. A write that reaches the disk at ENOSPC half-way (libraft's segment
 * preallocation, a LevelDB log or compaction, a ledger chunk) either kills
 * the node or leaves it unable to restart. So writes are refused before the
 * disk runs out: lskvd keeps `reserve` bytes free for what a restart, the
 * alarm and the entries already in flight need, and `floor` bytes (less)
 * for the entries that must still get through while the alarm is raised
 * (DeleteRange and Compact, which etcd allows under NOSPACE, and ledger
 * signatures).
 *
 * The alarm (etcd's NOSPACE) is raised when a Put or a Txn with puts finds
 * free space below the reserve or the engine's disk bytes (what
 * Maintenance.Status reports as dbSize) at or above the quota. It is a
 * local, sticky flag: while raised, Puts are refused even if space came
 * back, until `alarm disarm` clears it (as in etcd); the next Put re-checks.
 * It is not persisted: a restart re-evaluates it from the disk.
 *
 * The floor (and 1 MiB) is also kept as a file, <data dir>/space.reserve
 * (allocated, never written) that another process filling the disk cannot
 * take, counted as free space by the checks, except that a write also
 * needs `margin` bytes really free (what is in flight when it is checked).
 * A start that finds less than the floor free (the disk was filled by
 * someone else, or lskvd was killed with preallocated raft segments)
 * deletes it first, so that the start fits; it is made again once the
 * reserve and the floor are free (that is, on a filesystem of at least
 * about 3 x floor + segments).
 *
 * Free space is read with statvfs(2) (f_bavail: what an unprivileged
 * writer can use) at every check: a syscall of about a microsecond. */
#ifndef LSKV_STORAGE_DISKSPACE_H
#define LSKV_STORAGE_DISKSPACE_H

#include <stdbool.h>
#include <stdint.h>

#define DISKSPACE_DEFAULT_QUOTA (2ull << 30) /* etcd's DefaultQuotaBytes */
#define DISKSPACE_FILE "space.reserve"

struct diskspace {
    char dir[4096];
    uint64_t reserve; /* free bytes below which puts raise NOSPACE */
    uint64_t floor;   /* free bytes below which nothing is proposed */
    uint64_t margin;  /* bytes really free (space.reserve aside) any write needs */
    int64_t quota;    /* engine disk bytes that raise NOSPACE; < 0: none */
    uint64_t held;    /* bytes allocated to space.reserve (0: none) */
    uint64_t inflight; /* disk bytes of admitted writes not yet answered */
    bool alarm;       /* NOSPACE raised and not disarmed */
    char why[4352];   /* why it was last raised, for the log */
    bool (*probe)(const char *dir, uint64_t *avail, uint64_t *total); /* tests */
    uint64_t cache_ms;  /* statvfs at most this often (0: every check; tests) */
    uint64_t cached, probed_ms;
};

/* Free (f_bavail) and total bytes of the filesystem holding dir. */
bool diskspace_stat(const char *dir, uint64_t *avail, uint64_t *total);

/* libraft segment size for a filesystem of total bytes with avail free: a
 * power of two between 1 and 64 MiB, at most total/32 and avail/8, so that
 * the three segments raft_uv preallocates (one open, two ready) fit a small
 * filesystem. */
uint64_t diskspace_segment_bytes(uint64_t avail, uint64_t total);

/* Raft log bytes between snapshots (consensus_config.snapshot_bytes) for a
 * filesystem of total bytes: total/32, between 4 MiB and 64 MiB. A restart
 * replays the log after the last snapshot and writes its records to the
 * engine again, so this bounds what a restart needs. */
uint64_t diskspace_snapshot_bytes(uint64_t total);

/* Sets d up for dir. quota: --quota-backend-bytes (0 = 2 GiB, < 0 = none).
 * From the segment size, the largest request and the snapshot bytes:
 *   floor   = snapshot bytes + segment + 2 x max request + 2 MiB
 *             (what a restart needs: the replayed records written to the
 *             engine again, a fresh segment, LevelDB's new log and
 *             MANIFEST, the ledger's tail)
 *   reserve = floor + segment + 2 x max request + 6 MiB
 *             (and what is in flight when the alarm goes up: a segment
 *             being prepared, a few entries, a LevelDB memtable)
 *   margin  = segment + 2 x max request + 1 MiB
 * and a Put also needs a quarter of the engine's disk bytes free on top of
 * the reserve: what a LevelDB compaction writes before it deletes. */
void diskspace_init(struct diskspace *d, const char *dir, int64_t quota, uint64_t segment,
                    uint64_t max_request, uint64_t snapshot_bytes);

/* At start: finds space.reserve, and deletes it when less than the floor
 * is free. Returns the bytes it freed (0: none). */
uint64_t diskspace_start(struct diskspace *d);
/* Makes space.reserve (floor + 1 MiB) when it is missing and the reserve
 * and that much are free; called on a timer. */
void diskspace_keep(struct diskspace *d);

/* A write of n request bytes lands in the raft log, the ledger and the
 * engine: it is counted as this many times n until it is answered, so that
 * many writes admitted at once do not each count the same free space. */
#define DISKSPACE_COPIES 3

/* May a Put (or a Txn with puts) of len request bytes be proposed? 0 (and
 * *cost set: pass it to diskspace_done once the write is answered), or
 * LSKV_ENOSPACE after raising the alarm (or with it raised). The caller
 * logs d->why when the alarm goes up (alarm false before, true after). */
int diskspace_admit_put(struct diskspace *d, int64_t backend_bytes, uint64_t len,
                        uint64_t *cost);
/* May any other write be proposed (DeleteRange, Compact, a signature)? Same
 * contract; LSKV_ENOSPACE below the floor or the margin. */
int diskspace_admit_other(struct diskspace *d, uint64_t len, uint64_t *cost);
/* May a committed entry of len bytes be applied now (what apply writes to
 * the ledger and the engine fits)? false raises the alarm; the node stalls
 * and asks again (consensus_fsm.can_apply). */
bool diskspace_can_apply(struct diskspace *d, uint64_t len);
/* An admitted write was answered (or not proposed after all). */
void diskspace_done(struct diskspace *d, uint64_t cost);
/* Clears the alarm (etcd's alarm disarm). */
void diskspace_disarm(struct diskspace *d);

#endif
