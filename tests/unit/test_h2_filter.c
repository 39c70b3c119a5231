#include <string.h>

#include "net/h2_filter.h"
#include "runner.h"

/* The receiver as h2.c sees it: the bytes passed so far, and the last
 * client stream whose HEADERS it has processed (found by walking the
 * complete frames passed so far, so a filter that asks before passing
 * everything ahead of the frame gets a stale answer). */
struct sink {
    uint8_t out[1024];
    size_t len;
    int calls;
    int stop_after; /* > 0: pass returns 7 on that call */
    uint32_t asked[16];
    int n_asked;
};

static uint32_t last_headers_id(const struct sink *s)
{
    uint32_t last = 0;
    size_t i = 0;
    while (s->len - i >= 9) {
        const uint8_t *p = s->out + i;
        uint32_t flen = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
        if (s->len - i - 9 < flen)
            break;
        uint32_t id = ((uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8]) &
                      0x7fffffffu;
        if (p[3] == 0x1 && id > last)
            last = id;
        i += 9 + flen;
    }
    return last;
}

static int sink_pass(void *ud, const uint8_t *data, size_t len)
{
    struct sink *s = ud;
    if (len == 0 || s->len + len > sizeof s->out)
        return -1; /* empty passes are a bug too */
    memcpy(s->out + s->len, data, len);
    s->len += len;
    if (++s->calls == s->stop_after)
        return 7;
    return 0;
}

static bool sink_is_idle(void *ud, uint32_t stream_id)
{
    struct sink *s = ud;
    if (s->n_asked < 16)
        s->asked[s->n_asked++] = stream_id;
    return (stream_id & 1u) && stream_id > last_headers_id(s);
}

static const struct h2_filter_ops ops = {sink_pass, sink_is_idle};

static size_t frame(uint8_t *p, uint32_t len, uint8_t type, uint32_t id, uint8_t fill)
{
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = 0;
    p[5] = (uint8_t)(id >> 24);
    p[6] = (uint8_t)(id >> 16);
    p[7] = (uint8_t)(id >> 8);
    p[8] = (uint8_t)id;
    memset(p + 9, fill, len);
    return 9 + len;
}

/* in: the client's frames; want: the same without the idle RST_STREAMs. */
static void build(uint8_t *in, size_t *in_len, uint8_t *want, size_t *want_len)
{
    struct {
        uint32_t len;
        uint8_t type;
        uint32_t id;
        bool dropped;
    } fr[] = {
        {6, 0x4, 0, false},  /* SETTINGS */
        {4, 0x3, 1, true},   /* RST_STREAM 1 before its HEADERS: idle */
        {5, 0x1, 3, false},  /* HEADERS 3 (1 is now closed implicitly) */
        {4, 0x3, 1, false},  /* RST 1: not idle any more */
        {4, 0x3, 3, false},  /* RST 3: open */
        {4, 0x3, 5, true},   /* RST 5: idle */
        {0, 0x3, 7, false},  /* RST 7 of a bad length: nghttp2 reports it */
        {5, 0x3, 9, false},  /* likewise */
        {4, 0x3, 0, false},  /* RST on stream 0: connection error, not ours */
        {4, 0x3, 4, false},  /* even (server) stream */
        {26, 0x0, 3, false}, /* DATA whose payload looks like RST 11 headers */
        {4, 0x8, 0, false},  /* WINDOW_UPDATE */
        {4, 0x3, 0x80000011u, true}, /* reserved bit set: stream 17, idle */
        {4, 0x3, 13, true},  /* idle, last frame */
    };
    *in_len = *want_len = 0;
    for (size_t i = 0; i < sizeof fr / sizeof fr[0]; i++) {
        uint8_t *p = in + *in_len;
        size_t n = frame(p, fr[i].len, fr[i].type, fr[i].id, (uint8_t)(0x10 + i));
        if (fr[i].type == 0x0) /* DATA payload: fake RST_STREAM 11 headers */
            for (size_t j = 0; j + 9 <= fr[i].len; j += 9)
                frame(p + 9 + j, 4, 0x3, 11, 0);
        *in_len += n;
        if (!fr[i].dropped) {
            memcpy(want + *want_len, p, n);
            *want_len += n;
        }
    }
}

