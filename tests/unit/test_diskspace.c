/* Tests for storage/diskspace.c: when the NOSPACE alarm goes up, what it
 * refuses, that it sticks until disarmed, and the sizes it derives. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "runner.h"
#include "storage/diskspace.h"

#define MIB (1ull << 20)

static uint64_t fake_avail;

static bool fake_probe(const char *dir, uint64_t *avail, uint64_t *total)
{
    (void)dir;
    *avail = fake_avail;
    *total = 64 * MIB;
    return true;
}

/* Admits and answers at once: one write at a time. */
static int put1(struct diskspace *d, int64_t backend, uint64_t len)
{
    uint64_t cost = 0;
    int rv = diskspace_admit_put(d, backend, len, &cost);
    diskspace_done(d, cost);
    return rv;
}

static int other1(struct diskspace *d)
{
    uint64_t cost = 0;
    int rv = diskspace_admit_other(d, 0, &cost);
    diskspace_done(d, cost);
    return rv;
}

static bool failing_probe(const char *dir, uint64_t *avail, uint64_t *total)
{
    (void)dir;
    (void)avail;
    (void)total;
    return false;
}

TEST(diskspace, sizes_follow_the_filesystem)
{
    ASSERT_EQ(diskspace_segment_bytes(63 * MIB, 64 * MIB), 2 * MIB);
    ASSERT_EQ(diskspace_segment_bytes(4 * MIB, 64 * MIB), 1 * MIB); /* never below 1 MiB */
    ASSERT_EQ(diskspace_segment_bytes(100000 * MIB, 200000 * MIB), 64 * MIB);
    ASSERT_EQ(diskspace_snapshot_bytes(64 * MIB), 4 * MIB);
    ASSERT_EQ(diskspace_snapshot_bytes(1024 * MIB), 32 * MIB);
    ASSERT_EQ(diskspace_snapshot_bytes(1ull << 40), 64 * MIB);
    struct diskspace d;
    diskspace_init(&d, "/nonexistent", 0, 2 * MIB, 1536 * 1024, 4 * MIB);
    d.cache_ms = 0; /* the fake disk changes at once */
    ASSERT_EQ(d.quota, (int64_t)DISKSPACE_DEFAULT_QUOTA);
    ASSERT_EQ(d.floor, 4 * MIB + 2 * MIB + 3 * MIB + 2 * MIB);
    ASSERT_EQ(d.reserve, d.floor + 2 * MIB + 3 * MIB + 6 * MIB);
    diskspace_init(&d, "/nonexistent", -1, 2 * MIB, 1536 * 1024, 4 * MIB);
    d.cache_ms = 0; /* the fake disk changes at once */
    ASSERT_EQ(d.quota, -1);
}

TEST(diskspace, alarm_on_free_space_sticks_until_disarmed)
{
    struct diskspace d;
    diskspace_init(&d, "/x", 0, 2 * MIB, MIB, 4 * MIB);
    d.cache_ms = 0; /* the fake disk changes at once */
    d.probe = fake_probe;
    fake_avail = d.reserve + 10 * MIB;
    ASSERT_EQ(put1(&d, 0, 1000), 0);
    ASSERT(!d.alarm);
    /* a quarter of the engine's bytes is kept for its compactions */
    ASSERT_EQ(put1(&d, (int64_t)(40 * MIB), 1000), LSKV_ENOSPACE);
    ASSERT(d.alarm);
    ASSERT(d.why[0] != '\0');
    /* sticky: space is there, still refused, as etcd's alarm */
    ASSERT_EQ(put1(&d, 0, 1000), LSKV_ENOSPACE);
    /* deletes and compactions pass above the floor */
    ASSERT_EQ(other1(&d), 0);
    diskspace_disarm(&d);
    ASSERT(!d.alarm);
    ASSERT_EQ(put1(&d, 0, 1000), 0);
    /* the cost counts, once per copy (raft log, ledger, engine) */
    fake_avail = d.reserve + 3000;
    ASSERT_EQ(put1(&d, 0, 1000), 0);
    ASSERT_EQ(put1(&d, 0, 1001), LSKV_ENOSPACE);
    diskspace_disarm(&d);
    /* below the floor nothing passes */
    fake_avail = d.floor - 1;
    ASSERT_EQ(other1(&d), LSKV_ENOSPACE);
    ASSERT(d.alarm);
    fake_avail = d.floor;
    ASSERT_EQ(other1(&d), 0);
    /* space.reserve counts as free, but not for the margin */
    diskspace_disarm(&d);
    fake_avail = d.reserve - MIB;
    d.held = MIB;
    ASSERT_EQ(put1(&d, 0, 0), 0);
    fake_avail = d.floor - MIB;
    ASSERT_EQ(other1(&d), 0);
    fake_avail = d.margin - 1;
    d.held = d.floor;
    ASSERT_EQ(other1(&d), LSKV_ENOSPACE);
    diskspace_disarm(&d);
    /* no statvfs: admit rather than refuse everything */
    d.held = 0;
    d.probe = failing_probe;
    ASSERT_EQ(put1(&d, 0, 1000), 0);
}

