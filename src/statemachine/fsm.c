#include "statemachine/fsm.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/bytes.h"
#include "crypto/hash.h"
#include "ledger/receipt.h"
#include "proto/kv.pb-c.h"
#include "proto/lskvserver.pb-c.h"
#include "statemachine/snapshot.h"

void fsm_init(struct fsm *f, kvstore *kv, recstore *records, uint64_t cluster_id,
              uint64_t member_id)
{
    f->kv = kv;
    f->leases = NULL;
    f->observer = NULL;
    f->records = records;
    f->ledger = NULL;
    f->space = NULL;
    f->cluster_id = cluster_id;
    f->member_id = member_id;
    f->last_term = 0;
    f->replayed = 0;
    f->errmsg[0] = '\0';
    f->restore = NULL;
    f->restored = false;
    memset(&f->members, 0, sizeof f->members);
    f->pending = NULL;
    f->pending_len = 0;
    f->pending_gen = 0;
    f->catchup = false;
    authstore_init(&f->auth);
    /* Applied entries share one engine write per loop turn (fsm_flush). */
    kvstore_set_deferred_commit(kv, true);
}

void fsm_set_space(struct fsm *f, struct diskspace *space)
{
    f->space = space;
}

static bool fsm_can_apply(void *data, size_t len)
{
    struct fsm *f = data;
    if (f->pending != NULL)
        return false; /* a held restore first */
    return f->space == NULL || diskspace_can_apply(f->space, len);
}

void fsm_allow_catchup(struct fsm *f, bool allow)
{
    f->catchup = allow;
}

void fsm_set_restore(struct fsm *f, const struct restore_source *src)
{
    f->restore = src;
}

void fsm_set_ledger(struct fsm *f, ledger *l)
{
    f->ledger = l;
}

static bool lease_exists(void *arg, int64_t lease)
{
    return lessor_exists(arg, lease);
}

void fsm_set_observer(struct fsm *f, void (*observer)(void *arg), void *arg)
{
    f->observer = observer;
    f->observer_arg = arg;
}

void fsm_set_leases(struct fsm *f, lessor *l)
{
    f->leases = l;
    kvstore_set_lease_lookup(f->kv, l ? lease_exists : NULL, l);
}

/* A key's lease is the one its last write gave it (a deletion: none). */
static int move_attachments(struct fsm *f)
{
    if (f->leases == NULL)
        return 0;
    size_t n = 0;
    const struct kv_record *ch = kvstore_changes(f->kv, &n);
    for (size_t i = 0; i < n; i++) {
        int64_t lease = ch[i].tombstone ? 0 : ch[i].lease;
        int rv = lessor_set_key(f->leases, ch[i].key, ch[i].key_len, lease);
        if (rv != 0)
            return rv;
    }
    return 0;
}

void fsm_result_free(struct fsm_result *r)
{
    if (r == NULL)
        return;
    free(r->response);
    free(r);
}

static void fill_header(struct fsm *f, Etcdserverpb__ResponseHeader *h)
{
    h->cluster_id = f->cluster_id;
    h->member_id = f->member_id;
    h->raft_term = f->last_term;
    h->revision = kvstore_revision(f->kv);
}

static int pack_response(const ProtobufCMessage *msg, struct fsm_result *r)
{
    r->response_len = protobuf_c_message_get_packed_size(msg);
    r->response = malloc(r->response_len ? r->response_len : 1);
    if (r->response == NULL)
        return LSKV_ENOMEM;
    protobuf_c_message_pack(msg, r->response);
    return 0;
}

