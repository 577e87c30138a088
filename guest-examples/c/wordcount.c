/* wordcount in C: counts the whitespace-separated words of the payload and
 * prints the count and a newline (e.g. "3\n"), byte for byte what the Rust
 * example guest-examples/wordcount prints.
 *
 * Whitespace is Rust's `char::is_whitespace` on the lossy UTF-8 decoding
 * of the input: ASCII \t \n \v \f \r, 0x1c..0x1f and space, and the
 * multi-byte Unicode spaces recognised from their UTF-8 encoding. Any other
 * byte (invalid UTF-8 included) is part of a word. */
#include "common.h"

#include <inttypes.h>
#include <stdint.h>

/* For a non-ASCII lead byte at s[0] (rest bytes left): 1 and the space's
 * length in *skip if it starts a Unicode space, else 0 and *skip = 1. */
static int unicode_space(const unsigned char *s, size_t rest, size_t *skip) {
    *skip = 1;
    if (rest >= 2 && s[0] == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0)) {
        *skip = 2;
        return 1;
    }
    if (rest < 3) return 0;
    int space = (s[0] == 0xE1 && s[1] == 0x9A && s[2] == 0x80) ||
                (s[0] == 0xE2 && s[1] == 0x80 &&
                 ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF)) ||
                (s[0] == 0xE2 && s[1] == 0x81 && s[2] == 0x9F) ||
                (s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x80);
    if (space) *skip = 3;
    return space;
}

static uint64_t count_words(const unsigned char *text, size_t len) {
    uint64_t words = 0;
    int in_word = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char b = text[i];
        size_t skip = 1;
        int space;
        if (b < 0x80)
            space = (b >= '\t' && b <= '\r') || (b >= 0x1c && b <= 0x1f) || b == ' ';
        else
            space = unicode_space(text + i, len - i, &skip);
        if (space) {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            words++;
        }
        i += skip;
    }
    return words;
}

int main(void) {
    size_t len;
    unsigned char *payload = read_payload(&len);
    printf("%" PRIu64 "\n", count_words(payload, len));
    free(payload);
    return 0;
}
