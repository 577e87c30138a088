//! `wordcount`: counts the whitespace-separated words of the payload and
//! prints the count followed by a newline (e.g. `3\n`).
//!
//! This is the node's throughput benchmark, so it scans bytes directly: no
//! UTF-8 decoding pass and no allocation per word.

/// Counts words in `text`. A word is a maximal run of non-whitespace.
///
/// Whitespace is what `char::is_whitespace` accepts on the lossy UTF-8
/// decoding of the input. ASCII whitespace is handled byte by byte; the rare
/// multi-byte Unicode spaces (U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028,
/// U+2029, U+202F, U+205F, U+3000) are recognised from their UTF-8 encoding.
/// Invalid UTF-8 bytes decode to U+FFFD, which is not whitespace, so they are
/// simply treated as word bytes.
fn count_words(text: &[u8]) -> u64 {
    let mut words = 0u64;
    let mut in_word = false;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        let (space, len) = if b < 0x80 {
            // \t \n \v \f \r and ' ' (0x1c..0x1f are also `is_whitespace`).
            (matches!(b, b'\t'..=b'\r' | 0x1c..=0x1f | b' '), 1)
        } else {
            unicode_space(&text[i..])
        };
        if space {
            in_word = false;
        } else if !in_word {
            in_word = true;
            words += 1;
        }
        i += len;
    }
    words
}

/// For a non-ASCII lead byte: is this a Unicode whitespace character, and how
/// many bytes to skip. Non-space bytes are skipped one at a time (they can
/// only continue or start a word, so exact char boundaries do not matter).
#[inline]
fn unicode_space(s: &[u8]) -> (bool, usize) {
    match s {
        [0xC2, 0x85 | 0xA0, ..] => (true, 2),
        [0xE1, 0x9A, 0x80, ..] => (true, 3),
        [0xE2, 0x80, 0x80..=0x8A | 0xA8 | 0xA9 | 0xAF, ..] => (true, 3),
        [0xE2, 0x81, 0x9F, ..] => (true, 3),
        [0xE3, 0x80, 0x80, ..] => (true, 3),
        _ => (false, 1),
    }
}

fn main() {
    wasque_guest::run(|payload| Ok(format!("{}\n", count_words(&payload)).into_bytes()));
}

#[cfg(test)]
mod tests {
    use super::count_words;

    #[test]
    fn matches_std() {
        for s in [
            "",
            "   ",
            "one",
            "one two  three",
            "\tline\nbreaks\r\nhere ",
            "non\u{a0}breaking\u{3000}ideographic\u{2028}sep",
            "héllo wörld ünïcode",
        ] {
            assert_eq!(
                count_words(s.as_bytes()),
                s.split_whitespace().count() as u64,
                "{s:?}"
            );
        }
        assert_eq!(count_words(b"bad \xff\xfe bytes"), 3);
    }
}
