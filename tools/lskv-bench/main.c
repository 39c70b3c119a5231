/* lskv-bench: a gRPC load generator for etcd v3 compatible servers.
 *
 *   lskv-bench [flags] put|range|txn-put|txn-noop|mixed|watch-latency|lease-keepalive [flags]
 *
 * Flags follow etcd's `benchmark` tool where they fit (see usage()). Every
 * request is a gRPC call on one of --conns HTTP/2 connections; --clients
 * closed-loop clients (concurrent streams) are spread over them round-robin
 * and each keeps exactly one request in flight: a unary call, or for
 * lease-keepalive the next message on the client's LeaseKeepAlive stream.
 * watch-latency is driven differently (see its section): Puts at a fixed
 * rate on their own connection, --watchers watchers over --clients Watch
 * streams, the latency from each Put's send to each watcher's event.
 * Every response is checked:
 * HTTP status 200, grpc-status 0 and a decodable response message; anything
 * else is counted as an error, reported by kind, and makes the exit status 1.
 *
 * Exit status: 0 every request succeeded; 1 some requests failed; 2 bad
 * arguments; 3 the run could not start or its preload failed. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bench_stats.h"
#include "common/err.h"
#include "client/grpc_client.h"
#include "proto/rpc.pb-c.h"

#define PROG "lskv-bench"
#define EXIT_REQUEST_ERRORS 1
#define EXIT_USAGE 2
#define EXIT_SETUP 3
#define MAX_ERROR_KINDS 32
#define STALL_TIMEOUT_NS (30ull * 1000000000ull) /* no response at all for this long */
#define HIST_ROWS 12

enum workload {
    WL_PUT, WL_RANGE, WL_TXN_PUT, WL_TXN_NOOP, WL_MIXED, WL_WATCH_LATENCY, WL_LEASE_KEEPALIVE,
    WL_COUNT
};
static const char *const workload_names[] = {"put",   "range",         "txn-put",
                                             "txn-noop", "mixed", "watch-latency",
                                             "lease-keepalive"};
#define WORKLOAD_LIST "put, range, txn-put, txn-noop, mixed, watch-latency or lease-keepalive"
enum op { OP_PUT, OP_RANGE, OP_TXN, OP_GRANT, OP_KEEPALIVE, OP_COUNT };
static const char *const op_names[] = {"put", "range", "txn", "grant", "keepalive"};
static const char *const op_paths[] = {"/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range",
                                       "/etcdserverpb.KV/Txn", "/etcdserverpb.Lease/LeaseGrant",
                                       "/etcdserverpb.Lease/LeaseKeepAlive"};
#define WATCH_PATH "/etcdserverpb.Watch/Watch"
enum phase { PHASE_CONNECT, PHASE_PRELOAD, PHASE_RUN, PHASE_DONE };

struct opts {
    enum workload workload;
    const char *endpoints;  /* comma-separated URLs */
    unsigned conns;         /* HTTP/2 connections */
    unsigned clients;       /* concurrent streams, over all connections */
    uint64_t total;         /* requests to send; 0 = until --duration */
    double duration_s;      /* 0 = until --total */
    double rate;            /* requests per second over all clients; 0 = unlimited */
    unsigned key_size;      /* bytes per key */
    unsigned val_size;      /* bytes per value */
    uint64_t key_space;     /* keys are numbered [0, key_space) */
    int sequential;         /* keys in order rather than random */
    int serializable;       /* --consistency s */
    int64_t limit;          /* range: read up to limit keys from the chosen one on */
    unsigned txn_ops;       /* puts per txn-put transaction */
    double read_fraction;   /* mixed: share of ranges */
    uint64_t preload;       /* put keys [0, preload) before timing */
    uint64_t watchers;      /* watch-latency: watchers over all streams */
    uint64_t leases;        /* lease-keepalive: leases granted before timing */
    int64_t lease_ttl;      /* lease-keepalive: their TTL in seconds */
    uint64_t seed;
    const char *cacert, *cert, *key;
    int insecure;
    const char *json_path;
    const char *label;
    int quiet;
};

struct error_kind {
    char text[200];
    uint64_t count;
};

struct bench;

struct client {
    struct bench *b;
    unsigned index;
    struct gconn *conn;
    struct gcall call;
    uv_timer_t rate_timer;
    enum op op;
    uint64_t start_ns;
    uint64_t rng;
    int running;           /* has a request in flight or waits for its rate slot */
    int stream_open;       /* lease-keepalive: its LeaseKeepAlive stream is active */
    uint64_t lease_round;  /* lease-keepalive: the next of its leases to renew */
    int64_t lease_id;      /* lease-keepalive: the lease of the request in flight */
    uint64_t watchers;     /* watch-latency: watchers on this stream */
    uint8_t *msg;          /* packed request */
    size_t msg_cap;
    char *keys;            /* txn_ops keys of key_size bytes each */
    Etcdserverpb__RequestOp *ops;
    Etcdserverpb__RequestOp **op_ptrs;
    Etcdserverpb__PutRequest *puts;
};

struct bench {
    uv_loop_t *loop;
    struct opts o;
    struct gendpoint *eps;
    size_t neps;
    SSL_CTX *tls;
    struct gconn **conns;  /* o.conns, and watch-latency's Put connection last */
    unsigned nconns;
    unsigned conns_pending;
    int connect_failed;
    struct client *clients;
    uint8_t *value;
    uint64_t max_index;    /* largest key number used, for the key width check */

    enum phase phase;
    uint64_t phase_total;  /* requests to issue in this phase; UINT64_MAX: until stopped */
    uint64_t issued, ok, errors, empty_ranges;
    uint64_t seq;          /* next sequential key */
    unsigned running;      /* clients with a request in flight or waiting */
    unsigned alive;        /* clients whose connection still works */
    int stopping;
    int stalled;
    uint64_t t_start, t_last;       /* phase start, last completion (ns) */
    uint64_t next_slot_ns;          /* rate limiter */
    uint64_t progress_ok, progress_t;
    struct bench_hist *hist;        /* every successful request */
    struct bench_hist *op_hist[OP_COUNT];
    struct error_kind errs[MAX_ERROR_KINDS];
    size_t nerrs;
    uint64_t err_other;
    uv_timer_t progress_timer;
    uv_timer_t duration_timer;
    int tty;
    int progress_shown;
    uint64_t preload_s_ns;          /* how long the preload took */
    int exit_code;
    time_t started_at;

    int64_t *leases;                /* lease-keepalive: granted lease ids */
    uint64_t nleases;
    struct watch_run *watch;        /* watch-latency */
};

/* watch-latency (see its section). */
struct watch_run {
    struct client put;          /* the Put driver, on conns[o.conns] */
    uv_timer_t put_timer;       /* waits for the next rate slot */
    uint64_t created;           /* watchers the server confirmed */
    uint64_t puts;              /* Puts acknowledged */
    uint64_t events_left;       /* events still due for the Put in flight */
    int put_in_flight;
};

/* ---- messages ----------------------------------------------------------- */

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(EXIT_SETUP);
}

