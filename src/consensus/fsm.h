/* The replicated state machine: turns committed commands into kvstore calls.
 *
 * A command (the plaintext inside a sealed raft entry) is
 *   u8 format version (FSM_COMMAND_VERSION) | u8 type | request protobuf
 * where the request is etcd's own message (PutRequest, ...). Apply is
 * deterministic: no clock, no randomness; it only reads the command, the
 * entry info and the store. docs/entry-format.md describes the framing. */
#ifndef LSKV_CONSENSUS_FSM_H
#define LSKV_CONSENSUS_FSM_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "consensus/node.h"
#include "kv/kvstore.h"

#define FSM_COMMAND_VERSION 1

enum fsm_command_type {
    FSM_CMD_PUT = 1,
    FSM_CMD_DELETE_RANGE = 2,
    FSM_CMD_TXN = 3,
    FSM_CMD_COMPACT = 4,
};

/* What apply hands back to the proposer. */
struct fsm_result {
    int rv;                       /* 0 or an LSKV_E* code (etcd error) */
    char errmsg[LSKV_ERRMSG_SIZE];/* detail for rv != 0 (logged, not sent) */
    uint8_t *response;            /* packed etcd response message (malloc'ed) */
    size_t response_len;
};

struct fsm {
    kvstore *kv;           /* borrowed */
    recstore *records;     /* borrowed: synced before a snapshot */
    uint64_t cluster_id;   /* response header fields */
    uint64_t member_id;
    uint64_t last_term;    /* term of the last applied entry */
};

/* Also switches kv to deferred commits (kvstore_set_deferred_commit): the
 * vtable's flush commits the records of every entry applied in a loop turn
 * as one engine write. */
void fsm_init(struct fsm *f, kvstore *kv, recstore *records, uint64_t cluster_id,
              uint64_t member_id);
/* The consensus_fsm vtable over f (f is borrowed). */
struct consensus_fsm fsm_vtable(struct fsm *f);

/* Encodes a command around the packed request msg into a malloc'ed buffer.
 * Errors: LSKV_ENOMEM. */
int fsm_command_encode(enum fsm_command_type type, const ProtobufCMessage *msg,
                       uint8_t **out, size_t *out_len);

void fsm_result_free(struct fsm_result *r);

#endif