static void feed_pieces(const uint8_t *in, size_t len, const size_t *cuts, size_t n_cuts,
                        struct sink *s, struct h2_filter *f)
{
    size_t at = 0;
    for (size_t k = 0; k <= n_cuts; k++) {
        size_t end = k < n_cuts ? cuts[k] : len;
        if (h2_filter_feed(f, in + at, end - at, &ops, s) != 0)
            TEST_FAIL("feed failed at %zu", at);
        at = end;
    }
}

TEST(h2_filter, drops_idle_rst_stream_whole_input)
{
    uint8_t in[512], want[512];
    size_t in_len, want_len;
    build(in, &in_len, want, &want_len);
    struct sink s = {0};
    struct h2_filter f;
    h2_filter_init(&f);
    ASSERT_EQ(h2_filter_feed(&f, in, in_len, &ops, &s), 0);
    ASSERT_EQ(s.len, want_len);
    ASSERT_MEM_EQ(s.out, want, want_len);
    ASSERT_EQ(f.dropped_frames, 4);
    /* Only well-formed RST_STREAMs on non-zero streams were asked about,
     * never the look-alikes inside DATA. */
    ASSERT_EQ(s.n_asked, 7);
    const uint32_t asked[] = {1, 1, 3, 5, 4, 17, 13};
    for (int i = 0; i < 7; i++)
        ASSERT_EQ(s.asked[i], asked[i]);
    /* Kept bytes go in few pieces: one per run between RST_STREAMs. */
    ASSERT_LE(s.calls, 8);
    /* Nothing is held at a frame boundary. */
    ASSERT_EQ(f.hdr_have, 0);
    ASSERT_EQ(f.payload_left, 0);
}

TEST(h2_filter, every_split_gives_the_same_bytes)
{
    uint8_t in[512], want[512];
    size_t in_len, want_len;
    build(in, &in_len, want, &want_len);
    /* Two cuts at every pair of positions (this covers one cut and the
     * headers split at every byte). */
    for (size_t a = 0; a <= in_len; a++) {
        for (size_t b = a; b <= in_len; b++) {
            struct sink s = {0};
            struct h2_filter f;
            h2_filter_init(&f);
            size_t cuts[2] = {a, b};
            feed_pieces(in, in_len, cuts, 2, &s, &f);
            if (s.len != want_len || memcmp(s.out, want, want_len) != 0)
                TEST_FAIL("cuts %zu,%zu: %zu bytes out, want %zu", a, b, s.len, want_len);
            ASSERT_EQ(f.dropped_frames, 4);
        }
    }
    /* One byte at a time. */
    struct sink s = {0};
    struct h2_filter f;
    h2_filter_init(&f);
    for (size_t i = 0; i < in_len; i++)
        ASSERT_EQ(h2_filter_feed(&f, in + i, 1, &ops, &s), 0);
    ASSERT_EQ(s.len, want_len);
    ASSERT_MEM_EQ(s.out, want, want_len);
    /* Empty input passes nothing. */
    int calls = s.calls;
    ASSERT_EQ(h2_filter_feed(&f, in, 0, &ops, &s), 0);
    ASSERT_EQ(s.calls, calls);
}

TEST(h2_filter, large_payloads_and_stop)
{
    /* A 16 MiB - 1 length frame header passes; its payload is skipped
     * without being held. */
    uint8_t big[9 + 100];
    frame(big, 100, 0x0, 1, 0xaa);
    big[0] = big[1] = big[2] = 0xff; /* length 2^24 - 1 */
    struct sink s = {0};
    struct h2_filter f;
    h2_filter_init(&f);
    ASSERT_EQ(h2_filter_feed(&f, big, 9 + 100, &ops, &s), 0);
    ASSERT_EQ(s.len, 109);
    ASSERT_EQ(f.payload_left, 0xffffff - 100);

    /* A non-zero return from pass stops the feed and is returned. */
    uint8_t in[512], want[512];
    size_t in_len, want_len;
    build(in, &in_len, want, &want_len);
    struct sink s2 = {.stop_after = 2};
    h2_filter_init(&f);
    ASSERT_EQ(h2_filter_feed(&f, in, in_len, &ops, &s2), 7);
    ASSERT_EQ(s2.calls, 2);
    ASSERT_LT(s2.len, want_len);
}
