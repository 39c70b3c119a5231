/* Tests for src/ledger/ledger.c (+ chunk.c, sig.c): append, rotation, reopen,
 * torn tails, signatures, receipts from memory and from files, tx status.
 * Invariant numbers refer to the design notes in ledger.c. */
#include <dirent.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "common/file.h"
#include "crypto/aead.h"
#include "identity/cert.h"
#include "ledger/anchor.h"
#include "ledger/chunk.h"
#include "ledger/ledger.h"
#include "ledger/ledger_impl.h" /* block hashes, slow_proofs */
#include "ledger/receipt.h"
#include "ledger/sig.h"
#include "ledger/verify.h"
#include "runner.h"

struct fixture {
    char dir[512];
    cert_service *svc;
    cert_node *node;
    uint8_t secret[LEDGER_SECRET_BYTES];
    ledger *l;
    uint64_t index;
    int64_t rev;
};

static void fx_open(struct fixture *f, uint64_t chunk_bytes)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct ledger_config cfg = {.dir = f->dir, .secret = f->secret, .service = f->svc,
                                .chunk_bytes = chunk_bytes, .sig_tx_interval = 10};
    int rv = ledger_open(&cfg, &f->l, errmsg);
    if (rv != 0)
        TEST_FAIL("ledger_open: %s: %s", lskv_errname(rv), errmsg);
}

static void fx_init(struct fixture *f, uint64_t chunk_bytes)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/ledger", test_tmpdir());
    ASSERT_EQ(cert_service_load_or_create(test_tmpdir(), "lskv service", true, &f->svc, NULL,
                                          errmsg), 0);
    ASSERT_EQ(cert_node_load_or_create(test_tmpdir(), f->svc, "node1", true, &f->node, NULL,
                                       errmsg), 0);
    memset(f->secret, 7, sizeof f->secret);
    f->index = 1;
    f->rev = 1;
    fx_open(f, chunk_bytes);
}

static void fx_close(struct fixture *f)
{
    ledger_close(f->l);
    cert_node_free(f->node);
    cert_service_free(f->svc);
}

/* A KV entry making a new revision, with claims bytes "claims-<rev>". */
static void put(struct fixture *f)
{
    char ws[64], claims[64], errmsg[LSKV_ERRMSG_SIZE] = "";
    f->rev++;
    int n = snprintf(ws, sizeof ws, "write-set-%lld", (long long)f->rev);
    int c = snprintf(claims, sizeof claims, "claims-%lld", (long long)f->rev);
    struct ledger_entry e = {.term = 2, .index = f->index++, .revision = f->rev,
                             .type = LEDGER_ENTRY_KV, .write_set = (const uint8_t *)ws,
                             .write_set_len = (size_t)n, .claims = (const uint8_t *)claims,
                             .claims_len = (size_t)c};
    int rv = ledger_append(f->l, &e, errmsg);
    if (rv != 0)
        TEST_FAIL("append: %s", errmsg);
}

static void sign(struct fixture *f)
{
    uint8_t *p;
    size_t len;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    ASSERT_EQ(ledger_make_signature(f->l, f->node, 1000, &p, &len), 0);
    bool appended;
    int rv = ledger_apply_signature(f->l, 2, f->index++, f->rev, p, len, &appended, errmsg);
    if (rv != 0)
        TEST_FAIL("apply_signature: %s", errmsg);
    ASSERT(appended);
    free(p);
}

static void check_receipt(struct fixture *f, int64_t rev)
{
    struct arena a;
    arena_init(&a);
    Lskvserverpb__Receipt *r;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    int rv = ledger_receipt(f->l, rev, 2, &a, &r, errmsg);
    if (rv != 0)
        TEST_FAIL("receipt rev %lld: %s", (long long)rev, errmsg);
    uint8_t cd[32];
    char claims[64];
    int c = snprintf(claims, sizeof claims, "claims-%lld", (long long)rev);
    SHA256((const unsigned char *)claims, (size_t)c, cd);
    rv = receipt_verify(r, f->svc, cd, NULL, errmsg);
    if (rv != 0)
        TEST_FAIL("verify rev %lld: %s", (long long)rev, errmsg);
    /* found by its claims too (the same leaf); the claims of another
     * revision neither verify nor find an entry at rev */
    Lskvserverpb__Receipt *r2;
    ASSERT_EQ(ledger_receipt_claimed(f->l, rev, 2, cd, &a, &r2, errmsg), 0);
    ASSERT_EQ(r2->tx_receipt->leaf_index, r->tx_receipt->leaf_index);
    c = snprintf(claims, sizeof claims, "claims-%lld", (long long)rev + 1);
    SHA256((const unsigned char *)claims, (size_t)c, cd);
    ASSERT_EQ(receipt_verify(r, f->svc, cd, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT_EQ(ledger_receipt_claimed(f->l, rev, 2, cd, &a, &r2, errmsg), LSKV_ENOTFOUND);
    arena_close(&a);
}

static int count_chunks(const char *dir, int *committed)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    *committed = 0;
    while ((de = readdir(d)) != NULL) {
        uint64_t a, b;
        bool c;
        if (chunk_name_parse(de->d_name, &a, &b, &c)) {
            n++;
            *committed += c;
        }
    }
    closedir(d);
    return n;
}

TEST(ledger, receipts_across_rotation_and_reopen)
{
    struct fixture f;
    fx_init(&f, 4096); /* small chunks: many rotations */
    for (int i = 0; i < 60; i++) {
        put(&f);
        if (i % 7 == 6)
            sign(&f);
    }
    sign(&f);
    int committed;
    int n = count_chunks(f.dir, &committed);
    /* invariant 7: rotated chunks keep their open name until ledger_sync */
    ASSERT_EQ(committed, 0);
    ASSERT_GE(n, 3);
    for (int64_t rev = 2; rev <= f.rev; rev++)
        check_receipt(&f, rev); /* from unsynced files and from memory */
    ASSERT_EQ(ledger_sync(f.l), 0);
    n = count_chunks(f.dir, &committed);
    ASSERT_GE(committed, 2);
    ASSERT_EQ(n, committed + 1); /* invariant 1: one open chunk */
    for (int64_t rev = 2; rev <= f.rev; rev++)
        check_receipt(&f, rev); /* old ones from files, recent ones from memory */
    struct ledger_position pos;
    ledger_position(f.l, &pos);
    ASSERT_EQ(pos.size, 60 + 9);
    ASSERT_EQ(pos.revision, f.rev);

    ledger_close(f.l);
    fx_open(&f, 4096);
    struct ledger_position pos2;
    ledger_position(f.l, &pos2);
    ASSERT_EQ(pos2.size, pos.size);
    ASSERT_EQ(pos2.index, pos.index);
    ASSERT_EQ(pos2.signed_size, pos.signed_size);
    for (int64_t rev = 2; rev <= f.rev; rev++)
        check_receipt(&f, rev);
    /* and it continues */
    put(&f);
    put(&f);
    struct arena a;
    arena_init(&a);
    Lskvserverpb__Receipt *r;
    char errmsg[LSKV_ERRMSG_SIZE];
    ASSERT_EQ(ledger_receipt(f.l, f.rev, 2, &a, &r, errmsg), LSKV_ENOTREADY);
    sign(&f);
    check_receipt(&f, f.rev);
    check_receipt(&f, f.rev - 1);
    ASSERT_EQ(ledger_receipt(f.l, f.rev, 3, &a, &r, errmsg), LSKV_ENOTFOUND); /* wrong term */
    ASSERT_EQ(ledger_receipt(f.l, f.rev + 1, 0, &a, &r, errmsg), LSKV_ENOTFOUND);
    arena_close(&a);
    fx_close(&f);
}

TEST(ledger, tx_status)
{
    struct fixture f;
    fx_init(&f, 2048);
    for (int i = 0; i < 30; i++) {
        put(&f);
        if (i % 5 == 4)
            sign(&f);
    }
    char errmsg[LSKV_ERRMSG_SIZE];
    enum ledger_tx_status st;
    for (int64_t rev = 2; rev <= f.rev; rev++) {
        ASSERT_EQ(ledger_tx_status(f.l, rev, 2, &st, errmsg), 0);
        ASSERT_EQ(st, LEDGER_TX_COMMITTED);
        ASSERT_EQ(ledger_tx_status(f.l, rev, 1, &st, errmsg), 0);
        ASSERT_EQ(st, LEDGER_TX_INVALID);
    }
    ASSERT_EQ(ledger_tx_status(f.l, f.rev + 1, 2, &st, errmsg), 0);
    ASSERT_EQ(st, LEDGER_TX_UNKNOWN);
    fx_close(&f);
}

TEST(ledger, append_rules)
{
    struct fixture f;
    fx_init(&f, 0);
    put(&f);
    char errmsg[LSKV_ERRMSG_SIZE];
    struct ledger_entry e = {.term = 2, .index = f.index - 1, .revision = f.rev,
                             .type = LEDGER_ENTRY_KV};
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), LSKV_EINVAL); /* invariant 4: index repeats */
    e.index = f.index;
    e.type = LEDGER_ENTRY_SIGNATURE;
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), LSKV_EINVAL);
    e.type = LEDGER_ENTRY_LEASE;
    e.revision = f.rev - 1;
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), LSKV_EINVAL); /* revision went back */
    e.revision = f.rev;
    e.term = 1ull << 33;
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), LSKV_EINVAL);
    e.term = 2;
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), 0); /* no write set, no claims: fine */
    f.index++;
    struct ledger_position pos;
    ledger_position(f.l, &pos);
    ASSERT_EQ(pos.size, 2);
    fx_close(&f);
}

