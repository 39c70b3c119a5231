/* The etcd v3 API handlers: decode a request, apply etcd's checks, read from
 * the store or propose through consensus, answer with etcd's response or
 * etcd's exact error. One file per etcd service; this header is what the
 * daemon wires together. */
#ifndef LSKV_API_API_H
#define LSKV_API_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/authstore.h"
#include "auth/tokens.h"
#include "common/arena.h"
#include "crypto/jwt.h"
#include "config/members.h"
#include "consensus/node.h"
#include "consensus/reconfig.h"
#include "kv/kvstore.h"
#include "ledger/ledger.h"
#include "net/grpc_server.h"
#include "statemachine/command.h"
#include "storage/diskspace.h"
#include "watch/watch.h"
#include "proto/rpc.pb-c.h"

#define API_VERSION "3.4.23" /* etcd API level lskv implements; clients gate on it */

struct api {
    kvstore *kv;               /* borrowed */
    recstore *records;         /* borrowed: db size */
    consensus_node *node;      /* borrowed */
    uint64_t cluster_id;
    uint64_t member_id;
    const char *name;          /* member name */
    const struct members *members; /* the bootstrap membership (config/members.h) */
    const struct member_table *published; /* what members published (client URLs) */
    char *const *peer_urls;    /* advertised, borrowed */
    size_t n_peer_urls;
    char *const *client_urls;  /* advertised, borrowed */
    size_t n_client_urls;
    size_t max_request_bytes;  /* etcd's --max-request-bytes */
    bool strict_reconfig;      /* --strict-reconfig-check */
    struct consensus_seen *seen; /* the leader's view of who is up (consensus/reconfig.h) */
    struct command_limits limits; /* --max-txn-ops, for the command table's checks */
    bool corrupt_alarm;        /* raised on the first integrity fault */
    struct diskspace *space;   /* borrowed: the NOSPACE alarm; NULL: no guard */
    ledger *ledger;            /* borrowed; NULL: receipts answer UNAVAILABLE */
    uint64_t receipt_retry_ms; /* retry hint in "not ready" answers */
    uint64_t writes_in_flight; /* proposed writes not yet answered (TxStatus Pending) */
    /* Ids of this member's proposals (command envelope); the daemon starts
     * them at a random point, so a forwarded command of an earlier run that
     * applies after a restart answers no caller of this run. */
    uint64_t last_request_id;
    lessor *leases;            /* borrowed: the state machine's lease table */
    uv_loop_t *loop;           /* for the lease expiry timer */
    struct lease_expiry *lease_expiry; /* lease_service_start .. _stop */
    watch_hub *watch;          /* borrowed: fed by the state machine */
    struct watch_driver *watch_driver; /* watch_service_start .. _stop */
    struct conc_call *conc_calls; /* Lock/Campaign waiting, Observe streaming */
    size_t n_conc_calls;          /* Lock/Election calls not yet freed */
    struct authstore *auth;    /* borrowed: the state machine's auth store */
    auth_tokens *tokens;       /* this member's simple tokens (owned by the daemon) */
    unsigned bcrypt_cost;      /* --bcrypt-cost */
    const uint8_t *data_key;   /* borrowed: backups are sealed under it */
    struct consensus_fsm sm;   /* the state machine: its snapshot starts a backup */
    bool client_cert_auth;     /* --client-cert-auth: a certificate's CN is the user */
    jwt_key *jwt;              /* --auth-token jwt,...: owned by the daemon; NULL: simple */
    uint64_t jwt_ttl_ms;       /* its ttl option */
    char jwt_user[256];        /* the user of the last JWT checked (api_auth_info) */
};

/* Who made call (etcd's AuthInfoFromCtx): the user of its token and the
 * auth revision now; without a token, with --client-cert-auth, the CN of
 * its verified client certificate (gRPC only, as etcd); else "" and 0.
 * Errors:
 * LSKV_EINVALIDTOKEN (a token this member does not know, expired or dead). */
int api_auth_info(struct api *api, grpc_call *call, const char **user, uint64_t *rev);
/* etcd's checks of op with request req for the maker of call, before it is
 * proposed (command_authorize's rules). 0 or an etcd error. */
