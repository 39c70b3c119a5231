/* Fuzzes the streaming gateway body splitter (http/json.c
 * json_next_value) the way json_call.c uses it: the first byte picks the
 * request type (watch, lease keepalive), the rest is the body. Every span
 * must lie inside the input, move forward, and either convert or be
 * refused with a message; white space alone yields no span. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "http/json.h"
#include "proto/rpc.pb-c.h"

static const ProtobufCMessageDescriptor *const types[] = {
    &etcdserverpb__watch_request__descriptor,
    &etcdserverpb__lease_keep_alive_request__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const ProtobufCMessageDescriptor *d = types[data[0] % 2];
    const char *body = (const char *)data + 1;
    size_t len = size - 1, pos = 0, start = 0, end = 0;
    bool open_end = false;
    while (json_next_value(body, len, pos, &start, &end, &open_end)) {
        if (start < pos || end <= start || end > len || (open_end && end != len))
            abort();
        for (size_t i = pos; i < start; i++)
            if (strchr(" \t\r\n", body[i]) == NULL || body[i] == '\0')
                abort(); /* only white space is skipped */
        char errmsg[LSKV_ERRMSG_SIZE] = "";
        uint8_t *pb = NULL;
        size_t pb_len = 0;
        int rv = json_to_pb(d, body + start, end - start, &pb, &pb_len, errmsg);
        if ((rv == LSKV_EINVAL || rv == LSKV_ETOODEEP) && errmsg[0] == '\0')
            abort(); /* every refusal says why */
        free(pb);
        pos = end;
    }
    for (size_t i = pos; i < len; i++)
        if (strchr(" \t\r\n", body[i]) == NULL || body[i] == '\0')
            abort(); /* nothing but white space is left over */
    return 0;
}
