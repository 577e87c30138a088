//! `wcmap`: the map step of a distributed word count. Reads a chunk of
//! text and prints each word with its count, one `word\tcount` line per
//! word, in byte order of the words. Words are maximal runs of
//! non-whitespace, lowercased (ASCII).

use std::collections::BTreeMap;

fn counts(text: &[u8]) -> BTreeMap<Vec<u8>, u64> {
    let mut out = BTreeMap::new();
    for word in text
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        *out.entry(word.to_ascii_lowercase()).or_insert(0) += 1;
    }
    out
}

fn main() {
    wasque_guest::run(|payload| {
        let mut out = Vec::new();
        for (word, n) in counts(&payload) {
            out.extend_from_slice(&word);
            out.push(b'\t');
            out.extend_from_slice(n.to_string().as_bytes());
            out.push(b'\n');
        }
        Ok(out)
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_words_case_folded() {
        let c = super::counts(b"The cat the\nCAT dog");
        assert_eq!(c.get(&b"the"[..]), Some(&2));
        assert_eq!(c.get(&b"cat"[..]), Some(&2));
        assert_eq!(c.get(&b"dog"[..]), Some(&1));
    }
}
