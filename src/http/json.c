/* Notes on the design.
 *
 * (1) Input: jansson parses the text; we walk the descriptor's fields, look
 *     each one up in the object (.proto name first, then lowerCamelCase),
 *     and fill a message allocated by protobuf-c's own layout
 *     (desc->sizeof_message, desc->message_init), with malloc'd strings,
 *     bytes, arrays and sub-messages; protobuf_c_message_pack produces the
 *     bytes and protobuf_c_message_free_unpacked frees the lot (it frees
 *     exactly what we allocated: defaults are static and left alone).
 * (2) Quoted numbers are parsed as Go's jsonpb does: the text between the
 *     quotes must be one JSON number (leading/trailing spaces allowed), and
 *     it must fit the field's Go type.
 * (3) Output: protobuf-c unpacks the bytes; we write fields in descriptor
 *     order (etcd's protos declare fields in number order, which is the
 *     order Go's structs and so jsonpb use).
 * (4) Nesting depth is bounded (MAX_DEPTH) on both paths: bad bytes are an
 *     error, never a stack overflow.
 * (5) Before jansson, go_json_check scans the first value as Go's
 *     json.Decoder does, so syntax errors carry Go's texts (the context:
 *     "looking for beginning of object key string", "after object key", ...,
 *     and quoteChar's quoting of the byte). Strings with invalid UTF-8 or
 *     lone surrogate escapes, which Go decodes to U+FFFD and jansson
 *     rejects, are rewritten with \ufffd escapes first. */
#include "http/json.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/pbdepth.h"

/* Messages, as on the gRPC path: etcd's deepest valid Txn fits. */
#define MAX_DEPTH PBDEPTH_MAX

/* A member of a message at a descriptor offset (void *: no alignment cast). */
static void *at(void *m, size_t off)
{
    return (char *)m + off;
}

static const void *cat(const void *m, size_t off)
{
    return (const char *)m + off;
}

/* ---- output buffer ---- */

static void buf_reserve(struct json_buf *b, size_t n)
{
    if (b->err || b->len + n + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->err = LSKV_ENOMEM;
        return;
    }
    b->p = p;
    b->cap = cap;
}

void json_buf_put(struct json_buf *b, const char *s, size_t len)
{
    buf_reserve(b, len);
    if (b->err)
        return;
    memcpy(b->p + b->len, s, len);
    b->len += len;
    b->p[b->len] = '\0';
}

void json_buf_puts(struct json_buf *b, const char *s)
{
    json_buf_put(b, s, strlen(s));
}

static void buf_putc(struct json_buf *b, char c)
{
    json_buf_put(b, &c, 1);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

void json_buf_string(struct json_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    buf_putc(b, '"');
    size_t start = 0, i = 0;
    while (i < len) {
        unsigned char c = u[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && c != '<' && c != '>' &&
            c != '&') {
            i++;
            continue;
        }
        json_buf_put(b, s + start, i - start);
        if (c < 0x80) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            if (c == '"' || c == '\\') {
                char e2[2] = {'\\', (char)c};
                json_buf_put(b, e2, 2);
            } else if (c == '\n') {
                json_buf_put(b, "\\n", 2);
            } else if (c == '\r') {
                json_buf_put(b, "\\r", 2);
            } else if (c == '\t') {
                json_buf_put(b, "\\t", 2);
            } else {
                json_buf_put(b, esc, 6);
            }
            i++;
        } else {
            uint32_t cp;
            size_t n = utf8_len(u + i, len - i, &cp);
            if (n == 0) {
                json_buf_put(b, "\\ufffd", 6);
                i++;
            } else if (cp == 0x2028 || cp == 0x2029) {
                json_buf_put(b, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
                i += n;
            } else {
                json_buf_put(b, s + i, n);
                i += n;
            }
        }
        start = i;
    }
    json_buf_put(b, s + start, i - start);
    buf_putc(b, '"');
}

/* ---- base64 (Go's encoding/base64 StdEncoding, not strict) ---- */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long json_base64_decode(const char *in, size_t len, uint8_t *out, size_t *bad_at)
{
    const unsigned char *src = (const unsigned char *)in;
    size_t si = 0, n = 0;
    while (si < len) {
        unsigned char dbuf[4] = {0, 0, 0, 0};
        int dlen = 4;
        bool end = false;
        for (int j = 0; j < 4; j++) {
            if (si == len) {
                if (j == 0)
                    return (long)n;
                *bad_at = si - (size_t)j; /* missing padding */
                return -1;
            }
            unsigned char c = src[si++];
            int v = b64val(c);
            if (v >= 0) {
                dbuf[j] = (unsigned char)v;
                continue;
            }
            if (c == '\n' || c == '\r') {
                j--;
                continue;
            }
            if (c != '=' || j < 2) {
                *bad_at = si - 1;
                return -1;
            }
            if (j == 2) {
                while (si < len && (src[si] == '\n' || src[si] == '\r'))
                    si++;
                if (si == len) {
                    *bad_at = len;
                    return -1;
                }
                if (src[si] != '=') {
                    *bad_at = si - 1;
                    return -1;
                }
                si++;
            }
            while (si < len && (src[si] == '\n' || src[si] == '\r'))
                si++;
            if (si < len) {
                *bad_at = si; /* trailing garbage */
                return -1;
            }
            dlen = j;
            end = true;
            break;
        }
        uint32_t val = (uint32_t)dbuf[0] << 18 | (uint32_t)dbuf[1] << 12 |
                       (uint32_t)dbuf[2] << 6 | dbuf[3];
        uint8_t o[3] = {(uint8_t)(val >> 16), (uint8_t)(val >> 8), (uint8_t)val};
        memcpy(out + n, o, (size_t)dlen - 1);
        n += (size_t)dlen - 1;
        if (end)
            break;
    }
    return (long)n;
}

static void base64_encode(struct json_buf *b, const uint8_t *d, size_t len)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    buf_putc(b, '"');
    buf_reserve(b, (len + 2) / 3 * 4);
    for (size_t i = 0; i < len && !b->err; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)d[i + 1] << 8;
        if (i + 2 < len)
            v |= d[i + 2];
        char q[4] = {tbl[(v >> 18) & 63], tbl[(v >> 12) & 63],
                     i + 1 < len ? tbl[(v >> 6) & 63] : '=', i + 2 < len ? tbl[v & 63] : '='};
        json_buf_put(b, q, 4);
    }
    buf_putc(b, '"');
}

