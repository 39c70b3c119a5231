/* Receipt and tx-status look-ups of old revisions in a big ledger (the
 * offset index, docs/ledger-format.md section 5), through ledger.h only so
 * that the same program measures any two builds.
 *   ledger-lookup make DIR N   append N KV entries of ~190 bytes to DIR/ledger,
 *                              a signature every 5000, 5 MiB chunks
 *   ledger-lookup time DIR K   open it, then time K receipts and tx statuses
 *                              of random revisions in its first 90%; prints a
 *                              digest of the receipts' bytes (equal digests:
 *                              byte-identical receipts)
 * Built with every flavour (build/<flavour>/ledger-lookup); measure with
 * build/release/ledger-lookup. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "crypto/hash.h"
#include "identity/cert.h"
#include "ledger/ledger.h"
#include "proto/lskvserver.pb-c.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    char errmsg[LSKV_ERRMSG_SIZE] = "", ldir[600];
    cert_service *svc;
    cert_node *node;
    bool mk = strcmp(argv[1], "make") == 0;
    if (cert_service_load_or_create(argv[2], "svc", mk, &svc, NULL, errmsg) != 0 ||
        cert_node_load_or_create(argv[2], svc, "n1", mk, &node, NULL, errmsg) != 0) {
        fprintf(stderr, "cert: %s\n", errmsg);
        return 1;
    }
    snprintf(ldir, sizeof ldir, "%s/ledger", argv[2]);
    uint8_t secret[32];
    memset(secret, 7, sizeof secret);
    struct ledger_config cfg = {.dir = ldir, .secret = secret, .service = svc};
    ledger *l;
    double t0 = now_s();
    if (ledger_open(&cfg, &l, errmsg) != 0) {
        fprintf(stderr, "open: %s\n", errmsg);
        return 1;
    }
    double topen = now_s() - t0;
    long n = atol(argv[3]);
    if (mk) {
        char ws[80], claims[64];
        uint64_t index = 1;
        for (long i = 0; i < n; i++) {
            int wl = snprintf(ws, sizeof ws, "%058ld", i);
            int cl = snprintf(claims, sizeof claims, "claims-%ld", i + 2);
            struct ledger_entry e = {.term = 2, .index = index++, .revision = i + 2,
                                     .type = LEDGER_ENTRY_KV, .write_set = (uint8_t *)ws,
                                     .write_set_len = (size_t)wl, .claims = (uint8_t *)claims,
                                     .claims_len = (size_t)cl};
            if (ledger_append(l, &e, errmsg) != 0) {
                fprintf(stderr, "append: %s\n", errmsg);
                return 1;
            }
            if (i % 5000 == 4999 || i == n - 1) {
                uint8_t *p;
                size_t len;
                bool app;
                if (ledger_make_signature(l, node, 0, &p, &len) != 0 ||
                    ledger_apply_signature(l, 2, index++, i + 2, p, len, &app, errmsg) != 0) {
                    fprintf(stderr, "sign: %s\n", errmsg);
                    return 1;
                }
                free(p);
            }
            if (i % 100000 == 0)
                ledger_flush(l);
        }
        ledger_close(l);
        return 0;
    }
    struct ledger_position pos;
    ledger_position(l, &pos);
    srand(42);
    double *tr = calloc((size_t)n, sizeof *tr), *ts = calloc((size_t)n, sizeof *ts);
    uint8_t dg[HASH_BYTES] = {0}; /* chained: dg = SHA-256(dg || receipt) */
    int64_t maxrev = pos.revision * 9 / 10; /* old: not in the open chunk */
    for (long k = 0; k < n; k++) {
        int64_t rev = 2 + (int64_t)(((uint64_t)rand() * 1000003u + (uint64_t)rand()) %
                                    (uint64_t)(maxrev - 2));
        struct arena a;
        arena_init(&a);
        Lskvserverpb__Receipt *r;
        double t = now_s();
        int rv = ledger_receipt(l, rev, 2, &a, &r, errmsg);
        tr[k] = now_s() - t;
        if (rv != 0) {
            fprintf(stderr, "receipt %" PRId64 ": %s\n", rev, errmsg);
            return 1;
        }
        size_t pl = lskvserverpb__receipt__get_packed_size(r);
        uint8_t *pb = malloc(pl + HASH_BYTES);
        memcpy(pb, dg, HASH_BYTES);
        lskvserverpb__receipt__pack(r, pb + HASH_BYTES);
        hash_sha256(pb, pl + HASH_BYTES, dg);
        free(pb);
        arena_close(&a);
        enum ledger_tx_status st;
        t = now_s();
        rv = ledger_tx_status(l, rev, 2, &st, errmsg);
        ts[k] = now_s() - t;
        if (rv != 0 || st != LEDGER_TX_COMMITTED)
            return 1;
    }
    qsort(tr, (size_t)n, sizeof *tr, cmpd);
    qsort(ts, (size_t)n, sizeof *ts, cmpd);
    double sr = 0, ss = 0;
    for (long k = 0; k < n; k++)
        sr += tr[k], ss += ts[k];
    printf("entries %" PRIu64 " open %.2f s\n", pos.size, topen);
    printf("receipt: mean %.3f ms p50 %.3f p99 %.3f max %.3f\n", sr / n * 1e3, tr[n / 2] * 1e3,
           tr[n * 99 / 100] * 1e3, tr[n - 1] * 1e3);
    printf("receipts sha256 ");
    for (int i = 0; i < 8; i++)
        printf("%02x", dg[i]);
    printf("\n");
    printf("tx_status: mean %.3f ms p50 %.3f p99 %.3f max %.3f\n", ss / n * 1e3,
           ts[n / 2] * 1e3, ts[n * 99 / 100] * 1e3, ts[n - 1] * 1e3);
    ledger_close(l);
    return 0;
}