TEST(ledger, signature_due_and_checks)
{
    struct fixture f;
    fx_init(&f, 0);
    ASSERT(!ledger_signature_due(f.l, 5000)); /* nothing to sign */
    put(&f);
    ASSERT(ledger_signature_due(f.l, 5000)); /* 100 ms passed since 0 */
    uint8_t *p;
    size_t len;
    ASSERT_EQ(ledger_make_signature(f.l, f.node, 5000, &p, &len), 0);
    ASSERT(!ledger_signature_due(f.l, 5050));
    ASSERT(ledger_signature_due(f.l, 5100));
    char errmsg[LSKV_ERRMSG_SIZE];
    bool appended;
    /* a payload whose root was tampered with is a divergence */
    struct sig_payload sp;
    uint8_t *bad = malloc(len);
    memcpy(bad, p, len);
    bad[9] ^= 1; /* first root byte */
    ASSERT_EQ(ledger_apply_signature(f.l, 2, f.index, f.rev, bad, len, &appended, errmsg),
              LSKV_ECORRUPT);
    /* a flipped signature byte fails too */
    memcpy(bad, p, len);
    ASSERT_EQ(sig_payload_decode(bad, len, &sp, errmsg), 0);
    bad[43 + 10] ^= 1;
    ASSERT_EQ(ledger_apply_signature(f.l, 2, f.index, f.rev, bad, len, &appended, errmsg),
              LSKV_ECORRUPT);
    free(bad);
    ASSERT_EQ(ledger_apply_signature(f.l, 2, f.index++, f.rev, p, len, &appended, errmsg), 0);
    ASSERT(appended);
    ASSERT(!ledger_signature_due(f.l, 99999)); /* only the signature itself is unsigned */
    /* applying the same (now stale-or-equal) payload again: equal size is kept */
    for (int i = 0; i < 10; i++)
        put(&f);
    ASSERT(ledger_signature_due(f.l, 5001)); /* 10 = sig_tx_interval entries */
    uint8_t *p2;
    size_t len2;
    ASSERT_EQ(ledger_make_signature(f.l, f.node, 6000, &p2, &len2), 0);
    ASSERT_EQ(ledger_apply_signature(f.l, 2, f.index++, f.rev, p2, len2, &appended, errmsg), 0);
    ASSERT(appended);
    /* the first payload now is stale: checked, dropped */
    ASSERT_EQ(ledger_apply_signature(f.l, 2, f.index++, f.rev, p, len, &appended, errmsg), 0);
    ASSERT(!appended);
    free(p);
    free(p2);

    /* a node cert not endorsed by the service is refused */
    char other[600];
    snprintf(other, sizeof other, "%s/other", test_tmpdir());
    mkdir(other, 0700);
    cert_service *svc2;
    cert_node *node2;
    ASSERT_EQ(cert_service_load_or_create(other, "other", true, &svc2, NULL, errmsg), 0);
    ASSERT_EQ(cert_node_load_or_create(other, svc2, "n", true, &node2, NULL, errmsg), 0);
    put(&f);
    ASSERT_EQ(ledger_make_signature(f.l, node2, 7000, &p, &len), 0);
    ASSERT_EQ(ledger_apply_signature(f.l, 2, f.index, f.rev, p, len, &appended, errmsg),
              LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "endorsed") != NULL);
    free(p);
    cert_node_free(node2);
    cert_service_free(svc2);
    fx_close(&f);
}

static void open_chunk_path(const char *dir, char *out, size_t n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t a, b;
        bool c;
        if (chunk_name_parse(de->d_name, &a, &b, &c) && !c)
            snprintf(out, n, "%s/%s", dir, de->d_name);
    }
    closedir(d);
}

TEST(ledger, torn_tail_is_truncated_on_reopen)
{
    struct fixture f;
    fx_init(&f, 0);
    for (int i = 0; i < 5; i++)
        put(&f);
    sign(&f);
    put(&f);
    struct ledger_position pos;
    ledger_position(f.l, &pos);
    ledger_close(f.l);
    char path[1024];
    open_chunk_path(f.dir, path, sizeof path);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    /* cut the last frame in half */
    ASSERT_EQ(truncate(path, st.st_size - 20), 0);
    fx_open(&f, 0);
    struct ledger_position pos2;
    ledger_position(f.l, &pos2);
    ASSERT_EQ(pos2.size, pos.size - 1);
    ASSERT_EQ(pos2.index, pos.index - 1);
    /* raft applies it again */
    f.index--;
    f.rev--;
    put(&f);
    sign(&f);
    check_receipt(&f, f.rev);
    ledger_close(f.l);

    /* garbage in the middle is corruption, not a torn tail */
    open_chunk_path(f.dir, path, sizeof path);
    int fd = open(path, O_RDWR);
    ASSERT_EQ(pwrite(fd, "\xff", 1, 200), 1);
    close(fd);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct ledger_config cfg = {.dir = f.dir, .secret = f.secret, .service = f.svc};
    ASSERT_EQ(ledger_open(&cfg, &f.l, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "offset") != NULL);
    f.l = NULL;
    fx_close(&f);
}

/* Invariant 7: a process that dies after rotations but before ledger_sync
 * (the files keep their open names). The fixture's ledger is closed; a
 * child appends 60 puts (a signature every 7th and at the end) with 4 KiB
 * chunks and exits without closing. */