int api_authorize(struct api *api, grpc_call *call, enum command_op op,
                  const ProtobufCMessage *req);
/* etcd's IsRangePermitted for the maker of call (Range, Watch). */
int api_authorize_range(struct api *api, grpc_call *call, ProtobufCBinaryData key,
                        ProtobufCBinaryData range_end);
/* etcd's IsAdminPermitted for the maker of call (Maintenance, auth admin). */
int api_authorize_admin(struct api *api, grpc_call *call);

/* Raises the CORRUPT alarm (once) and logs why. */
void api_raise_corrupt(struct api *api, const char *errmsg);

/* Fills the method table for every etcd RPC (unimplemented ones answer
 * UNIMPLEMENTED). Returns the number of methods written (<= max). */
size_t api_methods(struct api *api, struct grpc_method *methods, size_t max);

/* Header fields every response carries; revision is the store's current one. */
void api_fill_header(struct api *api, Etcdserverpb__ResponseHeader *h);

/* Decodes a request of type desc from msg into arena a. On malformed bytes it
 * answers the call as grpc-go does (INTERNAL), on messages nested deeper
 * than PBDEPTH_MAX with etcd's "too many operations" (Txn) or
 * INVALID_ARGUMENT, and returns NULL. */
void *api_decode(grpc_call *call, const ProtobufCMessageDescriptor *desc, const uint8_t *msg,
                 size_t len, struct arena *a);

/* Proposes op with body (the request's bytes, checked) for call; the
 * answer is the response apply produces, or etcd's error. */
void api_propose(struct api *api, grpc_call *call, enum command_op op, const uint8_t *body,
                 size_t len);
/* The same for a write admitted by api_admit_write with cost (answered:
 * api_write_done). */
void api_propose_cost(struct api *api, grpc_call *call, enum command_op op,
                      const uint8_t *body, size_t len, uint64_t cost);

/* Packs msg and finishes call with OK. */
void api_reply(grpc_call *call, const ProtobufCMessage *msg);

/* Finishes call with the etcd error for code; integrity faults are logged with
 * errmsg and raise the CORRUPT alarm, LSKV_ENOSPACE raises NOSPACE. */
void api_fail(struct api *api, grpc_call *call, int code, const char *errmsg);

/* The disk-space guard before proposing op (storage/diskspace.h): a Put, a
 * LeaseGrant or a Txn with a put in its top-level branches (etcd's quota
 * cost) against the reserve and the quota, anything else against the floor.
 * 0 with *cost (hand it to api_write_done once answered), or LSKV_ENOSPACE
 * (logged when it raises the alarm). */
int api_admit_write(struct api *api, enum command_op op, const ProtobufCMessage *req,
                    size_t len, uint64_t *cost);
/* The write admitted with cost was answered (diskspace_done). */
void api_write_done(struct api *api, uint64_t cost);

/* Per-service tables (each appends its methods, returns how many). */
size_t kv_service_methods(struct api *api, struct grpc_method *m);
size_t maint_service_methods(struct api *api, struct grpc_method *m);
/* Decodes a root-only Maintenance request (etcd's authMaintenanceServer):
 * the request, or NULL when the call was answered instead (malformed, or
 * the caller is not root with auth on). */
void *maint_admin_request(struct api *api, grpc_call *call, const ProtobufCMessageDescriptor *d,
                          const uint8_t *msg, size_t len, struct arena *a);
/* Maintenance.Snapshot (api/maint_snapshot.c): streams a backup. */
void maint_snapshot(grpc_call *call, const uint8_t *msg, size_t len, void *ctx);
size_t cluster_service_methods(struct api *api, struct grpc_method *m);

/* Calls a follower makes to the leader (consensus_call_leader); each
 * service answers its own kinds. */
