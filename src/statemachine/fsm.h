/* The replicated state machine: turns committed commands into kvstore calls
 * and ledger entries.
 *
 * A command (the plaintext inside a sealed raft entry) is the envelope of
 * statemachine/command.h; its table says how each op applies. Apply is
 * deterministic: no clock, no randomness; it only reads the command, the
 * entry info and the store. No client input can fail apply: a request is
 * either refused before proposal (command_kind.validate) or its result,
 * etcd error included, is computed deterministically and recorded. */
#ifndef LSKV_STATEMACHINE_FSM_H
#define LSKV_STATEMACHINE_FSM_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "consensus/node.h"
#include "kv/kvstore.h"
#include "ledger/ledger.h"
#include "statemachine/command.h"
#include "statemachine/member_table.h"
#include "statemachine/restore.h"
#include "storage/diskspace.h"

/* What apply hands back to the proposer. */
struct fsm_result {
    int rv;                       /* 0 or an LSKV_E* code (etcd error) */
    char errmsg[LSKV_ERRMSG_SIZE];/* detail for rv != 0 (logged, not sent) */
    uint8_t *response;            /* packed etcd response message (malloc'ed) */
    size_t response_len;
};

struct fsm {
    kvstore *kv;           /* borrowed */
    lessor *leases;        /* borrowed; NULL: no leases (unit tests) */
    recstore *records;     /* borrowed: synced before a snapshot */
    struct diskspace *space; /* borrowed; NULL: apply never waits for disk space */
    ledger *ledger;        /* borrowed; NULL: no ledger (unit tests) */
    uint64_t cluster_id;   /* response header fields */
    uint64_t member_id;
    uint64_t last_term;    /* term of the last applied entry */
    uint64_t replayed;     /* entries the ledger already held (checked, not appended) */
    char errmsg[LSKV_ERRMSG_SIZE]; /* why the last fatal apply failed */
    void (*observer)(void *arg);   /* fsm_set_observer */
    void *observer_arg;
    struct member_table members;   /* what members published (replicated) */
    /* A restore held back until this member has what the snapshot needs
     * (statemachine/catchup.h): its plaintext (owned), or NULL. */
    uint8_t *pending;
    size_t pending_len;
    uint64_t pending_gen;          /* counts held restores */
    bool catchup;                  /* fsm_allow_catchup */
    struct authstore auth;         /* users, roles, permissions (replicated) */
    const struct restore_source *restore; /* fsm_set_restore; NULL: none */
    bool restored;                 /* a RESTORE command has been applied */
};

/* The ledger (may be NULL) gets one entry per applied command, in order:
 *  - Put / DeleteRange / Txn that succeeded: type KV; claims =
 *    ReceiptClaims{request, response with header cleared}; write set = the
 *    changed records (FSM write set format below).
 *  - Compaction, and any command apply rejects with an etcd error (no
 *    revision made): type COMPACT / OTHER, no claims, write set = the
 *    command bytes themselves.
 *  - A write set above FSM_WRITE_SET_MAX bytes (a DeleteRange over very
 *    many long keys) is recorded by digest: version 2 below.
 *  - Signature commands: ledger_apply_signature (a bad one is a fatal
 *    divergence).
 * FSM write set, version 1 (big endian):
 *   u8 version (1) | u32 n | n x (u32 len | mvccpb.KeyValue protobuf)
 * one KeyValue per changed key in kvstore_changes() order; a deletion is a
 * KeyValue with create_revision 0, version 0 and no value (etcd's tombstone
 * shape). Everything in the write set and claims is sealed in the ledger.
 * FSM write set, version 2 (too big to record whole):
 *   u8 version (2) | u32 n | SHA-256 of the version 1 encoding
 *
 * Replay (restart): entries the ledger already holds (ledger_has_index) are
 * re-applied to the store and checked against the ledger byte for byte
 * instead of appended; a mismatch is a fatal divergence.
 * Leases: grant and revoke are LEASE ledger entries holding the command.
 * Auth: every command is checked against the auth store at apply
 * (command_authorize) for the user and auth revision of its envelope; a
 * denied one is an etcd error (no revision). Auth commands are OTHER
 * entries holding the command (a password only as its bcrypt hash); the
 * store is the snapshot's AUTH section.
 * Snapshots (statemachine/snapshot.h): the ledger is synced before the
 * store snapshot is produced; the snapshot's POSITION section records the
 * ledger size and root it covers, and restoring it onto a ledger that is
 * shorter or has another root there fails (LSKV_ECORRUPT): ledger entries
 * were lost or the ledger is another history. */