static void crash_after_rotations(struct fixture *f)
{
    ledger_close(f->l);
    f->l = NULL;
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        fx_open(f, 4096);
        for (int i = 0; i < 60; i++) {
            put(f);
            if (i % 7 == 6)
                sign(f);
        }
        sign(f);
        _exit(ledger_flush(f->l) == 0 ? 0 : 1);
    }
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (int i = 0; i < 60; i++) { /* what the child appended */
        f->index++;
        f->rev++;
        if (i % 7 == 6)
            f->index++;
    }
    f->index++;
}

/* Open-named chunk files sorted by first leaf. */
static int open_named_chunks(const char *dir, uint64_t *firsts, int max)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) != NULL) {
        uint64_t a, b;
        bool c;
        if (chunk_name_parse(de->d_name, &a, &b, &c) && !c && n < max)
            firsts[n++] = a;
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && firsts[j - 1] > firsts[j]; j--) {
            uint64_t t = firsts[j];
            firsts[j] = firsts[j - 1];
            firsts[j - 1] = t;
        }
    return n;
}

TEST(ledger, rotated_but_unsynced_chunks_are_sealed_on_reopen)
{
    struct fixture f;
    fx_init(&f, 4096);
    crash_after_rotations(&f);
    int committed;
    int n = count_chunks(f.dir, &committed);
    ASSERT_EQ(committed, 0); /* nothing synced since the first chunk */
    ASSERT_GE(n, 3);
    fx_open(&f, 4096);
    struct ledger_position pos;
    ledger_position(f.l, &pos);
    ASSERT_EQ(pos.index, f.index - 1); /* a process crash loses nothing */
    ASSERT_EQ(pos.revision, f.rev);
    n = count_chunks(f.dir, &committed);
    ASSERT_GE(committed, 2);
    ASSERT_EQ(n, committed + 1);
    for (int64_t rev = 2; rev <= f.rev; rev++)
        check_receipt(&f, rev);
    put(&f);
    sign(&f);
    check_receipt(&f, f.rev);
    fx_close(&f);
}

TEST(ledger, torn_unsynced_chunk_is_cut_and_later_chunks_dropped_on_reopen)
{
    struct fixture f;
    fx_init(&f, 4096);
    crash_after_rotations(&f);
    uint64_t firsts[64];
    int n = open_named_chunks(f.dir, firsts, 64);
    ASSERT_GE(n, 3);
    /* power loss: the newest rotated chunk lost its last 20 bytes (its
     * closing signature), the open chunk after it survived */
    char path[1024];
    snprintf(path, sizeof path, "%s/ledger_%llu", f.dir, (unsigned long long)firsts[n - 2]);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(truncate(path, st.st_size - 20), 0);
    fx_open(&f, 4096);
    struct ledger_position pos;
    ledger_position(f.l, &pos);
    ASSERT_EQ(pos.size, firsts[n - 1] - 1); /* the signature and all after it are gone */
    ASSERT(pos.index < f.index - 1);
    int committed;
    int m = count_chunks(f.dir, &committed);
    ASSERT_EQ(committed, n - 2); /* the complete ones were sealed */
    ASSERT_EQ(m, committed + 1); /* the torn one is open, the one after it deleted */
    snprintf(path, sizeof path, "%s/ledger_%llu", f.dir, (unsigned long long)firsts[n - 1]);
    ASSERT(access(path, F_OK) != 0);
    /* raft applies the lost entries again */
    f.index = pos.index + 1;
    f.rev = pos.revision;
    for (int i = 0; i < 12; i++)
        put(&f);
    sign(&f);
    for (int64_t rev = 2; rev <= f.rev; rev++)
        check_receipt(&f, rev);
    ledger_close(f.l);
    fx_open(&f, 4096);
    struct ledger_position pos2;
    ledger_position(f.l, &pos2);
    ASSERT_EQ(pos2.index, f.index - 1);
    ASSERT_EQ(pos2.revision, f.rev);
    fx_close(&f);
}

TEST(ledger, missing_chunk_is_detected)
{
    struct fixture f;
    fx_init(&f, 1024);
    for (int i = 0; i < 40; i++) {
        put(&f);
        if (i % 4 == 3)
            sign(&f);
    }
    ledger_close(f.l);
    f.l = NULL;
    DIR *d = opendir(f.dir);
    struct dirent *de;
    char victim[1024] = "";
    while ((de = readdir(d)) != NULL) {
        uint64_t a, b;
        bool c;
        if (chunk_name_parse(de->d_name, &a, &b, &c) && c && a > 0 && !victim[0])
            snprintf(victim, sizeof victim, "%s/%s", f.dir, de->d_name);
    }
    closedir(d);
    ASSERT(victim[0]);
    ASSERT_EQ(unlink(victim), 0);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct ledger_config cfg = {.dir = f.dir, .secret = f.secret};
    ASSERT_EQ(ledger_open(&cfg, &f.l, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "missing") != NULL);
    f.l = NULL;
    fx_close(&f);
}

TEST(ledger, private_part_is_sealed_with_txid_nonce)
{
    struct fixture f;
    fx_init(&f, 0);
    put(&f);
    ledger_close(f.l);
    f.l = NULL;
    char path[1024];
    open_chunk_path(f.dir, path, sizeof path);
    uint8_t *buf;
    size_t len;
    char errmsg[LSKV_ERRMSG_SIZE];
    ASSERT_EQ(file_read_all(path, &buf, &len, errmsg), 0);
    ASSERT(memmem(buf, len, "write-set-2", 11) == NULL); /* not in the clear */
    struct chunk_header h;
    size_t off;
    ASSERT_EQ(chunk_header_decode(buf, len, &h, &off, errmsg), 0);
    struct chunk_entry e;
    bool trunc;
    ASSERT_EQ(chunk_entry_decode(buf + off, len - off, &e, &trunc, errmsg), 0);
    uint8_t nonce[12], key[32];
    ledger_nonce(e.term, e.index, nonce);
    ASSERT_MEM_EQ(e.sealed, nonce, 12);
    ledger_private_key(f.secret, key);
    uint8_t plain[256];
    ASSERT_EQ(aead_open(key, e.body, e.aad_len, e.sealed, e.sealed_len, plain), 0);
    const uint8_t *ws;
    size_t wl;
    ASSERT_EQ(chunk_private_decode(plain, e.sealed_len - AEAD_OVERHEAD, &ws, &wl, errmsg), 0);
    ASSERT_EQ(wl, 11);
    ASSERT_MEM_EQ(ws, "write-set-2", 11);
    /* the claims are not kept, only their digest */
    ASSERT_EQ(e.sealed_len - AEAD_OVERHEAD, 5 + 11);
    uint8_t cd[32];
    SHA256((const unsigned char *)"claims-2", 8, cd);
    ASSERT_MEM_EQ(e.claims_digest, cd, 32);
    /* the header is bound: changing the revision breaks the AEAD */
    buf[off + 4 + 27] ^= 1;
    ASSERT_EQ(chunk_entry_decode(buf + off, len - off, &e, &trunc, errmsg), LSKV_ECORRUPT);
    ASSERT_EQ(aead_open(key, buf + off + 4, e.aad_len, e.sealed, e.sealed_len, plain),
              LSKV_ECORRUPT);
    free(buf);
    fx_close(&f);
}