enum api_call_kind {
    API_CALL_LEASE_KEEPALIVE = 1,   /* lease id i64 -> granted TTL i64 */
    API_CALL_LEASE_TIME_TO_LIVE = 2, /* LeaseTimeToLiveRequest -> ...Response */
    API_CALL_MEMBER_CHECK = 3,      /* op u8 | member id u64 -> empty (cluster_service.c) */
    API_CALL_HASH_KV = 4,           /* revision i64 -> compaction point i64 | HashKV u32
                                       (corrupt_check.c) */
};
/* consensus_config.serve_call (arg: the api): the leader answers a
 * follower's call of any kind above. */
int api_serve_call(void *arg, uint8_t kind, const uint8_t *req, size_t len, uint8_t **reply,
                   size_t *reply_len);
/* etcd's --experimental-corrupt-check-time (api/corrupt_check.c): every
 * interval_ms (0: never) a follower compares its HashKV at its revision
 * with the leader's; a difference, or a record that fails verification on
 * either side, raises the CORRUPT alarm. Stop before the node closes.
 * Errors: LSKV_ENOMEM. */
struct corrupt_check;
int corrupt_check_start(struct api *api, uint64_t interval_ms, struct corrupt_check **out);
void corrupt_check_stop(struct corrupt_check *cc);
/* The leader's side of API_CALL_HASH_KV. */
int corrupt_check_serve_call(struct api *api, const uint8_t *req, size_t len, uint8_t **reply,
                             size_t *reply_len);
/* The leader's check of a membership change (consensus_check_change). */
int cluster_service_serve_call(struct api *api, const uint8_t *req, size_t len, uint8_t **reply,
                               size_t *reply_len);
size_t lease_service_methods(struct api *api, struct grpc_method *m);
/* Leader duties for leases (single member: always): every lease's clock is
 * started with the full TTL plus extend_ms (a restart or election must not
 * make a lease expire early), then every 500 ms expired leases get revoke
 * proposals (at most 500 per tick, as etcd's revoke rate of 1000/s). Stop
 * before the node closes. Errors: LSKV_ENOMEM. */
int lease_service_start(struct api *api, uint64_t extend_ms);
/* consensus_config.serve_call (arg: the api): the leader answers a
 * follower's lease keep-alive or time-to-live (lease_service.c). */
int lease_service_serve_call(void *arg, uint8_t kind, const uint8_t *req, size_t len,
                             uint8_t **reply, size_t *reply_len);
void lease_service_stop(struct api *api);
/* Revokes proposed for expired leases since the start (etcd's
 * etcd_debugging_server_lease_expired_total). */
uint64_t lease_service_expired(const struct api *api);
size_t watch_service_methods(struct api *api, struct grpc_method *m);
/* The timers of the watch hub: catch-up of unsynced watchers (every 10 ms,
 * while any) and progress notifications (every 10 min, as etcd). Stop
 * before the hub is freed. Errors: LSKV_ENOMEM. */
int watch_service_start(struct api *api);
void watch_service_stop(struct api *api);
/* Starts the clocks of leases granted by the entries applied so far (call
 * after a write applied: a lease's TTL runs from its grant). */
void lease_service_applied(struct api *api);
/* A lease id for a grant that names none: a positive random int63, as
 * etcd's leader picks. Errors: LSKV_EIO (no randomness). */
int lease_service_new_id(int64_t *id);
/* v3lockpb.Lock and v3electionpb.Election (etcd's v3lock and v3election
 * servers over clientv3/concurrency), api/concurrency_service.c. */
size_t concurrency_service_methods(struct api *api, struct grpc_method *m);
/* After every applied entry that changed keys (the state machine's
 * observer, while kvstore_changes holds them): answers the Lock and
 * Campaign calls whose turn came and streams leader changes to Observe. */
void concurrency_service_applied(struct api *api);
/* /etcdserverpb.Receipt/GetReceipt, GetConsistencyProof and /etcdserverpb.Maintenance/TxStatus
 * (lskvserverpb messages, DESIGN.md Appendix A). */
size_t receipt_service_methods(struct api *api, struct grpc_method *m);
/* etcdserverpb.Auth (api/auth_service.c): every method, simple tokens. */
size_t auth_service_methods(struct api *api, struct grpc_method *m);

#endif