/* The FSM write set (fsm.h) of the last write, malloc'ed. */
static int encode_write_set(struct fsm *f, uint8_t **out, size_t *out_len)
{
    size_t n = 0;
    const struct kv_record *ch = kvstore_changes(f->kv, &n);
    Mvccpb__KeyValue *kvs = n ? calloc(n, sizeof *kvs) : NULL;
    if (n && kvs == NULL)
        return LSKV_ENOMEM;
    size_t total = 5;
    for (size_t i = 0; i < n; i++) {
        mvccpb__key_value__init(&kvs[i]);
        kvs[i].key = (ProtobufCBinaryData){.data = (uint8_t *)ch[i].key, .len = ch[i].key_len};
        kvs[i].mod_revision = ch[i].mod_revision;
        if (!ch[i].tombstone) {
            kvs[i].value =
                (ProtobufCBinaryData){.data = (uint8_t *)ch[i].value, .len = ch[i].value_len};
            kvs[i].create_revision = ch[i].create_revision;
            kvs[i].version = ch[i].version;
            kvs[i].lease = ch[i].lease;
        }
        total += 4 + mvccpb__key_value__get_packed_size(&kvs[i]);
    }
    uint8_t *buf = malloc(total);
    if (buf == NULL) {
        free(kvs);
        return LSKV_ENOMEM;
    }
    buf[0] = FSM_WRITE_SET_VERSION;
    put_u32be(buf + 1, (uint32_t)n);
    size_t off = 5;
    for (size_t i = 0; i < n; i++) {
        size_t len = mvccpb__key_value__pack(&kvs[i], buf + off + 4);
        put_u32be(buf + off, (uint32_t)len);
        off += 4 + len;
    }
    free(kvs);
    if (off > FSM_WRITE_SET_MAX) {
        /* Too big to record whole (the ledger's frame has a cap, and no
         * client request may fail apply): record its digest. */
        uint8_t *d = malloc(1 + 4 + HASH_BYTES);
        if (d == NULL) {
            free(buf);
            return LSKV_ENOMEM;
        }
        d[0] = FSM_WRITE_SET_DIGEST_VERSION;
        put_u32be(d + 1, (uint32_t)n);
        hash_sha256(buf, off, d + 5);
        free(buf);
        buf = d;
        off = 1 + 4 + HASH_BYTES;
    }
    *out = buf;
    *out_len = off;
    return 0;
}

/* The ledger entry of one applied command: appended, or on replay checked
 * against the entry the ledger already holds. */
static int ledger_record(struct fsm *f, const struct consensus_entry_info *info,
                         const uint8_t *cmd, size_t len, const struct command_kind *kind,
                         const struct fsm_result *r, const Lskvserverpb__ReceiptClaims *claims,
                         char *errmsg)
{
    struct ledger_entry e = {.term = info->term,
                             .index = info->index,
                             .revision = kvstore_revision(f->kv),
                             .type = LEDGER_ENTRY_OTHER,
                             .write_set = cmd,
                             .write_set_len = len};
    uint8_t *ws = NULL, *cl = NULL;
    int rv = 0;
    if (r->rv == 0 && claims != NULL) {
        e.type = kind->ledger_type;
        if (kind->ledger_type == LEDGER_ENTRY_KV &&
            (rv = encode_write_set(f, &ws, &e.write_set_len)) != 0)
            goto out;
        if ((rv = receipt_claims_pack(claims, &cl, &e.claims_len)) != 0)
            goto out;
        if (ws != NULL)
            e.write_set = ws;
        e.claims = cl;
    } else if (r->rv == 0 && kind != NULL) {
        e.type = kind->ledger_type;
    }
    if (ledger_has_index(f->ledger, info->index)) {
        rv = ledger_check(f->ledger, &e, errmsg);
        f->replayed++;
    } else {
        rv = ledger_append(f->ledger, &e, errmsg);
    }
out:
    free(ws);
    free(cl);
    return rv;
}

static int apply_signature(struct fsm *f, const struct consensus_entry_info *info,
                           const uint8_t *payload, size_t len, char *errmsg)
{
    if (f->ledger == NULL)
        return 0;
    int64_t rev = kvstore_revision(f->kv);
    if (ledger_has_index(f->ledger, info->index)) {
        f->replayed++;
        return ledger_check_signature(f->ledger, info->term, info->index, rev, payload, len,
                                      errmsg);
    }
    return ledger_apply_signature(f->ledger, info->term, info->index, rev, payload, len, NULL,
                                  errmsg);
}

/* Sets the header every etcd response carries (allocating it in a). */
static int set_header(struct fsm *f, ProtobufCMessage *resp, struct arena *a, bool revision)
{
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(resp->descriptor, "header");
    Etcdserverpb__ResponseHeader *h = NULL;
    memcpy(&h, (char *)resp + fd->offset, sizeof h);
    if (h == NULL) {
        if ((h = arena_calloc(a, 1, sizeof *h)) == NULL)
            return LSKV_ENOMEM;
        etcdserverpb__response_header__init(h);
        memcpy((char *)resp + fd->offset, &h, sizeof h);
    }
    fill_header(f, h);
    if (!revision)
        h->revision = 0; /* etcd's cluster server headers carry none */
    return 0;
}

/* Decodes and applies one command; the outcome (including etcd errors, which
 * are deterministic results, not failures) lands in r. Returns non-zero only
 * for a ledger failure (fatal: r->errmsg says why). */