TEST(ledger, chunk_names_and_crc)
{
    uint64_t a, b;
    bool c;
    ASSERT(chunk_name_parse("ledger_0", &a, &b, &c) && a == 0 && !c);
    ASSERT(chunk_name_parse("ledger_5-9.committed", &a, &b, &c) && a == 5 && b == 9 && c);
    ASSERT(!chunk_name_parse("ledger_9-5.committed", &a, &b, &c));
    ASSERT(!chunk_name_parse("ledger_05", &a, &b, &c));
    ASSERT(!chunk_name_parse("ledger_5-9", &a, &b, &c));
    ASSERT(!chunk_name_parse("ledger_99999999999999999999", &a, &b, &c));
    ASSERT(!chunk_name_parse("ledger_", &a, &b, &c));
    /* CRC-32C check value */
    ASSERT_EQ(chunk_crc32c((const uint8_t *)"123456789", 9), 0xE3069283u);
}

/* The entry put() made for revision rev at raft index index. */
static int check_put(struct fixture *f, uint64_t index, int64_t rev, const char *ws_prefix)
{
    char ws[64], claims[64], errmsg[LSKV_ERRMSG_SIZE] = "";
    int n = snprintf(ws, sizeof ws, "%s%lld", ws_prefix, (long long)rev);
    int c = snprintf(claims, sizeof claims, "claims-%lld", (long long)rev);
    struct ledger_entry e = {.term = 2, .index = index, .revision = rev,
                             .type = LEDGER_ENTRY_KV, .write_set = (const uint8_t *)ws,
                             .write_set_len = (size_t)n, .claims = (const uint8_t *)claims,
                             .claims_len = (size_t)c};
    return ledger_check(f->l, &e, errmsg);
}

TEST(ledger, replay_check_finds_entries_in_memory_and_in_sealed_chunks)
{
    struct fixture f;
    fx_init(&f, 4096);
    for (int i = 0; i < 40; i++) {
        put(&f);
        if (i % 5 == 4)
            sign(&f);
    }
    int committed;
    ASSERT_EQ(ledger_sync(f.l), 0);
    count_chunks(f.dir, &committed);
    ASSERT_GE(committed, 2);
    ledger_close(f.l);
    fx_open(&f, 4096);
    /* put i (0-based) made revision i + 2; indexes: 5 puts then a signature */
    ASSERT(ledger_has_index(f.l, 1));
    ASSERT(ledger_has_index(f.l, f.index - 1));
    ASSERT(!ledger_has_index(f.l, f.index));
    ASSERT_EQ(check_put(&f, 1, 2, "write-set-"), 0);             /* first chunk */
    ASSERT_EQ(check_put(&f, f.index - 2, f.rev, "write-set-"), 0); /* recent */
    ASSERT_EQ(check_put(&f, 1, 2, "write-sEt-"), LSKV_ECORRUPT);
    ASSERT_EQ(check_put(&f, f.index - 2, f.rev, "write-sEt-"), LSKV_ECORRUPT);
    ASSERT_EQ(check_put(&f, 1, 3, "write-set-"), LSKV_ECORRUPT); /* other revision */
    /* index 6 is a signature, not this put */
    ASSERT_EQ(check_put(&f, 6, 6, "write-set-"), LSKV_ECORRUPT);
    /* nothing was appended by checking */
    struct ledger_position pos;
    ledger_position(f.l, &pos);
    ASSERT_EQ(pos.size, 40 + 8);
    fx_close(&f);
}

/* --- Start-up verification of the whole ledger (verify.c) ----------------- */

/* Path of the k-th sealed chunk (by first leaf). */
static void sealed_chunk_path(const char *dir, int k, char *out, size_t n)
{
    uint64_t firsts[256];
    char names[256][CHUNK_NAME_MAX];
    int m = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t a, b;
        bool c;
        if (chunk_name_parse(de->d_name, &a, &b, &c) && c && m < 256) {
            firsts[m] = a;
            snprintf(names[m++], CHUNK_NAME_MAX, "%.63s", de->d_name);
        }
    }
    closedir(d);
    int best = -1;
    for (int rank = 0; rank <= k; rank++) { /* k-th smallest first leaf */
        int pick = -1;
        for (int i = 0; i < m; i++)
            if ((best < 0 || firsts[i] > firsts[best]) && (pick < 0 || firsts[i] < firsts[pick]))
                pick = i;
        ASSERT(pick >= 0);
        best = pick;
    }
    snprintf(out, n, "%s/%s", dir, names[best]);
}

/* Offsets and sizes of the frames of a chunk file's bytes. */
static int frames_of(const uint8_t *buf, size_t len, size_t *off, size_t *size, int max)
{
    struct chunk_header h;
    size_t o;
    char errmsg[LSKV_ERRMSG_SIZE];
    ASSERT_EQ(chunk_header_decode(buf, len, &h, &o, errmsg), 0);
    int n = 0;
    while (o < len && n < max) {
        size_t fl = 4 + ((size_t)buf[o] << 24 | (size_t)buf[o + 1] << 16 |
                         (size_t)buf[o + 2] << 8 | buf[o + 3]);
        off[n] = o;
        size[n++] = fl;
        o += fl;
    }
    return n;
}

static void refresh_crc(uint8_t *frame, size_t fl)
{
    uint32_t c = chunk_crc32c(frame + 4, fl - 8);
    frame[fl - 4] = (uint8_t)(c >> 24);
    frame[fl - 3] = (uint8_t)(c >> 16);
    frame[fl - 2] = (uint8_t)(c >> 8);
    frame[fl - 1] = (uint8_t)c;
}

/* A ledger of several sealed chunks, closed; f->l is NULL. */
static void sealed_ledger(struct fixture *f)
{
    fx_init(f, 2048);
    for (int i = 0; i < 60; i++) {
        put(f);
        if (i % 5 == 4)
            sign(f);
    }
    ledger_close(f->l);
    f->l = NULL;
    int committed;
    count_chunks(f->dir, &committed);
    ASSERT_GE(committed, 4);
}

/* ledger_open must fail with LSKV_ECORRUPT, errmsg starting with path and
 * containing what. */
static void assert_refused(struct fixture *f, const char *path, const char *what)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct ledger_config cfg = {.dir = f->dir, .secret = f->secret, .service = f->svc};
    ledger *l = NULL;
    int rv = ledger_open(&cfg, &l, errmsg);
    if (rv != LSKV_ECORRUPT)
        TEST_FAIL("ledger_open: %s (%s), want LSKV_ECORRUPT", lskv_errname(rv), errmsg);
    if (strncmp(errmsg, path, strlen(path)) != 0 || strstr(errmsg, what) == NULL)
        TEST_FAIL("errmsg \"%s\": want it to start with %s and say \"%s\"", errmsg, path, what);
    ASSERT(l == NULL);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    uint8_t *buf;
    char errmsg[LSKV_ERRMSG_SIZE];
    ASSERT_EQ(file_read_all(path, &buf, len, errmsg), 0);
    return buf;
}

static void write_file(const char *path, const uint8_t *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    ASSERT(fp != NULL);
    ASSERT_EQ(fwrite(buf, 1, len, fp), len);
    ASSERT_EQ(fclose(fp), 0);
}

