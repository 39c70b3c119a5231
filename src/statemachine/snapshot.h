/* The state machine's snapshot: a container of sections, so that later
 * state (leases, members, auth) adds a section, not a format.
 * docs/snapshot-format.md has the bytes; all integers big endian:
 *
 *   magic "LSKVSMSN" | u32 version (SM_SNAPSHOT_VERSION) | u32 n
 *   n x ( u32 section id | u64 length | bytes )
 *
 * Ids strictly increase (so each appears once); nothing follows the last.
 * The consensus layer seals the whole buffer and binds it to the raft index,
 * term and entry chain it covers (docs/entry-format.md). */
#ifndef LSKV_STATEMACHINE_SNAPSHOT_H
#define LSKV_STATEMACHINE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SM_SNAPSHOT_VERSION 2

enum sm_section {
    SM_SECTION_POSITION = 1, /* ledger position: u64 leaves | root[32] (zero when empty) */
    SM_SECTION_KV = 2,       /* kvstore_snapshot (docs/snapshot-format.md) */
    SM_SECTION_LEASES = 3,   /* reserved for the lease table */
    SM_SECTION_MEMBERS = 4,  /* published member attributes (member_table.h) */
    SM_SECTION_AUTH = 5,     /* users, roles, auth revision (auth/authstore.h) */
    SM_SECTION_MAX = 5,
};

struct sm_sections {
    const uint8_t *data[SM_SECTION_MAX + 1]; /* indexed by id; NULL: absent */
    size_t len[SM_SECTION_MAX + 1];
};

/* Encodes the present sections of s into a malloc'ed buffer.
 * Errors: LSKV_ENOMEM. */
int sm_snapshot_encode(const struct sm_sections *s, uint8_t **out, size_t *out_len);
/* Splits buf into sections (pointers into buf).
 * Errors: LSKV_ECORRUPT (bad magic, lengths, order, duplicates),
 *         LSKV_EFORMAT (another version, or a section id this build does
 *         not know: a newer lskvd wrote it). */
int sm_snapshot_decode(const uint8_t *buf, size_t len, struct sm_sections *out);

#endif
