/* The raft directory as files: which segment holds an entry (for messages),
 * and the check of the whole directory before libraft may change it.
 *
 * libraft 0.15's loader changes the directory it loads (it truncates and
 * renames open segments, removes empty ones; a start writes metadata), so a
 * start that would be refused on a tampered log must find out first:
 * raftdir_verify loads a shadow of the directory (closed segments and
 * snapshots hard-linked, read only; open segments and metadata copied) with
 * libraft's own loader on a private loop, and checks every sealed entry
 * there as apply would (docs/entry-format.md: framing, place, chain,
 * authentication) and the newest snapshot against the name libraft loads it
 * under. Nothing in the real directory is opened for writing. */
#ifndef LSKV_CONSENSUS_RAFTDIR_H
#define LSKV_CONSENSUS_RAFTDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/node.h"

struct raftdir_info {
    bool empty;              /* no raft state yet (a new node) */
    uint64_t snapshot_index; /* 0 if none */
    uint64_t last_index;     /* last entry in the log (or the snapshot's) */
    uint64_t commands;       /* command entries checked */
    uint64_t term;           /* raft's stored current term (metadata) */
};

/* Writes "<dir>/<first>-<last>" for the closed segment holding index, else
 * "<dir>/open-*". */
void raftdir_segment_of(const char *dir, uint64_t index, char *out, size_t size);

/* A check of the newest snapshot's plaintext (the state machine's bytes)
 * before anything is opened: the state machine checks what binds it to
 * other files (the ledger position). Returns 0 or an error with errmsg
 * saying why; raftdir adds the snapshot's file name. */
struct raftdir_snapshot_check {
    int (*check)(void *arg, const uint8_t *plain, size_t len, char *errmsg);
    void *arg;
};

/* Checks config->dir as described above (dir, data_key, cluster_id,
 * member_id, peer_address and key_epoch_size are used), and the snapshot
 * with snapshot_check when given (may be NULL).
 * Errors: LSKV_ECORRUPT / LSKV_EFORMAT (errmsg names the file or raft entry
 * and the reason), LSKV_EIO (libraft could not load it), negated errno,
 * LSKV_ENOMEM. */
int raftdir_verify(const struct consensus_config *config,
                   const struct raftdir_snapshot_check *snapshot_check,
                   struct raftdir_info *out, char *errmsg);

#endif