/* ---- JSON -> message ---- */

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "bool";
    default:
        return "null";
    }
}

/* Go's name for an enum type: "etcdserverpb.RangeRequest.SortOrder" ->
 * "etcdserverpb.RangeRequest_SortOrder". */
static void go_enum_name(const ProtobufCEnumDescriptor *e, char *out, size_t size)
{
    size_t plen = e->package_name ? strlen(e->package_name) : 0;
    snprintf(out, size, "%s", e->name);
    for (char *p = out + (plen ? plen + 1 : 0); *p; p++)
        if (*p == '.')
            *p = '_';
}

static const char *go_type(const ProtobufCFieldDescriptor *f, char *tmp, size_t size)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return "int32";
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return "int64";
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return "uint32";
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return "uint64";
    case PROTOBUF_C_TYPE_FLOAT:
        return "float32";
    case PROTOBUF_C_TYPE_DOUBLE:
        return "float64";
    case PROTOBUF_C_TYPE_BOOL:
        return "bool";
    case PROTOBUF_C_TYPE_ENUM:
        go_enum_name(f->descriptor, tmp, size);
        return tmp;
    case PROTOBUF_C_TYPE_STRING:
        return "string";
    case PROTOBUF_C_TYPE_BYTES:
        return "[]uint8";
    case PROTOBUF_C_TYPE_MESSAGE:
        return "map[string]json.RawMessage";
    }
    return "?";
}

static int type_error(const ProtobufCFieldDescriptor *f, const json_t *v, char *errmsg)
{
    char tmp[160];
    errmsg_printf(errmsg, "json: cannot unmarshal %s into Go value of type %s", json_kind(v),
                  go_type(f, tmp, sizeof tmp));
    return LSKV_EINVAL;
}

static bool is_int_type(ProtobufCType t, bool *is_signed, int *bits)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        *is_signed = true, *bits = 32;
        return true;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *is_signed = true, *bits = 64;
        return true;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *is_signed = false, *bits = 32;
        return true;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *is_signed = false, *bits = 64;
        return true;
    default:
        return false;
    }
}

/* Length of the JSON number at s (RFC 8259 grammar), 0 if none. */
static size_t scan_number(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n || !isdigit((unsigned char)s[i]))
        return 0;
    if (s[i] == '0')
        i++;
    else
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !isdigit((unsigned char)s[i]))
            return 0;
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !isdigit((unsigned char)s[i]))
            return 0;
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
    }
    return i;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void go_quote_char(unsigned char c, char out[16]);

static void bad_char(char *errmsg, char c, const char *where)
{
    char q[16];
    go_quote_char((unsigned char)c, q);
    errmsg_printf(errmsg, "invalid character %s %s", q, where);
}

/* Converts number text to an integer of the given kind (Go's rules: no
 * fraction or exponent, in range). */
