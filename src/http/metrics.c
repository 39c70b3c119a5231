#include "http/metrics.h"

#include <inttypes.h>
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
/* From the sanitizer runtime (sanitizer/allocator_interface.h, a header
 * Debian's gcc does not ship). */
size_t __sanitizer_get_current_allocated_bytes(void);
#define HEAP_FROM_SANITIZER 1
#elif defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "http/json.h"

struct metrics {
    const char *const *paths;
    const uint8_t *types;
    size_t n;
    uint64_t *started;  /* [n] */
    uint64_t *handled;  /* [n][METRICS_N_CODES] */
    uint64_t http[6];   /* by status class: 1xx..5xx, index 1..5 */
    uint64_t grpc_received, grpc_sent; /* message bytes */
    struct gauge {
        const char *name, *type, *help, *labels;
        metrics_gauge_fn fn;
        void *arg;
        const struct metrics_histogram *hist; /* non-NULL: a histogram */
        metrics_series_fn series;             /* non-NULL: a histogram family */
    } gauges[METRICS_MAX_GAUGES];
    size_t n_gauges;
};

/* Process-wide, as the heap it splits (metrics_set_untrusted). */
static int64_t (*untrusted_fn)(void *arg);
static void *untrusted_arg;

static const char *const code_names[METRICS_N_CODES] = {
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
    "Unauthenticated",
};

int metrics_open(const char *const *paths, const uint8_t *types, size_t n,
                 struct metrics **out)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return LSKV_ENOMEM;
    m->paths = paths;
    m->types = types;
    m->n = n;
    m->started = calloc(n ? n : 1, sizeof *m->started);
    m->handled = calloc(n ? n * METRICS_N_CODES : 1, sizeof *m->handled);
    if (m->started == NULL || m->handled == NULL) {
        metrics_close(m);
        return LSKV_ENOMEM;
    }
    *out = m;
    return 0;
}

void metrics_close(struct metrics *m)
{
    if (m == NULL)
        return;
    free(m->started);
    free(m->handled);
    free(m);
}

void metrics_started(struct metrics *m, size_t i)
{
    if (m != NULL && i < m->n)
        m->started[i]++;
}

void metrics_handled(struct metrics *m, size_t i, int code)
{
    if (m != NULL && i < m->n && code >= 0 && code < METRICS_N_CODES)
        m->handled[i * METRICS_N_CODES + (size_t)code]++;
}

void metrics_http(struct metrics *m, int status)
{
    if (m != NULL && status >= 100 && status < 600)
        m->http[status / 100]++;
}

void metrics_grpc_bytes(struct metrics *m, uint64_t received, uint64_t sent)
{
    if (m != NULL) {
        m->grpc_received += received;
        m->grpc_sent += sent;
    }
}

int metrics_add_labeled(struct metrics *m, const char *name, const char *type,
                        const char *help, const char *labels, metrics_gauge_fn fn, void *arg)
{
    if (m->n_gauges == METRICS_MAX_GAUGES)
        return LSKV_ENOMEM;
    m->gauges[m->n_gauges++] = (struct gauge){name, type, help, labels, fn, arg, NULL, NULL};
    return 0;
}

int metrics_add_gauge(struct metrics *m, const char *name, const char *type, const char *help,
                      metrics_gauge_fn fn, void *arg)
{
    return metrics_add_labeled(m, name, type, help, NULL, fn, arg);
}

void metrics_histogram_init(struct metrics_histogram *h, double start, double factor, size_t n)
{
    memset(h, 0, sizeof *h);
    h->n = n < METRICS_HIST_MAX_BUCKETS ? n : METRICS_HIST_MAX_BUCKETS;
    for (size_t i = 0; i < h->n; i++, start *= factor)
        h->bound[i] = start;
}

void metrics_histogram_observe(struct metrics_histogram *h, double v)
{
    for (size_t i = 0; i < h->n; i++) {
        if (v <= h->bound[i]) {
            h->count[i]++;
            break;
        }
    }
    h->total++;
    h->sum += v;
}

int metrics_add_histogram(struct metrics *m, const char *name, const char *help,
                          const struct metrics_histogram *h)
{
    if (m->n_gauges == METRICS_MAX_GAUGES)
        return LSKV_ENOMEM;
    m->gauges[m->n_gauges++] = (struct gauge){name, "histogram", help, NULL, NULL, NULL, h, NULL};
    return 0;
}

