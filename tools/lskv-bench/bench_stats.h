/* Latency statistics for lskv-bench: a log-linear histogram with bounded
 * relative error (after HdrHistogram), percentiles, and the log-spaced bins
 * of the text histogram.
 *
 * Values are unsigned 64-bit integers in any unit (lskv-bench records
 * nanoseconds). Values below BENCH_HIST_SUB are stored exactly; above, each
 * power of two is split into BENCH_HIST_SUB buckets, so a reported
 * percentile is within 1 / (2 * BENCH_HIST_SUB) (0.4 %) of a recorded value.
 * min, max, count and the sum are exact. No allocation: the struct holds
 * every bucket (about 60 KiB; put it on the heap or in static storage). */
#ifndef LSKV_TOOLS_BENCH_STATS_H
#define LSKV_TOOLS_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_SUB (1u << BENCH_HIST_SUB_BITS) /* buckets per power of two */
#define BENCH_HIST_BUCKETS ((65u - BENCH_HIST_SUB_BITS) * BENCH_HIST_SUB)

struct bench_hist {
    uint64_t counts[BENCH_HIST_BUCKETS]; /* values per bucket */
    uint64_t total;                      /* values recorded */
    uint64_t min;                        /* smallest value; UINT64_MAX when empty */
    uint64_t max;                        /* largest value; 0 when empty */
    double sum;                          /* sum of values */
    double sum_sq;                       /* sum of squared values (stddev) */
};

/* Empties h. */
void bench_hist_reset(struct bench_hist *h);

/* Records one value. */
void bench_hist_record(struct bench_hist *h, uint64_t value);

/* Adds every value of src to dst. */
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);

/* The value at percentile pct (0 < pct <= 100): the smallest recorded value v
 * such that at least pct % of the values are <= v, up to the bucket
 * resolution; the result is the bucket's midpoint clamped to [min, max], so
 * pct = 100 gives max exactly. Returns 0 when h is empty or pct is out of
 * range. */
uint64_t bench_hist_percentile(const struct bench_hist *h, double pct);

/* Arithmetic mean and population standard deviation; 0 when empty. */
double bench_hist_mean(const struct bench_hist *h);
double bench_hist_stddev(const struct bench_hist *h);

/* Bucket arithmetic, exposed for tests: the index of the bucket holding
 * value, and the range [low, low + width) of bucket index. */
size_t bench_hist_index(uint64_t value);
void bench_hist_bucket_range(size_t index, uint64_t *low, uint64_t *width);

/* Splits [min, max] of h into nbins bins with logarithmically spaced edges
 * (linear when min is 0 or min == max) and counts the values per bin: bin i
 * covers [edges[i], edges[i + 1]), the last bin also includes max. A bucket's
 * values count in the bin containing its midpoint (clamped to [min, max]), so
 * the counts add up to h->total. edges must hold nbins + 1 values, counts
 * nbins. Returns the number of bins filled: 0 when h is empty, 1 when every
 * value is equal (edges[0] == edges[1] == min), nbins otherwise. */
size_t bench_hist_bins(const struct bench_hist *h, size_t nbins, double *edges,
                       uint64_t *counts);

#endif
