/* lskvctl ledger show / ledger audit.
 *
 * The auditor shares the byte formats (ledger/chunk.c, ledger/sig.c) and the
 * tree (ledger/merkle.c) with lskvd, but its checks follow
 * docs/ledger-format.md section 7 step by step rather than calling
 * ledger.c, so a bug in the ledger's own logic cannot hide itself. */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/file.h"
#include "common/hex.h"
#include "crypto/aead.h"
#include "identity/cert.h"
#include "ledger/chunk.h"
#include "ledger/ledger.h"
#include "ledger/merkle.h"
#include "ledger/receipt.h"
#include "ledger/sig.h"
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
    bool quiet = lskvctl_flag(argc, argv, "--no-progress");
    const char *dir = lskvctl_positional(argc, argv);
    if (dir == NULL || cert_path == NULL) {
        lskvctl_fail(cmd, "need DIR and --service-cert CERT");
        return EXIT_USAGE;
    }
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    cert_service *svc = NULL;
    uint8_t secret[LEDGER_SECRET_BYTES], key[AEAD_KEY_BYTES];
    bool have_secret = secret_path != NULL;
    if (cert_service_from_file(cert_path, &svc, errmsg) != 0 ||
        (have_secret && lskvctl_read_secret(secret_path, secret, errmsg) != 0)) {
        lskvctl_fail(cmd, "%s", errmsg);
        cert_service_free(svc);
        return EXIT_USAGE;
    }
    if (have_secret)
        ledger_private_key(secret, key);

    struct audit a = {.dir = dir, .chunk = "-"};
    struct cname *cs = NULL;
    size_t n = 0;
    merkle_tree *t = NULL;
    uint8_t *buf = NULL, *plain = NULL;
    size_t plain_cap = 0;
    int rc = -1;
    bool tty = isatty(2) && !quiet;
    uint64_t entries = 0, sigs = 0, signed_size = 0, total_bytes = 0, done_bytes = 0;
    int64_t last_rev = 0;
    uint64_t prev_term = 0, prev_index = 0;
    bool any = false;
    struct chunk_header *h = calloc(1, sizeof *h);
    uint8_t (*peaks)[MERKLE_HASH_BYTES] = malloc(MERKLE_MAX_DEPTH * MERKLE_HASH_BYTES);
    double t0 = now_s();
    if (h == NULL || peaks == NULL || merkle_open(0, NULL, 0, &t) != 0) {
        bad(&a, "out of memory");
        goto out;
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
    for (size_t i = 0; i < n; i++) {
        uint64_t want = i ? cs[i - 1].last + 1 : 0;
        a.chunk = cs[i].name;
        if (cs[i].first != want) {
            bad(&a, "chunk starts at leaf %" PRIu64 ", want %" PRIu64 " (missing or overlapping chunk)",
                cs[i].first, want);
            goto out;
        }
        if (!cs[i].committed && i + 1 != n) {
            bad(&a, "open chunk is not the last");
            goto out;
        }
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, cs[i].name);
        FILE *f = fopen(path, "rb");
        if (f != NULL) {
            fseek(f, 0, SEEK_END);
            total_bytes += (uint64_t)ftell(f);
            fclose(f);
        }
    }
    for (size_t i = 0; i < n; i++) {
        char path[4400];
        size_t len, off = 0;
        a.chunk = cs[i].name;
        a.offset = 0;
        snprintf(path, sizeof path, "%s/%s", dir, cs[i].name);
        free(buf);
        buf = NULL;
        if (file_read_all(path, &buf, &len, errmsg) != 0) {
            bad(&a, "%s", errmsg);
            goto out;
        }
        /* Step 2: header, and its peaks are the tree's so far. */
        if (chunk_header_decode(buf, len, h, &off, errmsg) != 0) {
            bad(&a, "%s", errmsg);
            goto out;
        }
        size_t np;
        if (h->first_leaf != cs[i].first || merkle_peaks(t, h->first_leaf, peaks, &np) != 0 ||
            np != h->n_peaks || memcmp(peaks, h->peaks, np * MERKLE_HASH_BYTES) != 0) {
            bad(&a, "chunk header (first leaf %" PRIu64 ") does not match the tree of the "
                    "preceding chunks", h->first_leaf);
            goto out;
        }
        bool last_was_sig = false;
        while (off < len) {
            struct chunk_entry e;
            bool trunc;
            a.offset = off;
            /* Step 3: the frame decodes and its checksum holds. */
            int rv = chunk_entry_decode(buf + off, len - off, &e, &trunc, errmsg);
            if (rv != 0) {
                if (trunc && !cs[i].committed && i + 1 == n) {
                    fprintf(stderr, "%slskvctl: %s: warning: %s: offset %zu: torn tail (%zu bytes)"
                                    " that lskvd truncates on start\n",
                            tty ? "\n" : "", cmd, cs[i].name, off, len - off);
                    break;
                }
                bad(&a, "%s", errmsg);
                goto out;
            }
            a.term = e.term;
            a.index = e.index;
            a.have_txid = true;
            /* Step 4: raft indexes increase, terms and revisions never go back. */
            uint64_t leaf_index = merkle_size(t);
            if (any && (e.index <= prev_index || e.term < prev_term || e.revision < last_rev)) {
                bad(&a, "entry out of order: txid %" PRIu64 ".%" PRIu64 " rev %" PRId64
                        " after txid %" PRIu64 ".%" PRIu64 " rev %" PRId64,
                    e.term, e.index, e.revision, prev_term, prev_index, last_rev);
                goto out;
            }
            /* Step 5: a signature covers leaves already present and its root
             * is the tree's at that size; the node cert is endorsed. */
            if (e.type == CHUNK_ENTRY_SIGNATURE) {
                struct sig_payload p;
                uint8_t root[32];
                if (sig_payload_decode(e.public_part, e.public_len, &p, errmsg) != 0) {
                    bad(&a, "signature payload: %s", errmsg);
                    goto out;
                }
                if (p.tree_size == 0 || p.tree_size > leaf_index || p.tree_size < signed_size) {
                    bad(&a, "signature covers %" PRIu64 " leaves at leaf %" PRIu64
                            " (previous signature covered %" PRIu64 ")",
                        p.tree_size, leaf_index, signed_size);
                    goto out;
                }
                if (merkle_root(t, p.tree_size, root) != 0 || memcmp(root, p.root, 32) != 0) {
                    bad(&a, "signed root over %" PRIu64 " leaves does not match the entries "
                            "(an entry before it was changed, moved or removed)", p.tree_size);
                    goto out;
                }
                if (sig_verify(&p, svc, errmsg) != 0) {
                    bad(&a, "signature: %s", errmsg);
                    goto out;
                }
                signed_size = p.tree_size;
                sigs++;
            }
            /* Step 6 (with the secret): private part and commit evidence. */
            if (have_secret) {
                char ce[LEDGER_CE_MAX];
                uint8_t ced[32];
                ledger_commit_evidence(secret, e.term, e.index, ce);
                SHA256((const unsigned char *)ce, strlen(ce), ced);
                if (memcmp(ced, e.commit_evidence_digest, 32) != 0) {
                    bad(&a, "commit evidence digest does not match the ledger secret");
                    goto out;
                }
                static const uint8_t zero[32];
                const uint8_t *ws = NULL, *cl = NULL;
                size_t wl = 0, cll = 0;
                if (e.sealed_len) {
                    uint8_t nonce[12];
                    ledger_nonce(e.term, e.index, nonce);
                    if (memcmp(nonce, e.sealed, 12) != 0) {
                        bad(&a, "private part nonce is not derived from the txid");
                        goto out;
                    }
                    size_t pl = e.sealed_len - AEAD_OVERHEAD;
                    if (pl > plain_cap) {
                        free(plain);
                        plain = malloc(pl);
                        plain_cap = plain ? pl : 0;
                        if (plain == NULL) {
                            bad(&a, "out of memory");
                            goto out;
                        }
                    }
                    if (aead_open(key, e.body, e.aad_len, e.sealed, e.sealed_len, plain) != 0) {
                        bad(&a, "private part does not decrypt/authenticate with the ledger secret");
                        goto out;
                    }
                    if (chunk_private_decode(plain, pl, &ws, &wl, &cl, &cll, errmsg) != 0) {
                        bad(&a, "%s", errmsg);
                        goto out;
                    }
                }
                uint8_t cd[32];
                if (cll)
                    SHA256(cl, cll, cd);
                if (memcmp(cll ? cd : zero, e.claims_digest, 32) != 0) {
                    bad(&a, "claims digest does not match the private claims");
                    goto out;
                }
                if (e.sealed_len)
                    OPENSSL_cleanse(plain, e.sealed_len - AEAD_OVERHEAD);
            }
            uint8_t leaf[32];
            chunk_entry_leaf(&e, leaf);
            if (merkle_append(t, leaf) != 0) {
                bad(&a, "out of memory");
                goto out;
            }
            /* Memory stays bounded: keep leaves from the last signed size on. */
            if (e.type == CHUNK_ENTRY_SIGNATURE && merkle_flush_to(t, signed_size) != 0) {
                bad(&a, "out of memory");
                goto out;
            }
            prev_term = e.term;
            prev_index = e.index;
            last_rev = e.revision;
            any = true;
            last_was_sig = e.type == CHUNK_ENTRY_SIGNATURE;
            off += e.frame_len;
            entries++;
            if (tty && (entries & 1023) == 0)
                progress(done_bytes + off, total_bytes, entries, t0);
        }
        done_bytes += len;
        a.offset = len;
        /* Step 7: a sealed chunk holds what its name says and ends with a signature. */
        if (cs[i].committed) {
            if (merkle_size(t) != cs[i].last + 1) {
                bad(&a, "chunk holds leaves up to %" PRIu64 ", its name says %" PRIu64,
                    merkle_size(t) - 1, cs[i].last);
                goto out;
            }
            if (!last_was_sig) {
                bad(&a, "sealed chunk does not end with a signature");
                goto out;
            }
        }
    }
    rc = 0;
out:
    if (tty)
        progress(done_bytes, total_bytes, entries, t0), fputc('\n', stderr);
    double el = now_s() - t0;
    if (rc != 0) {
        char txid[64] = "-";
        if (a.have_txid)
            snprintf(txid, sizeof txid, "%" PRIu64 ".%" PRIu64, a.term, a.index);
        fprintf(stderr, "lskvctl: %s: FAILED: chunk %s, offset %zu, txid %s: %s\n", cmd, a.chunk,
                a.offset, txid, a.reason);
    } else {
        uint64_t size = merkle_size(t);
        printf("audit OK: %zu chunks, %" PRIu64 " entries, %" PRIu64 " signatures, %" PRIu64
               " entries signed, %" PRIu64 " not yet signed, %s, %.0f entries/s\n",
               n, entries, sigs, signed_size, size - signed_size,
               have_secret ? "private parts checked" : "private parts not checked (no secret)",
               el > 0 ? entries / el : 0.0);
    }
    merkle_close(t);
    free(plain);
    free(buf);
    free(cs);
    free(h);
    free(peaks);
    cert_service_free(svc);
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(key, sizeof key);
    return rc == 0 ? 0 : EXIT_CHECK_FAILED;
}