static void usage(FILE *f)
{
    fprintf(f,
"usage: " PROG " [flags] put|range|txn-put|txn-noop|mixed|watch-latency|lease-keepalive [flags]\n"
"\n"
"Connection flags:\n"
"  --endpoints URLS        comma-separated http:// (h2c) or https:// endpoints\n"
"                          (default http://127.0.0.1:2379); connections go round-robin\n"
"  --conns N               HTTP/2 connections (default 1)\n"
"  --clients N             concurrent streams in total, spread over the connections (default 1)\n"
"  --cacert FILE           CA bundle to verify https endpoints\n"
"  --cert FILE --key FILE  client certificate for https endpoints\n"
"  --insecure-skip-tls-verify  do not verify the server certificate\n"
"\n"
"Load flags:\n"
"  --total N               requests to send (default 10000 unless --duration is given)\n"
"  --duration SECONDS      run for this long (suffix s or m allowed); with --total, first wins\n"
"  --rate R                requests per second in total (default 0: as fast as possible)\n"
"  --preload N             before timing, put keys 0..N-1 (untimed)\n"
"  --seed N                random seed (default 1)\n"
"\n"
"Workload flags:\n"
"  --key-size N            bytes per key: the key number in zero-padded decimal (default 8)\n"
"  --val-size N            bytes per value, random (default 8)\n"
"  --key-space-size N      keys are numbered 0..N-1 (default 1)\n"
"  --sequential-keys       use keys in order instead of at random\n"
"  --consistency l|s       range: linearizable or serializable (default l)\n"
"  --limit N               range: read up to N keys from the chosen key on (default 0: one key)\n"
"  --txn-ops N             txn-put: puts per transaction, on consecutive keys (default 1)\n"
"                          txn-noop: the same transaction behind a compare that never\n"
"                          holds (version < 0): a write that changes nothing\n"
"  --read-fraction F       mixed: share of requests that are ranges (default 0.5)\n"
"  --watchers N            watch-latency: watchers of key 0, spread over the --clients\n"
"                          Watch streams (default: --clients); --total Puts of that key\n"
"                          at --rate per second (default 100) on one more connection,\n"
"                          the next Put once every watcher got the last one's event;\n"
"                          latency: from each Put's send to each watcher's event\n"
"  --leases N              lease-keepalive: leases granted before timing (default:\n"
"                          --clients); each client renews its share in turn over its own\n"
"                          LeaseKeepAlive stream, --total keep-alives in all\n"
"  --lease-ttl SECONDS     lease-keepalive: the leases' TTL (default 100)\n"
"\n"
"Output flags:\n"
"  --json FILE             write the results as JSON\n"
"  --label TEXT            a name stored in the JSON (e.g. the server under test)\n"
"  --quiet                 no progress display\n"
"\n"
"Exit status: 0 all requests succeeded, 1 some failed, 2 bad arguments, 3 setup failed.\n");
}

__attribute__((format(printf, 1, 2), noreturn)) static void usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fprintf(stderr, "usage: " PROG " [flags] WORKLOAD [flags]  (WORKLOAD: " WORKLOAD_LIST
                    "; --help for all)\n");
    exit(EXIT_USAGE);
}

static uint64_t parse_u64(const char *flag, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '-' || errno != 0 || end == s || *end != '\0' || v < min || v > max)
        usage_error("--%s: '%s' is not a whole number in [%llu, %llu]", flag, s,
                    (unsigned long long)min, (unsigned long long)max);
    return v;
}

static double parse_double(const char *flag, const char *s, double min, double max,
                           int allow_suffix)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (allow_suffix && end != s && (strcmp(end, "s") == 0 || strcmp(end, "m") == 0)) {
        if (*end == 'm')
            v *= 60;
        end++;
    }
    if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
        usage_error("--%s: '%s' is not a number in [%g, %g]", flag, s, min, max);
    return v;
}

/* ---- random numbers and keys ------------------------------------------ */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned decimal_digits(uint64_t v)
{
    unsigned d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

/* Key number n as key_size bytes: zero-padded decimal (fits: checked at
 * startup against the largest number used). */
static void format_key(char *out, unsigned key_size, uint64_t n)
{
    for (unsigned i = key_size; i-- > 0;) {
        out[i] = (char)('0' + n % 10);
        n /= 10;
    }
}

static uint64_t next_key_number(struct bench *b, struct client *cl)
{
    if (b->phase == PHASE_PRELOAD)
        return b->seq++;
    if (b->o.sequential)
        return b->seq++ % b->o.key_space;
    return splitmix64(&cl->rng) % b->o.key_space;
}

/* ---- errors ------------------------------------------------------------- */

static const char *grpc_code_name(int code)
{
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED"};
    return code >= 0 && code < (int)(sizeof names / sizeof names[0]) ? names[code] : "?";
}

__attribute__((format(printf, 2, 3))) static void count_error(struct bench *b, const char *fmt,
                                                              ...)
{
    char text[sizeof b->errs[0].text];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    b->errors++;
    for (size_t i = 0; i < b->nerrs; i++) {
        if (strcmp(b->errs[i].text, text) == 0) {
            b->errs[i].count++;
            return;
        }
    }
    if (b->nerrs < MAX_ERROR_KINDS) {
        memcpy(b->errs[b->nerrs].text, text, sizeof text);
        b->errs[b->nerrs++].count = 1;
    } else {
        b->err_other++;
    }
}

/* ---- requests ----------------------------------------------------------- */

static int pack_into(struct client *cl, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > cl->msg_cap) {
        uint8_t *p = realloc(cl->msg, n);
        if (p == NULL)
            return UV_ENOMEM;
        cl->msg = p;
        cl->msg_cap = n;
    }
    cl->call.msg = cl->msg;
    cl->call.msg_len = protobuf_c_message_pack(m, cl->msg);
    return 0;
}

static int build_request(struct bench *b, struct client *cl)
{
    const struct opts *o = &b->o;
    enum op op;
    if (o->workload == WL_LEASE_KEEPALIVE) {
        if (b->phase == PHASE_PRELOAD) {
            cl->op = OP_GRANT;
            cl->call.path = op_paths[OP_GRANT];
            Etcdserverpb__LeaseGrantRequest grant = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
            grant.ttl = o->lease_ttl;
            return pack_into(cl, &grant.base);
        }
        /* This client's leases in turn: index, index + clients, ... */
        cl->op = OP_KEEPALIVE;
        cl->call.path = op_paths[OP_KEEPALIVE];
        cl->lease_id = b->leases[(cl->index + (uint64_t)o->clients * cl->lease_round++) %
                                 b->nleases];
        Etcdserverpb__LeaseKeepAliveRequest ka = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
        ka.id = cl->lease_id;
        return pack_into(cl, &ka.base);
    }
    if (b->phase == PHASE_PRELOAD || o->workload == WL_PUT || o->workload == WL_WATCH_LATENCY)
        op = OP_PUT;
    else if (o->workload == WL_RANGE)
        op = OP_RANGE;
    else if (o->workload == WL_TXN_PUT || o->workload == WL_TXN_NOOP)
        op = OP_TXN;
    else /* mixed: 53 random bits against the read fraction */
        op = (double)(splitmix64(&cl->rng) >> 11) * 0x1p-53 < o->read_fraction ? OP_RANGE
                                                                                : OP_PUT;
    cl->op = op;
    cl->call.path = op_paths[op];

    if (op == OP_TXN) {
        uint64_t first = next_key_number(b, cl);
        for (unsigned i = 0; i < o->txn_ops; i++)
            format_key(cl->keys + (size_t)i * o->key_size, o->key_size,
                       (first + i) % o->key_space);
        Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
        txn.n_success = o->txn_ops;
        txn.success = cl->op_ptrs;
        /* txn-noop: version < 0 never holds, so the puts are not applied; the
         * puts still make it a write (etcd sends it through raft). */
        Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
        Etcdserverpb__Compare *cmps[1] = {&cmp};
        if (o->workload == WL_TXN_NOOP) {
            cmp.key.data = (uint8_t *)cl->keys;
            cmp.key.len = o->key_size;
            cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS;
            cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
            cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
            cmp.version = 0;
            txn.n_compare = 1;
            txn.compare = cmps;
        }
        return pack_into(cl, &txn.base);
    }
    format_key(cl->keys, o->key_size, next_key_number(b, cl));
    if (op == OP_PUT) {
        Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
        put.key.data = (uint8_t *)cl->keys;
        put.key.len = o->key_size;
        put.value.data = b->value;
        put.value.len = o->val_size;
        return pack_into(cl, &put.base);
    }
    static uint8_t zero = 0;
    Etcdserverpb__RangeRequest range = ETCDSERVERPB__RANGE_REQUEST__INIT;
    range.key.data = (uint8_t *)cl->keys;
    range.key.len = o->key_size;
    if (o->limit > 0) { /* [key, end of keyspace), limited */
        range.range_end.data = &zero;
        range.range_end.len = 1;
        range.limit = o->limit;
    }
    range.serializable = o->serializable;
    return pack_into(cl, &range.base);
}

