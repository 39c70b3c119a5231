/* Tests for src/ledger/ledger_copy.c: a member that installed a raft
 * snapshot copies the ledger entries it lacks from another member; only
 * frames it would have written itself are taken. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/bytes.h"
#include "common/err.h"
#include "identity/cert.h"
#include "ledger/chunk.h"
#include "ledger/ledger.h"
#include "runner.h"

struct side {
    char dir[600];
    ledger *l;
};

struct copy_fx {
    cert_service *svc;
    cert_node *node;
    uint8_t secret[LEDGER_SECRET_BYTES];
    struct side src, dst;
    uint64_t index;
    int64_t rev;
};

static void side_open(struct copy_fx *f, struct side *s, const char *name,
                      const uint8_t *secret)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    snprintf(s->dir, sizeof s->dir, "%s/%s", test_tmpdir(), name);
    struct ledger_config cfg = {.dir = s->dir, .secret = secret, .service = f->svc,
                                .chunk_bytes = 2048, .sig_tx_interval = 7};
    int rv = ledger_open(&cfg, &s->l, errmsg);
    if (rv != 0)
        TEST_FAIL("ledger_open %s: %s", name, errmsg);
}

static void fx_init(struct copy_fx *f)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    memset(f, 0, sizeof *f);
    ASSERT_EQ(cert_service_load_or_create(test_tmpdir(), "lskv service", true, &f->svc, NULL,
                                          errmsg), 0);
    ASSERT_EQ(cert_node_load_or_create(test_tmpdir(), f->svc, "node1", true, &f->node, NULL,
                                       errmsg), 0);
    memset(f->secret, 9, sizeof f->secret);
    f->index = 1;
    f->rev = 1;
    side_open(f, &f->src, "src", f->secret);
    side_open(f, &f->dst, "dst", f->secret);
}

static void fx_close(struct copy_fx *f)
{
    ledger_close(f->src.l);
    ledger_close(f->dst.l);
    cert_node_free(f->node);
    cert_service_free(f->svc);
}

/* n KV entries on the source, a signature after every 5th. */
static void write_source(struct copy_fx *f, int n)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    for (int i = 0; i < n; i++) {
        char ws[64], claims[64];
        f->rev++;
        int w = snprintf(ws, sizeof ws, "write-set-%lld", (long long)f->rev);
        int c = snprintf(claims, sizeof claims, "claims-%lld", (long long)f->rev);
        struct ledger_entry e = {.term = 3, .index = f->index++, .revision = f->rev,
                                 .type = i % 9 == 4 ? LEDGER_ENTRY_LEASE : LEDGER_ENTRY_KV,
                                 .write_set = (const uint8_t *)ws, .write_set_len = (size_t)w,
                                 .claims = (const uint8_t *)claims, .claims_len = (size_t)c};
        if (ledger_append(f->src.l, &e, errmsg) != 0)
            TEST_FAIL("append: %s", errmsg);
        if (i % 5 == 4) {
            uint8_t *p;
            size_t len;
            bool appended;
            ASSERT_EQ(ledger_make_signature(f->src.l, f->node, 1000 + (uint64_t)i, &p, &len), 0);
            if (ledger_apply_signature(f->src.l, 3, f->index++, f->rev, p, len, &appended,
                                       errmsg) != 0)
                TEST_FAIL("signature: %s", errmsg);
            free(p);
        }
    }
}

/* Copies what dst lacks in pieces of at most max_bytes; returns the calls. */
static int copy_all(struct copy_fx *f, size_t max_bytes)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct ledger_position ps, pd;
    ledger_position(f->src.l, &ps);
    int calls = 0;
    for (;;) {
        ledger_position(f->dst.l, &pd);
        uint8_t *buf;
        size_t len;
        uint64_t n;
        ASSERT_EQ(ledger_read_frames(f->src.l, pd.size, ps.size, max_bytes, &buf, &len, &n,
                                     errmsg), 0);
        if (n == 0) {
            free(buf);
            return calls;
        }
        calls++;
        for (size_t off = 0; off < len;) {
            size_t fl = 4 + get_u32be(buf + off);
            if (ledger_append_copy(f->dst.l, buf + off, fl, errmsg) != 0)
                TEST_FAIL("append_copy: %s", errmsg);
            off += fl;
        }
        free(buf);
    }
}

