#include <string.h>

#include "common/err.h"
#include "common/hex.h"
#include "runner.h"

TEST(hex, encode_decode_round_trip)
{
    const uint8_t in[] = {0x00, 0x0f, 0xa5, 0xff};
    char text[2 * sizeof in + 1];
    hex_encode(in, sizeof in, text);
    ASSERT_STR_EQ(text, "000fa5ff");
    uint8_t back[sizeof in];
    ASSERT_EQ(hex_decode("000FA5ff", back, sizeof back), 0);
    ASSERT(memcmp(back, in, sizeof in) == 0);
}

TEST(hex, bad_text_is_rejected)
{
    uint8_t out[2];
    ASSERT_EQ(hex_decode(NULL, out, 2), LSKV_EINVAL);
    ASSERT_EQ(hex_decode("abc", out, 2), LSKV_EINVAL);   /* too short */
    ASSERT_EQ(hex_decode("abcde", out, 2), LSKV_EINVAL); /* too long */
    ASSERT_EQ(hex_decode("abcg", out, 2), LSKV_EINVAL);
    ASSERT_EQ(hex_digit('F'), 15);
    ASSERT_EQ(hex_digit('/'), -1);
    ASSERT_EQ(hex_digit(':'), -1);
}
