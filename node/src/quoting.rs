//! Redis-style quoted words: the one syntax that config file lines and
//! inline RESP commands share (Redis's `sdssplitargs`). [`split_args`]
//! splits a line into words, [`quote`] writes a value so that
//! [`split_args`] reads it back exactly (`CONFIG REWRITE`).
//!
//! Words are separated by white space; `"double quotes"` take `\n \r \t
//! \b \a \" \\ \xHH` escapes (any other `\c` is `c`); `'single quotes'`
//! take `\'` only. A closing quote must end the word.

/// Splits `line` into words. Errors name what is wrong: unbalanced quotes,
/// a closing quote glued to the next word, `\x` without two hex digits.
pub fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let Some(&first) = line.get(i) else {
            return Ok(out);
        };
        let mut word = Vec::new();
        if first == b'"' || first == b'\'' {
            i += 1;
            loop {
                let Some(&c) = line.get(i) else {
                    return Err("unbalanced quotes");
                };
                i += 1;
                if c == first {
                    break;
                }
                if c != b'\\' {
                    word.push(c);
                } else if first == b'\'' {
                    // Only \' is an escape in single quotes; a lone
                    // backslash is itself.
                    if line.get(i) == Some(&b'\'') {
                        word.push(b'\'');
                        i += 1;
                    } else {
                        word.push(b'\\');
                    }
                } else {
                    let Some(&e) = line.get(i) else {
                        return Err("unbalanced quotes");
                    };
                    i += 1;
                    word.push(match e {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        b'x' => {
                            let hex = line
                                .get(i..i + 2)
                                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                                .ok_or("\\x must be followed by two hex digits")?;
                            i += 2;
                            (hex_digit(hex[0]) << 4) | hex_digit(hex[1])
                        }
                        other => other,
                    });
                }
            }
            if line.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                return Err("closing quote must be followed by a space");
            }
        } else {
            while let Some(&c) = line.get(i).filter(|c| !c.is_ascii_whitespace()) {
                word.push(c);
                i += 1;
            }
        }
        out.push(word);
    }
}

fn hex_digit(h: u8) -> u8 {
    char::from(h).to_digit(16).map_or(0, |d| d as u8)
}

/// A value as a config file carries it: bare when it is a plain word
/// (letters, digits, `.-_:/,`), otherwise in double quotes with `\\`,
/// `\"` and any other byte outside printable ASCII escaped as `\xHH`, so
/// [`split_args`] reads back exactly `value` whatever it holds.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:/,".contains(&b));
    if plain {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for b in value.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b' '..=b'~' => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_args(line.as_bytes())
            .unwrap_or_else(|e| panic!("{line:?}: {e}"))
            .into_iter()
            .map(|w| String::from_utf8_lossy(&w).into_owned())
            .collect()
    }

    #[test]
    fn escapes_in_double_quotes_and_only_a_quote_in_single_ones() {
        assert_eq!(
            words(r#"k "a\x41\n\"\\" 'it\'s' "\q" 'a\b'"#),
            ["k", "aA\n\"\\", "it's", "q", "a\\b"]
        );
        assert_eq!(words("  a\t b  "), ["a", "b"]);
        assert_eq!(words(r#""\xFf""#).len(), 1);
    }

    #[test]
    fn malformed_lines_are_refused() {
        for bad in [
            r#"k "\x4""#,
            r#"k "\x+f""#,
            r#"k "open"#,
            r#"k "a"b"#,
            "k 'open",
            r#"k "\"#,
        ] {
            assert!(split_args(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quote_reads_back_exactly() {
        for v in ["50", "a b", "x\nbind 0.0.0.0", "q\"uo\\te", "", "é\u{7f}\0"] {
            let line = format!("k {}", quote(v));
            assert_eq!(words(&line)[1..], [v.to_string()], "{line:?}");
        }
        assert_eq!(quote("50"), "50");
        assert_eq!(quote("a b"), "\"a b\"");
    }
}
