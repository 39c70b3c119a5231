/* The plain files of a data directory, and the rule that binds them.
 *
 * A data dir is *fresh* (a new cluster may be bootstrapped in it) only when
 * it is missing or empty. In any other data dir nothing that bootstrap makes
 * is ever made again: ids, data.key, ledger.secret, identity/, the raft/,
 * ledger/ and engine/ directories and raft_uv's metadata1 or metadata2 must
 * all be there, and a missing one is refused with "<path>: missing in a non-empty data dir" (re-making
 * it would start a new history, or a new key, over an old one).
 *
 * ids holds the cluster and member ids and a tag over them,
 *   cluster_id=<16 hex>\nmember_id=<16 hex>\ntag=<64 hex>\n
 * tag = HMAC-SHA256(K, "cluster_id=..\nmember_id=..\n") with
 * K = HMAC-SHA256(data key, "lskv-datadir-ids-v1"), so a changed id (or
 * another data.key) is refused and named, instead of showing up later as
 * every record failing its check.
 *
 * One process at a time: datadir_open takes an exclusive fcntl() write lock
 * on <data-dir>/lock before anything else in the dir is read or changed, and
 * the process holds it until it exits. The lock file is empty and never
 * written (it is made once, when missing), so a refused start changes no
 * byte; the freshness rule ignores it, so an empty dir with only a lock is
 * still fresh (and so is one with only a restore/ dir: a restored member
 * bootstraps a new cluster, then imports it). The holder's pid comes from the kernel (F_GETLK). */
#ifndef LSKV_CONFIG_DATADIR_H
#define LSKV_CONFIG_DATADIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DATADIR_KEY_BYTES 32
#define DATADIR_TAG_BYTES 32
/* "cluster_id=" 16 "\nmember_id=" 16 "\ntag=" 64 "\n" */
#define DATADIR_IDS_TEXT_BYTES 124
#define DATADIR_PATH_MAX 4096
#define DATADIR_LOCK_FILE "lock" /* ignored by the freshness rule */
/* Ignored by the freshness rule too: a backup `lskvctl snapshot restore`
 * left for the first start (statemachine/restore.h). */
#define DATADIR_RESTORE_DIR "restore"

struct datadir {
    char path[DATADIR_PATH_MAX];
    bool fresh;  /* missing or empty when opened: bootstrap may make files */
    int lock_fd; /* holds the data dir's lock; -1 when not open */
};

struct datadir_ids {
    uint64_t cluster_id, member_id; /* never 0 */
};

/* Opens the data dir at path, making it (0700) when missing, locks it for
 * this process and decides whether it is fresh. On error nothing is held.
 * Errors: -EAGAIN ("<path>: locked by another lskvd (pid N)"), other negated
 * errno, LSKV_EINVAL (path too long). */
int datadir_open(struct datadir *d, const char *path, char *errmsg);
/* Releases the lock (exit releases it too). */
void datadir_close(struct datadir *d);

/* out = d's path + "/" + name. Errors: LSKV_EINVAL (too long). */
int datadir_path(const struct datadir *d, const char *name, char *out, size_t size,
                 char *errmsg);

/* In a data dir that is not fresh, checks that every file and directory
 * bootstrap makes exists, naming the first missing one. A fresh dir passes.
 * Errors: LSKV_ECORRUPT (missing), negated errno (cannot stat). */
int datadir_check_complete(const struct datadir *d, char *errmsg);

/* Loads the secret file name (exactly len bytes, mode 0600), making it only
 * in a fresh dir. *created (may be NULL) says which happened.
 * Errors: LSKV_ECORRUPT (missing in a non-empty dir, wrong size or mode),
 * negated errno, LSKV_EIO. */
int datadir_load_secret(const struct datadir *d, const char *name, uint8_t *out,
                        size_t len, bool *created, char *errmsg);

/* Loads ids and checks its tag under data_key; in a fresh dir without ids
 * writes fresh_ids (the ids etcd derives from the flags, config/members.h)
 * with their tag. A dir that has ids keeps them, whatever the flags say
 * now (as etcd ignores --initial-cluster once it has a data dir).
 * Errors: LSKV_ECORRUPT (missing in a non-empty dir, malformed, tag does not
 * match), LSKV_EINVAL (a fresh id is 0), negated errno, LSKV_EIO. */
int datadir_load_ids(const struct datadir *d, const uint8_t data_key[DATADIR_KEY_BYTES],
                     const struct datadir_ids *fresh_ids, struct datadir_ids *ids,
                     bool *created, char *errmsg);

/* --- The ids file format (pure; fuzzed by tests/fuzz/fuzz_ids.c) --------- */

/* tag of ids under data_key. Errors: LSKV_EIO. */
int datadir_ids_tag(const uint8_t data_key[DATADIR_KEY_BYTES], const struct datadir_ids *ids,
                    uint8_t tag[DATADIR_TAG_BYTES]);
/* Writes the text (DATADIR_IDS_TEXT_BYTES, no NUL) into out. */
void datadir_ids_format(const struct datadir_ids *ids, const uint8_t tag[DATADIR_TAG_BYTES],
                        char out[DATADIR_IDS_TEXT_BYTES]);
/* Parses exactly the format above (lower-case hex, ids not 0, nothing more).
 * Errors: LSKV_ECORRUPT. */
int datadir_ids_parse(const char *text, size_t len, struct datadir_ids *ids,
                      uint8_t tag[DATADIR_TAG_BYTES]);

#endif
