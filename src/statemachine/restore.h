/* Restoring a backup (statemachine/backup.h) into a new cluster.
 *
 * `lskvctl snapshot restore` checks a backup and leaves it in a new data
 * dir as restore/ (docs/backup-format.md, "Restore"): the file, the source's
 * data key that opens it, and the ids the new member must have. lskvd
 * checks it again at start (restore_source_open), bootstraps a new cluster
 * as usual, and its founder proposes one RESTORE command naming the file's
 * SHA-256 and the source's cluster and ledger position. Every member
 * applies it by importing its own copy (restore_import): the records,
 * re-sealed under the new cluster id, then the key index and lease table,
 * so the store has every key and revision the source had, and the ledger's
 * first entry is the RESTORE command itself, which records where the state
 * came from. A replay of the raft log re-imports the same file (records are
 * immutable, so a second put is the same bytes); the file is kept. */
#ifndef LSKV_STATEMACHINE_RESTORE_H
#define LSKV_STATEMACHINE_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "kv/kvstore.h"
#include "lease/lessor.h"
#include "proto/lskvcommand.pb-c.h"
#include "statemachine/backup.h"
#include "storage/recstore.h"

#define RESTORE_DIR "restore"
#define RESTORE_BACKUP "restore/backup.lskv"
#define RESTORE_KEY "restore/source.key"
#define RESTORE_IDS "restore/ids"   /* datadir_ids text, untagged: tag=0..0 */
#define RESTORE_DONE "restore/done" /* the RESTORE command was applied */
#define RESTORE_PATH_MAX 4096

/* A member's copy of the backup, checked. */
struct restore_source {
    char path[RESTORE_PATH_MAX];
    uint8_t key[BACKUP_KEY_BYTES];      /* the source's data key (wiped by close) */
    uint8_t sha256[32];                 /* the file's trailer */
    struct backup_header header;
    struct backup_summary summary;
    uint64_t ledger_size;               /* the snapshot's POSITION */
    uint8_t ledger_root[32];
};

/* Reads and checks the whole backup at path with key (copied) into *s;
 * progress (may be NULL) is called as backup_read calls it. Errors: those
 * of backup_read (errmsg says why), negated errno (open, stat). */
int restore_source_open(struct restore_source *s, const char *path,
                        const uint8_t key[BACKUP_KEY_BYTES],
                        void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg,
                        char *errmsg);
void restore_source_close(struct restore_source *s);

/* The RESTORE command's request for s, in a (fields borrowed from s). */
void restore_command(const struct restore_source *s, Lskvcommandpb__Restore *out);

/* Applies a RESTORE command: imports s (may be NULL: this member has no
 * copy) into an empty store. *done says whether the store now holds the
 * backup; a second RESTORE of the same backup changes nothing.
 * Errors (deterministic, the same on every member): LSKV_EINVAL (the store
 * is not empty and was not restored from this backup). Errors that are this
 * member's alone, and stop it: LSKV_EIO (no copy, another file, the file
 * no longer checks out, a record will not seal), LSKV_ENOMEM. */
int restore_import(const struct restore_source *s, const Lskvcommandpb__Restore *cmd,
                   kvstore *kv, recstore *rs, lessor *leases, bool *done, char *errmsg);

#endif