/* LeaseGrant (the id is kept for the keep-alives) and LeaseKeepAlive. */
static const char *check_lease_response(struct bench *b, struct client *cl, const uint8_t *msg,
                                        size_t len)
{
    int grant = cl->op == OP_GRANT;
    ProtobufCMessage *m = protobuf_c_message_unpack(
        grant ? &etcdserverpb__lease_grant_response__descriptor
              : &etcdserverpb__lease_keep_alive_response__descriptor,
        NULL, len, msg);
    if (m == NULL)
        return grant ? "undecodable LeaseGrantResponse" : "undecodable LeaseKeepAliveResponse";
    const char *bad = NULL;
    if (grant) {
        const Etcdserverpb__LeaseGrantResponse *r = (const void *)m;
        if (r->id == 0 || r->ttl <= 0 || r->error[0] != '\0')
            bad = "LeaseGrantResponse: no id, no TTL or an error";
        else if (b->nleases < b->o.leases)
            b->leases[b->nleases++] = r->id;
    } else {
        const Etcdserverpb__LeaseKeepAliveResponse *r = (const void *)m;
        if (r->id != cl->lease_id || r->ttl <= 0)
            bad = "LeaseKeepAliveResponse: another lease, or TTL <= 0 (lease gone)";
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return bad;
}

/* Decodes the response message of a successful call (or one message of a
 * stream); returns a description of what is wrong with it, or NULL. */
static const char *check_response(struct bench *b, struct client *cl, const uint8_t *msg,
                                  size_t len)
{
    switch (cl->op) {
    case OP_PUT: {
        Etcdserverpb__PutResponse *r = etcdserverpb__put_response__unpack(NULL, len, msg);
        if (r == NULL)
            return "undecodable PutResponse";
        int has_header = r->header != NULL;
        etcdserverpb__put_response__free_unpacked(r, NULL);
        return has_header ? NULL : "PutResponse without header";
    }
    case OP_RANGE: {
        Etcdserverpb__RangeResponse *r = etcdserverpb__range_response__unpack(NULL, len, msg);
        if (r == NULL)
            return "undecodable RangeResponse";
        if (r->n_kvs == 0)
            b->empty_ranges++;
        etcdserverpb__range_response__free_unpacked(r, NULL);
        return NULL;
    }
    case OP_TXN: {
        Etcdserverpb__TxnResponse *r = etcdserverpb__txn_response__unpack(NULL, len, msg);
        if (r == NULL)
            return "undecodable TxnResponse";
        int good = b->o.workload == WL_TXN_NOOP
                       ? !r->succeeded && r->n_responses == 0
                       : r->succeeded && r->n_responses == b->o.txn_ops;
        etcdserverpb__txn_response__free_unpacked(r, NULL);
        if (b->o.workload == WL_TXN_NOOP)
            return good ? NULL : "TxnResponse: txn-noop succeeded or has responses";
        return good ? NULL : "TxnResponse: not succeeded or wrong number of responses";
    }
    case OP_GRANT:
    case OP_KEEPALIVE:
        return check_lease_response(b, cl, msg, len);
    case OP_COUNT:
        break;
    }
    return "unknown operation";
}

static void client_next(struct client *cl);
static void maybe_end_phase(struct bench *b);
static void on_duration(uv_timer_t *t);
static void on_keepalive_message(struct gcall *call, const uint8_t *msg, size_t len);
static void on_stream_done(struct gcall *call);
static void watch_finish(struct bench *b);

static void client_stop(struct client *cl)
{
    if (cl->running) {
        cl->running = 0;
        cl->b->running--;
    }
}

static void send_request(struct client *cl)
{
    struct bench *b = cl->b;
    int rv = build_request(b, cl);
    if (rv == 0) {
        cl->start_ns = uv_hrtime();
        if (cl->op != OP_KEEPALIVE) {
            rv = gcall_start(cl->conn, &cl->call);
        } else if (cl->stream_open) {
            rv = gcall_send(&cl->call, cl->call.msg, cl->call.msg_len);
        } else { /* the first keep-alive opens the client's stream */
            cl->call.on_message = on_keepalive_message;
            cl->call.done = on_stream_done;
            rv = gcall_start(cl->conn, &cl->call);
            cl->stream_open = rv == 0;
        }
    }
    if (rv != 0) {
        /* The connection is gone (its failure was counted when it failed,
         * or is counted now): this client is done. */
        if (rv == UV_ENOTCONN)
            count_error(b, "connection: %s", gconn_errmsg(cl->conn)[0] ? gconn_errmsg(cl->conn)
                                                                       : "not connected");
        else
            count_error(b, "request: %s", uv_strerror(rv));
        b->alive--;
        client_stop(cl);
        if (b->alive == 0)
            b->stopping = 1;
        maybe_end_phase(b);
    }
}

static void on_rate_slot(uv_timer_t *t)
{
    struct client *cl = t->data;
    if (cl->b->stopping) {
        client_stop(cl);
        maybe_end_phase(cl->b);
        return;
    }
    send_request(cl);
}

/* Counts what went wrong with a finished call, if anything; 1 if it failed. */
static int count_call_error(struct bench *b, struct client *cl, const struct gcall *call)
{
    if (call->err != 0) {
        if (call->h2_error != 0)
            count_error(b, "stream reset by the server: %s",
                        nghttp2_http2_strerror(call->h2_error));
        else
            count_error(b, "connection: %s", gconn_errmsg(cl->conn));
    } else if (call->http_status != 200) {
        count_error(b, "HTTP status %d", call->http_status);
    } else if (call->grpc_status < 0) {
        count_error(b, "response without grpc-status");
    } else if (call->grpc_status != 0) {
        count_error(b, "grpc-status %d (%s): %s", call->grpc_status,
                    grpc_code_name(call->grpc_status), call->grpc_message);
    } else {
        return 0;
    }
    return 1;
}

/* The same for a finished unary call, its response message included. */
static int count_unary_error(struct bench *b, struct client *cl, const struct gcall *call)
{
    if (count_call_error(b, cl, call))
        return 1;
    const uint8_t *msg;
    size_t len;
    const char *bad = gcall_message(call, &msg, &len) != 0
                          ? "response is not one uncompressed gRPC message"
                          : check_response(b, cl, msg, len);
    if (bad == NULL)
        return 0;
    count_error(b, "bad response: %s", bad);
    return 1;
}

/* A client whose connection or stream is gone: it stops for good. */
static void client_lost(struct client *cl)
{
    struct bench *b = cl->b;
    b->alive--;
    client_stop(cl);
    if (b->alive == 0)
        b->stopping = 1;
    maybe_end_phase(b);
}

static void on_call_done(struct gcall *call)
{
    struct client *cl = call->data;
    struct bench *b = cl->b;
    uint64_t now = uv_hrtime();
    b->t_last = now;
    if (b->stalled) { /* already counted as stalled */
        client_stop(cl);
        maybe_end_phase(b);
        return;
    }
    if (!count_unary_error(b, cl, call)) {
        b->ok++;
        bench_hist_record(b->hist, now - cl->start_ns);
        bench_hist_record(b->op_hist[cl->op], now - cl->start_ns);
    }
    if (call->err != 0 && call->h2_error == 0) { /* the connection failed */
        client_lost(cl);
        return;
    }
    client_next(cl);
}

/* lease-keepalive: one response on a client's LeaseKeepAlive stream. */
static void on_keepalive_message(struct gcall *call, const uint8_t *msg, size_t len)
{
    struct client *cl = call->data;
    struct bench *b = cl->b;
    uint64_t now = uv_hrtime();
    b->t_last = now;
    if (b->stalled || !cl->running)
        return;
    const char *bad = check_response(b, cl, msg, len);
    if (bad != NULL) {
        count_error(b, "bad response: %s", bad);
    } else {
        b->ok++;
        bench_hist_record(b->hist, now - cl->start_ns);
        bench_hist_record(b->op_hist[cl->op], now - cl->start_ns);
    }
    client_next(cl);
}

/* lease-keepalive: a client's stream ended; before the end of the run that
 * is an error, and the client stops, unless the client half-closed it. */
static void on_stream_done(struct gcall *call)
{
    struct client *cl = call->data;
    struct bench *b = cl->b;
    cl->stream_open = 0;
    if (b->phase == PHASE_DONE)
        return;
    if (b->stalled) {
        client_stop(cl);
        maybe_end_phase(b);
        return;
    }
    int failed = count_call_error(b, cl, call);
    if (!cl->running && !failed)
        return; /* the answer to its half-close */
    if (!failed)
        count_error(b, "the server ended the stream (grpc-status 0)");
    if (cl->running)
        client_lost(cl);
}

static void client_next(struct client *cl)
{
    struct bench *b = cl->b;
    if (b->stopping || b->issued >= b->phase_total) {
        /* Its share is done: end its LeaseKeepAlive stream as a client
         * does (half-close; the server then ends it with status 0). */
        if (cl->stream_open && cl->running)
            gcall_close_send(&cl->call);
        client_stop(cl);
        maybe_end_phase(b);
        return;
    }
    b->issued++;
    if (!cl->running) {
        cl->running = 1;
        b->running++;
    }
    if (b->o.rate > 0 && b->phase == PHASE_RUN) {
        uint64_t now = uv_hrtime(), slot = b->next_slot_ns > now ? b->next_slot_ns : now;
        b->next_slot_ns = slot + (uint64_t)(1e9 / b->o.rate);
        if (slot > now + 500000) { /* wait for the slot, at millisecond resolution */
            uv_timer_start(&cl->rate_timer, on_rate_slot, (slot - now + 999999) / 1000000, 0);
            return;
        }
    }
    send_request(cl);
}

/* ---- phases ------------------------------------------------------------- */

static void close_conns(struct bench *b)
{
    for (unsigned i = 0; i < b->nconns; i++)
        if (b->conns[i] != NULL) {
            gconn_close(b->conns[i], NULL, NULL);
            b->conns[i] = NULL;
        }
}

static void close_everything(struct bench *b)
{
    close_conns(b);
    for (unsigned i = 0; i < b->o.clients; i++)
        uv_close((uv_handle_t *)&b->clients[i].rate_timer, NULL);
    if (b->watch != NULL)
        uv_close((uv_handle_t *)&b->watch->put_timer, NULL);
    uv_close((uv_handle_t *)&b->progress_timer, NULL);
    uv_close((uv_handle_t *)&b->duration_timer, NULL);
}

static void clear_progress(struct bench *b)
{
    if (b->progress_shown && b->tty)
        fprintf(stderr, "\r\033[K");
    b->progress_shown = 0;
}

static void print_errors(struct bench *b, FILE *f)
{
    for (size_t i = 0; i < b->nerrs; i++)
        fprintf(f, "  %10llu  %s\n", (unsigned long long)b->errs[i].count, b->errs[i].text);
    if (b->err_other)
        fprintf(f, "  %10llu  (other kinds)\n", (unsigned long long)b->err_other);
}

static void start_phase(struct bench *b, enum phase phase)
{
    b->phase = phase;
    b->issued = b->ok = b->errors = b->empty_ranges = 0;
    b->seq = 0;
    b->stopping = 0;
    b->nerrs = 0;
    b->err_other = 0;
    bench_hist_reset(b->hist);
    for (int i = 0; i < OP_COUNT; i++)
        bench_hist_reset(b->op_hist[i]);
    if (phase == PHASE_PRELOAD) {
        b->phase_total = b->o.preload;
    } else {
        b->phase_total = b->o.total ? b->o.total : UINT64_MAX;
        if (b->o.duration_s > 0)
            uv_timer_start(&b->duration_timer, on_duration, (uint64_t)(b->o.duration_s * 1000), 0);
    }
    b->t_start = b->t_last = b->progress_t = uv_hrtime();
    b->progress_ok = 0;
    b->next_slot_ns = b->t_start;
    for (unsigned i = 0; i < b->o.clients; i++)
        if (b->clients[i].conn != NULL)
            client_next(&b->clients[i]);
    maybe_end_phase(b);
}

static void maybe_end_phase(struct bench *b)
{
    if (b->running > 0 || b->phase == PHASE_DONE || b->phase == PHASE_CONNECT)
        return;
    if (!b->stopping && b->issued < b->phase_total && b->alive > 0)
        return; /* between a completion and the next issue */
    if (b->phase == PHASE_PRELOAD) {
        b->preload_s_ns = uv_hrtime() - b->t_start;
        if (b->errors > 0 || b->stalled) {
            clear_progress(b);
            fprintf(stderr, PROG ": preload: %llu of %llu %ss failed:\n",
                    (unsigned long long)b->errors, (unsigned long long)b->o.preload,
                    b->o.workload == WL_LEASE_KEEPALIVE ? "lease grant" : "put");
            print_errors(b, stderr);
            b->exit_code = EXIT_SETUP;
            b->phase = PHASE_DONE;
            close_everything(b);
            return;
        }
        start_phase(b, PHASE_RUN);
        return;
    }
    b->phase = PHASE_DONE;
    uv_timer_stop(&b->duration_timer);
    close_everything(b);
}

static void on_duration(uv_timer_t *t)
{
    struct bench *b = t->data;
    b->stopping = 1;
    maybe_end_phase(b);
}

static void on_progress(uv_timer_t *t)
{
    struct bench *b = t->data;
    uint64_t now = uv_hrtime();
    if (b->phase != PHASE_RUN && b->phase != PHASE_PRELOAD)
        return;
    /* Stall guard: requests in flight but nothing has come back for long. */
    if (b->running > 0 && now - b->t_last > STALL_TIMEOUT_NS && !b->stalled) {
        clear_progress(b);
        for (unsigned i = 0; i < b->running; i++)
            count_error(b, "stalled: no response for %llu s",
                        STALL_TIMEOUT_NS / 1000000000ull);
        b->stalled = 1;
        b->stopping = 1;
        if (b->watch != NULL) {
            watch_finish(b);
            return;
        }
        close_conns(b);
        for (unsigned i = 0; i < b->o.clients; i++)
            if (b->clients[i].running && uv_is_active((uv_handle_t *)&b->clients[i].rate_timer)) {
                uv_timer_stop(&b->clients[i].rate_timer);
                client_stop(&b->clients[i]);
            }
        maybe_end_phase(b);
        return;
    }
    if (b->o.quiet)
        return;
    double el = (double)(now - b->t_start) / 1e9;
    double rate = (double)(b->ok - b->progress_ok) / ((double)(now - b->progress_t) / 1e9);
    b->progress_ok = b->ok;
    b->progress_t = now;
    double pct = b->phase_total != UINT64_MAX ? 100.0 * (double)b->ok / (double)b->phase_total
                                              : 100.0 * el / b->o.duration_s;
    if (pct > 100.0)
        pct = 100.0;
    char line[200];
    snprintf(line, sizeof line, "%s%s: %5.1f%%  %llu ok  %llu errors  %.0f req/s  p99 %.2f ms  %.0f s",
             b->phase == PHASE_PRELOAD ? "preload " : "", workload_names[b->o.workload], pct,
             (unsigned long long)b->ok, (unsigned long long)b->errors, rate,
             (double)bench_hist_percentile(b->hist, 99) / 1e6, el);
    if (b->tty)
        fprintf(stderr, "\r\033[K%s", line);
    else
        fprintf(stderr, "%s: %s\n", PROG, line);
    b->progress_shown = 1;
}

/* ---- watch-latency -------------------------------------------------------
 *
 * etcd's `benchmark watch-latency` method: every watcher watches one key;
 * Puts of that key go out on a connection of their own at --rate per
 * second, one at a time: the next Put waits for its rate slot, for the
 * last Put's response and for every watcher's event of it. Each event's
 * latency is measured from its Put's send (etcd's tool starts the clock
 * when the Put returns; that leaves out the commit, and events may beat the
 * response). The watchers are spread evenly over the --clients Watch
 * streams (one stream per client, clients round-robin over --conns), all
 * created before the first Put (reported as the preload time). Any error
 * ends the run: a watcher that missed an event would stall it. */

static void watch_finish(struct bench *b)
{
    b->stopping = 1;
    b->running = 0;
    if (b->phase == PHASE_DONE)
        return;
    b->phase = PHASE_DONE;
    uv_timer_stop(&b->duration_timer);
    close_everything(b);
}

static void watch_send_put(struct bench *b)
{
    struct watch_run *w = b->watch;
    struct client *cl = &w->put;
    int rv = build_request(b, cl);
    if (rv == 0) {
        cl->start_ns = uv_hrtime();
        w->events_left = b->o.watchers;
        w->put_in_flight = 1;
        rv = gcall_start(cl->conn, &cl->call);
        w->put_in_flight = rv == 0;
    }
    if (rv != 0) {
        count_error(b, "put: %s", rv == UV_ENOTCONN && gconn_errmsg(cl->conn)[0]
                                      ? gconn_errmsg(cl->conn) : uv_strerror(rv));
        watch_finish(b);
    }
}

static void on_put_slot(uv_timer_t *t)
{
    struct bench *b = t->data;
    if (b->phase == PHASE_RUN)
        watch_send_put(b);
}

/* Sends the next Put once the last one is complete, at its rate slot. */
static void watch_maybe_next(struct bench *b)
{
    struct watch_run *w = b->watch;
    if (b->phase != PHASE_RUN || w->put_in_flight || w->events_left > 0)
        return;
    if (b->stopping || w->puts >= b->o.total) {
        watch_finish(b);
        return;
    }
    if (b->o.rate > 0) {
        uint64_t now = uv_hrtime(), slot = b->next_slot_ns > now ? b->next_slot_ns : now;
        b->next_slot_ns = slot + (uint64_t)(1e9 / b->o.rate);
        if (slot > now + 500000) {
            uv_timer_start(&w->put_timer, on_put_slot, (slot - now + 999999) / 1000000, 0);
            return;
        }
    }
    watch_send_put(b);
}

static void on_watch_put_done(struct gcall *call)
{
    struct client *cl = call->data;
    struct bench *b = cl->b;
    struct watch_run *w = b->watch;
    uint64_t now = uv_hrtime();
    w->put_in_flight = 0;
    if (b->phase == PHASE_DONE)
        return;
    b->t_last = now;
    if (count_unary_error(b, cl, call)) {
        watch_finish(b);
        return;
    }
    w->puts++;
    bench_hist_record(b->op_hist[OP_PUT], now - cl->start_ns);
    watch_maybe_next(b);
}

static void watch_begin_puts(struct bench *b)
{
    uint64_t now = uv_hrtime();
    b->preload_s_ns = now - b->t_start;
    b->phase = PHASE_RUN;
    b->phase_total = b->o.total * b->o.watchers; /* events, for the progress line */
    b->t_start = b->t_last = b->progress_t = b->next_slot_ns = now;
    b->progress_ok = 0;
    if (b->o.duration_s > 0)
        uv_timer_start(&b->duration_timer, on_duration, (uint64_t)(b->o.duration_s * 1000), 0);
    watch_maybe_next(b);
}

static void on_watch_message(struct gcall *call, const uint8_t *msg, size_t len)
{
    struct client *cl = call->data;
    struct bench *b = cl->b;
    struct watch_run *w = b->watch;
    uint64_t now = uv_hrtime();
    if (b->phase == PHASE_DONE)
        return;
    b->t_last = now;
    Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, len, msg);
    if (r == NULL) {
        count_error(b, "bad response: undecodable WatchResponse");
    } else if (r->created) {
        if (r->canceled || r->watch_id < 0)
            count_error(b, "watch not created: %s", r->cancel_reason);
        else if (++w->created == b->o.watchers)
            watch_begin_puts(b);
    } else if (r->canceled) {
        count_error(b, "watch canceled: %s", r->cancel_reason[0] ? r->cancel_reason : "(no reason)");
    } else {
        for (size_t i = 0; i < r->n_events; i++) {
            const Mvccpb__Event *ev = r->events[i];
            if (b->phase != PHASE_RUN || w->events_left == 0 || ev->kv == NULL ||
                ev->type != MVCCPB__EVENT__EVENT_TYPE__PUT) {
                count_error(b, "unexpected watch event");
                break;
            }
            w->events_left--;
            b->ok++;
            bench_hist_record(b->hist, now - w->put.start_ns);
        }
    }
    etcdserverpb__watch_response__free_unpacked(r, NULL);
    if (b->errors > 0)
        watch_finish(b);
    else
        watch_maybe_next(b);
}

