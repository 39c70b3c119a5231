/* Tests for lskv-bench's latency statistics (tools/lskv-bench/bench_stats.c).
 * The tool is not part of liblskv.a, so its statistics module is compiled
 * into this test directly. */
#include "../../tools/lskv-bench/bench_stats.c"

#include "runner.h"

static struct bench_hist *new_hist(void)
{
    struct bench_hist *h = malloc(sizeof *h);
    ASSERT(h != NULL);
    bench_hist_reset(h);
    return h;
}

/* |got - want| <= want * permille / 1000 */
#define ASSERT_NEAR_PERMILLE(got, want, permille)                          \
    do {                                                                   \
        intmax_t g_ = (intmax_t)(got), w_ = (intmax_t)(want);              \
        intmax_t d_ = g_ > w_ ? g_ - w_ : w_ - g_;                         \
        if (d_ * 1000 > w_ * (permille))                                   \
            TEST_FAIL("%s ~ %s: %jd vs %jd", #got, #want, g_, w_);          \
    } while (0)

TEST(bench_stats, bucket_layout_is_contiguous_and_bounded)
{
    /* Small values are exact. */
    for (uint64_t v = 0; v < BENCH_HIST_SUB; v++)
        ASSERT_EQ(bench_hist_index(v), v);
    /* Every bucket starts where the previous one ends, and each value maps to
     * the bucket whose range holds it. */
    uint64_t next = 0;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        uint64_t low, width;
        bench_hist_bucket_range(i, &low, &width);
        ASSERT_EQ(low, next);
        ASSERT_EQ(bench_hist_index(low), i);
        ASSERT_EQ(bench_hist_index(low + (width - 1)), i);
        /* width / low <= 1 / SUB: the relative error bound. */
        if (i >= BENCH_HIST_SUB)
            ASSERT_LE(width * BENCH_HIST_SUB, low);
        next = low + width;
    }
    ASSERT_EQ(next, 0); /* the last bucket ends exactly at 2^64 */
    ASSERT_EQ(bench_hist_index(UINT64_MAX), BENCH_HIST_BUCKETS - 1);
}

TEST(bench_stats, percentiles_of_uniform_values)
{
    struct bench_hist *h = new_hist();
    for (uint64_t v = 1; v <= 100000; v++)
        bench_hist_record(h, v * 1000); /* 1 us .. 100 ms in ns */
    ASSERT_EQ(h->total, 100000);
    ASSERT_EQ(h->min, 1000);
    ASSERT_EQ(h->max, 100000000);
    ASSERT_NEAR_PERMILLE(bench_hist_percentile(h, 50), 50000000, 5);
    ASSERT_NEAR_PERMILLE(bench_hist_percentile(h, 90), 90000000, 5);
    ASSERT_NEAR_PERMILLE(bench_hist_percentile(h, 99), 99000000, 5);
    ASSERT_NEAR_PERMILLE(bench_hist_percentile(h, 99.9), 99900000, 5);
    ASSERT_EQ(bench_hist_percentile(h, 100), 100000000);
    ASSERT_NEAR_PERMILLE(bench_hist_percentile(h, 0.001), 1000, 5);
    ASSERT_NEAR_PERMILLE((uint64_t)bench_hist_mean(h), 50000500, 1);
    /* Population stddev of a uniform 1..N sample times 1000: N / sqrt(12). */
    ASSERT_NEAR_PERMILLE((uint64_t)bench_hist_stddev(h), 28867513, 1);
    free(h);
}

TEST(bench_stats, exact_small_values_and_ranks)
{
    struct bench_hist *h = new_hist();
    /* 90 values of 10, 9 of 50, 1 of 100: p90 is 10, p91..p99 are 50. */
    for (int i = 0; i < 90; i++)
        bench_hist_record(h, 10);
    for (int i = 0; i < 9; i++)
        bench_hist_record(h, 50);
    bench_hist_record(h, 100);
    ASSERT_EQ(bench_hist_percentile(h, 50), 10);
    ASSERT_EQ(bench_hist_percentile(h, 90), 10);
    ASSERT_EQ(bench_hist_percentile(h, 90.5), 50);
    ASSERT_EQ(bench_hist_percentile(h, 99), 50);
    ASSERT_EQ(bench_hist_percentile(h, 99.9), 100);
    ASSERT_EQ(bench_hist_percentile(h, 100), 100);
    ASSERT_EQ(bench_hist_percentile(h, 0), 0);   /* out of range */
    ASSERT_EQ(bench_hist_percentile(h, 101), 0); /* out of range */
    free(h);
}

TEST(bench_stats, empty_and_single_value)
{
    struct bench_hist *h = new_hist();
    double edges[11];
    uint64_t counts[10];
    ASSERT_EQ(bench_hist_percentile(h, 50), 0);
    ASSERT(bench_hist_mean(h) == 0.0);
    ASSERT(bench_hist_stddev(h) == 0.0);
    ASSERT_EQ(bench_hist_bins(h, 10, edges, counts), 0);

    bench_hist_record(h, 123456789);
    ASSERT_EQ(bench_hist_percentile(h, 1), 123456789); /* clamped to min/max */
    ASSERT_EQ(bench_hist_percentile(h, 99.9), 123456789);
    ASSERT_EQ(bench_hist_bins(h, 10, edges, counts), 1);
    ASSERT_EQ(counts[0], 1);
    ASSERT(edges[0] == 123456789.0 && edges[1] == 123456789.0);
    free(h);
}

TEST(bench_stats, merge_equals_recording_everything)
{
    struct bench_hist *a = new_hist(), *b = new_hist(), *all = new_hist();
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t v = x % 50000000;
        bench_hist_record(i % 3 ? a : b, v);
        bench_hist_record(all, v);
    }
    bench_hist_merge(a, b);
    ASSERT_EQ(a->total, all->total);
    ASSERT_EQ(a->min, all->min);
    ASSERT_EQ(a->max, all->max);
    ASSERT_MEM_EQ(a->counts, all->counts, sizeof a->counts);
    ASSERT_EQ(bench_hist_percentile(a, 99), bench_hist_percentile(all, 99));
    free(a), free(b), free(all);
}

TEST(bench_stats, log_bins_cover_everything)
{
    struct bench_hist *h = new_hist();
    double edges[11];
    uint64_t counts[10];
    /* 1000 values at 1 ms, 10 at 10 ms, 1 at 1 s: three decades, 10 bins. */
    for (int i = 0; i < 1000; i++)
        bench_hist_record(h, 1000000);
    for (int i = 0; i < 10; i++)
        bench_hist_record(h, 10000000);
    bench_hist_record(h, 1000000000);
    ASSERT_EQ(bench_hist_bins(h, 10, edges, counts), 10);
    ASSERT(edges[0] == 1e6 && edges[10] == 1e9);
    uint64_t sum = 0;
    for (int i = 0; i < 10; i++) {
        ASSERT(edges[i] < edges[i + 1]);
        sum += counts[i];
    }
    ASSERT_EQ(sum, h->total);
    /* Log spacing with steps of 10^(3/10): edges[3] ~ 7.94 ms and edges[4]
     * ~ 15.8 ms, so 10 ms lands in bin 3 (a linear split would put it in 0). */
    ASSERT_EQ(counts[0], 1000);
    ASSERT_EQ(counts[3], 10);
    ASSERT_EQ(counts[9], 1);
    ASSERT_NEAR_PERMILLE((uint64_t)edges[3], 7943282, 1);
    free(h);
}