TEST(diskspace, quota_as_etcd)
{
    struct diskspace d;
    diskspace_init(&d, "/x", 3 * (int64_t)MIB, 2 * MIB, MIB, 4 * MIB);
    d.cache_ms = 0; /* the fake disk changes at once */
    d.probe = fake_probe;
    fake_avail = 1ull << 40;
    ASSERT_EQ(put1(&d, (int64_t)(3 * MIB) - 101, 100), 0);
    /* etcd: refused when size + cost reaches the quota */
    ASSERT_EQ(put1(&d, (int64_t)(3 * MIB) - 100, 100), LSKV_ENOSPACE);
    ASSERT(d.alarm);
    diskspace_init(&d, "/x", -1, 2 * MIB, MIB, 4 * MIB);
    d.cache_ms = 0; /* the fake disk changes at once */
    d.probe = fake_probe;
    ASSERT_EQ(put1(&d, (int64_t)(100ull << 30), 100), 0); /* no quota */
}

TEST(diskspace, reserve_file_made_and_released_at_start)
{
    char dir[] = "/tmp/lskv-diskspace-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/" DISKSPACE_FILE, dir);
    struct diskspace d;
    diskspace_init(&d, dir, 0, MIB, 4096, 4 * MIB);
    d.cache_ms = 0; /* the fake disk changes at once */
    d.probe = fake_probe;
    fake_avail = d.reserve + d.floor; /* not enough to make it */
    diskspace_keep(&d);
    ASSERT_EQ(d.held, 0);
    ASSERT(access(path, F_OK) != 0);
    fake_avail = d.reserve + d.floor + MIB;
    diskspace_keep(&d);
    ASSERT_EQ(d.held, d.floor + MIB);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ((uint64_t)st.st_size, d.floor + MIB);
    /* a start with the floor free keeps it */
    struct diskspace d2;
    diskspace_init(&d2, dir, 0, MIB, 4096, 4 * MIB);
    d2.cache_ms = 0; /* the fake disk changes at once */
    d2.probe = fake_probe;
    fake_avail = d2.floor;
    ASSERT_EQ(diskspace_start(&d2), 0);
    ASSERT(d2.held >= d2.floor);
    ASSERT_EQ(access(path, F_OK), 0);
    /* while running it stays, whatever takes the disk; a write still needs
     * the margin really free */
    fake_avail = d.margin - 1;
    ASSERT_EQ(other1(&d), LSKV_ENOSPACE);
    ASSERT_EQ(d.held, d.floor + MIB);
    ASSERT_EQ(access(path, F_OK), 0);
    fake_avail = d.margin;
    ASSERT_EQ(other1(&d), 0);
    /* a start on a full disk deletes it */
    diskspace_init(&d2, dir, 0, MIB, 4096, 4 * MIB);
    d2.cache_ms = 0; /* the fake disk changes at once */
    d2.probe = fake_probe;
    fake_avail = 0;
    ASSERT(diskspace_start(&d2) >= d2.floor);
    ASSERT_EQ(d2.held, 0);
    ASSERT(access(path, F_OK) != 0);
    rmdir(dir);
}

TEST(diskspace, writes_in_flight_count)
{
    struct diskspace d;
    diskspace_init(&d, "/x", 0, 2 * MIB, MIB, 4 * MIB);
    d.cache_ms = 0; /* the fake disk changes at once */
    d.probe = fake_probe;
    /* room for two 1 MiB puts beyond the reserve, not three: admitted
     * together, each counts what the ones before it will write */
    fake_avail = d.reserve + 2 * DISKSPACE_COPIES * MIB;
    uint64_t c1, c2, c3;
    ASSERT_EQ(diskspace_admit_put(&d, 0, MIB, &c1), 0);
    ASSERT_EQ(diskspace_admit_put(&d, 0, MIB, &c2), 0);
    ASSERT_EQ(diskspace_admit_put(&d, 0, MIB, &c3), LSKV_ENOSPACE);
    ASSERT_EQ(c3, 0);
    ASSERT_EQ(d.inflight, 2 * DISKSPACE_COPIES * MIB);
    diskspace_disarm(&d);
    diskspace_done(&d, c1);
    ASSERT_EQ(diskspace_admit_put(&d, 0, MIB, &c3), 0);
    diskspace_done(&d, c2);
    diskspace_done(&d, c3);
    ASSERT_EQ(d.inflight, 0);
    /* deletes too, against the floor and the margin */
    fake_avail = d.floor + DISKSPACE_COPIES * 1000; /* the floor is above the margin */
    ASSERT_EQ(diskspace_admit_other(&d, 1000, &c1), 0);
    ASSERT_EQ(diskspace_admit_other(&d, 1, &c2), LSKV_ENOSPACE);
    diskspace_done(&d, c1);
    ASSERT_EQ(d.inflight, 0);
}
