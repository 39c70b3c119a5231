/* Whole-file reads and durable writes, the way every module that keeps a
 * small file (certificates, keys, ids, ledger chunks) needs them. */
#ifndef LSKV_COMMON_FILE_H
#define LSKV_COMMON_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Reads the whole file into a malloc'ed buffer (caller frees) with a NUL
 * after the *len bytes, so text can be used as a string.
 * Errors: negated errno, LSKV_ENOMEM; errmsg says which file. */
int file_read_all(const char *path, uint8_t **buf, size_t *len, char *errmsg);

/* Replaces path with data so that a crash leaves either the old file or the
 * whole new one: writes path.tmp with mode (0600, 0644), fsyncs it, renames
 * it over path and fsyncs the directory. Errors: negated errno. */
int file_write_durable(const char *path, const void *data, size_t len, unsigned mode,
                       char *errmsg);

/* fsync of a directory (after create, rename). Returns 0 or negated errno. */
int file_fsync_dir(const char *dir);

#endif