static void on_watch_stream_done(struct gcall *call)
{
    struct client *cl = call->data;
    struct bench *b = cl->b;
    cl->stream_open = 0;
    if (b->phase == PHASE_DONE || b->stalled)
        return;
    if (!count_call_error(b, cl, call))
        count_error(b, "the server ended a watch stream (grpc-status 0)");
    watch_finish(b);
}

/* Opens the watch streams, each with its share of the watchers. */
static void watch_start(struct bench *b)
{
    const struct opts *o = &b->o;
    b->phase = PHASE_PRELOAD;
    b->phase_total = o->watchers;
    b->t_start = b->t_last = b->progress_t = uv_hrtime();
    b->running = 1; /* for the stall guard: the run is in progress */
    bench_hist_reset(b->hist);
    for (int i = 0; i < OP_COUNT; i++)
        bench_hist_reset(b->op_hist[i]);
    Etcdserverpb__WatchCreateRequest create = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = &create;
    for (unsigned i = 0; i < o->clients; i++) {
        struct client *cl = &b->clients[i];
        cl->watchers = o->watchers / o->clients + (i < o->watchers % o->clients);
        if (cl->watchers == 0)
            continue;
        format_key(cl->keys, o->key_size, 0);
        create.key.data = (uint8_t *)cl->keys;
        create.key.len = o->key_size;
        int rv = pack_into(cl, &req.base);
        if (rv == 0) {
            cl->call.path = WATCH_PATH;
            cl->call.on_message = on_watch_message;
            cl->call.done = on_watch_stream_done;
            rv = gcall_start(cl->conn, &cl->call);
            cl->stream_open = rv == 0;
        }
        for (uint64_t k = 1; rv == 0 && k < cl->watchers; k++)
            rv = gcall_send(&cl->call, cl->call.msg, cl->call.msg_len);
        if (rv != 0) {
            count_error(b, "watch: %s", uv_strerror(rv));
            watch_finish(b);
            return;
        }
    }
}