static int number_text_to_int(const ProtobufCFieldDescriptor *f, const char *num, size_t n,
                              uint64_t *out, char *errmsg)
{
    bool sgn = true;
    int bits = 64;
    char tmp[160];
    is_int_type(f->type, &sgn, &bits);
    char text[64];
    bool ok = n < sizeof text && memchr(num, '.', n) == NULL && memchr(num, 'e', n) == NULL &&
              memchr(num, 'E', n) == NULL;
    if (ok) {
        memcpy(text, num, n);
        text[n] = '\0';
        errno = 0;
        char *end;
        if (sgn) {
            long long v = strtoll(text, &end, 10);
            if (errno != 0 || *end != '\0' || (bits == 32 && (v < INT32_MIN || v > INT32_MAX)))
                ok = false;
            else
                *out = (uint64_t)v;
        } else {
            unsigned long long v = strtoull(text, &end, 10);
            if (errno != 0 || *end != '\0' || text[0] == '-' || (bits == 32 && v > UINT32_MAX))
                ok = false;
            else
                *out = v;
        }
    }
    if (!ok) {
        errmsg_printf(errmsg, "json: cannot unmarshal number %.*s into Go value of type %s",
                      (int)(n > 64 ? 64 : n), num, go_type(f, tmp, sizeof tmp));
        return LSKV_EINVAL;
    }
    return 0;
}

/* An integer (or enum number) field from a JSON number or quoted number. */
static int parse_int(const ProtobufCFieldDescriptor *f, const json_t *v, uint64_t *out,
                     char *errmsg)
{
    char num[64];
    if (json_is_integer(v)) {
        int len = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return number_text_to_int(f, num, (size_t)len, out, errmsg);
    }
    if (json_is_real(v)) {
        int len = snprintf(num, sizeof num, "%.17g", json_real_value(v));
        if (strchr(num, '.') == NULL && strchr(num, 'e') == NULL)
            len = snprintf(num, sizeof num, "%.1f", json_real_value(v));
        return number_text_to_int(f, num, (size_t)len, out, errmsg);
    }
    if (json_is_string(v) && f->type != PROTOBUF_C_TYPE_ENUM) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        size_t i = 0;
        while (i < n && is_ws(s[i]))
            i++;
        if (i == n) {
            errmsg_printf(errmsg, "unexpected end of JSON input");
            return LSKV_EINVAL;
        }
        size_t m = scan_number(s + i, n - i);
        if (m == 0) {
            /* "-x" fails at the 'x'. */
            size_t at = (s[i] == '-' && i + 1 < n) ? i + 1 : i;
            if (s[i] == '-' && i + 1 >= n) {
                errmsg_printf(errmsg, "unexpected end of JSON input");
                return LSKV_EINVAL;
            }
            bad_char(errmsg, s[at], at == i ? "looking for beginning of value" : "in numeric literal");
            return LSKV_EINVAL;
        }
        size_t j = i + m;
        while (j < n && is_ws(s[j]))
            j++;
        if (j < n) {
            bad_char(errmsg, s[j], "after top-level value");
            return LSKV_EINVAL;
        }
        return number_text_to_int(f, s + i, m, out, errmsg);
    }
    return type_error(f, v, errmsg);
}

static int parse_message(const ProtobufCMessageDescriptor *d, const json_t *obj,
                         ProtobufCMessage **out, int depth, char *errmsg);

static size_t scalar_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

/* Parses one value of field f into the slot at p (scalar storage). */
static int parse_value(const ProtobufCFieldDescriptor *f, const json_t *v, void *p, int depth,
                       char *errmsg)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v))
            return type_error(f, v, errmsg);
        *(protobuf_c_boolean *)p = json_is_true(v);
        return 0;
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(v))
            return type_error(f, v, errmsg);
        size_t n = json_string_length(v);
        char *s = malloc(n + 1);
        if (s == NULL)
            return LSKV_ENOMEM;
        memcpy(s, json_string_value(v), n + 1);
        *(char **)p = s;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (!json_is_string(v))
            return type_error(f, v, errmsg);
        size_t n = json_string_length(v);
        uint8_t *data = malloc(n / 4 * 3 + 3);
        if (data == NULL)
            return LSKV_ENOMEM;
        size_t bad;
        long dn = json_base64_decode(json_string_value(v), n, data, &bad);
        if (dn < 0) {
            free(data);
            errmsg_printf(errmsg, "illegal base64 data at input byte %zu", bad);
            return LSKV_EINVAL;
        }
        ProtobufCBinaryData *bd = p;
        bd->data = data;
        bd->len = (size_t)dn;
        return 0;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *e = f->descriptor;
        if (json_is_string(v)) {
            const ProtobufCEnumValue *ev =
                protobuf_c_enum_descriptor_get_value_by_name(e, json_string_value(v));
            if (ev == NULL) {
                char tmp[160];
                go_enum_name(e, tmp, sizeof tmp);
                errmsg_printf(errmsg, "unknown value \"%.64s\" for enum %s",
                              json_string_value(v), tmp);
                return LSKV_EINVAL;
            }
            *(int32_t *)p = ev->value;
            return 0;
        }
        uint64_t x;
        int rv = parse_int(f, v, &x, errmsg);
        if (rv == 0)
            *(int32_t *)p = (int32_t)x;
        return rv;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        if (!json_is_object(v))
            return type_error(f, v, errmsg);
        ProtobufCMessage *m = NULL;
        int rv = parse_message(f->descriptor, v, &m, depth + 1, errmsg);
        if (rv == 0)
            *(ProtobufCMessage **)p = m;
        return rv;
    }
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        double x;
        if (json_is_number(v)) {
            x = json_number_value(v);
        } else if (json_is_string(v)) {
            char *end;
            x = strtod(json_string_value(v), &end);
            if (*end != '\0' || end == json_string_value(v))
                return type_error(f, v, errmsg);
        } else {
            return type_error(f, v, errmsg);
        }
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)p = (float)x;
        else
            *(double *)p = x;
        return 0;
    }
    default: {
        uint64_t x;
        int rv = parse_int(f, v, &x, errmsg);
        if (rv != 0)
            return rv;
        if (scalar_size(f->type) == 8)
            *(uint64_t *)p = x;
        else
            *(uint32_t *)p = (uint32_t)x;
        return 0;
    }
    }
}

