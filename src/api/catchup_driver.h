/* Drives a member's catch-up after a raft snapshot it holds back
 * (statemachine/catchup.h): while consensus_restore_held says so, asks the
 * leader for what the held snapshot needs, one call at a time, feeds the
 * answers to catchup_take, and calls consensus_restore_done when the
 * restore is done. A member that is asked but has nothing yet, or a leader
 * that is not known, is asked again after a pause; what does not check is
 * fatal (fatal_cb). A held member that leads hands leadership to another
 * member first: it has nobody to ask. Progress is logged every few
 * seconds. */
#ifndef LSKV_API_CATCHUP_DRIVER_H
#define LSKV_API_CATCHUP_DRIVER_H

#include <uv.h>

#include "consensus/node.h"
#include "statemachine/fsm.h"

struct catchup_driver;

#define CATCHUP_DRIVER_MAX_MEMBERS 16

/* Starts the driver's timer. members: the voters (this one may be among
 * them), the candidates to lead while this one is held.
 * Errors: LSKV_ENOMEM, libuv errors. */
int catchup_driver_start(uv_loop_t *loop, consensus_node *node, struct fsm *f,
                         const uint64_t *members, size_t n_members,
                         void (*fatal_cb)(void *arg, int code, const char *errmsg),
                         void *fatal_arg, struct catchup_driver **out);
/* Stops it (before the node closes); memory is released once the loop has
 * closed its timer and a call in flight has answered. NULL: no-op. */
void catchup_driver_stop(struct catchup_driver *d);

/* consensus_config.serve_call for the catch-up kinds (arg: the fsm). */
int catchup_driver_serve(void *arg, uint8_t kind, const uint8_t *req, size_t len,
                         uint8_t **reply, size_t *reply_len);
/* Whether kind is one of the catch-up calls. */
bool catchup_driver_owns(uint8_t kind);

#endif
