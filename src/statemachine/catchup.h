/* A member catching up after a raft snapshot it cannot restore alone.
 *
 * A raft snapshot carries the trusted state (key index, leases, members,
 * the ledger position), not the sealed records or the ledger entries it
 * covers. A member that installs one (a follower too far behind for the
 * leader's log) holds it back (fsm_allow_catchup, fsm->pending), fetches
 * from another member the ledger entries and the records it lacks, checks
 * each, and only then restores (fsm_finish_restore); until then it applies
 * nothing more and keeps serving its older state to serializable reads.
 *
 * Checks: every copied ledger frame is exactly the frame this member would
 * write (ledger_append_copy) and the leaves reach the snapshot's root; every
 * record is the one the snapshot's index names (key, revision, tombstone,
 * create revision, version) and is sealed again here under the data key.
 *
 * Two calls to another member (consensus_call_leader), answered there by
 * catchup_serve; all integers big endian (docs/catchup-format.md):
 *   LEDGER   req:   u64 from leaf | u64 to leaf | u32 max bytes
 *            reply: frames of leaves from.. back to back (none: not there yet)
 *   RECORDS  req:   u32 n | n x (i64 main | i64 sub)
 *            reply: u32 m (m <= n: the first m ids answered) | m x
 *                   (u8 found | if 1: u8 tombstone | i64 create revision |
 *                    i64 version | i64 lease | u32 key len | key |
 *                    u32 value len | value)
 *
 * The driver (api/catchup_driver.c) owns the calls; everything here is
 * synchronous and runs on the loop thread. */
#ifndef LSKV_STATEMACHINE_CATCHUP_H
#define LSKV_STATEMACHINE_CATCHUP_H

#include <stddef.h>
#include <stdint.h>

#include "statemachine/fsm.h"

/* Call kinds (consensus_call_leader); the lease calls use 1 and 2. */
enum catchup_call {
    CATCHUP_CALL_LEDGER = 16,
    CATCHUP_CALL_RECORDS = 17,
};
#define CATCHUP_CALL_MAX_BYTES (4u << 20) /* a reply stops growing here */
#define CATCHUP_RECORDS_PER_CALL 512

typedef struct catchup catchup;

/* For the restore f holds (f->pending). Errors: LSKV_ENOMEM. */
int catchup_new(struct fsm *f, catchup **out);
void catchup_free(catchup *c);

/* What to ask next: 0 with *kind and a malloc'ed *req; 1 when nothing is
 * left to fetch and the restore is done (fsm_finish_restore returned 0).
 * A newer held snapshot (f->pending_gen) starts over on it.
 * Errors: LSKV_ECORRUPT (the held snapshot does not decode, or the copied
 * ledger reaches another root than it: fatal, errmsg says why), those of
 * fsm_finish_restore, LSKV_ENOMEM, LSKV_EIO. */
int catchup_next(catchup *c, uint8_t *kind, uint8_t **req, size_t *req_len, char *errmsg);
/* The answer to the request catchup_next gave last.
 * Errors: LSKV_ENOTREADY (the member asked does not have it yet: ask again
 * later), LSKV_ECORRUPT (what came does not check: fatal, errmsg),
 * LSKV_ENOMEM, LSKV_EIO. */
int catchup_take(catchup *c, const uint8_t *reply, size_t len, char *errmsg);
/* Progress for the log (counts since catchup_new). */
struct catchup_stats {
    uint64_t ledger_copied, ledger_missing;
    uint64_t records_fetched, records_missing;
};
void catchup_progress(const catchup *c, struct catchup_stats *out);

/* The asked member's side (consensus serve_call for the kinds above).
 * Errors: LSKV_EINVAL (malformed request), LSKV_ENOTREADY (this member
 * holds a restore itself), those of reading the ledger and the records. */
int catchup_serve(struct fsm *f, uint8_t kind, const uint8_t *req, size_t len,
                  uint8_t **reply, size_t *reply_len);

#endif