#define FSM_WRITE_SET_VERSION 1
#define FSM_WRITE_SET_DIGEST_VERSION 2
#define FSM_WRITE_SET_MAX (16u << 20)

/* Also switches kv to deferred commits (kvstore_set_deferred_commit): the
 * vtable's flush commits the records of every entry applied in a loop turn
 * as one engine write. */
void fsm_init(struct fsm *f, kvstore *kv, recstore *records, uint64_t cluster_id,
              uint64_t member_id);
/* Sets the disk-space guard (borrowed; may be NULL) before consensus_open:
 * the vtable's can_apply then holds an entry back while the disk cannot
 * take its ledger entry and records (storage/diskspace.h). */
void fsm_set_space(struct fsm *f, struct diskspace *space);
/* Sets the ledger (borrowed; may be NULL) before consensus_open. */
void fsm_set_ledger(struct fsm *f, ledger *l);
/* Sets this member's copy of a backup (borrowed; may be NULL) before
 * consensus_open: a RESTORE command imports it (statemachine/restore.h);
 * its ledger entry (type OTHER, write set = the command) records the
 * source. */
void fsm_set_restore(struct fsm *f, const struct restore_source *src);
/* Sets the lease table (borrowed; may be NULL) before consensus_open: puts
 * with a lease check it, every write moves its keys' attachments, and
 * snapshots carry it (section LEASES). */
void fsm_set_leases(struct fsm *f, lessor *l);
/* Checks a state machine snapshot's binding to the ledger (POSITION, as
 * restore does) without restoring it: lskvd runs it on the raft snapshot
 * before it opens the engine (consensus/raftdir.h), so that a snapshot from
 * another history is refused before any file changes. l may be NULL (no
 * check). Errors: LSKV_ECORRUPT (errmsg says why), those of
 * sm_snapshot_decode and ledger_root_at. */
int fsm_check_snapshot(ledger *l, const uint8_t *buf, size_t len, char *errmsg);
/* With allow (a member of a cluster: others hold what it lacks), a
 * snapshot whose ledger entries this member lacks is not an error: restore
 * keeps it (f->pending) and answers LSKV_ENOTREADY, the state stays the one
 * before, can_apply says no and snapshot fails with LSKV_ENOTREADY until
 * fsm_finish_restore. Without it (a single member) such a snapshot means
 * lost entries: LSKV_ECORRUPT. */
void fsm_allow_catchup(struct fsm *f, bool allow);
/* Restores the held snapshot, now that the ledger holds its entries and the
 * records are there; clears it. Errors: those of restore (errmsg). */
int fsm_finish_restore(struct fsm *f);
/* fsm_check_snapshot, where a ledger that lacks the snapshot's entries is
 * fine when behind_ok (a cluster member fetches them; its start does not
 * depend on them): the entries it holds are checked later, on the copy. */
int fsm_check_snapshot_behind(ledger *l, const uint8_t *buf, size_t len, bool behind_ok,
                              char *errmsg);
/* observer(arg) runs after every command that applied without an error,
 * while kvstore_changes still holds its changes (watch fan-out). */
void fsm_set_observer(struct fsm *f, void (*observer)(void *arg), void *arg);
/* The consensus_fsm vtable over f (f is borrowed). */
struct consensus_fsm fsm_vtable(struct fsm *f);

void fsm_result_free(struct fsm_result *r);

/* Releases what the state machine owns (not what it borrows). */
void fsm_close(struct fsm *f);

#endif