static int apply_command(struct fsm *f, struct consensus_entry_info *info,
                         const uint8_t *cmd, size_t len, struct arena *a, struct fsm_result *r)
{
    Lskvserverpb__ReceiptClaims claims = LSKVSERVERPB__RECEIPT_CLAIMS__INIT;
    bool has_claims = false;
    const struct command_kind *kind = NULL;
    Lskvcommandpb__Command *c = NULL;
    if (command_decode(cmd, len, a, &c) != 0) {
        r->rv = LSKV_ECORRUPT;
        errmsg_printf(r->errmsg, "command of %zu bytes does not decode", len);
        goto record;
    }
    kind = command_kind_of(c->op_case);
    info->origin_member = c->origin_member; /* who waits for the result (node.h) */
    info->request_id = c->request_id;
    if (kind->op == COMMAND_SIGNATURE) {
        /* No response: the proposer (the leader's signer) only waits for it.
         * Any failure is fatal: a signature this node cannot check or whose
         * root differs from its tree is a divergence. */
        r->rv = apply_signature(f, info, c->signature.data, c->signature.len, r->errmsg);
        return r->rv;
    }
    if (kind->op == COMMAND_RESTORE) {
        /* No response: the founder only waits for it. A failure that is
         * this member's alone (its copy) is LSKV_EIO and stops it. */
        r->rv = c->restore == NULL ? LSKV_ECORRUPT
                                   : restore_import(f->restore, c->restore, f->kv, f->records,
                                                    f->leases, &f->restored, r->errmsg);
        goto record;
    }
    const ProtobufCMessage *req = command_request(c);
    ProtobufCMessage *resp = NULL;
    struct command_target target = {
        .kv = f->kv, .leases = f->leases, .members = &f->members, .auth = &f->auth};
    bool lease_op = kind->op == COMMAND_LEASE_GRANT || kind->op == COMMAND_LEASE_REVOKE;
    if (req == NULL || (lease_op && f->leases == NULL))
        r->rv = LSKV_ECORRUPT;
    else if ((r->rv = command_authorize(&target, c, req)) == 0)
        r->rv = kind->apply(&target, req, a, &resp, r->errmsg);
    /* The lessor's key table follows the store (a put's lease check was
     * against it, so the lease exists). */
    if (r->rv == 0)
        r->rv = move_attachments(f);
    if (kind->receipt && req != NULL) {
        receipt_claims_set(&claims, kind->receipt_kind, req, resp);
        has_claims = true;
    }
    if (r->rv == 0 && resp == NULL)
        r->rv = LSKV_ENOMEM;
    if (r->rv == 0)
        r->rv = set_header(f, resp, a, !kind->cluster_header);
    if (r->rv == 0)
        r->rv = pack_response(resp, r);
record:
    /* Storage failures are not deterministic results: no ledger entry, the
     * node stops (fsm_apply). */
    if (r->rv == LSKV_EIO || r->rv == LSKV_ENOMEM || f->ledger == NULL)
        return 0;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    int rv = ledger_record(f, info, cmd, len, kind, r, has_claims ? &claims : NULL, errmsg);
    if (rv != 0)
        memcpy(r->errmsg, errmsg, sizeof errmsg);
    return rv;
}

static int fsm_apply(void *data, struct consensus_entry_info *info, const uint8_t *cmd,
                     size_t len, void **result)
{
    struct fsm *f = data;
    f->last_term = info->term;
    struct fsm_result *r = calloc(1, sizeof *r);
    if (r == NULL)
        return LSKV_ENOMEM;
    struct arena a;
    arena_init(&a);
    kvstore_forget_changes(f->kv);
    int fatal = apply_command(f, info, cmd, len, &a, r);
    if (fatal == 0 && r->rv == 0 && f->observer != NULL)
        f->observer(f->observer_arg); /* the request (in a) is still alive */
    arena_close(&a);
    /* Storage and ledger failures are not deterministic results: stop this
     * node. */
    if (fatal == 0 && (r->rv == LSKV_EIO || r->rv == LSKV_ENOMEM))
        fatal = r->rv;
    if (fatal != 0) {
        memcpy(f->errmsg, r->errmsg, sizeof f->errmsg);
        fsm_result_free(r);
        return fatal;
    }
    *result = r;
    return 0;
}

static void fsm_free_result(void *data, void *result)
{
    (void)data;
    fsm_result_free(result);
}

/* POSITION section: u64 ledger leaves | root over them (zero when empty). */
#define POSITION_BYTES (8 + HASH_BYTES)

