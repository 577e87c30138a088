//! fjall's journal files (`DATA_DIR/store/*.jnl`) read as bytes, before
//! the store crate opens them: where their data ends, and whether every
//! batch in them is whole.
//!
//! Why the node reads them itself: when fjall opens a journal and meets a
//! batch it cannot decode, it truncates the file there, whatever follows.
//! That is right for a torn tail (a write cut short by a crash) and wrong
//! for damage in the middle: every whole batch after it, accepted jobs
//! and acks, would be cut off with it. So the node checks first:
//! - every batch whole: nothing to do;
//! - damage with nothing whole after it (a torn tail): the journal is cut
//!   at the last whole batch (what fjall would do, also when only the last
//!   batch's checksum is wrong, which fjall refuses) and the cut reported;
//! - damage with whole batches after it: the store is not opened and the
//!   node refuses to start, naming the file, the offset and what to do.
//!
//! The layout read here is fjall 3.1's (`journal/entry.rs`, `writer.rs`):
//! a batch is `Start` (tag 1, u32 item count, u64 seqno), then its items
//! (`Item`: tag 2, value type, compression, u64 keyspace, u16 key length,
//! u32 value length, u32 stored length, key, stored value; `Clear`: tag 4,
//! u64 keyspace), then `End` (tag 3, u64 xxh3 of the items' bytes, the
//! magic `FJL\x03`); little-endian. Journals are preallocated with zeros,
//! so a file's data ends at its last non-zero byte. The unit tests below
//! check this reading against journals fjall itself wrote.

use std::path::{Path, PathBuf};

const TAG_START: u8 = 1;
const TAG_ITEM: u8 = 2;
const TAG_END: u8 = 3;
const TAG_CLEAR: u8 = 4;
const START_LEN: usize = 1 + 4 + 8;
const ITEM_HEADER_LEN: usize = 1 + 1 + 1 + 8 + 2 + 4 + 4;
const CLEAR_LEN: usize = 1 + 8;
const MAGIC: &[u8] = b"FJL\x03";
const END_LEN: usize = 1 + 8 + 4;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every batch of every journal is whole.
    Whole,
    /// The last journal ends in a damaged batch with nothing whole after
    /// it: cut at `at` (the end of the last whole batch), dropping `dropped`
    /// bytes.
    TornTail {
        file: PathBuf,
        at: u64,
        dropped: u64,
    },
    /// A damaged batch at `at` in `file`, with whole batches after it
    /// (from `next` in `next_file`).
    Damaged {
        file: PathBuf,
        at: u64,
        next_file: PathBuf,
        next: u64,
    },
}

/// The journal files directly under `store`, oldest first (fjall numbers
/// them; the highest is the one being written).
pub fn journals(store: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<(u64, PathBuf)> = vec![];
    let rd = match std::fs::read_dir(store) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    for e in rd {
        let p = e?.path();
        let id = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            found.push((id, p));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// What one journal holds.
struct Scan {
    /// Bytes of data (up to the last non-zero byte).
    len: u64,
    /// Where its whole batches from the start end (`len` if all are).
    whole_end: u64,
    /// If they do not reach `len`: the first whole batch after that.
    next_whole: Option<u64>,
}

fn scan(file: &Path) -> std::io::Result<Scan> {
    let bytes = read_data(file)?;
    let end = whole_prefix(&bytes, 0);
    Ok(Scan {
        len: bytes.len() as u64,
        whole_end: end as u64,
        next_whole: (end < bytes.len())
            .then(|| find_whole_batch(&bytes, end + 1))
            .flatten()
            .map(|p| p as u64),
    })
}

/// Checks every journal under `store` (see the module's comment). Also
/// returns the bytes of journal data found. Journals are read two at a
/// time, on threads of their own (start-up time: a million jobs leave a
/// few hundred MB of them).
pub fn check(store: &Path) -> std::io::Result<(Verdict, u64)> {
    let files = journals(store)?;
    let mut scans = Vec::with_capacity(files.len());
    for pair in files.chunks(2) {
        let done: Vec<std::io::Result<Scan>> = std::thread::scope(|s| {
            let handles: Vec<_> = pair.iter().map(|f| s.spawn(move || scan(f))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("journal check panicked")))
                })
                .collect()
        });
        for d in done {
            scans.push(d?);
        }
    }
    let total = scans.iter().map(|s| s.len).sum();
    let Some(fi) = scans.iter().position(|s| s.whole_end < s.len) else {
        return Ok((Verdict::Whole, total));
    };
    let at = scans[fi].whole_end;
    let damaged = |next_file: usize, next: u64| Verdict::Damaged {
        file: files[fi].clone(),
        at,
        next_file: files[next_file].clone(),
        next,
    };
    if let Some(next) = scans[fi].next_whole {
        return Ok((damaged(fi, next), total));
    }
    for (j, later) in scans.iter().enumerate().skip(fi + 1) {
        let first_whole = if later.whole_end > 0 {
            Some(0)
        } else {
            later.next_whole
        };
        if let Some(next) = first_whole {
            return Ok((damaged(j, next), total));
        }
    }
    let verdict = Verdict::TornTail {
        file: files[fi].clone(),
        at,
        dropped: scans[fi].len - at,
    };
    Ok((verdict, total))
}