/* ---- connecting --------------------------------------------------------- */

static void on_conn_ready(struct gconn *c, int status, void *arg)
{
    struct bench *b = arg;
    if (status != 0 && !b->connect_failed) {
        b->connect_failed = 1;
        for (unsigned i = 0; i < b->nconns; i++)
            if (b->conns[i] == c)
                fprintf(stderr, PROG ": %s: %s\n", b->eps[i % b->neps].authority,
                        gconn_errmsg(c));
    }
    if (--b->conns_pending > 0)
        return;
    if (b->connect_failed) {
        b->exit_code = EXIT_SETUP;
        b->phase = PHASE_DONE;
        close_everything(b);
        return;
    }
    uv_timer_start(&b->progress_timer, on_progress, b->tty ? 250 : 5000, b->tty ? 250 : 5000);
    if (b->watch != NULL)
        watch_start(b);
    else
        start_phase(b, b->o.preload ? PHASE_PRELOAD : PHASE_RUN);
}

/* ---- results ------------------------------------------------------------ */

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void print_latency_line(FILE *f, const char *what, const struct bench_hist *h)
{
    if (h->total == 0) {
        fprintf(f, "  %-10s (no successful requests)\n", what);
        return;
    }
    fprintf(f,
            "  %-10s min %.3f  mean %.3f  stddev %.3f  p50 %.3f  p90 %.3f  p99 %.3f  "
            "p99.9 %.3f  max %.3f ms\n",
            what, ms(h->total ? h->min : 0), bench_hist_mean(h) / 1e6,
            bench_hist_stddev(h) / 1e6, ms(bench_hist_percentile(h, 50)),
            ms(bench_hist_percentile(h, 90)), ms(bench_hist_percentile(h, 99)),
            ms(bench_hist_percentile(h, 99.9)), ms(h->max));
}