static int fsm_snapshot(void *data, uint8_t **buf, size_t *len)
{
    struct fsm *f = data;
    if (f->pending != NULL)
        return LSKV_ENOTREADY; /* the state is older than raft's applied index */
    /* The snapshot names records by id and covers ledger entries; both must
     * be durable before raft may drop the log entries that wrote them. */
    int rv = recstore_sync(f->records);
    if (rv != 0)
        return rv;
    uint8_t position[POSITION_BYTES] = {0};
    if (f->ledger != NULL) {
        struct ledger_position pos;
        char errmsg[LSKV_ERRMSG_SIZE];
        if ((rv = ledger_sync(f->ledger)) != 0)
            return rv;
        ledger_position(f->ledger, &pos);
        put_u64be(position, pos.size);
        if (pos.size > 0 && (rv = ledger_root_at(f->ledger, pos.size, position + 8, errmsg)) != 0)
            return rv;
    }
    uint8_t *kv = NULL;
    size_t kv_len = 0;
    if ((rv = kvstore_snapshot(f->kv, &kv, &kv_len)) != 0)
        return rv;
    uint8_t *leases = NULL;
    size_t leases_len = 0;
    if (f->leases != NULL && (rv = lessor_encode(f->leases, &leases, &leases_len)) != 0) {
        explicit_bzero(kv, kv_len);
        free(kv);
        return rv;
    }
    uint8_t *members = NULL;
    size_t members_len = 0;
    if ((rv = member_table_encode(&f->members, &members, &members_len)) != 0) {
        explicit_bzero(kv, kv_len);
        free(kv);
        free(leases);
        return rv;
    }
    uint8_t *auth = NULL;
    size_t auth_len = 0;
    if ((rv = authstore_encode(&f->auth, &auth, &auth_len)) != 0) {
        explicit_bzero(kv, kv_len);
        free(kv);
        free(leases);
        free(members);
        return rv;
    }
    struct sm_sections s = {0};
    s.data[SM_SECTION_AUTH] = auth;
    s.len[SM_SECTION_AUTH] = auth_len;
    s.data[SM_SECTION_MEMBERS] = members;
    s.len[SM_SECTION_MEMBERS] = members_len;
    s.data[SM_SECTION_POSITION] = position;
    s.len[SM_SECTION_POSITION] = sizeof position;
    s.data[SM_SECTION_KV] = kv;
    s.len[SM_SECTION_KV] = kv_len;
    s.data[SM_SECTION_LEASES] = leases;
    s.len[SM_SECTION_LEASES] = leases_len;
    rv = sm_snapshot_encode(&s, buf, len);
    explicit_bzero(kv, kv_len);
    free(kv);
    if (leases != NULL)
        explicit_bzero(leases, leases_len);
    free(leases);
    free(members);
    free(auth);
    return rv;
}

static int fsm_flush(void *data)
{
    struct fsm *f = data;
    int rv = recstore_commit(f->records);
    if (rv == 0 && f->ledger != NULL)
        rv = ledger_flush(f->ledger);
    return rv;
}

/* The ledger must hold the entries the snapshot covers, with the same root;
 * with behind (not NULL), holding fewer sets *behind instead of failing. */
static int check_position(ledger *l, const uint8_t *p, size_t len, bool *behind, char *errmsg)
{
    if (len != POSITION_BYTES) {
        errmsg_printf(errmsg, "its POSITION section has %zu bytes, not %d", len, POSITION_BYTES);
        return LSKV_ECORRUPT;
    }
    uint64_t size = get_u64be(p);
    if (l == NULL || size == 0)
        return 0;
    struct ledger_position pos;
    ledger_position(l, &pos);
    if (pos.size < size && behind != NULL) {
        *behind = true;
        return 0;
    }
    if (pos.size < size) {
        errmsg_printf(errmsg, "snapshot covers %" PRIu64 " ledger entries, the ledger holds "
                      "%" PRIu64 ": ledger entries were lost", size, pos.size);
        return LSKV_ECORRUPT;
    }
    uint8_t root[HASH_BYTES];
    int rv = ledger_root_at(l, size, root, errmsg);
    if (rv != 0)
        return rv;
    if (memcmp(root, p + 8, HASH_BYTES) != 0) {
        errmsg_printf(errmsg, "the ledger's root over its first %" PRIu64 " entries differs "
                      "from the snapshot's: another history", size);
        return LSKV_ECORRUPT;
    }
    return 0;
}

static int decode_checked(ledger *l, const uint8_t *buf, size_t len, struct sm_sections *s,
                          bool *behind, char *errmsg)
{
    int rv = sm_snapshot_decode(buf, len, s);
    if (rv != 0)
        return rv;
    if (s->data[SM_SECTION_POSITION] == NULL || s->data[SM_SECTION_KV] == NULL) {
        errmsg_printf(errmsg, "the state machine snapshot lacks its %s section",
                      s->data[SM_SECTION_KV] == NULL ? "KV" : "POSITION");
        return LSKV_ECORRUPT;
    }
    return check_position(l, s->data[SM_SECTION_POSITION], s->len[SM_SECTION_POSITION], behind,
                          errmsg);
}