int metrics_add_histogram_vec(struct metrics *m, const char *name, const char *help,
                              const char *label, metrics_series_fn series, void *arg)
{
    if (m->n_gauges == METRICS_MAX_GAUGES)
        return LSKV_ENOMEM;
    m->gauges[m->n_gauges++] = (struct gauge){name, "histogram", help, label, NULL, arg, NULL,
                                              series};
    return 0;
}

/* Go's strconv.FormatFloat(v, 'g', -1, 64), as the Prometheus client
 * renders bounds and sums: the shortest text that reads back the same. */
static void go_float(double v, char *out, size_t size)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, size, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* labels: "" or `name="value",` (before le, as Prometheus' client sorts). */
static void render_histogram(struct json_buf *b, const char *name, const char *labels,
                             const struct metrics_histogram *h)
{
    char line[512], num[40], plain[256];
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n; i++) {
        cum += h->count[i];
        go_float(h->bound[i], num, sizeof num);
        snprintf(line, sizeof line, "%s_bucket{%sle=\"%s\"} %" PRIu64 "\n", name, labels, num,
                 cum);
        json_buf_puts(b, line);
    }
    go_float(h->sum, num, sizeof num);
    size_t n = strlen(labels);
    snprintf(plain, sizeof plain, n ? "{%.*s}" : "", (int)(n ? n - 1 : 0), labels);
    snprintf(line, sizeof line, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, h->total);
    json_buf_puts(b, line);
    snprintf(line, sizeof line, "%s_sum%s %s\n", name, plain, num);
    json_buf_puts(b, line);
    snprintf(line, sizeof line, "%s_count%s %" PRIu64 "\n", name, plain, h->total);
    json_buf_puts(b, line);
}

static void render_family(struct json_buf *b, const struct gauge *g)
{
    char value[64], labels[128], line[512];
    const struct metrics_histogram *h;
    for (size_t i = 0; (h = g->series(g->arg, i, value, sizeof value)) != NULL; i++) {
        if (i == 0) {
            snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s histogram\n", g->name, g->help,
                     g->name);
            json_buf_puts(b, line);
        }
        snprintf(labels, sizeof labels, "%s=\"%s\",", g->labels, value);
        render_histogram(b, g->name, labels, h);
    }
}

void metrics_set_untrusted(int64_t (*fn)(void *arg), void *arg)
{
    untrusted_fn = fn;
    untrusted_arg = arg;
}

/* malloc'd bytes in use over every arena and mmap'd block, allocator
 * headers and rounding included (what the heap must hold, free space
 * excepted); -1 where glibc's mallinfo2 is missing. Sanitizer builds replace
 * malloc: their allocator's count of bytes handed out (no headers). */
static int64_t heap_in_use_bytes(void)
{
#if defined(HEAP_FROM_SANITIZER)
    return (int64_t)__sanitizer_get_current_allocated_bytes();
#elif defined(__GLIBC__)
    struct mallinfo2 mi = mallinfo2();
    return (int64_t)(mi.uordblks + mi.hblkhd);
#else
    return -1;
#endif
}

uint64_t metrics_handled_count(const struct metrics *m, size_t i, int code)
{
    if (m == NULL || i >= m->n || code < 0 || code >= METRICS_N_CODES)
        return 0;
    return m->handled[i * METRICS_N_CODES + (size_t)code];
}

/* "/etcdserverpb.KV/Range" -> service "etcdserverpb.KV", method "Range". */
static void labels(struct json_buf *b, const struct metrics *m, size_t i)
{
    const char *p = m->paths[i];
    if (*p == '/')
        p++;
    const char *slash = strrchr(p, '/');
    char tmp[512];
    snprintf(tmp, sizeof tmp, "grpc_method=\"%s\",grpc_service=\"%.*s\",grpc_type=\"%s\"",
             slash ? slash + 1 : p, slash ? (int)(slash - p) : 0, p,
             !m->types || m->types[i] == METRICS_UNARY ? "unary"
             : m->types[i] == METRICS_BIDI_STREAM     ? "bidi_stream"
                                                      : "server_stream");
    json_buf_puts(b, tmp);
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    long size = 0, rss = 0;
    int n = fscanf(f, "%ld %ld", &size, &rss);
    fclose(f);
    if (n != 2)
        return -1;
    return rss * sysconf(_SC_PAGESIZE);
}