TEST(ledger_copy, copied_ledger_equals_the_source_and_reopens)
{
    struct copy_fx f;
    fx_init(&f);
    write_source(&f, 60);
    int calls = copy_all(&f, 300);
    ASSERT(calls > 5); /* really in pieces */
    struct ledger_position ps, pd;
    ledger_position(f.src.l, &ps);
    ledger_position(f.dst.l, &pd);
    ASSERT_EQ(pd.size, ps.size);
    ASSERT_EQ(pd.index, ps.index);
    ASSERT_EQ(pd.signed_size, ps.signed_size);
    char errmsg[LSKV_ERRMSG_SIZE];
    for (uint64_t n = 1; n <= ps.size; n++) {
        uint8_t a[32], b[32];
        ASSERT_EQ(ledger_root_at(f.src.l, n, a, errmsg), 0);
        ASSERT_EQ(ledger_root_at(f.dst.l, n, b, errmsg), 0);
        ASSERT(memcmp(a, b, 32) == 0);
    }
    /* a range past the end or empty: nothing */
    uint8_t *buf;
    size_t len;
    uint64_t n;
    ASSERT_EQ(ledger_read_frames(f.src.l, ps.size, ps.size + 5, 1000, &buf, &len, &n, errmsg), 0);
    ASSERT_EQ(n, 0);
    free(buf);
    /* one frame bigger than max_bytes still comes alone */
    ASSERT_EQ(ledger_read_frames(f.src.l, 0, ps.size, 1, &buf, &len, &n, errmsg), 0);
    ASSERT_EQ(n, 1);
    free(buf);
    /* the copy verifies as a whole on reopen, and goes on like the source */
    ASSERT_EQ(ledger_sync(f.dst.l), 0);
    ledger_close(f.dst.l);
    side_open(&f, &f.dst, "dst", f.secret);
    ledger_position(f.dst.l, &pd);
    ASSERT_EQ(pd.size, ps.size);
    write_source(&f, 3);
    copy_all(&f, 1 << 20);
    ledger_position(f.src.l, &ps);
    ledger_position(f.dst.l, &pd);
    ASSERT_EQ(pd.size, ps.size);
    fx_close(&f);
}

/* The first frame dst lacks, as the source holds it (malloc'ed). */
static uint8_t *next_frame(struct copy_fx *f, size_t *len)
{
    char errmsg[LSKV_ERRMSG_SIZE];
    struct ledger_position pd;
    ledger_position(f->dst.l, &pd);
    uint8_t *buf;
    uint64_t n;
    ASSERT_EQ(ledger_read_frames(f->src.l, pd.size, pd.size + 1, 1, &buf, len, &n, errmsg), 0);
    ASSERT_EQ(n, 1);
    return buf;
}

TEST(ledger_copy, frames_this_member_would_not_write_are_refused)
{
    struct copy_fx f;
    fx_init(&f);
    write_source(&f, 12);
    char errmsg[LSKV_ERRMSG_SIZE];
    size_t len;
    uint8_t *frame = next_frame(&f, &len);
    /* a flipped byte anywhere in the body, checksum made valid again */
    for (size_t at = 4; at + 4 < len; at += 7) {
        uint8_t *bad = malloc(len);
        memcpy(bad, frame, len);
        bad[at] ^= 0x20;
        chunk_entry_finish(bad, len);
        int rv = ledger_append_copy(f.dst.l, bad, len, errmsg);
        if (rv == 0)
            TEST_FAIL("a frame with byte %zu flipped was taken", at);
        free(bad);
    }
    /* trailing bytes */
    uint8_t *longer = calloc(1, len + 3);
    memcpy(longer, frame, len);
    ASSERT_EQ(ledger_append_copy(f.dst.l, longer, len + 3, errmsg), LSKV_ECORRUPT);
    free(longer);
    /* nothing was appended by the refusals */
    struct ledger_position pd;
    ledger_position(f.dst.l, &pd);
    ASSERT_EQ(pd.size, 0);
    ASSERT_EQ(ledger_append_copy(f.dst.l, frame, len, errmsg), 0);
    free(frame);
    /* A gap (the second entry skipped) is not visible in one frame (raft
     * indexes have gaps too), but the next signature's root differs. */
    struct ledger_position ps;
    ledger_position(f.src.l, &ps);
    int rv = 0;
    for (uint64_t leaf = 2; leaf < ps.size && rv == 0; leaf++) {
        uint8_t *buf;
        size_t l;
        uint64_t n;
        ASSERT_EQ(ledger_read_frames(f.src.l, leaf, leaf + 1, 1, &buf, &l, &n, errmsg), 0);
        rv = ledger_append_copy(f.dst.l, buf, l, errmsg);
        free(buf);
    }
    ASSERT_EQ(rv, LSKV_ECORRUPT);
    if (strstr(errmsg, "root") == NULL && strstr(errmsg, "covers") == NULL)
        TEST_FAIL("refused for another reason: %s", errmsg);
    fx_close(&f);
}

TEST(ledger_copy, frames_under_another_secret_are_refused)
{
    struct copy_fx f;
    fx_init(&f);
    ledger_close(f.dst.l);
    uint8_t other[LEDGER_SECRET_BYTES];
    memset(other, 5, sizeof other);
    side_open(&f, &f.dst, "dst-other", other);
    write_source(&f, 3);
    char errmsg[LSKV_ERRMSG_SIZE];
    size_t len;
    uint8_t *frame = next_frame(&f, &len);
    ASSERT_EQ(ledger_append_copy(f.dst.l, frame, len, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "ledger secret") != NULL);
    free(frame);
    fx_close(&f);
}
