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

/* paths: the gRPC method paths ("/etcdserverpb.KV/Range"), borrowed; must
 * outlive the registry. streaming[i]: the method's type label
 * (bidi_stream or unary). Errors: LSKV_ENOMEM. */
int metrics_open(const char *const *paths, const bool *streaming, size_t n,
                 struct metrics **out);
void metrics_close(struct metrics *m);

/* Counts one call of method i (as passed to metrics_open). Out-of-range
 * indices and codes are ignored. */
void metrics_started(struct metrics *m, size_t i);
void metrics_handled(struct metrics *m, size_t i, int code);
/* Counts one HTTP request answered by the JSON gateway with this status. */
void metrics_http(struct metrics *m, int http_status);

/* A figure read from its owner when /metrics is rendered: a Prometheus
 * "gauge" or "counter" named name (name, type and help are borrowed static
 * strings). Errors: LSKV_ENOMEM (METRICS_MAX_GAUGES reached). */
#define METRICS_MAX_GAUGES 24
typedef uint64_t (*metrics_gauge_fn)(void *arg);
int metrics_add_gauge(struct metrics *m, const char *name, const char *type, const char *help,
                      metrics_gauge_fn fn, void *arg);

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