char *metrics_render(const struct metrics *m, size_t *len)
{
    struct json_buf b = {0};
    char line[512];
    json_buf_puts(&b, "# HELP grpc_server_handled_total Total number of RPCs completed on the "
                      "server, regardless of success or failure.\n"
                      "# TYPE grpc_server_handled_total counter\n");
    for (size_t i = 0; i < m->n; i++) {
        for (int c = 0; c < METRICS_N_CODES; c++) {
            uint64_t v = m->handled[i * METRICS_N_CODES + (size_t)c];
            if (v == 0 && c != 0)
                continue;
            snprintf(line, sizeof line, "grpc_server_handled_total{grpc_code=\"%s\",",
                     code_names[c]);
            json_buf_puts(&b, line);
            labels(&b, m, i);
            snprintf(line, sizeof line, "} %" PRIu64 "\n", v);
            json_buf_puts(&b, line);
        }
    }
    json_buf_puts(&b, "# HELP grpc_server_started_total Total number of RPCs started on the "
                      "server.\n# TYPE grpc_server_started_total counter\n");
    for (size_t i = 0; i < m->n; i++) {
        json_buf_puts(&b, "grpc_server_started_total{");
        labels(&b, m, i);
        snprintf(line, sizeof line, "} %" PRIu64 "\n", m->started[i]);
        json_buf_puts(&b, line);
    }
    json_buf_puts(&b, "# HELP lskv_http_responses_total JSON gateway responses by status "
                      "class.\n# TYPE lskv_http_responses_total counter\n");
    for (int k = 1; k <= 5; k++) {
        snprintf(line, sizeof line, "lskv_http_responses_total{code=\"%dxx\"} %" PRIu64 "\n", k,
                 m->http[k]);
        json_buf_puts(&b, line);
    }
    long rss = rss_bytes();
    if (rss >= 0) {
        snprintf(line, sizeof line,
                 "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                 "# TYPE process_resident_memory_bytes gauge\n"
                 "process_resident_memory_bytes %ld\n",
                 rss);
        json_buf_puts(&b, line);
    }
    snprintf(line, sizeof line,
             "# HELP etcd_network_client_grpc_received_bytes_total The total number of bytes "
             "received from grpc clients.\n"
             "# TYPE etcd_network_client_grpc_received_bytes_total counter\n"
             "etcd_network_client_grpc_received_bytes_total %" PRIu64 "\n", m->grpc_received);
    json_buf_puts(&b, line);
    snprintf(line, sizeof line,
             "# HELP etcd_network_client_grpc_sent_bytes_total The total number of bytes sent "
             "to grpc clients.\n"
             "# TYPE etcd_network_client_grpc_sent_bytes_total counter\n"
             "etcd_network_client_grpc_sent_bytes_total %" PRIu64 "\n", m->grpc_sent);
    json_buf_puts(&b, line);
    for (size_t i = 0; i < m->n_gauges; i++) {
        const struct gauge *g = &m->gauges[i];
        if (g->series != NULL) {
            render_family(&b, g);
            continue;
        }
        snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n", g->name, g->help, g->name,
                 g->type);
        json_buf_puts(&b, line);
        if (g->hist != NULL) {
            render_histogram(&b, g->name, "", g->hist);
            continue;
        }
        snprintf(line, sizeof line, "%s%s%s%s %" PRIu64 "\n", g->name, g->labels ? "{" : "",
                 g->labels ? g->labels : "", g->labels ? "}" : "", g->fn(g->arg));
        json_buf_puts(&b, line);
    }
    int64_t heap = heap_in_use_bytes();
    if (heap >= 0) {
        int64_t untrusted = untrusted_fn ? untrusted_fn(untrusted_arg) : 0;
        snprintf(line, sizeof line,
                 "# HELP lskv_heap_in_use_bytes Bytes malloc holds for the process "
                 "(glibc mallinfo2 uordblks + hblkhd).\n"
                 "# TYPE lskv_heap_in_use_bytes gauge\n"
                 "lskv_heap_in_use_bytes %" PRId64 "\n", heap);
        json_buf_puts(&b, line);
        snprintf(line, sizeof line,
                 "# HELP lskv_untrusted_bytes Of those, what the untrusted storage engine "
                 "holds (memtables, block cache).\n"
                 "# TYPE lskv_untrusted_bytes gauge\n"
                 "lskv_untrusted_bytes %" PRId64 "\n", untrusted);
        json_buf_puts(&b, line);
        snprintf(line, sizeof line,
                 "# HELP lskv_trusted_bytes Heap in use minus untrusted: an upper bound "
                 "on the trusted core's heap.\n"
                 "# TYPE lskv_trusted_bytes gauge\n"
                 "lskv_trusted_bytes %" PRId64 "\n", heap - untrusted);
        json_buf_puts(&b, line);
    }
    if (b.err) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
