#include "storage/diskspace.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"

#define MIB (1ull << 20)

bool diskspace_stat(const char *dir, uint64_t *avail, uint64_t *total)
{
    struct statvfs st;
    if (statvfs(dir, &st) != 0)
        return false;
    *avail = (uint64_t)st.f_bavail * st.f_frsize;
    *total = (uint64_t)st.f_blocks * st.f_frsize;
    return true;
}

uint64_t diskspace_segment_bytes(uint64_t avail, uint64_t total)
{
    uint64_t cap = total / 32 < avail / 8 ? total / 32 : avail / 8;
    uint64_t seg = 64 * MIB;
    while (seg > MIB && seg > cap)
        seg >>= 1;
    return seg;
}

uint64_t diskspace_snapshot_bytes(uint64_t total)
{
    uint64_t b = total / 32;
    return b < 4 * MIB ? 4 * MIB : b > 64 * MIB ? 64 * MIB : b;
}

void diskspace_init(struct diskspace *d, const char *dir, int64_t quota, uint64_t segment,
                    uint64_t max_request, uint64_t snapshot_bytes)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    d->quota = quota == 0 ? (int64_t)DISKSPACE_DEFAULT_QUOTA : quota;
    d->floor = snapshot_bytes + segment + 2 * max_request + 2 * MIB;
    d->reserve = d->floor + segment + 2 * max_request + 6 * MIB;
    d->margin = segment + 2 * max_request + MIB;
    d->probe = diskspace_stat;
    d->cache_ms = 10;
}

static void reserve_path(const struct diskspace *d, char *out, size_t size)
{
    snprintf(out, size, "%.4000s/" DISKSPACE_FILE, d->dir);
}

/* Free bytes on the filesystem (space.reserve not counted); a failed
 * statvfs admits (it says nothing about space, and refusing every write on
 * it would be worse). */
static uint64_t avail_bytes(struct diskspace *d)
{
    /* statvfs costs a few microseconds, as much as a small write's other
     * work: one every cache_ms serves every check in between (what was
     * admitted meanwhile is counted in inflight). */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (d->cache_ms != 0 && d->probed_ms != 0 && now - d->probed_ms < d->cache_ms)
        return d->cached;
    uint64_t avail = 0, total = 0;
    if (!d->probe(d->dir, &avail, &total))
        avail = UINT64_MAX / 2;
    d->cached = avail;
    d->probed_ms = now ? now : 1;
    return avail;
}

uint64_t diskspace_start(struct diskspace *d)
{
    char path[4200];
    struct stat st;
    reserve_path(d, path, sizeof path);
    if (stat(path, &st) != 0)
        return 0;
    d->held = (uint64_t)st.st_blocks * 512;
    if (avail_bytes(d) >= d->floor || unlink(path) != 0)
        return 0;
    uint64_t freed = d->held;
    d->held = 0;
    return freed;
}

void diskspace_keep(struct diskspace *d)
{
    if (d->held != 0 || avail_bytes(d) < d->reserve + d->floor + MIB)
        return;
    char path[4200];
    reserve_path(d, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    /* 1 MiB over the floor: once it goes, at least the floor is free */
    if (posix_fallocate(fd, 0, (off_t)(d->floor + MIB)) == 0)
        d->held = d->floor + MIB;
    else
        unlink(path);
    close(fd);
}

int diskspace_admit_put(struct diskspace *d, int64_t backend_bytes, uint64_t len,
                        uint64_t *cost)
{
    *cost = 0;
    if (d->alarm)
        return LSKV_ENOSPACE;
    uint64_t c = DISKSPACE_COPIES * len;
    uint64_t avail = avail_bytes(d) + d->held;
    uint64_t need = d->reserve + d->inflight + c +
                    (backend_bytes > 0 ? (uint64_t)backend_bytes / 4 : 0);
    if (avail < need) {
        snprintf(d->why, sizeof d->why,
                 "%" PRIu64 " bytes free on the filesystem of %.4000s, %" PRIu64
                 " kept free for restart, engine compaction and entries in flight",
                 avail, d->dir, need);
    } else if (d->quota > 0 && backend_bytes + (int64_t)len >= d->quota) {
        snprintf(d->why, sizeof d->why,
                 "the engine holds %" PRId64 " bytes, --quota-backend-bytes is %" PRId64,
                 backend_bytes, d->quota);
    } else {
        d->inflight += c;
        *cost = c;
        return 0;
    }
    d->alarm = true;
    return LSKV_ENOSPACE;
}

int diskspace_admit_other(struct diskspace *d, uint64_t len, uint64_t *cost)
{
    *cost = 0;
    uint64_t c = DISKSPACE_COPIES * len;
    uint64_t avail = avail_bytes(d);
    uint64_t need = d->inflight + c;
    if (avail + d->held >= d->floor + need && avail >= d->margin + need) {
        d->inflight += c;
        *cost = c;
        return 0;
    }
    if (!d->alarm)
        snprintf(d->why, sizeof d->why,
                 "%" PRIu64 " bytes free on the filesystem of %.4000s, below the %" PRIu64
                 " bytes every write needs", avail, d->dir,
                 avail < d->margin + need ? d->margin + need : d->floor + need - d->held);
    d->alarm = true;
    return LSKV_ENOSPACE;
}

bool diskspace_can_apply(struct diskspace *d, uint64_t len)
{
    uint64_t avail = avail_bytes(d);
    if (avail >= DISKSPACE_COPIES * len + MIB)
        return true;
    if (!d->alarm)
        snprintf(d->why, sizeof d->why,
                 "%" PRIu64 " bytes free on the filesystem of %.4000s: a committed entry of %"
                 PRIu64 " bytes waits to be applied", avail, d->dir, len);
    d->alarm = true;
    return false;
}

void diskspace_done(struct diskspace *d, uint64_t cost)
{
    d->inflight -= cost < d->inflight ? cost : d->inflight;
}

void diskspace_disarm(struct diskspace *d)
{
    d->alarm = false;
}
