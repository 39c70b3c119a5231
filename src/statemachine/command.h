/* The command envelope: what the raft log carries for the state machine.
 *
 * A command is one lskvcommandpb.Command (proto/lskvcommand.proto): request
 * id, origin member, user and auth revision, and a oneof with the op (Put,
 * DeleteRange, Txn, Compaction, ledger signature; room for leases, members
 * and auth). The table command_kinds[] (command.c) is the one place an op is
 * described: its request type, etcd's pre-proposal checks, how apply runs
 * it, the ledger entry type it makes and the receipt kind it claims. A new
 * op is one row there and one field in the proto.
 *
 * Encoding: the op's body is written as the client sent it (after decode and
 * checks), so the request path never packs a request a second time; a
 * length-delimited field is the same bytes whether protobuf-c or we frame it. */
#ifndef LSKV_STATEMACHINE_COMMAND_H
#define LSKV_STATEMACHINE_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/authstore.h"
#include "common/arena.h"
#include "kv/kvstore.h"
#include "lease/lessor.h"
#include "statemachine/member_table.h"
#include "ledger/receipt.h"
#include "proto/lskvcommand.pb-c.h"

/* Op numbers are the proto's oneof field numbers. */
enum command_op {
    COMMAND_PUT = LSKVCOMMANDPB__COMMAND__OP_PUT,
    COMMAND_DELETE_RANGE = LSKVCOMMANDPB__COMMAND__OP_DELETE_RANGE,
    COMMAND_TXN = LSKVCOMMANDPB__COMMAND__OP_TXN,
    COMMAND_COMPACTION = LSKVCOMMANDPB__COMMAND__OP_COMPACTION,
    COMMAND_SIGNATURE = LSKVCOMMANDPB__COMMAND__OP_SIGNATURE,
    COMMAND_LEASE_GRANT = LSKVCOMMANDPB__COMMAND__OP_LEASE_GRANT,
    COMMAND_LEASE_REVOKE = LSKVCOMMANDPB__COMMAND__OP_LEASE_REVOKE,
    COMMAND_MEMBER_ATTRIBUTES = LSKVCOMMANDPB__COMMAND__OP_MEMBER_ATTRIBUTES,
    COMMAND_MEMBERS_INIT = LSKVCOMMANDPB__COMMAND__OP_MEMBERS_INIT,
    COMMAND_MEMBER_ADD = LSKVCOMMANDPB__COMMAND__OP_MEMBER_ADD,
    COMMAND_MEMBER_REMOVE = LSKVCOMMANDPB__COMMAND__OP_MEMBER_REMOVE,
    COMMAND_MEMBER_UPDATE = LSKVCOMMANDPB__COMMAND__OP_MEMBER_UPDATE,
    COMMAND_MEMBER_PROMOTE = LSKVCOMMANDPB__COMMAND__OP_MEMBER_PROMOTE,
    COMMAND_AUTH_ENABLE = LSKVCOMMANDPB__COMMAND__OP_AUTH_ENABLE,
    COMMAND_AUTH_DISABLE = LSKVCOMMANDPB__COMMAND__OP_AUTH_DISABLE,
    COMMAND_USER_ADD = LSKVCOMMANDPB__COMMAND__OP_USER_ADD,
    COMMAND_USER_DELETE = LSKVCOMMANDPB__COMMAND__OP_USER_DELETE,
    COMMAND_USER_CHANGE_PASSWORD = LSKVCOMMANDPB__COMMAND__OP_USER_CHANGE_PASSWORD,
    COMMAND_USER_GRANT_ROLE = LSKVCOMMANDPB__COMMAND__OP_USER_GRANT_ROLE,
    COMMAND_USER_REVOKE_ROLE = LSKVCOMMANDPB__COMMAND__OP_USER_REVOKE_ROLE,
    COMMAND_ROLE_ADD = LSKVCOMMANDPB__COMMAND__OP_ROLE_ADD,
    COMMAND_ROLE_DELETE = LSKVCOMMANDPB__COMMAND__OP_ROLE_DELETE,
    COMMAND_ROLE_GRANT_PERMISSION = LSKVCOMMANDPB__COMMAND__OP_ROLE_GRANT_PERMISSION,
    COMMAND_ROLE_REVOKE_PERMISSION = LSKVCOMMANDPB__COMMAND__OP_ROLE_REVOKE_PERMISSION,
    COMMAND_RESTORE = LSKVCOMMANDPB__COMMAND__OP_RESTORE,
};