/* lowerCamelCase of a .proto name, as protoc's JSON name. */
static void camel_name(const char *name, char *out, size_t size)
{
    size_t j = 0;
    bool up = false;
    for (const char *p = name; *p && j + 1 < size; p++) {
        if (*p == '_') {
            up = true;
            continue;
        }
        out[j++] = up ? (char)toupper((unsigned char)*p) : *p;
        up = false;
    }
    out[j] = '\0';
}

static const json_t *lookup(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);
    if (v == NULL) {
        char camel[128];
        camel_name(name, camel, sizeof camel);
        if (strcmp(camel, name) != 0)
            v = json_object_get(obj, camel);
    }
    return v;
}

static int parse_field(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const json_t *v,
                       int depth, char *errmsg)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (!json_is_array(v)) {
            errmsg_printf(errmsg, "json: cannot unmarshal %s into Go value of type %s",
                          json_kind(v),
                          f->type == PROTOBUF_C_TYPE_BYTES ? "[][]uint8" : "[]json.RawMessage");
            return LSKV_EINVAL;
        }
        size_t n = json_array_size(v);
        if (n == 0)
            return 0;
        size_t esz = scalar_size(f->type);
        void *arr = calloc(n, esz);
        if (arr == NULL)
            return LSKV_ENOMEM;
        *(void **)at(m, f->offset) = arr;
        size_t *count = at(m, f->quantifier_offset);
        for (size_t i = 0; i < n; i++) {
            const json_t *e = json_array_get(v, i);
            if (json_is_null(e) && f->type != PROTOBUF_C_TYPE_MESSAGE) {
                /* Go leaves a zero value. */
            } else if (json_is_null(e)) {
                ProtobufCMessage *sub = malloc(((const ProtobufCMessageDescriptor *)f->descriptor)->sizeof_message);
                if (sub == NULL)
                    return LSKV_ENOMEM;
                ((const ProtobufCMessageDescriptor *)f->descriptor)->message_init(sub);
                ((ProtobufCMessage **)arr)[i] = sub;
            } else {
                int rv = parse_value(f, e, at(arr, i * esz), depth, errmsg);
                if (rv != 0)
                    return rv;
            }
            *count = i + 1;
        }
        /* Zero-valued strings and bytes must still be valid for packing. */
        if (f->type == PROTOBUF_C_TYPE_STRING)
            for (size_t i = 0; i < n; i++)
                if (((char **)arr)[i] == NULL && (((char **)arr)[i] = calloc(1, 1)) == NULL)
                    return LSKV_ENOMEM;
        return 0;
    }
    int rv = parse_value(f, v, at(m, f->offset), depth, errmsg);
    if (rv == 0 && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        *(uint32_t *)at(m, f->quantifier_offset) = f->id;
    else if (rv == 0 && f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0 &&
             f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING)
        *(protobuf_c_boolean *)at(m, f->quantifier_offset) = 1;
    return rv;
}

static bool oneof_taken(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           *(const uint32_t *)cat(m, f->quantifier_offset) != 0;
}

static int parse_message(const ProtobufCMessageDescriptor *d, const json_t *obj,
                         ProtobufCMessage **out, int depth, char *errmsg)
{
    if (depth >= MAX_DEPTH) { /* depth counts from 0: MAX_DEPTH messages at most */
        errmsg_printf(errmsg, "json: nesting too deep");
        return LSKV_ETOODEEP;
    }
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (m == NULL)
        return LSKV_ENOMEM;
    d->message_init(m);
    int rv = 0;
    for (unsigned i = 0; i < d->n_fields && rv == 0 && obj != NULL; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const json_t *v = lookup(obj, f->name);
        if (v == NULL || json_is_null(v))
            continue;
        if (oneof_taken(m, f))
            continue; /* the first member given wins */
        rv = parse_field(m, f, v, depth, errmsg);
    }
    if (rv != 0) {
        protobuf_c_message_free_unpacked(m, NULL);
        return rv;
    }
    *out = m;
    return 0;
}

