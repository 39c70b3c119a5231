/* How deep protobuf bytes nest messages, found without recursion.
 *
 * protobuf-c's unpack recurses once per nested message, so a request that
 * nests 100k messages in 600 KB overflows the stack. Every decoder of client
 * or log bytes checks the depth here first, on the raw bytes, in one pass
 * with a stack of at most max_depth frames. */
#ifndef LSKV_COMMON_PBDEPTH_H
#define LSKV_COMMON_PBDEPTH_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* The deepest request etcd can accept: a Txn nested --max-txn-ops (at most
 * 128) levels, two message levels each (TxnRequest, RequestOp), plus a
 * request and a compare at the bottom; with room to spare. */
#define PBDEPTH_MAX 300

/* Checks that buf, a message of type desc, nests at most max_depth messages
 * (desc itself is depth 1), counting length-delimited fields that desc's
 * descriptors declare as messages. Bytes that are malformed before the bound
 * is passed pass: unpack refuses them before it recurses that far.
 * Errors: LSKV_ETOODEEP. */
int pbdepth_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                  unsigned max_depth);

#endif
