/* Log-linear latency histogram (see bench_stats.h).
 *
 * Bucket layout, with S = BENCH_HIST_SUB_BITS and M = 2^S:
 *   v < M:  index = v (exact buckets of width 1);
 *   v >= M: let e = floor(log2 v) (e >= S) and m = v >> (e - S), the top S+1
 *           bits of v (M <= m < 2M); index = (e - S + 1) * M + (m - M).
 * For e = S this gives index = v, so the two ranges join without a gap, and a
 * bucket of group g >= 1 covers [m << (g - 1), (m + 1) << (g - 1)). The last
 * group (e = 63) ends at index (65 - S) * M - 1. */
#include "bench_stats.h"

#include <string.h>

/* The Makefile links no libm, and these few needs are simple. */
static double sqrt_newton(double x)
{
    if (!(x > 0.0))
        return 0.0;
    double r = x > 1.0 ? x : 1.0;
    for (int i = 0; i < 200; i++) {
        double next = 0.5 * (r + x / r);
        if (next >= r)
            break;
        r = next;
    }
    return r;
}

/* r >= 1 with r^n == x (x >= 1), by bisection. */
static double nth_root(double x, size_t n)
{
    double lo = 1.0, hi = x;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi), p = 1.0;
        for (size_t k = 0; k < n; k++)
            p *= mid;
        if (p < x)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

void bench_hist_reset(struct bench_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

size_t bench_hist_index(uint64_t value)
{
    if (value < BENCH_HIST_SUB)
        return (size_t)value;
    unsigned e = 63u - (unsigned)__builtin_clzll(value);
    uint64_t m = value >> (e - BENCH_HIST_SUB_BITS);
    return (size_t)(e - BENCH_HIST_SUB_BITS + 1) * BENCH_HIST_SUB + (size_t)(m - BENCH_HIST_SUB);
}

void bench_hist_bucket_range(size_t index, uint64_t *low, uint64_t *width)
{
    size_t group = index / BENCH_HIST_SUB;
    if (group == 0) {
        *low = index;
        *width = 1;
        return;
    }
    uint64_t m = (uint64_t)(index % BENCH_HIST_SUB) + BENCH_HIST_SUB;
    *low = m << (group - 1);
    *width = (uint64_t)1 << (group - 1);
}

void bench_hist_record(struct bench_hist *h, uint64_t value)
{
    h->counts[bench_hist_index(value)]++;
    h->total++;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
    h->sum += (double)value;
    h->sum_sq += (double)value * (double)value;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
    if (src->total == 0)
        return;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->sum += src->sum;
    dst->sum_sq += src->sum_sq;
}

/* The value reported for bucket i: its midpoint, clamped to what was seen. */
static uint64_t bucket_value(const struct bench_hist *h, size_t i)
{
    uint64_t low, width;
    bench_hist_bucket_range(i, &low, &width);
    uint64_t v = low + (width - 1) / 2;
    if (v < h->min)
        v = h->min;
    if (v > h->max)
        v = h->max;
    return v;
}

uint64_t bench_hist_percentile(const struct bench_hist *h, double pct)
{
    if (h->total == 0 || !(pct > 0.0) || pct > 100.0)
        return 0;
    if (pct == 100.0)
        return h->max;
    /* rank = ceil(pct% of total), computed so that e.g. 50 % of 1000 is 500
     * even when pct / 100 is not exact in binary. */
    double want = pct * (double)h->total / 100.0;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want - 1e-9)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > h->total)
        rank = h->total;
    uint64_t seen = 0;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank)
            return bucket_value(h, i);
    }
    return h->max; /* not reached: the counts add up to total */
}

double bench_hist_mean(const struct bench_hist *h)
{
    return h->total ? h->sum / (double)h->total : 0.0;
}

double bench_hist_stddev(const struct bench_hist *h)
{
    if (h->total == 0)
        return 0.0;
    double mean = bench_hist_mean(h);
    double var = h->sum_sq / (double)h->total - mean * mean;
    return sqrt_newton(var);
}

size_t bench_hist_bins(const struct bench_hist *h, size_t nbins, double *edges,
                       uint64_t *counts)
{
    if (h->total == 0 || nbins == 0)
        return 0;
    double lo = (double)h->min, hi = (double)h->max;
    if (h->min == h->max) {
        edges[0] = edges[1] = lo;
        counts[0] = h->total;
        return 1;
    }
    int logscale = h->min > 0;
    double step = logscale ? nth_root(hi / lo, nbins) : (hi - lo) / (double)nbins;
    edges[0] = lo;
    for (size_t i = 1; i < nbins; i++)
        edges[i] = logscale ? edges[i - 1] * step : lo + step * (double)i;
    edges[nbins] = hi;
    memset(counts, 0, nbins * sizeof *counts);
    size_t b = 0; /* buckets come in increasing order, so bins do too */
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        if (h->counts[i] == 0)
            continue;
        double v = (double)bucket_value(h, i);
        while (b + 1 < nbins && v >= edges[b + 1])
            b++;
        counts[b] += h->counts[i];
    }
    return nbins;
}