/* ---- Go's encoding/json scanner, syntax only (note 5) ---- */

#define GO_MAX_DEPTH 10000

/* Go's quoteChar: the byte as a rune, quoted by strconv.Quote. */
static void go_quote_char(unsigned char c, char out[16])
{
    static const char short_esc[] = "\a\b\f\n\r\t\v";
    static const char short_name[] = "abfnrtv";
    const char *e = c != 0 ? strchr(short_esc, c) : NULL;
    if (c == '\'')
        snprintf(out, 16, "'\\''");
    else if (c == '"')
        snprintf(out, 16, "'\"'");
    else if (c == '\\')
        snprintf(out, 16, "'\\\\'");
    else if (e != NULL)
        snprintf(out, 16, "'\\%c'", short_name[e - short_esc]);
    else if (c < 0x20 || c == 0x7f)
        snprintf(out, 16, "'\\x%02x'", c);
    else if ((c >= 0x80 && c <= 0xa0) || c == 0xad)
        snprintf(out, 16, "'\\u%04x'", c);
    else if (c >= 0x80)
        snprintf(out, 16, "'%c%c'", (char)(0xc0 | (c >> 6)), (char)(0x80 | (c & 0x3f)));
    else
        snprintf(out, 16, "'%c'", c);
}

static int go_syntax_error(char *errmsg, char c, const char *context)
{
    char q[16];
    go_quote_char((unsigned char)c, q);
    errmsg_printf(errmsg, "invalid character %s %s", q, context);
    return LSKV_EINVAL;
}

static int go_eof(char *errmsg)
{
    errmsg_printf(errmsg, "unexpected EOF");
    return LSKV_EINVAL;
}

static bool is_hex(char c)
{
    return isxdigit((unsigned char)c) != 0;
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* A string body from s[*i] (after the opening quote) to past the closing
 * quote. *lossy: it has bytes or escapes Go turns into U+FFFD. */
static int go_scan_string(const char *s, size_t n, size_t *i, bool *lossy, char *errmsg)
{
    size_t k = *i;
    while (k < n) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"') {
            *i = k + 1;
            return 0;
        }
        if (c == '\\') {
            if (++k >= n)
                return go_eof(errmsg);
            if (strchr("bfnrt\\/\"", s[k]) != NULL && s[k] != '\0') {
                k++;
                continue;
            }
            if (s[k] != 'u')
                return go_syntax_error(errmsg, s[k], "in string escape code");
            for (int j = 1; j <= 4; j++) {
                if (k + (size_t)j >= n)
                    return go_eof(errmsg);
                if (!is_hex(s[k + (size_t)j]))
                    return go_syntax_error(errmsg, s[k + (size_t)j],
                                           "in \\u hexadecimal character escape");
            }
            unsigned v = hex4(s + k + 1);
            if (v >= 0xd800 && v < 0xe000) {
                bool pair = v < 0xdc00 && k + 10 < n && s[k + 5] == '\\' && s[k + 6] == 'u' &&
                            is_hex(s[k + 7]) && is_hex(s[k + 8]) && is_hex(s[k + 9]) &&
                            is_hex(s[k + 10]) && hex4(s + k + 7) >= 0xdc00 &&
                            hex4(s + k + 7) < 0xe000;
                if (!pair)
                    *lossy = true;
                else
                    k += 6;
            }
            k += 5;
            continue;
        }
        if (c < 0x20)
            return go_syntax_error(errmsg, (char)c, "in string literal");
        uint32_t cp;
        size_t m = utf8_len((const unsigned char *)s + k, n - k, &cp);
        if (m == 0) {
            *lossy = true;
            m = 1;
        }
        k += m;
    }
    return go_eof(errmsg);
}

/* A number from s[*i]; stops at the first byte that is not part of it. */
static int go_scan_number(const char *s, size_t n, size_t *i, char *errmsg)
{
    size_t k = *i;
    if (s[k] == '-') {
        if (++k >= n)
            return go_eof(errmsg);
        if (!isdigit((unsigned char)s[k]))
            return go_syntax_error(errmsg, s[k], "in numeric literal");
    }
    if (s[k] == '0')
        k++;
    else
        while (k < n && isdigit((unsigned char)s[k]))
            k++;
    if (k < n && s[k] == '.') {
        if (++k >= n)
            return go_eof(errmsg);
        if (!isdigit((unsigned char)s[k]))
            return go_syntax_error(errmsg, s[k], "after decimal point in numeric literal");
        while (k < n && isdigit((unsigned char)s[k]))
            k++;
    }
    if (k < n && (s[k] == 'e' || s[k] == 'E')) {
        if (++k < n && (s[k] == '+' || s[k] == '-'))
            k++;
        if (k >= n)
            return go_eof(errmsg);
        if (!isdigit((unsigned char)s[k]))
            return go_syntax_error(errmsg, s[k], "in exponent of numeric literal");
        while (k < n && isdigit((unsigned char)s[k]))
            k++;
    }
    *i = k;
    return 0;
}