/// Cuts `file` at `at` bytes, durably.
pub fn cut(file: &Path, at: u64) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(file)?;
    f.set_len(at)?;
    f.sync_all()
}

/// The bytes of `file` up to its last non-zero byte.
fn read_data(file: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let end = data_end(file)?;
    let mut bytes = Vec::with_capacity(end as usize);
    std::fs::File::open(file)?
        .take(end)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Where the whole batches from `from` on end (`bytes.len()` if all are).
fn whole_prefix(bytes: &[u8], from: usize) -> usize {
    let mut pos = from;
    while pos < bytes.len() {
        match batch_at(bytes, pos) {
            Some(end) => pos = end,
            None => return pos,
        }
    }
    pos
}

/// The first offset at or after `from` where a whole batch starts.
fn find_whole_batch(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&p| bytes[p] == TAG_START && batch_at(bytes, p).is_some())
}

/// The end of the whole batch starting at `pos`, if there is one there.
fn batch_at(bytes: &[u8], pos: usize) -> Option<usize> {
    let b = bytes.get(pos..)?;
    if b.len() < START_LEN || b[0] != TAG_START {
        return None;
    }
    let count = u32::from_le_bytes(b[1..5].try_into().ok()?) as usize;
    // Each item takes at least CLEAR_LEN bytes: a count beyond that is garbage.
    if count > b.len() / CLEAR_LEN {
        return None;
    }
    let items_start = START_LEN;
    let mut p = items_start;
    for _ in 0..count {
        match *b.get(p)? {
            TAG_ITEM => {
                let h = b.get(p..p + ITEM_HEADER_LEN)?;
                let key_len = u16::from_le_bytes(h[11..13].try_into().ok()?) as usize;
                let stored_len = u32::from_le_bytes(h[17..21].try_into().ok()?) as usize;
                p = p
                    .checked_add(ITEM_HEADER_LEN + key_len)?
                    .checked_add(stored_len)?;
            }
            TAG_CLEAR => p += CLEAR_LEN,
            _ => return None,
        }
        if p > b.len() {
            return None;
        }
    }
    let items_end = p;
    let end = b.get(p..p + END_LEN)?;
    if end[0] != TAG_END || &end[9..] != MAGIC {
        return None;
    }
    let checksum = u64::from_le_bytes(end[1..9].try_into().ok()?);
    (xxhash_rust::xxh3::xxh3_64(&b[items_start..items_end]) == checksum)
        .then_some(pos + p + END_LEN)
}