TEST(ledger, open_refuses_a_flipped_private_part_in_an_old_sealed_chunk)
{
    struct fixture f;
    sealed_ledger(&f);
    char path[1024];
    sealed_chunk_path(f.dir, 1, path, sizeof path);
    size_t len, off[64], size[64];
    uint8_t *buf = read_file(path, &len);
    int n = frames_of(buf, len, off, size, 64);
    ASSERT_GE(n, 3);
    buf[off[0] + size[0] - 10] ^= 1; /* inside the sealed private part */
    refresh_crc(buf + off[0], size[0]);
    write_file(path, buf, len);
    char want[64];
    snprintf(want, sizeof want, "offset %zu", off[0]);
    assert_refused(&f, path, want);
    assert_refused(&f, path, "decrypt");
    free(buf);
    fx_close(&f);
}

TEST(ledger, open_refuses_a_flipped_header_byte_or_checksum_in_an_old_chunk)
{
    struct fixture f;
    sealed_ledger(&f);
    char path[1024];
    sealed_chunk_path(f.dir, 1, path, sizeof path);
    size_t len, off[64], size[64];
    uint8_t *buf = read_file(path, &len);
    frames_of(buf, len, off, size, 64);
    buf[off[1] + 30] ^= 1; /* a claims digest byte: the frame checksum fails */
    write_file(path, buf, len);
    assert_refused(&f, path, "checksum");
    buf[off[1] + 30] ^= 1;
    buf[30] ^= 1; /* a header peak byte, checksum refreshed */
    size_t hl = off[0];
    uint32_t c = chunk_crc32c(buf, hl - 4);
    buf[hl - 4] = (uint8_t)(c >> 24), buf[hl - 3] = (uint8_t)(c >> 16);
    buf[hl - 2] = (uint8_t)(c >> 8), buf[hl - 1] = (uint8_t)c;
    write_file(path, buf, len);
    assert_refused(&f, path, "does not match the tree");
    free(buf);
    fx_close(&f);
}

TEST(ledger, open_refuses_swapped_entries_in_an_old_chunk)
{
    struct fixture f;
    sealed_ledger(&f);
    char path[1024];
    sealed_chunk_path(f.dir, 0, path, sizeof path);
    size_t len, off[64], size[64];
    uint8_t *buf = read_file(path, &len);
    frames_of(buf, len, off, size, 64);
    uint8_t *tmp = malloc(size[1] + size[2]);
    memcpy(tmp, buf + off[2], size[2]);
    memcpy(tmp + size[2], buf + off[1], size[1]);
    memcpy(buf + off[1], tmp, size[1] + size[2]);
    free(tmp);
    write_file(path, buf, len);
    assert_refused(&f, path, "out of order");
    free(buf);
    fx_close(&f);
}

TEST(ledger, open_refuses_a_truncated_sealed_chunk)
{
    struct fixture f;
    sealed_ledger(&f);
    char path[1024];
    sealed_chunk_path(f.dir, 1, path, sizeof path);
    size_t len, off[64], size[64];
    uint8_t *buf = read_file(path, &len);
    int n = frames_of(buf, len, off, size, 64);
    /* cut at a frame boundary: every frame left is fine, the last signature is gone */
    ASSERT_EQ(truncate(path, (off_t)off[n - 1]), 0);
    assert_refused(&f, path, "name says");
    write_file(path, buf, len);
    ASSERT_EQ(truncate(path, (off_t)off[n - 1] + 7), 0); /* and inside a frame */
    assert_refused(&f, path, "ends");
    free(buf);
    fx_close(&f);
}

TEST(ledger, open_refuses_a_replaced_signature_in_an_old_chunk)
{
    struct fixture f;
    sealed_ledger(&f);
    char path[1024];
    sealed_chunk_path(f.dir, 1, path, sizeof path);
    size_t len, off[64], size[64];
    uint8_t *buf = read_file(path, &len);
    int n = frames_of(buf, len, off, size, 64);
    int s = -1;
    for (int i = 0; i < n && s < 0; i++)
        if (buf[off[i] + 5] == CHUNK_ENTRY_SIGNATURE)
            s = i;
    ASSERT(s >= 0);
    struct chunk_entry e;
    bool trunc;
    char errmsg[LSKV_ERRMSG_SIZE];
    ASSERT_EQ(chunk_entry_decode(buf + off[s], size[s], &e, &trunc, errmsg), 0);
    struct sig_payload p;
    ASSERT_EQ(sig_payload_decode(e.public_part, e.public_len, &p, errmsg), 0);
    ((uint8_t *)p.sig)[p.sig_len - 3] ^= 1; /* inside the DER signature */
    refresh_crc(buf + off[s], size[s]);
    write_file(path, buf, len);
    assert_refused(&f, path, "does not verify");
    free(buf);
    fx_close(&f);
}

static void count_progress(void *arg, uint64_t done, uint64_t total, uint64_t entries)
{
    uint64_t *calls = arg;
    ASSERT_LE(done, total);
    ASSERT_GT(entries, 0);
    (*calls)++;
}

TEST(ledger, open_reports_verification_progress)
{
    struct fixture f;
    sealed_ledger(&f);
    uint64_t calls = 0;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct ledger_config cfg = {.dir = f.dir, .secret = f.secret, .service = f.svc,
                                .progress = count_progress, .progress_arg = &calls};
    ASSERT_EQ(ledger_open(&cfg, &f.l, errmsg), 0);
    ASSERT_GE(calls, 1); /* at least once, at the end of the sealed chunks */
    fx_close(&f);
}

TEST(ledger, open_refuses_a_ledger_signed_by_another_service_identity)
{
    struct fixture f;
    sealed_ledger(&f);
    /* identity/ replaced by another cluster's: same ledger, other service cert */
    char other[600], errmsg[LSKV_ERRMSG_SIZE] = "";
    snprintf(other, sizeof other, "%s/other", test_tmpdir());
    mkdir(other, 0700);
    cert_service *svc2;
    ASSERT_EQ(cert_service_load_or_create(other, "other", true, &svc2, NULL, errmsg), 0);
    struct ledger_config cfg = {.dir = f.dir, .secret = f.secret, .service = svc2};
    ledger *l = NULL;
    ASSERT_EQ(ledger_open(&cfg, &l, errmsg), LSKV_ECORRUPT);
    char first[1024];
    sealed_chunk_path(f.dir, 0, first, sizeof first);
    if (strncmp(errmsg, first, strlen(first)) != 0 ||
        strstr(errmsg, "signed by another service identity") == NULL)
        TEST_FAIL("errmsg \"%s\"", errmsg);
    cert_service_free(svc2);
    fx_close(&f);
}

TEST(ledger, version_1_signature_payloads_are_refused)
{
    struct fixture f;
    fx_init(&f, 0);
    put(&f);
    uint8_t *p;
    size_t len;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    ASSERT_EQ(ledger_make_signature(f.l, f.node, 1000, &p, &len), 0);
    ASSERT_EQ(p[0], SIG_PAYLOAD_VERSION);
    p[0] = 1; /* ECDSA over the root alone: the tree size was not signed */
    bool appended;
    ASSERT_EQ(ledger_apply_signature(f.l, 2, f.index, f.rev, p, len, &appended, errmsg),
              LSKV_EFORMAT);
    ASSERT(!appended);
    struct sig_payload sp;
    ASSERT_EQ(sig_payload_decode(p, len, &sp, errmsg), LSKV_EFORMAT);
    free(p);
    fx_close(&f);
}

