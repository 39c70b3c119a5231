/* JSON <-> protobuf, driven by protobuf-c message descriptors, in the shape
 * etcd 3.4's grpc-gateway uses (golang/protobuf jsonpb with OrigName and
 * without EmitDefaults):
 *
 *   - field names are the .proto names ("create_revision", "dbSize", "ID");
 *     on input the lowerCamelCase form is accepted too;
 *   - int64/uint64 (all 64-bit kinds) are JSON strings on output; on input a
 *     number or a quoted number; 32-bit integers are JSON numbers;
 *   - bytes are standard base64 with padding (input: Go's decoder, which
 *     skips CR and LF);
 *   - enums are value names on output; names or numbers on input;
 *   - zero values, empty repeated fields and absent messages are omitted on
 *     output, except a set oneof member, which is always written;
 *   - unknown input fields are ignored, null means "absent", the last of
 *     duplicate keys wins, bytes after the first JSON value are ignored, an
 *     empty body is an empty message;
 *   - strings are escaped as Go's encoding/json does (<, >, & as \u00XX).
 *
 * Errors carry Go's texts where it matters to clients ("illegal base64 data
 * at input byte 3", "json: cannot unmarshal string into Go value of type
 * bool", "unexpected EOF", "unknown value \"X\" for enum pkg.Type"). */
#ifndef LSKV_HTTP_JSON_H
#define LSKV_HTTP_JSON_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses the JSON text json[0..len) as a message of type desc and packs it
 * into *out (malloc'd; *out_len bytes, *out is never NULL on success).
 * Errors: LSKV_EINVAL (errmsg has the client-facing text), LSKV_ETOODEEP
 * (messages nested deeper than PBDEPTH_MAX, or JSON deeper than jansson
 * parses, within Go's 10000 levels), LSKV_ENOMEM. */
int json_to_pb(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
               uint8_t **out, size_t *out_len, char *errmsg);

/* Renders the packed message pb[0..len) of type desc as JSON into *out
 * (malloc'd, NUL-terminated, *out_len bytes without the NUL).
 * Errors: LSKV_ECORRUPT (pb does not decode), LSKV_ENOMEM. */
int json_from_pb(const ProtobufCMessageDescriptor *desc, const uint8_t *pb, size_t len,
                 char **out, size_t *out_len);

/* Splits a sequence of JSON values (a streaming gateway body: values
 * concatenated or separated by white space, as Go's json.Decoder reads
 * them). From offset pos, skips white space; false when nothing is left.
 * Otherwise [*start, *end) is the next value, or for bytes that are not
 * JSON a span that json_to_pb refuses with Go's text (an unterminated
 * value runs to the end); *end > pos. Never reads past len. open_end (may
 * be NULL) says whether more bytes could still extend the span: an
 * unterminated container or string, or a literal that touches len. */
bool json_next_value(const char *p, size_t len, size_t pos, size_t *start, size_t *end,
                     bool *open_end);

/* Go's encoding/base64 StdEncoding decoder (padding required, CR/LF
 * skipped). out has room for len / 4 * 3 + 3 bytes. Returns the decoded
 * length, or -1 with *bad_at set to Go's "illegal base64 data at input byte
 * N" offset. */
long json_base64_decode(const char *in, size_t len, uint8_t *out, size_t *bad_at);

/* Appends s[0..len) as a quoted JSON string, escaped as Go does; invalid
 * UTF-8 becomes U+FFFD. Growable buffer helpers shared with the gateway. */
struct json_buf {
    char *p;
    size_t len, cap;
    int err; /* sticky: LSKV_ENOMEM */
};
void json_buf_put(struct json_buf *b, const char *s, size_t len);
void json_buf_puts(struct json_buf *b, const char *s);
void json_buf_string(struct json_buf *b, const char *s, size_t len);

#endif
