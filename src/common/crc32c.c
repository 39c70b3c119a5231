/* CRC-32C (Castagnoli), table-driven or with SSE4.2's crc32 instruction. */
#include "common/crc32c.h"

#include <string.h>

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = 1;
}

static uint32_t crc_soft(uint32_t c, const uint8_t *buf, size_t len)
{
    if (!crc_ready)
        crc_init();
    for (size_t i = 0; i < len; i++)
        c = crc_table[(c ^ buf[i]) & 0xFF] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* The SSE4.2 crc32 instruction computes CRC-32C: 8 bytes a cycle or so
 * instead of one byte per table lookup (frames are hashed twice per
 * append). */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *buf,
                                                          size_t len)
{
    uint64_t c64 = c;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, buf, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
        buf += 8;
        len -= 8;
    }
    c = (uint32_t)c64;
    while (len > 0) {
        c = __builtin_ia32_crc32qi(c, *buf++);
        len--;
    }
    return c;
}

static int crc_has_hw = -1;
#endif

uint32_t crc32c_update(uint32_t crc, const uint8_t *buf, size_t len)
{
    uint32_t c = ~crc;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (crc_has_hw < 0)
        crc_has_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    if (crc_has_hw)
        return ~crc_hw(c, buf, len);
#endif
    return ~crc_soft(c, buf, len);
}