TEST(ledger, huge_claims_are_hashed_not_stored_and_a_huge_write_set_has_its_own_error)
{
    struct fixture f;
    fx_init(&f, 0);
    /* a Txn whose response is ~36 MiB: only the claims digest is stored */
    size_t big = 36u << 20;
    uint8_t *claims = malloc(big);
    ASSERT(claims != NULL);
    memset(claims, 'c', big);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct ledger_entry e = {.term = 2, .index = f.index++, .revision = ++f.rev,
                             .type = LEDGER_ENTRY_KV, .write_set = (const uint8_t *)"ws",
                             .write_set_len = 2, .claims = claims, .claims_len = big};
    int rv = ledger_append(f.l, &e, errmsg);
    if (rv != 0)
        TEST_FAIL("append: %s", errmsg);
    sign(&f);
    struct arena a;
    arena_init(&a);
    Lskvserverpb__Receipt *r;
    ASSERT_EQ(ledger_receipt(f.l, f.rev, 2, &a, &r, errmsg), 0);
    uint8_t cd[32];
    SHA256(claims, big, cd);
    ASSERT_EQ(receipt_verify(r, f.svc, cd, NULL, errmsg), 0);
    arena_close(&a);
    struct ledger_position pos;
    ledger_position(f.l, &pos);
    ASSERT_EQ(pos.size, 2);
    /* the write set has a limit of its own, with its own error */
    e.index = f.index;
    e.revision = f.rev + 1;
    e.write_set = claims;
    e.write_set_len = LEDGER_MAX_WRITE_SET_BYTES + 1;
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), LSKV_ETOOLARGE);
    ASSERT(strstr(errmsg, "write set") != NULL);
    ledger_position(f.l, &pos);
    ASSERT_EQ(pos.size, 2); /* nothing written: the ledger goes on */
    e.write_set_len = 2;
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), 0);
    free(claims);
    ledger_close(f.l);
    fx_open(&f, 0); /* and reopens */
    fx_close(&f);
}

TEST(ledger, each_append_rule_has_its_own_message)
{
    struct fixture f;
    fx_init(&f, 0);
    put(&f);
    char errmsg[LSKV_ERRMSG_SIZE];
    struct ledger_entry e = {.term = 2, .index = f.index - 1, .revision = f.rev,
                             .type = LEDGER_ENTRY_KV};
    const char *seen[5];
    int n = 0;
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "raft index") != NULL);
    seen[n++] = strdup(errmsg);
    e.index = f.index;
    e.term = 1;
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "term is below") != NULL);
    seen[n++] = strdup(errmsg);
    e.term = 1ull << 33;
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "32-bit") != NULL);
    seen[n++] = strdup(errmsg);
    e.term = 2;
    e.revision = f.rev - 1;
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "revision is below") != NULL);
    seen[n++] = strdup(errmsg);
    e.revision = f.rev;
    e.type = LEDGER_ENTRY_SIGNATURE;
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "type") != NULL);
    seen[n++] = strdup(errmsg);
    for (int i = 0; i < n; i++) {
        ASSERT(strstr(seen[i], "(or too big)") == NULL);
        free((void *)seen[i]);
    }
    fx_close(&f);
}

TEST(ledger, consistency_proofs_between_signed_sizes_across_chunks)
{
    struct fixture f;
    fx_init(&f, 2048);
    uint64_t sizes[64];
    int n = 0;
    for (int i = 0; i < 80; i++) {
        put(&f);
        if (i % 6 == 5) {
            struct ledger_position pos;
            ledger_position(f.l, &pos);
            sizes[n++] = pos.size; /* the signature about to be made covers this */
            sign(&f);
        }
    }
    ASSERT_EQ(ledger_sync(f.l), 0);
    int committed;
    count_chunks(f.dir, &committed);
    ASSERT_GE(committed, 3);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    for (int i = 0; i < n; i += 2) {
        for (int j = i; j < n; j += 3) {
            struct arena a;
            arena_init(&a);
            Lskvserverpb__GetConsistencyProofResponse *r;
            int rv = ledger_consistency(f.l, sizes[i], sizes[j], &a, &r, errmsg);
            if (rv != 0)
                TEST_FAIL("consistency %d -> %d: %s", i, j, errmsg);
            uint8_t rf[32], rt[32];
            ASSERT_EQ(anchor_verify(r->from, f.svc, rf, errmsg), 0);
            ASSERT_EQ(anchor_verify(r->to, f.svc, rt, errmsg), 0);
            ASSERT_EQ(r->from->tree_size, sizes[i]);
            ASSERT_EQ(r->to->tree_size, sizes[j]);
            ASSERT_EQ(anchor_check_proof(sizes[i], rf, sizes[j], rt, r->proof, r->n_proof,
                                         errmsg), 0);
            if (r->n_proof > 0) { /* a changed hash fails */
                r->proof[0][0] = r->proof[0][0] == '0' ? '1' : '0';
                ASSERT_EQ(anchor_check_proof(sizes[i], rf, sizes[j], rt, r->proof, r->n_proof,
                                             errmsg), LSKV_ECORRUPT);
            }
            arena_close(&a);
        }
    }
    struct arena a;
    arena_init(&a);
    Lskvserverpb__GetConsistencyProofResponse *r;
    /* latest, and just the latest */
    ASSERT_EQ(ledger_consistency(f.l, 0, 0, &a, &r, errmsg), 0);
    ASSERT(r->from == NULL && r->n_proof == 0);
    ASSERT_EQ(r->to->tree_size, sizes[n - 1]);
    ASSERT_EQ(ledger_consistency(f.l, sizes[0] + 1, 0, &a, &r, errmsg), LSKV_ENOTFOUND);
    ASSERT_EQ(ledger_consistency(f.l, sizes[3], sizes[1], &a, &r, errmsg), LSKV_EINVAL);
    ASSERT_EQ(ledger_consistency(f.l, 0, sizes[n - 1] + 1, &a, &r, errmsg), LSKV_ENOTFOUND);
    /* an anchor survives JSON */
    ASSERT_EQ(ledger_consistency(f.l, 0, sizes[2], &a, &r, errmsg), 0);
    char *js = anchor_to_json(r->to);
    Lskvserverpb__SignedRoot *back;
    ASSERT_EQ(anchor_from_json(js, strlen(js), &a, &back, errmsg), 0);
    uint8_t root[32];
    ASSERT_EQ(anchor_verify(back, f.svc, root, errmsg), 0);
    back->tree_size++; /* relabelled: the statement no longer verifies */
    ASSERT_EQ(anchor_verify(back, f.svc, root, errmsg), LSKV_ECORRUPT);
    free(js);
    arena_close(&a);
    fx_close(&f);
}

