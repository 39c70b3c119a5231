/* Fuzzes the JSON -> protobuf converter (http/json.c) with request bodies
 * as clients send them to the gateway: the first byte picks the message
 * type, the rest is the JSON text. Whatever converts must render back to
 * JSON and convert again to the same bytes (a round trip). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "http/json.h"
#include "proto/rpc.pb-c.h"

static const ProtobufCMessageDescriptor *const types[] = {
    &etcdserverpb__range_request__descriptor,
    &etcdserverpb__put_request__descriptor,
    &etcdserverpb__delete_range_request__descriptor,
    &etcdserverpb__txn_request__descriptor,
    &etcdserverpb__compaction_request__descriptor,
    &etcdserverpb__lease_time_to_live_request__descriptor,
    &etcdserverpb__alarm_request__descriptor,
    &etcdserverpb__member_add_request__descriptor,
    &etcdserverpb__watch_request__descriptor,
    &etcdserverpb__auth_role_grant_permission_request__descriptor,
    &etcdserverpb__status_response__descriptor,
    &etcdserverpb__txn_response__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const ProtobufCMessageDescriptor *d = types[data[0] % (sizeof types / sizeof types[0])];
    char errmsg[LSKV_ERRMSG_SIZE];
    uint8_t *pb = NULL;
    size_t len = 0;
    int rv = json_to_pb(d, (const char *)data + 1, size - 1, &pb, &len, errmsg);
    if (rv != 0) {
        if ((rv == LSKV_EINVAL || rv == LSKV_ETOODEEP) && errmsg[0] == '\0')
            abort(); /* every refusal says why */
        return 0;
    }
    char *text = NULL;
    size_t text_len = 0;
    if (json_from_pb(d, pb, len, &text, &text_len) != 0)
        abort(); /* we packed it: it must decode */
    uint8_t *pb2 = NULL;
    size_t len2 = 0;
    rv = json_to_pb(d, text, text_len, &pb2, &len2, errmsg);
    /* Strings with invalid UTF-8 cannot come from JSON; everything else
     * must survive the round trip. */
    if (rv != 0 || len2 != len || memcmp(pb, pb2, len) != 0)
        abort();
    free(pb);
    free(pb2);
    free(text);
    return 0;
}
