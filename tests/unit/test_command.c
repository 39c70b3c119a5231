/* Tests for statemachine/command.c (the command envelope and its table) and
 * statemachine/snapshot.c (the sectioned snapshot container). */
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/err.h"
#include "runner.h"
#include "statemachine/command.h"
#include "statemachine/snapshot.h"

TEST(command, wrap_keeps_the_clients_bytes_and_meta)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key = (ProtobufCBinaryData){.data = (uint8_t *)"k", .len = 1};
    req.value = (ProtobufCBinaryData){.data = (uint8_t *)"value", .len = 5};
    uint8_t body[64];
    size_t n = etcdserverpb__put_request__pack(&req, body);
    struct command_meta meta = {.request_id = 300, .origin_member = 0xabcdef, .username = "root",
                                .auth_revision = 7};
    uint8_t *cmd;
    size_t len;
    ASSERT_EQ(command_wrap(COMMAND_PUT, &meta, body, n, &cmd, &len), 0);
    /* the body's bytes stand unchanged at the end of the envelope */
    ASSERT_MEM_EQ(cmd + len - n, body, n);
    struct arena a;
    arena_init(&a);
    Lskvcommandpb__Command *c = NULL;
    ASSERT_EQ(command_decode(cmd, len, &a, &c), 0);
    ASSERT_EQ(c->op_case, COMMAND_PUT);
    ASSERT_EQ(c->request_id, 300);
    ASSERT_EQ(c->origin_member, 0xabcdef);
    ASSERT_STR_EQ(c->username, "root");
    ASSERT_EQ(c->auth_revision, 7);
    const Etcdserverpb__PutRequest *p = (const Etcdserverpb__PutRequest *)command_request(c);
    ASSERT(p != NULL);
    ASSERT_EQ(p->value.len, 5);
    ASSERT_MEM_EQ(p->value.data, "value", 5);
    /* command_encode packs the message itself: the same bytes */
    uint8_t *cmd2;
    size_t len2;
    ASSERT_EQ(command_encode(COMMAND_PUT, &meta, &req.base, &cmd2, &len2), 0);
    ASSERT_EQ(len2, len);
    ASSERT_MEM_EQ(cmd2, cmd, len);
    free(cmd2);
    free(cmd);
    arena_close(&a);
}

TEST(command, bad_envelopes_are_corrupt)
{
    struct arena a;
    arena_init(&a);
    Lskvcommandpb__Command *c = NULL;
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff};
    ASSERT_EQ(command_decode(garbage, sizeof garbage, &a, &c), LSKV_ECORRUPT);
    const uint8_t no_op[] = {0x08, 0x01}; /* request_id = 1, no op */
    ASSERT_EQ(command_decode(no_op, sizeof no_op, &a, &c), LSKV_ECORRUPT);
    const uint8_t bad_body[] = {0x52, 0x02, 0xff, 0xff}; /* put = 10 with garbage */
    ASSERT_EQ(command_decode(bad_body, sizeof bad_body, &a, &c), LSKV_ECORRUPT);
    uint8_t *cmd;
    size_t len;
    ASSERT_EQ(command_wrap((enum command_op)99, NULL, NULL, 0, &cmd, &len), LSKV_EINVAL);
    arena_close(&a);
}

TEST(command, every_op_of_the_proto_has_one_row)
{
    const ProtobufCMessageDescriptor *d = &lskvcommandpb__command__descriptor;
    unsigned ops = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        ops++;
        const struct command_kind *k = command_kind_of(f->id);
        ASSERT(k != NULL);
        ASSERT_EQ(k->op, f->id);
        /* message ops name the proto's type; byte ops have none; RESTORE
         * alone is applied by the state machine itself (it reads a file) */
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            ASSERT(k->request == f->descriptor &&
                   (k->apply != NULL) == (k->op != COMMAND_RESTORE));
        else
            ASSERT(k->request == NULL);
    }
    ASSERT_EQ(ops, 25); /* 13 store, lease and member ops, 11 auth ops, restore */
}

TEST(sm_snapshot, sections_round_trip_and_are_checked)
{
    struct sm_sections s = {0};
    uint8_t pos[40] = {1, 2, 3};
    s.data[SM_SECTION_POSITION] = pos;
    s.len[SM_SECTION_POSITION] = sizeof pos;
    s.data[SM_SECTION_KV] = (const uint8_t *)"kv";
    s.len[SM_SECTION_KV] = 2;
    uint8_t *buf;
    size_t len;
    ASSERT_EQ(sm_snapshot_encode(&s, &buf, &len), 0);
    ASSERT_EQ(len, 16 + 12 + 40 + 12 + 2);
    ASSERT_MEM_EQ(buf, "LSKVSMSN", 8);
    struct sm_sections t;
    ASSERT_EQ(sm_snapshot_decode(buf, len, &t), 0);
    ASSERT_EQ(t.len[SM_SECTION_POSITION], 40);
    ASSERT_MEM_EQ(t.data[SM_SECTION_POSITION], pos, 40);
    ASSERT_MEM_EQ(t.data[SM_SECTION_KV], "kv", 2);
    ASSERT(t.data[SM_SECTION_LEASES] == NULL);
    for (size_t cut = 0; cut < len; cut++)
        ASSERT_EQ(sm_snapshot_decode(buf, cut, &t), LSKV_ECORRUPT);
    buf[16 + 3] = 2; /* first section's id = 2 = the second's: out of order */
    ASSERT_EQ(sm_snapshot_decode(buf, len, &t), LSKV_ECORRUPT);
    buf[16 + 3] = 1;
    buf[16 + 12 + 40 + 3] = 60; /* a section this build does not know */
    ASSERT_EQ(sm_snapshot_decode(buf, len, &t), LSKV_EFORMAT);
    buf[16 + 12 + 40 + 3] = 2;
    buf[11] = 1; /* version 1 */
    ASSERT_EQ(sm_snapshot_decode(buf, len, &t), LSKV_EFORMAT);
    free(buf);
}