TEST(ledger, audit_verifier_catches_a_ledger_behind_or_beside_an_anchor)
{
    struct fixture f;
    sealed_ledger(&f);
    fx_open(&f, 2048);
    struct arena a;
    arena_init(&a);
    Lskvserverpb__GetConsistencyProofResponse *r;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    ASSERT_EQ(ledger_consistency(f.l, 0, 0, &a, &r, errmsg), 0);
    uint8_t root[32];
    ASSERT_EQ(anchor_verify(r->to, f.svc, root, errmsg), 0);
    uint64_t size = r->to->tree_size;
    ledger_close(f.l);
    f.l = NULL;
    /* feed every chunk to a verifier with the anchor */
    struct verify_config vc = {.service = f.svc, .secret = f.secret};
    for (int round = 0; round < 3; round++) {
        verifier *v;
        ASSERT_EQ(verify_open(&vc, &v), 0);
        uint8_t want[32];
        memcpy(want, root, 32);
        if (round == 2)
            want[0] ^= 1; /* a fork: another root at that size */
        verify_set_anchor(v, round == 1 ? size + 100 : size, want);
        int rv = 0;
        for (int k = 0; rv == 0; k++) {
            char path[1024];
            DIR *d = opendir(f.dir);
            struct dirent *de;
            uint64_t first = 0, last = 0;
            bool found = false, committed = false;
            uint64_t want_first;
            struct verify_state st;
            verify_get_state(v, &st);
            want_first = st.size;
            while ((de = readdir(d)) != NULL) {
                uint64_t x, y;
                bool c;
                if (chunk_name_parse(de->d_name, &x, &y, &c) && x == want_first) {
                    snprintf(path, sizeof path, "%s/%.63s", f.dir, de->d_name);
                    first = x, last = y, committed = c, found = true;
                }
            }
            closedir(d);
            if (!found || k > 100)
                break;
            size_t len;
            uint8_t *buf = read_file(path, &len);
            struct verify_chunk_result res;
            rv = verify_chunk(v, buf, len, first, last, committed, !committed, &res, errmsg);
            free(buf);
            if (!committed)
                break;
        }
        if (rv == 0)
            rv = verify_anchor_reached(v, errmsg);
        if (round == 0) {
            if (rv != 0)
                TEST_FAIL("%s", errmsg);
        } else {
            ASSERT_EQ(rv, LSKV_ECORRUPT);
            ASSERT(strstr(errmsg, round == 1 ? "rolled back" : "differs from the anchor") !=
                   NULL);
        }
        verify_close(v);
    }
    arena_close(&a);
    fx_close(&f);
}

/* Proofs come from block hashes, without re-reading the chunks between the
 * two sizes (ledger_lookup.c), whether the blocks were recorded while
 * appending or by the verifier at open. */
static void check_fast_proofs(struct fixture *f, const uint64_t *sizes, int n)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    uint64_t slow = f->l->slow_proofs;
    for (int i = 0; i < n; i++) {
        struct arena a;
        arena_init(&a);
        Lskvserverpb__GetConsistencyProofResponse *r;
        int rv = ledger_consistency(f->l, sizes[i], 0, &a, &r, errmsg);
        if (rv != 0)
            TEST_FAIL("consistency from %" PRIu64 ": %s", sizes[i], errmsg);
        uint8_t rf[32], rt[32];
        ASSERT_EQ(anchor_verify(r->from, f->svc, rf, errmsg), 0);
        ASSERT_EQ(anchor_verify(r->to, f->svc, rt, errmsg), 0);
        ASSERT_EQ(r->to->tree_size, sizes[n - 1]);
        ASSERT_EQ(anchor_check_proof(sizes[i], rf, sizes[n - 1], rt, r->proof, r->n_proof,
                                     errmsg), 0);
        /* roots of old sizes (tree rebuilt from block hashes where they reach) */
        uint8_t root[32];
        ASSERT_EQ(ledger_root_at(f->l, sizes[i], root, errmsg), 0);
        ASSERT_MEM_EQ(root, rf, 32);
        arena_close(&a);
    }
    ASSERT_EQ(f->l->slow_proofs, slow); /* none took the slow path */
    /* receipts of old revisions, whose trees start at a block boundary */
    for (int64_t rev = 2; rev <= f->rev; rev += 311) /* a sample: ASan makes each slow */
        check_receipt(f, rev);
    check_receipt(f, 2 + (int64_t)LG_BLOCK_LEAVES); /* near a boundary */
    /* between older sizes too: only the chunks around both sizes are read */
    for (int i = 0; i + 2 < n; i += 3) {
        for (int j = i + 1; j < n - 1; j += 4) {
            struct arena a;
            arena_init(&a);
            Lskvserverpb__GetConsistencyProofResponse *r;
            ASSERT_EQ(ledger_consistency(f->l, sizes[i], sizes[j], &a, &r, errmsg), 0);
            uint8_t rf[32], rt[32];
            ASSERT_EQ(anchor_verify(r->from, f->svc, rf, errmsg), 0);
            ASSERT_EQ(anchor_verify(r->to, f->svc, rt, errmsg), 0);
            ASSERT_EQ(r->to->tree_size, sizes[j]);
            ASSERT_EQ(anchor_check_proof(sizes[i], rf, sizes[j], rt, r->proof, r->n_proof,
                                         errmsg), 0);
            arena_close(&a);
        }
    }
    ASSERT_EQ(f->l->slow_proofs, slow);
    struct arena a;
    arena_init(&a);
    Lskvserverpb__GetConsistencyProofResponse *r;
    /* without block hashes: the chunk scan, same answers */
    size_t nb = f->l->n_blocks;
    f->l->n_blocks = 0;
    ASSERT_EQ(ledger_consistency(f->l, sizes[1], sizes[n - 3], &a, &r, errmsg), 0);
    f->l->n_blocks = nb;
    ASSERT_EQ(f->l->slow_proofs, slow + 1);
    {
        uint8_t rf[32], rt[32];
        ASSERT_EQ(anchor_verify(r->from, f->svc, rf, errmsg), 0);
        ASSERT_EQ(anchor_verify(r->to, f->svc, rt, errmsg), 0);
        ASSERT_EQ(anchor_check_proof(sizes[1], rf, sizes[n - 3], rt, r->proof, r->n_proof,
                                     errmsg), 0);
    }
    ASSERT_EQ(ledger_consistency(f->l, sizes[1] + 1, sizes[4], &a, &r, errmsg), LSKV_ENOTFOUND);
    ASSERT_EQ(ledger_consistency(f->l, sizes[1], sizes[4] + 1, &a, &r, errmsg), LSKV_ENOTFOUND);
    arena_close(&a);
}

TEST(ledger, consistency_proofs_and_old_receipts_use_block_hashes)
{
    struct fixture f;
    fx_init(&f, 64 * 1024);
    uint64_t sizes[64];
    int n = 0;
    for (int i = 0; i < 3 * (int)LG_BLOCK_LEAVES + 500; i++) {
        put(&f);
        if (i % 397 == 396 || i % 1000 == 7) {
            struct ledger_position pos;
            ledger_position(f.l, &pos);
            ASSERT(n < 64);
            sizes[n++] = pos.size;
            sign(&f);
        }
    }
    struct ledger_position pos;
    ledger_position(f.l, &pos);
    sizes[n++] = pos.size;
    sign(&f);
    ASSERT_GE(f.l->n_blocks, 3);
    check_fast_proofs(&f, sizes, n);
    ledger_close(f.l);
    fx_open(&f, 64 * 1024); /* blocks again, from the verifier */
    ASSERT_GE(f.l->n_blocks, 3);
    check_fast_proofs(&f, sizes, n);
    fx_close(&f);
}

static size_t packed_receipt(Lskvserverpb__Receipt *r, struct arena *a, uint8_t **out)
{
    size_t n = lskvserverpb__receipt__get_packed_size(r);
    *out = arena_alloc(a, n ? n : 1);
    ASSERT(*out != NULL);
    lskvserverpb__receipt__pack(r, *out);
    return n;
}

/* Receipts and status of old revisions read the leaf's block from its chunk
 * (and at most the block its signature's size ends in), never the chunk,
 * and give the very bytes the full scan gives (ledger_index.c). */