static int go_scan_literal(const char *s, size_t n, size_t *i, const char *word, char *errmsg)
{
    char ctx[48];
    for (size_t j = 1; word[j] != '\0'; j++) {
        if (*i + j >= n)
            return go_eof(errmsg);
        if (s[*i + j] != word[j]) {
            snprintf(ctx, sizeof ctx, "in literal %s (expecting '%c')", word, word[j]);
            return go_syntax_error(errmsg, s[*i + j], ctx);
        }
    }
    *i += strlen(word);
    return 0;
}

enum { GO_OBJ_KEY, GO_OBJ_VAL, GO_ARR };

/* Checks the first JSON value of s[0..n) (s has a non-space byte) as
 * json.Decoder does: Go's texts for syntax errors, "unexpected EOF" when the
 * value is cut; bytes after the value are not looked at. *lossy: a string
 * holds what Go decodes to U+FFFD (invalid UTF-8, lone surrogates). */
static int go_json_check(const char *s, size_t n, bool *lossy, char *errmsg)
{
    uint8_t *stack = NULL;
    size_t depth = 0, i = 0;
    int rv = 0;
    *lossy = false;
    for (;;) {
        /* A value starts here. */
        while (i < n && is_ws(s[i]))
            i++;
        if (i >= n) {
            rv = go_eof(errmsg);
            goto out;
        }
        char c = s[i];
        bool open = c == '{' || c == '[';
        if (open) {
            if (depth >= GO_MAX_DEPTH) {
                bad_char(errmsg, c, "exceeded max depth"); /* Go's SyntaxError text */
                rv = LSKV_EINVAL;
                goto out;
            }
            if (stack == NULL && (stack = malloc(GO_MAX_DEPTH)) == NULL) {
                rv = LSKV_ENOMEM;
                goto out;
            }
            stack[depth++] = c == '{' ? GO_OBJ_KEY : GO_ARR;
            i++;
            while (i < n && is_ws(s[i]))
                i++;
            if (i >= n) {
                rv = go_eof(errmsg);
                goto out;
            }
            if (s[i] == (c == '{' ? '}' : ']')) {
                i++;
                depth--;
            } else if (c == '[') {
                continue; /* the first element */
            }
        } else if (c == '"') {
            i++;
            rv = go_scan_string(s, n, &i, lossy, errmsg);
        } else if (c == '-' || isdigit((unsigned char)c)) {
            rv = go_scan_number(s, n, &i, errmsg);
        } else if (c == 't' || c == 'f' || c == 'n') {
            rv = go_scan_literal(s, n, &i, c == 't' ? "true" : c == 'f' ? "false" : "null", errmsg);
        } else {
            rv = go_syntax_error(errmsg, c, "looking for beginning of value");
        }
        if (rv != 0)
            goto out;
        /* After a value (or an object that still wants its first key). */
        for (;;) {
            if (depth == 0)
                goto out;
            uint8_t *top = &stack[depth - 1];
            while (i < n && is_ws(s[i]))
                i++;
            if (i >= n) {
                rv = go_eof(errmsg);
                goto out;
            }
            c = s[i];
            if (*top == GO_OBJ_KEY) {
                if (c != '"') {
                    rv = go_syntax_error(errmsg, c, "looking for beginning of object key string");
                    goto out;
                }
                i++;
                if ((rv = go_scan_string(s, n, &i, lossy, errmsg)) != 0)
                    goto out;
                while (i < n && is_ws(s[i]))
                    i++;
                if (i >= n) {
                    rv = go_eof(errmsg);
                    goto out;
                }
                if (s[i] != ':') {
                    rv = go_syntax_error(errmsg, s[i], "after object key");
                    goto out;
                }
                i++;
                *top = GO_OBJ_VAL;
                break; /* the member's value */
            }
            bool obj = *top == GO_OBJ_VAL;
            if (c == ',') {
                i++;
                if (obj) {
                    *top = GO_OBJ_KEY;
                    continue;
                }
                break; /* the next element */
            }
            if (c == (obj ? '}' : ']')) {
                i++;
                depth--;
                continue;
            }
            rv = go_syntax_error(errmsg, c, obj ? "after object key:value pair" : "after array element");
            goto out;
        }
    }
out:
    free(stack);
    return rv;
}

