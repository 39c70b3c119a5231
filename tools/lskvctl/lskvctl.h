/* lskvctl: what etcdctl cannot do (DESIGN.md section 6).
 *
 * Exit codes: 0 success / clean; 1 a check failed (verification, audit);
 * 2 usage or I/O error; 3 not implemented yet. Errors print
 * "lskvctl: <command>: <message>" on stderr. */
#ifndef LSKVCTL_H
#define LSKVCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "identity/cert.h"
#include "proto/lskvserver.pb-c.h"

enum { EXIT_CHECK_FAILED = 1, EXIT_USAGE = 2, EXIT_NOT_IMPLEMENTED = 3 };

void lskvctl_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes js (taken, freed) and a newline to out_path, or to stdout when NULL.
 * Returns 0 or EXIT_USAGE (the file could not be written; said on stderr). */
int lskvctl_emit(const char *cmd, const char *out_path, char *js);
/* Value of --name in argv (NULL if absent); marks consumed entries NULL. */
const char *lskvctl_opt(int argc, char **argv, const char *name);
bool lskvctl_flag(int argc, char **argv, const char *name);
/* First positional argument left (not starting with --), or NULL. */
const char *lskvctl_positional(int argc, char **argv);
int lskvctl_read_secret(const char *path, uint8_t out[32], char *errmsg);

/* One unary gRPC call (blocking; client/grpc_client.h on a private loop).
 * On 0 the call completed: grpc_status says how; msg (malloc'ed, caller
 * frees) is the response message when grpc_status is 0.
 * Errors: LSKV_EINVAL (bad URL), LSKV_EIO (connection or protocol failure;
 * errmsg says why), LSKV_ENOMEM. */
struct lskvctl_reply {
    int grpc_status;          /* -1 when none arrived */
    char grpc_message[160];   /* decoded */
    uint8_t *msg;
    size_t len;
};
int lskvctl_unary(const char *url, const char *path, const uint8_t *req, size_t req_len,
                  struct lskvctl_reply *out, char *errmsg);

/* Reads and verifies an anchor file (with svc, when not NULL); root gets
 * its root. *out lives in a. Errors: as anchor_from_json / anchor_verify,
 * negated errno. */
int lskvctl_load_anchor(const char *path, const cert_service *svc, struct arena *a,
                        Lskvserverpb__SignedRoot **out, uint8_t root[32], char *errmsg);
/* GetConsistencyProof(from, to) against url; *out: free_unpacked.
 * Errors: LSKV_ENOTFOUND, LSKV_EIO, as lskvctl_unary. */
int lskvctl_consistency(const char *url, uint64_t from, uint64_t to,
                        Lskvserverpb__GetConsistencyProofResponse **out, char *errmsg);

int cmd_anchor_get(int argc, char **argv);
int cmd_receipt_get(int argc, char **argv);
int cmd_tx_status(int argc, char **argv);
int cmd_ledger_show(int argc, char **argv);
int cmd_ledger_audit(int argc, char **argv);
int cmd_ledger_synth(int argc, char **argv);
int cmd_receipt_verify(int argc, char **argv);
int cmd_attestation_verify(int argc, char **argv);
int cmd_snapshot_status(int argc, char **argv);
int cmd_snapshot_restore(int argc, char **argv);

#endif
