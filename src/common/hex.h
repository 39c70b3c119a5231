/* Hexadecimal text: bytes as lower-case hex (digests, node ids), and hex
 * digits of either case parsed back (receipts, percent-encoding). */
#ifndef LSKV_COMMON_HEX_H
#define LSKV_COMMON_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Lower-case hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void hex_encode(const uint8_t *in, size_t n, char *out);

/* The value of one hex digit (0-9, a-f, A-F), or -1. */
int hex_digit(char c);

/* Parses exactly 2n hex digits (hex NUL-terminated) into out.
 * Errors: LSKV_EINVAL (NULL, wrong length, not a hex digit). */
int hex_decode(const char *hex, uint8_t *out, size_t n);

#endif
