// wordcount in AssemblyScript: counts the whitespace-separated words of the
// payload and prints the count and a newline (e.g. "3\n"), byte for byte
// what the Rust example guest-examples/wordcount prints.
//
// Whitespace is Rust's `char::is_whitespace` on the lossy UTF-8 decoding
// of the input: ASCII \t \n \v \f \r, 0x1c..0x1f and space, and the
// multi-byte Unicode spaces recognised from their UTF-8 encoding. Any other
// byte (invalid UTF-8 included) is part of a word.
import { readPayload } from "./payload";

// Length of the Unicode space starting at text[i] (a non-ASCII byte), or 0.
function unicodeSpace(text: Uint8Array, i: i32): i32 {
  const rest = text.length - i;
  const b0 = unchecked(text[i]);
  if (rest >= 2 && b0 == 0xc2) {
    const b1 = unchecked(text[i + 1]);
    return b1 == 0x85 || b1 == 0xa0 ? 2 : 0;
  }
  if (rest < 3) return 0;
  const b1 = unchecked(text[i + 1]);
  const b2 = unchecked(text[i + 2]);
  if (b0 == 0xe1) return b1 == 0x9a && b2 == 0x80 ? 3 : 0;
  if (b0 == 0xe2 && b1 == 0x80)
    return (b2 >= 0x80 && b2 <= 0x8a) || b2 == 0xa8 || b2 == 0xa9 || b2 == 0xaf ? 3 : 0;
  if (b0 == 0xe2) return b1 == 0x81 && b2 == 0x9f ? 3 : 0;
  if (b0 == 0xe3) return b1 == 0x80 && b2 == 0x80 ? 3 : 0;
  return 0;
}

function countWords(text: Uint8Array): u64 {
  let words: u64 = 0;
  let inWord = false;
  let i = 0;
  const len = text.length;
  while (i < len) {
    const b = unchecked(text[i]);
    let space = false;
    let skip = 1;
    if (b < 0x80) {
      space = (b >= 0x09 && b <= 0x0d) || (b >= 0x1c && b <= 0x1f) || b == 0x20;
    } else {
      const n = unicodeSpace(text, i);
      if (n > 0) {
        space = true;
        skip = n;
      }
    }
    if (space) {
      inWord = false;
    } else if (!inWord) {
      inWord = true;
      words++;
    }
    i += skip;
  }
  return words;
}

process.stdout.write(countWords(readPayload()).toString() + "\n");