static void print_histogram(FILE *f, const struct bench_hist *h)
{
    double edges[HIST_ROWS + 1];
    uint64_t counts[HIST_ROWS], top = 0;
    size_t n = bench_hist_bins(h, HIST_ROWS, edges, counts);
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        if (counts[i] > top)
            top = counts[i];
    fprintf(f, "\nLatency histogram (ms, log-spaced bins):\n");
    for (size_t i = 0; i < n; i++) {
        int bar = (int)((counts[i] * 40 + top - 1) / top);
        fprintf(f, "  %9.3f .. %9.3f [%9llu] |", edges[i] / 1e6, edges[i + 1] / 1e6,
                (unsigned long long)counts[i]);
        for (int k = 0; k < bar; k++)
            fputc('#', f);
        fputc('\n', f);
    }
}

static double elapsed_s(const struct bench *b)
{
    return (double)(b->t_last - b->t_start) / 1e9;
}

static void print_results(struct bench *b)
{
    double el = elapsed_s(b);
    printf("%s: %s, %u conns x %u clients (streams), %s\n", PROG,
           workload_names[b->o.workload], b->o.conns, b->o.clients, b->o.endpoints);
    int watch = b->watch != NULL;
    if (watch)
        printf("  watchers   %llu on %u streams, set up in %.2f s\n"
               "  puts       %llu at %g/s (one at a time)\n",
               (unsigned long long)b->o.watchers, b->o.clients, (double)b->preload_s_ns / 1e9,
               (unsigned long long)b->watch->puts, b->o.rate);
    else if (b->o.preload)
        printf("  preload    %llu %s in %.2f s\n", (unsigned long long)b->o.preload,
               b->o.workload == WL_LEASE_KEEPALIVE ? "leases" : "keys",
               (double)b->preload_s_ns / 1e9);
    printf("  %-10s %llu ok, %llu errors in %.3f s\n", watch ? "events" : "requests",
           (unsigned long long)b->ok, (unsigned long long)b->errors, el);
    printf("  throughput %.1f %s/s\n", el > 0 ? (double)b->ok / el : 0.0, watch ? "events" : "req");
    print_latency_line(stdout, watch ? "event" : "latency", b->hist);
    if (b->o.workload == WL_MIXED || watch)
        for (int i = 0; i < OP_COUNT; i++)
            if (b->op_hist[i]->total)
                print_latency_line(stdout, op_names[i], b->op_hist[i]);
    if (b->empty_ranges)
        printf("  note       %llu ranges found no key\n", (unsigned long long)b->empty_ranges);
    print_histogram(stdout, b->hist);
    if (b->errors) {
        printf("\nErrors:\n");
        print_errors(b, stdout);
    }
}

static json_t *latency_json(const struct bench_hist *h)
{
    json_t *j = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "count",
                          (json_int_t)h->total, "min", ms(h->total ? h->min : 0), "mean",
                          bench_hist_mean(h) / 1e6, "stddev", bench_hist_stddev(h) / 1e6, "p50",
                          ms(bench_hist_percentile(h, 50)), "p90", ms(bench_hist_percentile(h, 90)),
                          "p99", ms(bench_hist_percentile(h, 99)), "p99_9",
                          ms(bench_hist_percentile(h, 99.9)), "p99_99",
                          ms(bench_hist_percentile(h, 99.99)), "max", ms(h->max));
    /* The percentile curve for plots: 1 - 10^(-i/10), i = 0..50, then 100. */
    json_t *dist = json_array();
    double tail = 1.0;
    for (int i = 0; i <= 50 && h->total; i++, tail *= 0.7943282347242815) {
        double p = 100.0 * (1.0 - tail);
        if (i > 0 && tail * (double)h->total < 1.0)
            break; /* beyond the resolution of this sample */
        json_array_append_new(dist, json_pack("[f, f]", p, ms(bench_hist_percentile(h, p > 0 ? p : 1e-9))));
    }
    if (h->total)
        json_array_append_new(dist, json_pack("[f, f]", 100.0, ms(h->max)));
    json_object_set_new(j, "distribution", dist);
    double edges[HIST_ROWS + 1];
    uint64_t counts[HIST_ROWS];
    size_t n = bench_hist_bins(h, HIST_ROWS, edges, counts);
    json_t *bins = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(bins, json_pack("{s:f, s:f, s:I}", "from", edges[i] / 1e6, "to",
                                              edges[i + 1] / 1e6, "count", (json_int_t)counts[i]));
    json_object_set_new(j, "histogram", bins);
    return j;
}

static int write_json(struct bench *b)
{
    const struct opts *o = &b->o;
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&b->started_at));
    double el = elapsed_s(b);
    json_t *params = json_pack(
        "{s:I, s:I, s:I, s:I, s:f, s:f, s:i, s:i, s:I, s:b, s:s, s:I, s:i, s:f, s:I, s:I}",
        "watchers", (json_int_t)o->watchers, "leases", (json_int_t)o->leases, "lease_ttl",
        (json_int_t)o->lease_ttl, "total",
        (json_int_t)o->total, "duration_s", o->duration_s, "rate", o->rate, "key_size",
        (int)o->key_size, "val_size", (int)o->val_size, "key_space_size",
        (json_int_t)o->key_space, "sequential_keys", o->sequential, "consistency",
        o->serializable ? "s" : "l", "limit", (json_int_t)o->limit, "txn_ops", (int)o->txn_ops,
        "read_fraction", o->read_fraction, "preload", (json_int_t)o->preload, "seed",
        (json_int_t)o->seed);
    json_t *errs = json_array();
    for (size_t i = 0; i < b->nerrs; i++)
        json_array_append_new(errs, json_pack("{s:s, s:I}", "error", b->errs[i].text, "count",
                                              (json_int_t)b->errs[i].count));
    if (b->err_other)
        json_array_append_new(errs, json_pack("{s:s, s:I}", "error", "(other kinds)", "count",
                                              (json_int_t)b->err_other));
    json_t *root = json_pack(
        "{s:s, s:i, s:s, s:s?, s:s, s:s, s:i, s:i, s:o, s:I, s:I, s:o, s:I, s:f, s:f, s:f, s:o}",
        "tool", PROG, "format", 1, "started_at", when, "label", o->label, "workload",
        workload_names[o->workload], "endpoints", o->endpoints, "conns", (int)o->conns,
        "clients", (int)o->clients, "params", params, "requests", (json_int_t)b->ok, "errors",
        (json_int_t)b->errors, "error_kinds", errs, "empty_ranges",
        (json_int_t)b->empty_ranges, "elapsed_s", el, "throughput_rps",
        el > 0 ? (double)b->ok / el : 0.0, "preload_s", (double)b->preload_s_ns / 1e9,
        "latency_ms", latency_json(b->hist));
    if (root == NULL) {
        fprintf(stderr, PROG ": --json: could not build the JSON document\n");
        return -1;
    }
    if (b->watch != NULL) { /* requests = events; the Puts apart */
        json_object_set_new(root, "puts", json_integer((json_int_t)b->watch->puts));
        json_object_set_new(root, "watchers", json_integer((json_int_t)o->watchers));
    }
    if (o->workload == WL_MIXED || b->watch != NULL) {
        json_t *ops = json_object();
        for (int i = 0; i < OP_COUNT; i++)
            if (b->op_hist[i]->total)
                json_object_set_new(ops, op_names[i], latency_json(b->op_hist[i]));
        json_object_set_new(root, "ops", ops);
    }
    int rv = json_dump_file(root, o->json_path, JSON_INDENT(1) | JSON_REAL_PRECISION(6));
    json_decref(root);
    if (rv != 0) {
        fprintf(stderr, PROG ": %s: %s\n", o->json_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- arguments ---------------------------------------------------------- */

enum {
    OPT_ENDPOINTS = 256, OPT_CONNS, OPT_CLIENTS, OPT_TOTAL, OPT_DURATION, OPT_RATE,
    OPT_KEY_SIZE, OPT_VAL_SIZE, OPT_KEY_SPACE, OPT_SEQUENTIAL, OPT_CONSISTENCY, OPT_LIMIT,
    OPT_TXN_OPS, OPT_READ_FRACTION, OPT_PRELOAD, OPT_SEED, OPT_CACERT, OPT_CERT, OPT_KEY,
    OPT_INSECURE, OPT_JSON, OPT_LABEL, OPT_QUIET, OPT_HELP, OPT_WATCHERS, OPT_LEASES,
    OPT_LEASE_TTL,
};

static const struct option long_opts[] = {
    {"endpoints", required_argument, NULL, OPT_ENDPOINTS},
    {"conns", required_argument, NULL, OPT_CONNS},
    {"clients", required_argument, NULL, OPT_CLIENTS},
    {"total", required_argument, NULL, OPT_TOTAL},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"rate", required_argument, NULL, OPT_RATE},
    {"key-size", required_argument, NULL, OPT_KEY_SIZE},
    {"val-size", required_argument, NULL, OPT_VAL_SIZE},
    {"key-space-size", required_argument, NULL, OPT_KEY_SPACE},
    {"sequential-keys", no_argument, NULL, OPT_SEQUENTIAL},
    {"consistency", required_argument, NULL, OPT_CONSISTENCY},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"txn-ops", required_argument, NULL, OPT_TXN_OPS},
    {"read-fraction", required_argument, NULL, OPT_READ_FRACTION},
    {"preload", required_argument, NULL, OPT_PRELOAD},
    {"seed", required_argument, NULL, OPT_SEED},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"insecure-skip-tls-verify", no_argument, NULL, OPT_INSECURE},
    {"json", required_argument, NULL, OPT_JSON},
    {"label", required_argument, NULL, OPT_LABEL},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, OPT_HELP},
    {"watchers", required_argument, NULL, OPT_WATCHERS},
    {"leases", required_argument, NULL, OPT_LEASES},
    {"lease-ttl", required_argument, NULL, OPT_LEASE_TTL},
    {NULL, 0, NULL, 0},
};

