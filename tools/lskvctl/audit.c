/* lskvctl ledger show / ledger audit.
 *
 * The auditor runs the same verifier as lskvd's start-up (ledger/verify.c:
 * docs/ledger-format.md section 7 step by step, on the byte formats of
 * chunk.c and sig.c and the tree of merkle.c) but not ledger.c, so a bug in
 * the ledger's own append or repair logic cannot hide itself. */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/file.h"
#include "common/hex.h"
#include "identity/cert.h"
#include "ledger/chunk.h"
#include "ledger/ledger.h"
#include "ledger/merkle.h"
#include "statemachine/restore.h"
#include "crypto/keyfile.h"
#include "ledger/receipt.h"
#include "ledger/sig.h"
#include "ledger/verify.h"
#include "lskvctl.h"

struct cname {
    uint64_t first, last;
    bool committed;
    char name[CHUNK_NAME_MAX];
};

static int cmp_cname(const void *a, const void *b)
{
    const struct cname *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* Lists chunk files sorted by first leaf; *n entries in a malloc'ed array. */
static int list(const char *dir, struct cname **out, size_t *n, char *errmsg)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        errmsg_printf(errmsg, "%s: cannot open directory", dir);
        return -1;
    }
    size_t cap = 16;
    struct cname *v = malloc(cap * sizeof *v);
    *n = 0;
    struct dirent *de;
    while (v != NULL && (de = readdir(d)) != NULL) {
        struct cname c;
        if (strlen(de->d_name) >= sizeof c.name ||
            !chunk_name_parse(de->d_name, &c.first, &c.last, &c.committed))
            continue;
        memcpy(c.name, de->d_name, strlen(de->d_name) + 1);
        if (*n == cap) {
            struct cname *nv = realloc(v, 2 * cap * sizeof *v);
            if (nv == NULL) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
            cap *= 2;
        }
        v[(*n)++] = c;
    }
    closedir(d);
    if (v == NULL)
        return LSKV_ENOMEM;
    if (*n > 1)
        qsort(v, *n, sizeof *v, cmp_cname);
    *out = v;
    return 0;
}

int cmd_ledger_show(int argc, char **argv)
{
    const char *cmd = "ledger show";
    const char *dir = lskvctl_positional(argc, argv);
    if (dir == NULL) {
        lskvctl_fail(cmd, "need DIR");
        return EXIT_USAGE;
    }
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct cname *cs;
    size_t n;
    if (list(dir, &cs, &n, errmsg) != 0) {
        lskvctl_fail(cmd, "%s", errmsg);
        return EXIT_USAGE;
    }
    int code = 0;
    uint64_t leaf = 0;
    for (size_t i = 0; i < n && code == 0; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, cs[i].name);
        uint8_t *buf;
        size_t len, off;
        struct chunk_header h;
        if (file_read_all(path, &buf, &len, errmsg) != 0) {
            lskvctl_fail(cmd, "%s", errmsg);
            code = EXIT_USAGE;
            break;
        }
        if (chunk_header_decode(buf, len, &h, &off, errmsg) != 0) {
            lskvctl_fail(cmd, "%s: offset 0: %s", cs[i].name, errmsg);
            code = EXIT_CHECK_FAILED;
        }
        leaf = h.first_leaf;
        while (code == 0 && off < len) {
            struct chunk_entry e;
            bool trunc;
            if (chunk_entry_decode(buf + off, len - off, &e, &trunc, errmsg) != 0) {
                lskvctl_fail(cmd, "%s: offset %zu: %s", cs[i].name, off, errmsg);
                code = EXIT_CHECK_FAILED;
                break;
            }
            uint8_t wsd[32];
            char hex[65];
            chunk_entry_wsd(&e, wsd);
            hex_encode(wsd, 32, hex);
            printf("leaf=%" PRIu64 " txid=%" PRIu64 ".%" PRIu64 " rev=%" PRId64
                   " type=%s chunk=%s offset=%zu bytes=%zu private=%" PRIu32 " wsd=%.16s",
                   leaf, e.term, e.index, e.revision, chunk_entry_type_name(e.type),
                   cs[i].name, off, e.frame_len, e.sealed_len, hex);
            if (e.type == CHUNK_ENTRY_SIGNATURE) {
                struct sig_payload p;
                if (sig_payload_decode(e.public_part, e.public_len, &p, errmsg) == 0) {
                    hex_encode(p.root, 32, hex);
                    char id[CERT_NODE_ID_HEX] = "?";
                    cert_node_id_of_pem(p.cert_pem, p.cert_len, id);
                    printf(" tree_size=%" PRIu64 " root=%s node=%.16s", p.tree_size, hex, id);
                } else {
                    printf(" payload=bad");
                }
            }
            putchar('\n');
            off += e.frame_len;
            leaf++;
        }
        free(buf);
    }
    free(cs);
    return code;
}