/* A copy of the (syntactically valid) s[0..n) where what Go decodes to
 * U+FFFD inside strings is the escape \ufffd, for jansson. */
static char *go_json_fix(const char *s, size_t n, size_t *out_len)
{
    char *o = malloc(n * 6 + 1);
    if (o == NULL)
        return NULL;
    size_t k = 0, j = 0;
    bool in_str = false;
    while (k < n) {
        unsigned char c = (unsigned char)s[k];
        if (!in_str) {
            if (c == '"')
                in_str = true;
            o[j++] = s[k++];
            continue;
        }
        if (c == '"') {
            in_str = false;
            o[j++] = s[k++];
        } else if (c == '\\' && k + 1 < n && s[k + 1] == 'u' && k + 5 < n) {
            unsigned v = hex4(s + k + 2);
            size_t take = 6;
            bool bad = false;
            if (v >= 0xd800 && v < 0xe000) {
                bool pair = v < 0xdc00 && k + 11 < n && s[k + 6] == '\\' && s[k + 7] == 'u' &&
                            is_hex(s[k + 8]) && is_hex(s[k + 9]) && is_hex(s[k + 10]) &&
                            is_hex(s[k + 11]) && hex4(s + k + 8) >= 0xdc00 &&
                            hex4(s + k + 8) < 0xe000;
                if (pair)
                    take = 12;
                else
                    bad = true;
            }
            if (bad) {
                memcpy(o + j, "\\ufffd", 6);
                j += 6;
            } else {
                memcpy(o + j, s + k, take);
                j += take;
            }
            k += 6 + (take == 12 ? 6 : 0);
        } else if (c == '\\' && k + 1 < n) {
            o[j++] = s[k++];
            o[j++] = s[k++];
        } else {
            uint32_t cp;
            size_t m = utf8_len((const unsigned char *)s + k, n - k, &cp);
            if (m == 0) {
                memcpy(o + j, "\\ufffd", 6);
                j += 6;
                k++;
            } else {
                memcpy(o + j, s + k, m);
                j += m;
                k += m;
            }
        }
    }
    o[j] = '\0';
    *out_len = j;
    return o;
}

bool json_next_value(const char *p, size_t len, size_t pos, size_t *start, size_t *end,
                     bool *open_end)
{
    bool open = false;
    if (open_end == NULL)
        open_end = &open;
    size_t i = pos;
    while (i < len && is_ws(p[i]))
        i++;
    if (i >= len)
        return false;
    *start = i;
    char c = p[i];
    if (c == '{' || c == '[' || c == '"') {
        /* A container or a string: to its matching end, or to len. */
        size_t depth = 0;
        bool in_string = false, closed = false;
        for (; i < len; i++) {
            char d = p[i];
            if (in_string) {
                if (d == '\\')
                    i++; /* the escaped byte (past len: the loop ends) */
                else if (d == '"')
                    in_string = false;
                else
                    continue;
                if (!in_string && depth == 0) {
                    i++;
                    closed = true;
                    break;
                }
            } else if (d == '"') {
                in_string = true;
            } else if (d == '{' || d == '[') {
                depth++;
            } else if (d == '}' || d == ']') {
                if (depth == 0 || --depth == 0) {
                    i++;
                    closed = true;
                    break;
                }
            }
        }
        *open_end = !closed;
        *end = i < len ? i : len;
        return true;
    }
    /* A literal or a number (or a stray byte): up to the next delimiter,
     * at least one byte. */
    i++;
    while (i < len && !is_ws(p[i]) && strchr("{}[]\",:", p[i]) == NULL)
        i++;
    *end = i;
    *open_end = i == len;
    return true;
}

