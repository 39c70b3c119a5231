/* The rollback probe's messages and judgement (consensus/probe.h). */
#include <string.h>

#include "common/err.h"
#include "consensus/probe.h"
#include "runner.h"

TEST(probe, request_round_trip)
{
    uint8_t buf[PROBE_REQUEST_BYTES];
    probe_request_encode(buf);
    ASSERT_EQ(probe_request_decode(buf, sizeof buf), 0);
    ASSERT_EQ(probe_request_decode(buf, sizeof buf - 1), LSKV_ECORRUPT);
    buf[4] = 2; /* another version */
    ASSERT_EQ(probe_request_decode(buf, sizeof buf), LSKV_ECORRUPT);
}

TEST(probe, reply_round_trip_and_refusals)
{
    struct probe_reply r = {.running = true, .leader = true, .leader_id = 7, .term = 9,
                            .applied_index = 1000, .match_index = 990}, got;
    uint8_t buf[PROBE_REPLY_BYTES];
    probe_reply_encode(&r, buf);
    ASSERT_EQ(probe_reply_decode(buf, sizeof buf, &got), 0);
    ASSERT(got.running && got.leader);
    ASSERT_EQ(got.leader_id, 7);
    ASSERT_EQ(got.term, 9);
    ASSERT_EQ(got.applied_index, 1000);
    ASSERT_EQ(got.match_index, 990);
    ASSERT_EQ(probe_reply_decode(buf, sizeof buf - 1, &got), LSKV_ECORRUPT);
    /* A match index from a member that does not lead: not a reply. */
    struct probe_reply follower = r;
    follower.leader = false;
    probe_reply_encode(&follower, buf);
    ASSERT_EQ(probe_reply_decode(buf, sizeof buf, &got), LSKV_ECORRUPT);
    /* Leading without running; unknown flags. */
    probe_reply_encode(&r, buf);
    buf[5] = 2;
    ASSERT_EQ(probe_reply_decode(buf, sizeof buf, &got), LSKV_ECORRUPT);
    buf[5] = 8;
    ASSERT_EQ(probe_reply_decode(buf, sizeof buf, &got), LSKV_ECORRUPT);
    /* The removed flag round-trips. */
    r.removed = true;
    probe_reply_encode(&r, buf);
    ASSERT_EQ(probe_reply_decode(buf, sizeof buf, &got), 0);
    ASSERT(got.removed && got.leader);
    r.removed = false;
    probe_reply_encode(&r, buf);
    memcpy(buf, "LSKQ", 4);
    buf[5] = 3;
    ASSERT_EQ(probe_reply_decode(buf, sizeof buf, &got), LSKV_ECORRUPT);
}

TEST(probe, judge)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct probe_self self = {.last_index = 500, .term = 4};
    struct probe_reply leader = {.running = true, .leader = true, .leader_id = 3, .term = 4,
                                 .applied_index = 800, .match_index = 500};
    /* Acknowledged exactly what it holds: fine, however far the commit is. */
    ASSERT_EQ(probe_judge(&self, 3, &leader, errmsg), 0);
    /* Acknowledged more than the log holds: rolled back, with the numbers. */
    leader.match_index = 501;
    ASSERT_EQ(probe_judge(&self, 3, &leader, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "ends at index 500") != NULL);
    ASSERT(strstr(errmsg, "up to index 501") != NULL);
    ASSERT(strstr(errmsg, "0000000000000003") != NULL);
    /* Acknowledged in a term above the one it stored: rolled back. */
    leader.match_index = 10;
    leader.term = 5;
    ASSERT_EQ(probe_judge(&self, 3, &leader, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "stored term 4") != NULL);
    /* The leader knows nothing of it in its term: nothing to tell. */
    leader.match_index = 0;
    ASSERT_EQ(probe_judge(&self, 3, &leader, errmsg), 0);
    /* A follower's view, however far ahead, proves nothing (a lag looks the same). */
    struct probe_reply follower = {.running = true, .leader_id = 3, .term = 40,
                                   .applied_index = 100000};
    ASSERT_EQ(probe_judge(&self, 2, &follower, errmsg), 0);
    /* Removed: the leader's word counts, a follower's not (it may not have
     * applied the MemberAdd of a member that joined just now). */
    follower.removed = true;
    ASSERT_EQ(probe_judge(&self, 2, &follower, errmsg), 0);
    leader.removed = true;
    ASSERT_EQ(probe_judge(&self, 3, &leader, errmsg), LSKV_EREMOVED);
    ASSERT(strstr(errmsg, "no longer lists this member") != NULL);
}

TEST(probe, says_removed_at_or_after_what_the_member_applied)
{
    /* A member at applied index 700 whose membership lists itself. */
    struct probe_reply r = {.running = true, .leader_id = 3, .term = 7, .applied_index = 700,
                            .removed = true};
    ASSERT(probe_says_removed(&r, 700));
    ASSERT(probe_says_removed(&r, 650));
    /* Any member's word, leader or not: it is about committed entries. */
    r.leader = true;
    ASSERT(probe_says_removed(&r, 700));
    /* A membership older than this member's own (a member that has not
     * applied its MemberAdd yet): proves nothing. */
    ASSERT(!probe_says_removed(&r, 701));
    r.removed = false;
    ASSERT(!probe_says_removed(&r, 10));
}

TEST(probe, enough)
{
    /* 3 members: the leader's answer suffices; both others' too. */
    ASSERT(probe_enough(3, 1, true, false));
    ASSERT(probe_enough(3, 2, false, false));
    /* One non-leader: a majority, but only after the bound. */
    ASSERT(!probe_enough(3, 1, false, false));
    ASSERT(probe_enough(3, 1, false, true));
    /* Nobody: wait, however long. */
    ASSERT(!probe_enough(3, 0, false, true));
    /* 5 members: 2 answers make a majority with this one, 1 does not. */
    ASSERT(!probe_enough(5, 1, false, true));
    ASSERT(probe_enough(5, 2, false, true));
    ASSERT(!probe_enough(5, 3, false, false));
    ASSERT(probe_enough(5, 4, false, false));
}
