/* The catch-up exchange (statemachine/catchup.h) between two state machines
 * of one test process: what api/catchup_driver.c does over the network,
 * done in a loop, with a hook to forge the answers. Used by the unit tests
 * of catch-up and of consensus over raft_fixture. */
#ifndef LSKV_TESTS_CATCHUP_EXCHANGE_H
#define LSKV_TESTS_CATCHUP_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>

#include "statemachine/fsm.h"

/* May change a reply in place before the held member takes it. */
typedef void (*catchup_forge_fn)(uint8_t kind, uint8_t *reply, size_t len);

/* Runs held's catch-up (it holds a restore) against from (catchup_serve)
 * until done; forge may be NULL; *calls counts the answered requests.
 * Returns 0 when the restore is done, else what catchup_new, catchup_next
 * or catchup_take failed with (errmsg says why). A failing catchup_serve
 * aborts the test: the member asked is a healthy one here. */
int catchup_exchange(struct fsm *held, struct fsm *from, catchup_forge_fn forge,
                     unsigned *calls, char *errmsg);

/* A forge: the first ledger frame answered gets one byte flipped and its
 * frame checksum made right again (well formed, other content). */
void catchup_forge_ledger_frame(uint8_t kind, uint8_t *reply, size_t len);

#endif