/* Who asked; every field may be zero / NULL (internal commands). */
struct command_meta {
    uint64_t request_id;
    uint64_t origin_member;
    const char *username;
    uint64_t auth_revision;
};

/* The server's request limits the checks before proposal apply. */
struct command_limits {
    long max_txn_ops; /* --max-txn-ops: ops per txn branch (etcd's count) */
};

/* The replicated state an op applies to. */
struct command_target {
    kvstore *kv;
    lessor *leases;
    struct member_table *members;
    struct authstore *auth; /* NULL: no auth store (unit tests): nothing checked */
};

/* Runs an op against t; *resp (in a) is etcd's response message.
 * Returns 0 or an etcd error (deterministic), LSKV_EIO / LSKV_ENOMEM
 * (storage: not deterministic, stops the node). */
typedef int (*command_apply_fn)(const struct command_target *t, const ProtobufCMessage *req,
                                struct arena *a, ProtobufCMessage **resp, char *errmsg);

struct command_kind {
    enum command_op op;
    const char *name;                           /* for logs: "put", ... */
    const ProtobufCMessageDescriptor *request;  /* NULL: the body is plain bytes */
    /* etcd's checks before proposal; may be NULL. */
    int (*validate)(const ProtobufCMessage *req, const struct command_limits *lim);
    command_apply_fn apply;                     /* NULL: not a store op (signature) */
    unsigned ledger_type;                       /* enum ledger_entry_type when apply succeeds */
    bool receipt;                               /* claims ReceiptClaims{request, response} */
    enum receipt_kind receipt_kind;
    bool cluster_header;                        /* etcd's Cluster answers: no revision */
};

/* etcd's permission check of a command at apply (etcdserver/apply_auth.go)
 * for the user and auth revision of its envelope: a store op's keys (a
 * put's lease's keys too, a revoke's lease's keys), an auth op needs root;
 * the rest (compaction, lease grant, members, signatures) is not checked,
 * as in etcd. Internal commands (request_id 0: the leader's lease expiry)
 * are not checked (etcd runs them as root). 0 or an etcd error. */
int command_authorize(const struct command_target *t, const Lskvcommandpb__Command *c,
                      const ProtobufCMessage *req);
/* Whether op changes the auth store (an admin op). */
bool command_is_auth(enum command_op op);

/* The row of op, or NULL for an op this build does not know. */
const struct command_kind *command_kind_of(unsigned op);
/* A Txn op deleting the one key (borrowed), in arena a; NULL on ENOMEM. */
Etcdserverpb__RequestOp *command_op_delete(struct arena *a, ProtobufCBinaryData key);

/* Envelope around body (the op's field content, borrowed) into a malloc'ed
 * buffer. Errors: LSKV_EINVAL (unknown op), LSKV_ENOMEM. */
int command_wrap(enum command_op op, const struct command_meta *meta, const uint8_t *body,
                 size_t len, uint8_t **out, size_t *out_len);
/* As command_wrap around msg packed (tests, tools). */
int command_encode(enum command_op op, const struct command_meta *meta,
                   const ProtobufCMessage *msg, uint8_t **out, size_t *out_len);

/* Decodes a command into arena a and checks it names a known op.
 * Errors: LSKV_ECORRUPT (bytes do not decode or nest deeper than a request
 * may, no op or an unknown one). */
int command_decode(const uint8_t *buf, size_t len, struct arena *a,
                   Lskvcommandpb__Command **out);
/* The op's request message of a decoded command (NULL for byte ops). */
const ProtobufCMessage *command_request(const Lskvcommandpb__Command *c);

#endif
