//! `wcreduce`: the gather step of a distributed word count. Its input is
//! the map results in order, each framed as a 4-byte little-endian length
//! and then the bytes (what `wasque map` hands a reduce module); each result
//! holds `word\tcount` lines. Prints the total per word, most frequent
//! first (ties in byte order of the words), one `word\tcount` line each.

use std::collections::BTreeMap;

fn frames(mut input: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while !input.is_empty() {
        if input.len() < 4 {
            return Err("truncated frame header".into());
        }
        let len = u32::from_le_bytes([input[0], input[1], input[2], input[3]]) as usize;
        input = &input[4..];
        if input.len() < len {
            return Err(format!("frame of {len} bytes, {} left", input.len()));
        }
        out.push(&input[..len]);
        input = &input[len..];
    }
    Ok(out)
}

fn reduce(input: &[u8]) -> Result<Vec<u8>, String> {
    let mut totals: BTreeMap<&[u8], u64> = BTreeMap::new();
    for part in frames(input)? {
        for line in part.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let tab = line
                .iter()
                .rposition(|b| *b == b'\t')
                .ok_or("a line without a tab")?;
            let n: u64 = std::str::from_utf8(&line[tab + 1..])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("a count that is not a number")?;
            *totals.entry(&line[..tab]).or_insert(0) += n;
        }
    }
    let mut sorted: Vec<(&[u8], u64)> = totals.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut out = Vec::new();
    for (word, n) in sorted {
        out.extend_from_slice(word);
        out.push(b'\t');
        out.extend_from_slice(n.to_string().as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

fn main() {
    wasque_guest::run(|payload| reduce(&payload));
}

#[cfg(test)]
mod tests {
    fn frame(parts: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in parts {
            v.extend_from_slice(&(p.len() as u32).to_le_bytes());
            v.extend_from_slice(p);
        }
        v
    }

    #[test]
    fn sums_parts() {
        let input = frame(&[b"a\t2\nb\t1\n", b"b\t3\nc\t1\n"]);
        assert_eq!(super::reduce(&input).unwrap(), b"b\t4\na\t2\nc\t1\n");
        assert!(super::reduce(&[1, 0]).is_err());
    }
}