int fsm_check_snapshot(ledger *l, const uint8_t *buf, size_t len, char *errmsg)
{
    struct sm_sections s;
    return decode_checked(l, buf, len, &s, NULL, errmsg);
}

int fsm_check_snapshot_behind(ledger *l, const uint8_t *buf, size_t len, bool behind_ok,
                              char *errmsg)
{
    struct sm_sections s;
    bool behind = false;
    return decode_checked(l, buf, len, &s, behind_ok ? &behind : NULL, errmsg);
}

static void drop_pending(struct fsm *f)
{
    if (f->pending != NULL)
        explicit_bzero(f->pending, f->pending_len);
    free(f->pending);
    f->pending = NULL;
    f->pending_len = 0;
}

/* Keeps a snapshot whose ledger entries (and so records) this member lacks
 * until catch-up fetched them (statemachine/catchup.h). */
static int hold_restore(struct fsm *f, const uint8_t *buf, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return LSKV_ENOMEM;
    memcpy(copy, buf, len);
    drop_pending(f);
    f->pending = copy;
    f->pending_len = len;
    f->pending_gen++;
    return LSKV_ENOTREADY;
}

static int fsm_restore(void *data, const uint8_t *buf, size_t len)
{
    struct fsm *f = data;
    struct sm_sections s;
    bool behind = false;
    int rv = decode_checked(f->ledger, buf, len, &s, f->catchup ? &behind : NULL, f->errmsg);
    if (rv != 0)
        return rv;
    if (behind)
        return hold_restore(f, buf, len);
    drop_pending(f);
    if (f->leases != NULL) {
        /* Snapshots from before leases have no section: no leases. */
        static const uint8_t none[5] = {1, 0, 0, 0, 0};
        const uint8_t *ls = s.data[SM_SECTION_LEASES] ? s.data[SM_SECTION_LEASES] : none;
        size_t ll = s.data[SM_SECTION_LEASES] ? s.len[SM_SECTION_LEASES] : sizeof none;
        if ((rv = lessor_decode(f->leases, ls, ll)) != 0) {
            errmsg_printf(f->errmsg, "the snapshot's LEASES section: %s", lskv_strerror(rv));
            return rv;
        }
    }
    /* Snapshots from before members published have no section: none. */
    if ((rv = s.data[SM_SECTION_MEMBERS]
                  ? member_table_decode(&f->members, s.data[SM_SECTION_MEMBERS],
                                        s.len[SM_SECTION_MEMBERS])
                  : (member_table_clear(&f->members), 0)) != 0) {
        errmsg_printf(f->errmsg, "the snapshot's MEMBERS section: %s", lskv_strerror(rv));
        return rv;
    }
    /* Snapshots from before auth have no section: a new store. */
    if ((rv = s.data[SM_SECTION_AUTH]
                  ? authstore_decode(&f->auth, s.data[SM_SECTION_AUTH], s.len[SM_SECTION_AUTH])
                  : (authstore_clear(&f->auth), 0)) != 0) {
        errmsg_printf(f->errmsg, "the snapshot's AUTH section: %s", lskv_strerror(rv));
        return rv;
    }
    return kvstore_restore(f->kv, s.data[SM_SECTION_KV], s.len[SM_SECTION_KV]);
}

int fsm_finish_restore(struct fsm *f)
{
    if (f->pending == NULL)
        return 0;
    uint8_t *buf = f->pending;
    size_t len = f->pending_len;
    f->pending = NULL; /* restore must not hold it again */
    bool allow = f->catchup;
    f->catchup = false;
    int rv = fsm_restore(f, buf, len);
    f->catchup = allow;
    if (rv != 0) {
        f->pending = buf;
        return rv;
    }
    explicit_bzero(buf, len);
    free(buf);
    return 0;
}

void fsm_close(struct fsm *f)
{
    member_table_clear(&f->members);
    drop_pending(f);
    authstore_clear(&f->auth);
}

struct consensus_fsm fsm_vtable(struct fsm *f)
{
    return (struct consensus_fsm){
        .data = f,
        .apply = fsm_apply,
        .free_result = fsm_free_result,
        .snapshot = fsm_snapshot,
        .restore = fsm_restore,
        .flush = fsm_flush,
        .can_apply = fsm_can_apply,
    };
}