static void check_old_lookups(struct fixture *f, size_t frame, size_t sig_frame,
                              int64_t late_rev)
{
    const uint64_t block = LG_BLOCK_LEAVES * frame;
    const uint64_t extra = sig_frame + chunk_header_size(MERKLE_MAX_DEPTH);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    int one_block = 0, tested = 0;
    int64_t window_rev = f->l->chunks[f->l->n_chunks - 1].first_rev;
    for (int64_t rev = 2; rev < window_rev; rev += 797) { /* a sample: each costs ~50 ms under ASan */
        struct arena a;
        arena_init(&a);
        Lskvserverpb__Receipt *r1, *r2;
        uint64_t before = f->l->lookup_bytes;
        int rv = ledger_receipt(f->l, rev, 2, &a, &r1, errmsg);
        if (rv != 0)
            TEST_FAIL("receipt rev %lld: %s", (long long)rev, errmsg);
        uint64_t bytes = f->l->lookup_bytes - before;
        ASSERT_GT(bytes, 0);
        ASSERT_LE(bytes, 2 * block + extra);
        one_block += bytes <= block + extra;
        tested++;
        /* without block hashes every leaf up to the signature is read: the
         * same receipt, byte for byte */
        size_t nb = f->l->n_blocks;
        f->l->n_blocks = 0;
        rv = ledger_receipt(f->l, rev, 2, &a, &r2, errmsg);
        f->l->n_blocks = nb;
        ASSERT_EQ(rv, 0);
        uint8_t *p1, *p2;
        size_t n1 = packed_receipt(r1, &a, &p1), n2 = packed_receipt(r2, &a, &p2);
        ASSERT_EQ(n1, n2);
        ASSERT_MEM_EQ(p1, p2, n1);
        /* and by leaf index */
        ASSERT_EQ(ledger_receipt_at(f->l, r1->tx_receipt->leaf_index, &a, &r2, errmsg), 0);
        n2 = packed_receipt(r2, &a, &p2);
        ASSERT_EQ(n1, n2);
        ASSERT_MEM_EQ(p1, p2, n1);
        arena_close(&a);
        check_receipt(f, rev);
        enum ledger_tx_status st;
        before = f->l->lookup_bytes;
        ASSERT_EQ(ledger_tx_status(f->l, rev, 2, &st, errmsg), 0);
        ASSERT_EQ(st, LEDGER_TX_COMMITTED);
        ASSERT_LE(f->l->lookup_bytes - before, 2 * block);
        ASSERT_EQ(ledger_tx_status(f->l, rev, 1, &st, errmsg), 0);
        ASSERT_EQ(st, LEDGER_TX_INVALID);
    }
    ASSERT_GE(tested, 40);
    ASSERT_GE(one_block, tested / 4); /* the signature's size is often in the leaf's block */
    /* the entries a signature in flight across the block boundary does not
     * cover: the next one does (the index's signature is not enough) */
    for (int64_t rev = late_rev; rev < late_rev + 5; rev++)
        check_receipt(f, rev);
}

TEST(ledger, old_receipts_and_status_read_one_block_not_the_chunk)
{
    struct fixture f;
    const uint64_t chunk_bytes = 3u << 20; /* over 4 blocks of entries */
    fx_init(&f, chunk_bytes);
    size_t frame = 0, sig_frame = 0;
    int64_t late_rev = 0;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    for (int i = 0; i < 11 * (int)LG_BLOCK_LEAVES; i++) {
        uint64_t b = f.l->open_bytes;
        put(&f);
        if (f.l->open_bytes > b && f.l->open_bytes - b > frame)
            frame = (size_t)(f.l->open_bytes - b);
        struct ledger_position pos;
        ledger_position(f.l, &pos);
        if (pos.size == 2 * LG_BLOCK_LEAVES - 2) {
            /* signed at 8190 leaves, applied after 5 more */
            uint8_t *p;
            size_t len;
            bool appended;
            ASSERT_EQ(ledger_make_signature(f.l, f.node, 1000, &p, &len), 0);
            late_rev = f.rev + 1;
            for (int k = 0; k < 5; k++)
                put(&f);
            ASSERT_EQ(ledger_apply_signature(f.l, 2, f.index++, f.rev, p, len, &appended,
                                             errmsg), 0);
            free(p);
        }
        if (i % 1500 == 1499 || i % 2900 == 77) {
            b = f.l->open_bytes;
            sign(&f);
            if (f.l->open_bytes > b && f.l->open_bytes - b > sig_frame)
                sig_frame = (size_t)(f.l->open_bytes - b);
        }
    }
    sign(&f);
    ASSERT_GE(f.l->n_chunks, 3);
    ASSERT_GT(chunk_bytes, 4 * LG_BLOCK_LEAVES * frame); /* reading a chunk would show */
    check_old_lookups(&f, frame, sig_frame, late_rev);
    ASSERT_EQ(ledger_sync(f.l), 0); /* renamed .committed: the index still finds them */
    check_old_lookups(&f, frame, sig_frame, late_rev);
    ledger_close(f.l);
    fx_open(&f, chunk_bytes); /* the index again, from the verifier */
    check_old_lookups(&f, frame, sig_frame, late_rev);
    /* a chunk cut short after the start: an error with the file, no crash */
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", f.dir, f.l->chunks[0].name);
    ASSERT_EQ(truncate(path, 1 << 20), 0);
    struct arena a;
    arena_init(&a);
    Lskvserverpb__Receipt *r;
    enum ledger_tx_status st;
    int64_t rev = 3 * (int64_t)LG_BLOCK_LEAVES; /* past the first MiB of chunk 0 */
    ASSERT_LT(f.l->chunks[0].first_rev, rev);
    ASSERT_LT(rev, f.l->chunks[1].first_rev);
    ASSERT_EQ(ledger_receipt(f.l, rev, 2, &a, &r, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, f.l->chunks[0].name) != NULL);
    ASSERT_EQ(ledger_tx_status(f.l, rev, 2, &st, errmsg), LSKV_ECORRUPT);
    arena_close(&a);
    fx_close(&f);
}

/* defer_open_chunk: ledger_open makes no file (a start refused after it must
 * change nothing); appends wait for ledger_begin_writes. */
TEST(ledger, deferred_open_chunk_is_made_by_begin_writes)
{
    struct fixture f;
    fx_init(&f, 0);
    put(&f);
    ASSERT_EQ(ledger_sync(f.l), 0);
    ledger_close(f.l);
    /* Remove the open chunk: what is left is an empty ledger dir. */
    char path[600];
    open_chunk_path(f.dir, path, sizeof path);
    ASSERT_EQ(unlink(path), 0);
    int committed;
    ASSERT_EQ(count_chunks(f.dir, &committed), 0);

    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct ledger_config cfg = {.dir = f.dir, .secret = f.secret, .service = f.svc,
                                .sig_tx_interval = 10, .defer_open_chunk = true};
    ASSERT_EQ(ledger_open(&cfg, &f.l, errmsg), 0);
    ASSERT_EQ(count_chunks(f.dir, &committed), 0);
    f.index = 1;
    f.rev = 1;
    struct ledger_entry e = {.term = 2, .index = 1, .revision = 2, .type = LEDGER_ENTRY_KV};
    ASSERT_EQ(ledger_append(f.l, &e, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "ledger_begin_writes") != NULL);
    ASSERT_EQ(ledger_sync(f.l), 0);
    ASSERT_EQ(ledger_begin_writes(f.l, errmsg), 0);
    ASSERT_EQ(count_chunks(f.dir, &committed), 1);
    ASSERT_EQ(ledger_begin_writes(f.l, errmsg), 0); /* once only */
    ASSERT_EQ(count_chunks(f.dir, &committed), 1);
    put(&f);
    sign(&f);
    check_receipt(&f, 2);
    fx_close(&f);
}