/* --- audit ---------------------------------------------------------------- */

struct audit {
    const char *dir;
    const char *chunk;      /* current chunk name */
    size_t offset;          /* current frame offset */
    uint64_t term, index;   /* txid being checked (0.0 before the first) */
    bool have_txid;
    char reason[LSKV_ERRMSG_SIZE * 2];
};

static int bad(struct audit *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct audit *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->reason, sizeof a->reason, fmt, ap);
    va_end(ap);
    return -1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void progress(uint64_t done, uint64_t total, uint64_t entries, double t0)
{
    int width = 30, fill = total ? (int)(width * done / total) : width;
    double el = now_s() - t0;
    fprintf(stderr, "\r[%.*s%*s] %3d%% %" PRIu64 " entries %.0f entries/s", fill,
            "##############################", width - fill, "",
            total ? (int)(100 * done / total) : 100, entries, el > 0 ? entries / el : 0.0);
}

int cmd_ledger_audit(int argc, char **argv)
{
    const char *cmd = "ledger audit";
    const char *cert_path = lskvctl_opt(argc, argv, "--service-cert");
    const char *secret_path = lskvctl_opt(argc, argv, "--ledger-secret");
    const char *anchor_path = lskvctl_opt(argc, argv, "--anchor");
    const char *backup_path = lskvctl_opt(argc, argv, "--backup");
    const char *backup_key = lskvctl_opt(argc, argv, "--source-data-key");
    bool quiet = lskvctl_flag(argc, argv, "--no-progress");
    const char *dir = lskvctl_positional(argc, argv);
    if (dir == NULL || cert_path == NULL) {
        lskvctl_fail(cmd, "need DIR and --service-cert CERT");
        return EXIT_USAGE;
    }
    if (backup_path != NULL && (anchor_path != NULL || backup_key == NULL)) {
        lskvctl_fail(cmd, "--backup needs --source-data-key, and goes without --anchor");
        return EXIT_USAGE;
    }
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    cert_service *svc = NULL;
    uint8_t secret[LEDGER_SECRET_BYTES];
    bool have_secret = secret_path != NULL;
    if (cert_service_from_file(cert_path, &svc, errmsg) != 0 ||
        (have_secret && lskvctl_read_secret(secret_path, secret, errmsg) != 0)) {
        lskvctl_fail(cmd, "%s", errmsg);
        cert_service_free(svc);
        return EXIT_USAGE;
    }

    struct audit a = {.dir = dir, .chunk = "-"};
    struct arena ar;
    arena_init(&ar);
    struct cname *cs = NULL;
    struct verify_name *names = NULL;
    size_t n = 0;
    verifier *v = NULL;
    uint8_t *buf = NULL;
    int rc = -1;
    bool tty = isatty(2) && !quiet;
    uint64_t total_bytes = 0, done_bytes = 0;
    struct verify_state st = {0};
    double t0 = now_s();
    struct verify_config vc = {.service = svc, .secret = have_secret ? secret : NULL};
    if (verify_open(&vc, &v) != 0) {
        bad(&a, "out of memory");
        goto out;
    }
    if (anchor_path != NULL) {
        Lskvserverpb__SignedRoot *anchor;
        uint8_t aroot[32];
        int rv = lskvctl_load_anchor(anchor_path, svc, &ar, &anchor, aroot, errmsg);
        if (rv != 0) {
            bad(&a, "%s", errmsg);
            goto out;
        }
        verify_set_anchor(v, anchor->tree_size, aroot);
    }
    /* A backup names the ledger position it was taken at (size and root):
     * the ledger must hold that root at that size, as for an anchor. */
    struct restore_source backup = {0};
    if (backup_path != NULL) {
        uint8_t key[32];
        int rv = keyfile_load_or_create(backup_key, key, sizeof key, false, NULL, errmsg);
        if (rv == 0)
            rv = restore_source_open(&backup, backup_path, key, NULL, NULL, errmsg);
        OPENSSL_cleanse(key, sizeof key);
        if (rv != 0) {
            bad(&a, "--backup: %s", errmsg);
            goto out;
        }
        if (backup.ledger_size > 0)
            verify_set_anchor(v, backup.ledger_size, backup.ledger_root);
        restore_source_close(&backup);
    }
    if (list(dir, &cs, &n, errmsg) != 0) {
        bad(&a, "%s", errmsg);
        goto out;
    }
    if (n == 0) {
        bad(&a, "no ledger chunks in %s", dir);
        goto out;
    }
    /* Step 1: names are contiguous from leaf 0; only the last may be open. */
    names = malloc(n * sizeof *names);
    if (names == NULL) {
        bad(&a, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        names[i] = (struct verify_name){cs[i].first, cs[i].last, cs[i].committed};
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, cs[i].name);
        struct stat sb;
        if (stat(path, &sb) == 0)
            total_bytes += (uint64_t)sb.st_size;
    }
    size_t bad_i;
    if (verify_names(names, n, false, &bad_i, errmsg) != 0) {
        a.chunk = cs[bad_i].name;
        bad(&a, "%s", errmsg);
        goto out;
    }
    /* Steps 2-7, one chunk at a time (ledger/verify.c). */
    for (size_t i = 0; i < n; i++) {
        char path[4400];
        size_t len;
        a.chunk = cs[i].name;
        a.offset = 0;
        snprintf(path, sizeof path, "%s/%s", dir, cs[i].name);
        free(buf);
        buf = NULL;
        if (file_read_all(path, &buf, &len, errmsg) != 0) {
            bad(&a, "%s", errmsg);
            goto out;
        }
        bool last_open = !cs[i].committed && i + 1 == n;
        struct verify_chunk_result r;
        if (verify_chunk(v, buf, len, cs[i].first, cs[i].last, cs[i].committed, last_open, &r,
                         errmsg) != 0) {
            a.offset = r.offset;
            a.have_txid = r.have_txid;
            a.term = r.term;
            a.index = r.index;
            bad(&a, "%s", errmsg);
            goto out;
        }
        if (r.valid_len < len)
            fprintf(stderr, "%slskvctl: %s: warning: %s: offset %zu: torn tail (%zu bytes)"
                            " that lskvd truncates on start\n",
                    tty ? "\n" : "", cmd, cs[i].name, r.valid_len, len - r.valid_len);
        done_bytes += len;
        verify_get_state(v, &st);
        if (tty)
            progress(done_bytes, total_bytes, st.size, t0);
    }
    if (verify_anchor_reached(v, errmsg) != 0) {
        a.have_txid = false;
        bad(&a, "%s", errmsg);
        goto out;
    }
    rc = 0;
out:
    verify_get_state(v, &st);
    if (tty)
        progress(done_bytes, total_bytes, st.size, t0), fputc('\n', stderr);
    double el = now_s() - t0;
    if (rc != 0) {
        char txid[64] = "-";
        if (a.have_txid)
            snprintf(txid, sizeof txid, "%" PRIu64 ".%" PRIu64, a.term, a.index);
        fprintf(stderr, "lskvctl: %s: FAILED: chunk %s, offset %zu, txid %s: %s\n", cmd, a.chunk,
                a.offset, txid, a.reason);
    } else {
        printf("audit OK: %zu chunks, %" PRIu64 " entries, %" PRIu64 " signatures, %" PRIu64
               " entries signed, %" PRIu64 " not yet signed, %s, %.0f entries/s\n",
               n, st.size, st.signatures, st.signed_size, st.size - st.signed_size,
               have_secret ? "private parts checked" : "private parts not checked (no secret)",
               el > 0 ? (double)st.size / el : 0.0);
        if (anchor_path != NULL)
            printf("anchor OK: the ledger holds the anchor's signed root\n");
        if (backup_path != NULL)
            printf("backup OK: the ledger holds the backup's position (%" PRIu64
                   " entries, its root)\n", backup.ledger_size);
    }
    verify_close(v);
    arena_close(&ar);
    free(buf);
    free(cs);
    free(names);
    cert_service_free(svc);
    OPENSSL_cleanse(secret, sizeof secret);
    return rc == 0 ? 0 : EXIT_CHECK_FAILED;
}
