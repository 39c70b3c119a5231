/* A storage engine for tests that wraps a real one and lets the test act as
 * the hostile host: flip bits in stored values, swap two records, replay a
 * sealed value under another id, hide records, and fail reads or writes.
 * Same type as the real engine (storage/engine.h), so recstore cannot tell. */
#ifndef LSKV_TESTS_TAMPER_ENGINE_H
#define LSKV_TESTS_TAMPER_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/engine.h"

/* Wraps inner; if this returns 0, inner belongs to the tamper engine and
 * closing it closes inner. Errors: LSKV_ENOMEM. */
int tamper_engine_open(struct engine *inner, struct engine **out);

/* The following act directly on the inner engine's stored values (record ids
 * (main, sub), see recstore_make_id). Errors: LSKV_ENOTFOUND, LSKV_EIO. */
int tamper_flip_bit(struct engine *te, int64_t main, int64_t sub, size_t bit);
int tamper_swap(struct engine *te, int64_t a_main, int64_t a_sub, int64_t b_main,
                int64_t b_sub);
/* Stores the value of (from) under (to) as well: a replay. */
int tamper_copy(struct engine *te, int64_t from_main, int64_t from_sub, int64_t to_main,
                int64_t to_sub);
/* Reads the raw stored value (malloc'ed, the caller frees). */
int tamper_read_raw(struct engine *te, int64_t main, int64_t sub, uint8_t **val,
                    size_t *len);
/* Stores raw bytes under (main, sub). */
int tamper_write_raw(struct engine *te, int64_t main, int64_t sub, const uint8_t *val,
                     size_t len);

/* Makes get report (main, sub) as absent (hidden true) or present again. */
void tamper_hide(struct engine *te, int64_t main, int64_t sub, bool hidden);
/* Makes every batch_write fail with LSKV_EIO while on. */
void tamper_fail_writes(struct engine *te, bool on);
/* Makes every get fail with code (LSKV_EIO, LSKV_ECORRUPT); 0 turns it off. */
void tamper_fail_reads(struct engine *te, int code);
/* Number of get calls that reached the tamper engine. */
uint64_t tamper_gets(struct engine *te);

#endif