int json_to_pb(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
               uint8_t **out, size_t *out_len, char *errmsg)
{
    json_t *root = NULL;
    size_t i = 0;
    while (i < len && is_ws(json[i]))
        i++;
    if (i < len) {
        bool lossy = false;
        char *fixed = NULL;
        int crv = go_json_check(json, len, &lossy, errmsg);
        if (crv != 0)
            return crv;
        if (lossy) {
            fixed = go_json_fix(json, len, &len);
            if (fixed == NULL)
                return LSKV_ENOMEM;
            json = fixed;
        }
        json_error_t jerr;
        root = json_loadb(json, len, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL,
                          &jerr);
        if (root == NULL) {
            if (json_error_code(&jerr) == json_error_premature_end_of_input) {
                errmsg_printf(errmsg, "unexpected EOF");
            } else if (json_error_code(&jerr) == json_error_out_of_memory) {
                free(fixed);
                return LSKV_ENOMEM;
            } else if (json_error_code(&jerr) == json_error_stack_overflow) {
                /* Within Go's 10000 levels (go_json_check) but past jansson's. */
                errmsg_printf(errmsg, "json: nesting too deep");
                free(fixed);
                return LSKV_ETOODEEP;
            } else if (json_error_code(&jerr) == json_error_numeric_overflow) {
                errmsg_printf(errmsg, "json: cannot unmarshal number into Go value of type int64");
            } else {
                size_t pos = (size_t)jerr.position;
                if (pos > 0)
                    pos--; /* jansson points past the offending byte */
                if (pos < len)
                    bad_char(errmsg, json[pos], "looking for beginning of value");
                else
                    errmsg_printf(errmsg, "unexpected EOF");
            }
            free(fixed);
            return LSKV_EINVAL;
        }
        free(fixed);
        if (!json_is_object(root) && !json_is_null(root)) {
            errmsg_printf(errmsg,
                          "json: cannot unmarshal %s into Go value of type "
                          "map[string]json.RawMessage",
                          json_kind(root));
            json_decref(root);
            return LSKV_EINVAL;
        }
    }
    ProtobufCMessage *m = NULL;
    int rv = parse_message(desc, json_is_object(root) ? root : NULL, &m, 0, errmsg);
    json_decref(root);
    if (rv != 0)
        return rv;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
        return LSKV_ENOMEM;
    }
    protobuf_c_message_pack(m, buf);
    protobuf_c_message_free_unpacked(m, NULL);
    *out = buf;
    *out_len = n;
    return 0;
}

/* ---- message -> JSON ---- */

static bool value_is_zero(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s == NULL || s[0] == '\0';
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(void *const *)p == NULL;
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)p == 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)p == 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p == 0;
    default:
        if (scalar_size(f->type) == 8)
            return *(const uint64_t *)p == 0;
        return *(const uint32_t *)p == 0;
    }
}

static void write_message(struct json_buf *b, const ProtobufCMessage *m, int depth);

static void write_value(struct json_buf *b, const ProtobufCFieldDescriptor *f, const void *p,
                        int depth)
{
    char num[48];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        snprintf(num, sizeof num, "%" PRId32, *(const int32_t *)p);
        json_buf_puts(b, num);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(num, sizeof num, "%" PRIu32, *(const uint32_t *)p);
        json_buf_puts(b, num);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(num, sizeof num, "\"%" PRId64 "\"", *(const int64_t *)p);
        json_buf_puts(b, num);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(num, sizeof num, "\"%" PRIu64 "\"", *(const uint64_t *)p);
        json_buf_puts(b, num);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        snprintf(num, sizeof num, "%.9g", (double)*(const float *)p);
        json_buf_puts(b, num);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        snprintf(num, sizeof num, "%.17g", *(const double *)p);
        json_buf_puts(b, num);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        json_buf_puts(b, *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v = *(const int32_t *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        if (ev != NULL) {
            json_buf_string(b, ev->name, strlen(ev->name));
        } else {
            snprintf(num, sizeof num, "%" PRId32, v);
            json_buf_puts(b, num);
        }
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        json_buf_string(b, s ? s : "", s ? strlen(s) : 0);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = p;
        base64_encode(b, bd->data, bd->len);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
        if (sub == NULL)
            json_buf_puts(b, "{}");
        else
            write_message(b, sub, depth + 1);
        break;
    }
    }
}

static void write_message(struct json_buf *b, const ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    bool first = true;
    buf_putc(b, '{');
    for (unsigned i = 0; i < d->n_fields && depth <= MAX_DEPTH; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *p = cat(m, f->offset);
        size_t n = 1;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)cat(m, f->quantifier_offset);
            if (n == 0)
                continue;
        } else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)cat(m, f->quantifier_offset) != f->id)
                continue;
        } else if (value_is_zero(f, p)) {
            continue;
        }
        if (!first)
            buf_putc(b, ',');
        first = false;
        json_buf_string(b, f->name, strlen(f->name));
        buf_putc(b, ':');
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            write_value(b, f, p, depth);
            continue;
        }
        const void *arr = *(const void *const *)p;
        size_t esz = scalar_size(f->type);
        buf_putc(b, '[');
        for (size_t j = 0; j < n; j++) {
            if (j > 0)
                buf_putc(b, ',');
            write_value(b, f, cat(arr, j * esz), depth);
        }
        buf_putc(b, ']');
    }
    buf_putc(b, '}');
}

int json_from_pb(const ProtobufCMessageDescriptor *desc, const uint8_t *pb, size_t len,
                 char **out, size_t *out_len)
{
    if (pbdepth_check(desc, pb, len, MAX_DEPTH) != 0)
        return LSKV_ECORRUPT;
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, pb);
    if (m == NULL)
        return LSKV_ECORRUPT;
    struct json_buf b = {0};
    write_message(&b, m, 0);
    protobuf_c_message_free_unpacked(m, NULL);
    if (b.err) {
        free(b.p);
        return b.err;
    }
    *out = b.p;
    *out_len = b.len;
    return 0;
}