static void parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){
        .endpoints = "http://127.0.0.1:2379", .conns = 1, .clients = 1, .key_size = 8,
        .val_size = 8, .key_space = 1, .txn_ops = 1, .read_fraction = 0.5, .seed = 1,
        .lease_ttl = 100,
    };
    int workload = -1, seen_read_fraction = 0, seen_txn_ops = 0, seen_limit = 0,
        seen_consistency = 0, seen_rate = 0, seen_lease_ttl = 0;
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, "+", long_opts, NULL);
        if (c == -1) {
            if (optind >= argc)
                break;
            /* A non-flag argument: the workload (flags may follow it). */
            const char *w = argv[optind++];
            if (workload >= 0)
                usage_error("unexpected argument '%s'", w);
            for (int i = 0; i < WL_COUNT; i++)
                if (strcmp(w, workload_names[i]) == 0)
                    workload = i;
            if (workload < 0)
                usage_error("unknown workload '%s' (" WORKLOAD_LIST ")", w);
            continue;
        }
        switch (c) {
        case OPT_ENDPOINTS: o->endpoints = optarg; break;
        case OPT_CONNS: o->conns = (unsigned)parse_u64("conns", optarg, 1, 1000); break;
        case OPT_CLIENTS: o->clients = (unsigned)parse_u64("clients", optarg, 1, 100000); break;
        case OPT_TOTAL: o->total = parse_u64("total", optarg, 1, UINT64_MAX / 2); break;
        case OPT_DURATION: o->duration_s = parse_double("duration", optarg, 0.001, 1e6, 1); break;
        case OPT_RATE: seen_rate = 1; o->rate = parse_double("rate", optarg, 0, 1e8, 0); break;
        case OPT_WATCHERS: o->watchers = parse_u64("watchers", optarg, 1, 1000000); break;
        case OPT_LEASES: o->leases = parse_u64("leases", optarg, 1, 10000000); break;
        case OPT_LEASE_TTL:
            seen_lease_ttl = 1;
            o->lease_ttl = (int64_t)parse_u64("lease-ttl", optarg, 1, 9000000000ull);
            break;
        case OPT_KEY_SIZE: o->key_size = (unsigned)parse_u64("key-size", optarg, 1, 65536); break;
        case OPT_VAL_SIZE: o->val_size = (unsigned)parse_u64("val-size", optarg, 0, 64u << 20); break;
        case OPT_KEY_SPACE: o->key_space = parse_u64("key-space-size", optarg, 1, UINT64_MAX / 2); break;
        case OPT_SEQUENTIAL: o->sequential = 1; break;
        case OPT_CONSISTENCY:
            seen_consistency = 1;
            if (strcmp(optarg, "l") == 0)
                o->serializable = 0;
            else if (strcmp(optarg, "s") == 0)
                o->serializable = 1;
            else
                usage_error("--consistency: '%s' is neither l (linearizable) nor s (serializable)",
                            optarg);
            break;
        case OPT_LIMIT: seen_limit = 1; o->limit = (int64_t)parse_u64("limit", optarg, 0, INT64_MAX); break;
        case OPT_TXN_OPS: seen_txn_ops = 1; o->txn_ops = (unsigned)parse_u64("txn-ops", optarg, 1, 10000); break;
        case OPT_READ_FRACTION:
            seen_read_fraction = 1;
            o->read_fraction = parse_double("read-fraction", optarg, 0, 1, 0);
            break;
        case OPT_PRELOAD: o->preload = parse_u64("preload", optarg, 0, UINT64_MAX / 2); break;
        case OPT_SEED: o->seed = parse_u64("seed", optarg, 0, UINT64_MAX); break;
        case OPT_CACERT: o->cacert = optarg; break;
        case OPT_CERT: o->cert = optarg; break;
        case OPT_KEY: o->key = optarg; break;
        case OPT_INSECURE: o->insecure = 1; break;
        case OPT_JSON: o->json_path = optarg; break;
        case OPT_LABEL: o->label = optarg; break;
        case OPT_QUIET: o->quiet = 1; break;
        case OPT_HELP: usage(stdout); exit(0);
        case ':': usage_error("%s: missing value", argv[optind - 1]);
        default: usage_error("%s: unknown flag", argv[optind - 1]);
        }
    }
    if (workload < 0)
        usage_error("no workload given (" WORKLOAD_LIST ")");
    o->workload = (enum workload)workload;
    if (o->watchers > 0 && o->workload != WL_WATCH_LATENCY)
        usage_error("--watchers: only for the watch-latency workload");
    if ((o->leases > 0 || seen_lease_ttl) && o->workload != WL_LEASE_KEEPALIVE)
        usage_error("--leases and --lease-ttl: only for the lease-keepalive workload");
    if (o->workload == WL_WATCH_LATENCY) {
        if (o->watchers == 0)
            o->watchers = o->clients;
        if (!seen_rate)
            o->rate = 100; /* etcd's --put-rate default */
        if (o->key_space != 1 || o->preload || o->sequential)
            usage_error("watch-latency: every Put goes to key 0 (no --key-space-size, "
                        "--preload or --sequential-keys)");
    }
    if (o->workload == WL_LEASE_KEEPALIVE) {
        if (o->leases == 0)
            o->leases = o->clients;
        if (o->preload)
            usage_error("lease-keepalive: no --preload (its leases are granted first)");
        o->preload = o->leases; /* the grants are its untimed preload */
    }
    if (seen_read_fraction && o->workload != WL_MIXED)
        usage_error("--read-fraction: only for the mixed workload");
    if (seen_txn_ops && o->workload != WL_TXN_PUT && o->workload != WL_TXN_NOOP)
        usage_error("--txn-ops: only for the txn-put and txn-noop workloads");
    if ((seen_limit || seen_consistency) && o->workload != WL_RANGE && o->workload != WL_MIXED)
        usage_error("--consistency and --limit: only for the range and mixed workloads");
    if (o->total == 0 && o->duration_s == 0)
        o->total = 10000;
    if (o->txn_ops > o->key_space)
        usage_error("--txn-ops %u: needs at least as many keys (--key-space-size %llu): a "
                    "transaction may not put the same key twice",
                    o->txn_ops, (unsigned long long)o->key_space);
    uint64_t max_index = o->key_space - 1;
    if (o->preload > 0 && o->preload - 1 > max_index)
        max_index = o->preload - 1;
    if (decimal_digits(max_index) > o->key_size)
        usage_error("--key-size %u: too small for key number %llu (%u digits)", o->key_size,
                    (unsigned long long)max_index, decimal_digits(max_index));
}