/// Offset just past the last non-zero byte of a file (the store crate
/// preallocates journals with zeros, so the file length says nothing; a
/// torn write leaves garbage before the zeros).
pub fn data_end(file: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file)?;
    let mut end = f.metadata()?.len();
    let mut buf = vec![0u8; 1 << 16];
    let zeros = vec![0u8; 1 << 16];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        // A slice comparison is a memcmp: fast over the zeroed tail.
        if buf[..n] == zeros[..n] {
            end = start;
            continue;
        }
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store written by fjall itself, closed: its one journal's path
    /// and bytes. Batches of 1 to 5 records of 100..300 bytes.
    fn written_journal(dir: &Path, batches: u32) -> (PathBuf, Vec<u8>) {
        let path = dir.join("store");
        {
            let db = fjall::Database::builder(&path)
                .manual_journal_persist(true)
                .open()
                .unwrap();
            let ks = db
                .keyspace("jobs", fjall::KeyspaceCreateOptions::default)
                .unwrap();
            for i in 0..batches {
                let mut b = db.batch();
                for j in 0..=(i % 5) {
                    let v = vec![(i * 7 + j) as u8 | 1; 100 + (i as usize * 13) % 200];
                    b.insert(&ks, [(i % 251) as u8, j as u8, 9, 9], v);
                }
                if i % 9 == 0 {
                    b.remove(&ks, [1u8, 2, 3]);
                }
                b.commit().unwrap();
            }
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        let files = journals(&path).unwrap();
        let jnl = files.last().unwrap().clone();
        let bytes = read_data(&jnl).unwrap();
        (jnl, bytes)
    }

    #[test]
    fn journals_fjall_wrote_read_as_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (_, bytes) = written_journal(dir.path(), 200);
        assert!(bytes.len() > 50_000, "{}", bytes.len());
        assert_eq!(whole_prefix(&bytes, 0), bytes.len());
        assert_eq!(
            check(&dir.path().join("store")).unwrap(),
            (Verdict::Whole, bytes.len() as u64)
        );
    }

    #[test]
    fn a_damaged_last_batch_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (jnl, mut bytes) = written_journal(dir.path(), 50);
        let last_start = {
            let mut pos = 0;
            let mut last = 0;
            while pos < bytes.len() {
                last = pos;
                pos = batch_at(&bytes, pos).unwrap();
            }
            last
        };
        // A flipped value byte: only the checksum tells.
        let at = last_start + START_LEN + ITEM_HEADER_LEN + 4 + 10;
        bytes[at] ^= 0x10;
        std::fs::write(&jnl, &bytes).unwrap();
        match check(&dir.path().join("store")).unwrap().0 {
            Verdict::TornTail { file, at, dropped } => {
                assert_eq!(file, jnl);
                assert_eq!(at, last_start as u64);
                assert_eq!(dropped, (bytes.len() - last_start) as u64);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn damage_in_the_middle_is_not_a_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (jnl, bytes) = written_journal(dir.path(), 200);
        let mut starts = vec![];
        let mut pos = 0;
        while pos < bytes.len() {
            starts.push(pos);
            pos = batch_at(&bytes, pos).unwrap();
        }
        // Any byte in the first half: a tag, a length, a key, a value, a
        // checksum or the magic; whole batches follow in every case. (A
        // batch's seqno is neither checksummed nor structural: nobody can
        // tell a flip there.)
        for k in 0..40 {
            let at = bytes.len() / 2 * k / 40 + k;
            if starts.iter().any(|&s| (s + 5..s + START_LEN).contains(&at)) {
                continue;
            }
            let mut damaged = bytes.clone();
            damaged[at] ^= 1 << (k % 8);
            std::fs::write(&jnl, &damaged).unwrap();
            match check(&dir.path().join("store")).unwrap().0 {
                Verdict::Damaged {
                    file, at: d, next, ..
                } => {
                    assert_eq!(file, jnl);
                    assert!(d as usize <= at && next as usize > at, "{d} {at} {next}");
                }
                v => panic!("flip at {at}: {v:?}"),
            }
        }
        // Zeros in the middle (a page never written before a power loss).
        let mut holed = bytes.clone();
        holed[4096..8192].fill(0);
        std::fs::write(&jnl, &holed).unwrap();
        assert!(matches!(
            check(&dir.path().join("store")).unwrap().0,
            Verdict::Damaged { .. }
        ));
    }
}
