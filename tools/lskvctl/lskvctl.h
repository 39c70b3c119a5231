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

enum { EXIT_CHECK_FAILED = 1, EXIT_USAGE = 2, EXIT_NOT_IMPLEMENTED = 3 };

void lskvctl_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Value of --name in argv (NULL if absent); marks consumed entries NULL. */
const char *lskvctl_opt(int argc, char **argv, const char *name);
bool lskvctl_flag(int argc, char **argv, const char *name);
/* First positional argument left (not starting with --), or NULL. */
const char *lskvctl_positional(int argc, char **argv);
int lskvctl_read_secret(const char *path, uint8_t out[32], char *errmsg);

int cmd_ledger_show(int argc, char **argv);
int cmd_ledger_audit(int argc, char **argv);
int cmd_ledger_synth(int argc, char **argv);
int cmd_receipt_verify(int argc, char **argv);

#endif