/* ---- main ----------------------------------------------------------------- */

static void parse_endpoints(struct bench *b)
{
    char *list = strdup(b->o.endpoints), *save = NULL, errmsg[LSKV_ERRMSG_SIZE];
    if (list == NULL)
        die("out of memory");
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        struct gendpoint *eps = realloc(b->eps, (b->neps + 1) * sizeof *eps);
        if (eps == NULL)
            die("out of memory");
        b->eps = eps;
        if (gendpoint_parse(tok, &b->eps[b->neps], errmsg) != 0)
            usage_error("--endpoints: %s", errmsg);
        b->neps++;
    }
    free(list);
    if (b->neps == 0)
        usage_error("--endpoints: no endpoint given");
}

static void setup_clients(struct bench *b)
{
    const struct opts *o = &b->o;
    b->clients = calloc(o->clients, sizeof *b->clients);
    if (b->clients == NULL)
        die("out of memory");
    for (unsigned i = 0; i < o->clients; i++) {
        struct client *cl = &b->clients[i];
        cl->b = b;
        cl->index = i;
        cl->rng = o->seed * 0x100000001b3ull + i + 1;
        cl->conn = b->conns[i % o->conns];
        cl->watchers = 0;
        gcall_init(&cl->call);
        cl->call.done = on_call_done;
        cl->call.data = cl;
        uv_timer_init(b->loop, &cl->rate_timer);
        cl->rate_timer.data = cl;
        cl->keys = malloc((size_t)o->key_size * o->txn_ops);
        cl->ops = calloc(o->txn_ops, sizeof *cl->ops);
        cl->op_ptrs = calloc(o->txn_ops, sizeof *cl->op_ptrs);
        cl->puts = calloc(o->txn_ops, sizeof *cl->puts);
        if (!cl->keys || !cl->ops || !cl->op_ptrs || !cl->puts)
            die("out of memory");
        for (unsigned k = 0; k < o->txn_ops; k++) {
            Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
            put.key.data = (uint8_t *)cl->keys + (size_t)k * o->key_size;
            put.key.len = o->key_size;
            put.value.data = b->value;
            put.value.len = o->val_size;
            cl->puts[k] = put;
            Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
            op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
            op.request_put = &cl->puts[k];
            cl->ops[k] = op;
            cl->op_ptrs[k] = &cl->ops[k];
        }
    }
    b->alive = o->clients;
    if (o->workload == WL_LEASE_KEEPALIVE && (b->leases = calloc(o->leases, sizeof *b->leases)) == NULL)
        die("out of memory");
    if (o->workload == WL_WATCH_LATENCY) {
        struct watch_run *w = b->watch = calloc(1, sizeof *b->watch);
        if (w == NULL || (w->put.keys = malloc(o->key_size)) == NULL)
            die("out of memory");
        w->put.b = b;
        w->put.index = o->clients;
        w->put.conn = b->conns[o->conns];
        gcall_init(&w->put.call);
        w->put.call.done = on_watch_put_done;
        w->put.call.data = &w->put;
        uv_timer_init(b->loop, &w->put_timer);
        w->put_timer.data = b;
    }
}

static void free_bench(struct bench *b)
{
    for (unsigned i = 0; b->clients && i < b->o.clients; i++) {
        struct client *cl = &b->clients[i];
        gcall_free(&cl->call);
        free(cl->msg);
        free(cl->keys);
        free(cl->ops);
        free(cl->op_ptrs);
        free(cl->puts);
    }
    free(b->clients);
    free(b->conns);
    free(b->leases);
    if (b->watch != NULL) {
        gcall_free(&b->watch->put.call);
        free(b->watch->put.msg);
        free(b->watch->put.keys);
        free(b->watch);
    }
    free(b->eps);
    free(b->value);
    free(b->hist);
    for (int i = 0; i < OP_COUNT; i++)
        free(b->op_hist[i]);
    if (b->tls)
        SSL_CTX_free(b->tls);
}

int main(int argc, char **argv)
{
    static struct bench bench;
    struct bench *b = &bench;
    char errmsg[LSKV_ERRMSG_SIZE];
    parse_args(argc, argv, &b->o);
    parse_endpoints(b);
    b->started_at = time(NULL);
    b->tty = isatty(STDERR_FILENO);
    b->loop = uv_default_loop();
    b->hist = malloc(sizeof *b->hist);
    for (int i = 0; i < OP_COUNT; i++)
        b->op_hist[i] = malloc(sizeof *b->op_hist[i]);
    b->value = malloc(b->o.val_size ? b->o.val_size : 1);
    /* watch-latency's Puts have a connection of their own, the last one. */
    b->nconns = b->o.conns + (b->o.workload == WL_WATCH_LATENCY);
    b->conns = calloc(b->nconns, sizeof *b->conns);
    if (!b->hist || !b->value || !b->conns)
        die("out of memory");
    for (int i = 0; i < OP_COUNT; i++)
        if (!b->op_hist[i])
            die("out of memory");
    uint64_t vs = b->o.seed ^ 0x5eedull;
    for (unsigned i = 0; i < b->o.val_size; i++)
        b->value[i] = (uint8_t)splitmix64(&vs);

    for (size_t i = 0; i < b->neps; i++) {
        if (b->eps[i].tls && b->tls == NULL &&
            gtls_ctx_new(b->o.cacert, b->o.cert, b->o.key, b->o.insecure, &b->tls, errmsg) != 0)
            die("TLS: %s", errmsg);
    }

    uv_timer_init(b->loop, &b->progress_timer);
    uv_timer_init(b->loop, &b->duration_timer);
    b->progress_timer.data = b->duration_timer.data = b;
    b->phase = PHASE_CONNECT;
    b->conns_pending = b->nconns;
    for (unsigned i = 0; i < b->nconns; i++) {
        const struct gendpoint *ep = &b->eps[i % b->neps];
        int rv = gconn_open(b->loop, ep, b->tls, on_conn_ready, b, &b->conns[i], errmsg);
        if (rv != 0)
            die("connect: %s", errmsg);
    }
    setup_clients(b);
    uv_run(b->loop, UV_RUN_DEFAULT);
    clear_progress(b);

    int code = b->exit_code;
    if (code == 0) {
        print_results(b);
        if (b->o.json_path && write_json(b) != 0)
            code = EXIT_SETUP;
        else if (b->errors > 0 || b->stalled)
            code = EXIT_REQUEST_ERRORS;
        if (b->errors > 0)
            fprintf(stderr, PROG ": %llu of %llu requests failed\n",
                    (unsigned long long)b->errors, (unsigned long long)(b->errors + b->ok));
    }
    uv_loop_close(b->loop);
    free_bench(b);
    return code;
}
