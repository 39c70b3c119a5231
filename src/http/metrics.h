/* Prometheus counters for the front door, named as etcd (go-grpc-prometheus)
 * names them: grpc_server_started_total and grpc_server_handled_total by
 * method and gRPC code, plus process_resident_memory_bytes, the heap split
 * into trusted and untrusted bytes, and a few gateway counters. Single-threaded (the loop thread). */
#ifndef LSKV_HTTP_METRICS_H
#define LSKV_HTTP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_N_CODES 17 /* gRPC status codes 0..16 */

struct metrics;

/* The grpc_type label of a method, as go-grpc-prometheus names it. */
enum metrics_rpc_type {
    METRICS_UNARY = 0,
    METRICS_BIDI_STREAM = 1,
    METRICS_SERVER_STREAM = 2,
};

/* paths: the gRPC method paths ("/etcdserverpb.KV/Range"), borrowed; must
 * outlive the registry. types[i] (enum metrics_rpc_type): the method's
 * grpc_type label. Errors: LSKV_ENOMEM. */
int metrics_open(const char *const *paths, const uint8_t *types, size_t n,
                 struct metrics **out);
void metrics_close(struct metrics *m);

/* Counts one call of method i (as passed to metrics_open). Out-of-range
 * indices and codes are ignored. */
void metrics_started(struct metrics *m, size_t i);
void metrics_handled(struct metrics *m, size_t i, int code);
/* Counts one HTTP request answered by the JSON gateway with this status. */
void metrics_http(struct metrics *m, int http_status);
/* Counts gRPC message bytes received and sent (etcd's
 * etcd_network_client_grpc_received_bytes_total and _sent_bytes_total). */
void metrics_grpc_bytes(struct metrics *m, uint64_t received, uint64_t sent);

/* A figure read from its owner when /metrics is rendered: a Prometheus
 * "gauge" or "counter" named name (name, type and help are borrowed static
 * strings). Errors: LSKV_ENOMEM (METRICS_MAX_GAUGES reached). */
#define METRICS_MAX_GAUGES 48
typedef uint64_t (*metrics_gauge_fn)(void *arg);
int metrics_add_gauge(struct metrics *m, const char *name, const char *type, const char *help,
                      metrics_gauge_fn fn, void *arg);
/* The same with a label set rendered as name{labels} ("server_id=\"8e9e\"",
 * borrowed: must outlive the registry; NULL: none). */
int metrics_add_labeled(struct metrics *m, const char *name, const char *type,
                        const char *help, const char *labels, metrics_gauge_fn fn, void *arg);

/* A Prometheus histogram with exponential buckets (prometheus.
 * ExponentialBuckets(start, factor, n), as etcd declares its own), owned
 * and observed by the caller, rendered by the registry it is added to. */
#define METRICS_HIST_MAX_BUCKETS 24
struct metrics_histogram {
    double bound[METRICS_HIST_MAX_BUCKETS]; /* upper bounds, increasing */
    uint64_t count[METRICS_HIST_MAX_BUCKETS]; /* observations <= bound[i] (not cumulative) */
    size_t n;
    uint64_t total; /* all observations (+Inf) */
    double sum;
};
/* n <= METRICS_HIST_MAX_BUCKETS (more are dropped). */
void metrics_histogram_init(struct metrics_histogram *h, double start, double factor, size_t n);
void metrics_histogram_observe(struct metrics_histogram *h, double v);
/* Adds h (borrowed: must outlive the registry). Errors: LSKV_ENOMEM. */
int metrics_add_histogram(struct metrics *m, const char *name, const char *help,
                          const struct metrics_histogram *h);

/* A histogram family with one label (Prometheus' HistogramVec), its series
 * asked for when /metrics is rendered: series(arg, i, value, size) gives
 * the i-th histogram and writes its label value, NULL past the last. A
 * family without series is not rendered (as Prometheus' client). name,
 * help and label are borrowed static strings. Errors: LSKV_ENOMEM. */
typedef const struct metrics_histogram *(*metrics_series_fn)(void *arg, size_t i, char *value,
                                                             size_t size);
int metrics_add_histogram_vec(struct metrics *m, const char *name, const char *help,
                              const char *label, metrics_series_fn series, void *arg);

/* fn(arg) gives the heap bytes that are not the trusted core's (the storage
 * engine's memtables and block cache); /metrics reports
 * lskv_heap_in_use_bytes, lskv_untrusted_bytes and their difference,
 * lskv_trusted_bytes. Process-wide, as the heap; fn NULL: nothing untrusted. */
void metrics_set_untrusted(int64_t (*fn)(void *arg), void *arg);

uint64_t metrics_handled_count(const struct metrics *m, size_t i, int code);

/* The Prometheus text exposition (format 0.0.4), malloc'd, NUL-terminated.
 * Returns NULL when out of memory. */
char *metrics_render(const struct metrics *m, size_t *len);

#endif
