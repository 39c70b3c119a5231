/* Rollback probe messages and judgement: see probe.h. */
#include "consensus/probe.h"

#include <inttypes.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"

static const uint8_t req_magic[4] = {'L', 'S', 'K', 'Q'};
static const uint8_t reply_magic[4] = {'L', 'S', 'K', 'A'};
enum { PROBE_VERSION = 1, F_RUNNING = 1, F_LEADER = 2, F_REMOVED = 4 };

void probe_request_encode(uint8_t out[PROBE_REQUEST_BYTES])
{
    memcpy(out, req_magic, sizeof req_magic);
    out[4] = PROBE_VERSION;
}

int probe_request_decode(const uint8_t *buf, size_t len)
{
    if (len != PROBE_REQUEST_BYTES || memcmp(buf, req_magic, sizeof req_magic) != 0 ||
        buf[4] != PROBE_VERSION)
        return LSKV_ECORRUPT;
    return 0;
}

void probe_reply_encode(const struct probe_reply *r, uint8_t out[PROBE_REPLY_BYTES])
{
    memcpy(out, reply_magic, sizeof reply_magic);
    out[4] = PROBE_VERSION;
    out[5] = (uint8_t)((r->running ? F_RUNNING : 0) | (r->leader ? F_LEADER : 0) |
                       (r->removed ? F_REMOVED : 0));
    put_u64be(out + 6, r->leader_id);
    put_u64be(out + 14, r->term);
    put_u64be(out + 22, r->applied_index);
    put_u64be(out + 30, r->match_index);
}

int probe_reply_decode(const uint8_t *buf, size_t len, struct probe_reply *out)
{
    if (len != PROBE_REPLY_BYTES || memcmp(buf, reply_magic, sizeof reply_magic) != 0 ||
        buf[4] != PROBE_VERSION || (buf[5] & ~(F_RUNNING | F_LEADER | F_REMOVED)) != 0)
        return LSKV_ECORRUPT;
    struct probe_reply r = {
        .running = (buf[5] & F_RUNNING) != 0,
        .leader = (buf[5] & F_LEADER) != 0,
        .leader_id = get_u64be(buf + 6),
        .term = get_u64be(buf + 14),
        .applied_index = get_u64be(buf + 22),
        .match_index = get_u64be(buf + 30),
        .removed = (buf[5] & F_REMOVED) != 0,
    };
    if ((r.leader && !r.running) || (!r.leader && r.match_index != 0))
        return LSKV_ECORRUPT;
    *out = r;
    return 0;
}

bool probe_says_removed(const struct probe_reply *r, uint64_t applied)
{
    return r->removed && r->applied_index >= applied;
}

int probe_judge(const struct probe_self *self, uint64_t from, const struct probe_reply *r,
                char *errmsg)
{
    if (r->leader && r->removed) {
        errmsg_printf(errmsg, "the leader, member %016" PRIx64 " (term %" PRIu64 "), no longer "
                      "lists this member", from, r->term);
        return LSKV_EREMOVED;
    }
    if (!r->leader || r->match_index == 0)
        return 0;
    if (r->match_index > self->last_index) {
        errmsg_printf(errmsg, "its raft log ends at index %" PRIu64 " (term %" PRIu64 ") but the "
                      "leader, member %016" PRIx64 " (term %" PRIu64 ", applied index %" PRIu64
                      "), holds this member's acknowledgement of entries up to index %" PRIu64,
                      self->last_index, self->term, from, r->term, r->applied_index,
                      r->match_index);
        return LSKV_ECORRUPT;
    }
    if (r->term > self->term) {
        errmsg_printf(errmsg, "it stored term %" PRIu64 " but the leader, member %016" PRIx64
                      ", holds this member's acknowledgement (up to index %" PRIu64 ") in term %"
                      PRIu64, self->term, from, r->match_index, r->term);
        return LSKV_ECORRUPT;
    }
    return 0;
}

bool probe_enough(size_t n_members, size_t answered, bool leader_answered, bool bound_passed)
{
    if (leader_answered || answered + 1 >= n_members)
        return true;
    return bound_passed && (answered + 1) * 2 > n_members;
}
