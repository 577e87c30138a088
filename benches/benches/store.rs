//! Which embedded store holds wasque's jobs: fjall (LSM tree + journal) or
//! redb (copy-on-write B-tree), measured on the node's own workload; and
//! `log`, a plain append-only file of checksummed records (what an
//! AOF-style journal costs at least: no index, no tables, no compaction,
//! so its file only grows), as the floor the other two are measured
//! against.
//!
//! For each store, a child process loads the store the way a busy node
//! does, then dies without closing it (an unclean stop); the parent times
//! the reopen plus a full scan (recovery), deletes everything (acks) and
//! measures the disk left behind. Phases:
//!
//! 1. `always`: group commits of 50 job records (50 clients) with a sync
//!    each, as `appendfsync always` does.
//! 2. `everysec`: group commits of 256 records, each handed to the OS (so a
//!    process crash loses nothing), synced once a second. redb has no
//!    such middle level: a `Durability::None` commit is lost on a process
//!    crash, so it needs a durable commit per batch here.
//! 3. `update`: every record rewritten (a state change), batches of 256.
//! 4. crash, then reopen + full scan, then delete all in batches, sync.
//!
//! Run: `cargo bench -p wasque-benches --bench store` (100k records);
//! `WASQUE_STORE_BENCH_N=1000000` for a million, `WASQUE_STORE_BENCH_ONLY=fjall`
//! (or `redb`, `log`) for one store. Figures go to
//! `benches/README.md`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const VALUE_BYTES: usize = 180; // a postcard job record with a 100-byte body
const GROUP_ALWAYS: usize = 50;
const GROUP: usize = 256;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let store = args.get(pos + 1).cloned().unwrap_or_default();
        let dir = PathBuf::from(args.get(pos + 2).cloned().unwrap_or_default());
        let n: usize = args
            .get(pos + 3)
            .and_then(|s| s.parse().ok())
            .unwrap_or(100_000);
        child(&store, &dir, n);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("WASQUE_STORE_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let base = std::env::var("WASQUE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    println!("store bench: {n} records of {VALUE_BYTES} bytes, 16-byte keys");
    let only = std::env::var("WASQUE_STORE_BENCH_ONLY").ok();
    for store in ["fjall", "redb", "log"] {
        if only.as_deref().is_some_and(|o| o != store) {
            continue;
        }
        let tmp = tempfile::tempdir_in(&base).expect("temp dir");
        let dir = tmp.path().join(store);
        let exe = std::env::current_exe().expect("own exe");
        let t = Instant::now();
        let status = std::process::Command::new(exe)
            .args(["--child", store])
            .arg(&dir)
            .arg(n.to_string())
            .status()
            .expect("spawn child");
        assert!(status.success(), "child {store} failed: {status}");
        println!("{store}: load phases total {:.2?}", t.elapsed());
        let live = disk_bytes(tmp.path());
        println!(
            "{store}: on disk after crash with {n} live records: {:.1} MB ({:.0} bytes/record)",
            live as f64 / 1e6,
            live as f64 / n as f64
        );
        match store {
            "fjall" => fjall_recover_and_drain(&dir, n),
            "log" => log_recover_and_drain(&dir, n),
            _ => redb_recover_and_drain(&dir, n),
        }
    }
}

/// fjall as the node opens it; `WASQUE_FJALL_JOURNAL_MB` bounds the
/// journals (default 512 MiB; the node uses 64), which bounds the replay
/// after a crash.
fn fjall_builder(dir: &Path) -> fjall::DatabaseBuilder<fjall::Database> {
    let b = fjall::Database::builder(dir).manual_journal_persist(true);
    match std::env::var("WASQUE_FJALL_JOURNAL_MB")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(mb) => b.max_journaling_size(mb << 20),
        None => b,
    }
}

fn key(i: usize) -> [u8; 16] {
    // Time-ordered like a UUIDv7: increasing big-endian.
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(1_700_000_000_000u64 + i as u64).to_be_bytes());
    k[8..].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k
}

fn value(i: usize, state: u8) -> Vec<u8> {
    let mut v = vec![b'x'; VALUE_BYTES];
    v[0] = state;
    v[1..9].copy_from_slice(&(i as u64).to_le_bytes());
    // Some entropy so compression does not flatter either store.
    let mut x = i as u64 ^ 0xA5A5_5A5A;
    for b in v[9..].iter_mut().step_by(3) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = (x >> 56) as u8;
    }
    v
}

fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(dir)
        && m.is_file()
    {
        return m.blocks() * 512;
    }
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

struct Lat(Vec<Duration>);

impl Lat {
    fn report(mut self, what: &str, records: usize, total: Duration) {
        self.0.sort();
        let p = |q: f64| {
            self.0
                .get(((self.0.len() as f64 * q) as usize).min(self.0.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "  {what}: {:.0} records/s; commit p50 {:.2?} p99 {:.2?}",
            records as f64 / total.as_secs_f64(),
            p(0.5),
            p(0.99)
        );
    }
}

/// A store the `always`, `everysec` and `update` phases write to: a group
/// of records handed to the OS, and a sync. (redb has no such split: its
/// phases are its own, in [`child`].)
trait Sink {
    fn write_group(&mut self, ids: &[usize], state: u8);
    fn sync(&mut self);
}

struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Sink for Fjall {
    fn write_group(&mut self, ids: &[usize], state: u8) {
        let mut b = self.db.batch();
        for &i in ids {
            b.insert(&self.ks, key(i), value(i, state));
        }
        b.commit().expect("commit");
        self.db.persist(fjall::PersistMode::Buffer).expect("buffer");
    }

    fn sync(&mut self) {
        self.db.persist(fjall::PersistMode::SyncData).expect("sync");
    }
}

impl Sink for Log {
    fn write_group(&mut self, ids: &[usize], state: u8) {
        for &i in ids {
            self.put(&key(i), &value(i, state));
        }
        self.write();
    }

    fn sync(&mut self) {
        self.file.sync_data().expect("sync log");
    }
}

/// The load phases of a [`Sink`]: `always` (groups of 50, each synced),
/// `everysec` (groups of 256 to the OS, a sync each second), every record
/// updated the same way; then a last sync.
fn load_phases(s: &mut impl Sink, n: usize, n_always: usize) {
    let mut lat = Lat(vec![]);
    let t = Instant::now();
    for chunk in (0..n_always).collect::<Vec<_>>().chunks(GROUP_ALWAYS) {
        let c = Instant::now();
        s.write_group(chunk, 1);
        s.sync();
        lat.0.push(c.elapsed());
    }
    lat.report("always (sync per group of 50)", n_always, t.elapsed());
    let mut buffered = |from: usize, to: usize, state: u8, what: &str| {
        let mut lat = Lat(vec![]);
        let t = Instant::now();
        let mut last_sync = Instant::now();
        for chunk in (from..to).collect::<Vec<_>>().chunks(GROUP) {
            let c = Instant::now();
            s.write_group(chunk, state);
            if last_sync.elapsed() >= Duration::from_secs(1) {
                s.sync();
                last_sync = Instant::now();
            }
            lat.0.push(c.elapsed());
        }
        lat.report(what, to - from, t.elapsed());
    };
    buffered(
        n_always,
        n,
        1,
        "everysec (to the OS per group of 256, sync each second)",
    );
    buffered(0, n, 2, "update every record (everysec)");
    s.sync();
}

fn child(store: &str, dir: &Path, n: usize) {
    let n_always = (n / 10).min(20_000);
    println!("{store}:");
    match store {
        "log" => {
            load_phases(&mut Log::create(dir), n, n_always);
            std::process::exit(0);
        }
        "fjall" => {
            let db = fjall_builder(dir).open().expect("open fjall");
            let ks = db
                .keyspace("jobs", fjall::KeyspaceCreateOptions::default)
                .expect("keyspace");
            load_phases(&mut Fjall { db, ks }, n, n_always);
            // Unclean stop: no close, no destructors.
            std::process::exit(0);
        }
        _ => {
            let db = redb::Database::create(dir.with_extension("redb")).expect("open redb");
            let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("jobs");
            let mut lat = Lat(vec![]);
            let t = Instant::now();
            for chunk in (0..n_always).collect::<Vec<_>>().chunks(GROUP_ALWAYS) {
                let c = Instant::now();
                let w = db.begin_write().expect("begin");
                {
                    let mut tb = w.open_table(table).expect("table");
                    for &i in chunk {
                        tb.insert(&key(i)[..], &value(i, 1)[..]).expect("insert");
                    }
                }
                w.commit().expect("commit");
                lat.0.push(c.elapsed());
            }
            lat.report(
                "always (durable commit per group of 50)",
                n_always,
                t.elapsed(),
            );
            let rd_batches = |from: usize, to: usize, state: u8, what: &str| {
                let mut lat = Lat(vec![]);
                let t = Instant::now();
                for chunk in (from..to).collect::<Vec<_>>().chunks(GROUP) {
                    let c = Instant::now();
                    let w = db.begin_write().expect("begin");
                    {
                        let mut tb = w.open_table(table).expect("table");
                        for &i in chunk {
                            tb.insert(&key(i)[..], &value(i, state)[..])
                                .expect("insert");
                        }
                    }
                    w.commit().expect("commit");
                    lat.0.push(c.elapsed());
                }
                lat.report(what, to - from, t.elapsed());
            };
            rd_batches(
                n_always,
                n,
                1,
                "everysec equivalent (durable commit per group of 256: a None commit dies with the process)",
            );
            rd_batches(0, n, 2, "update every record (durable per 256)");
            std::process::exit(0);
        }
    }
}

fn fjall_recover_and_drain(dir: &Path, n: usize) {
    let t = Instant::now();
    let db = fjall_builder(dir).open().expect("reopen fjall");
    let ks = db
        .keyspace("jobs", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let opened = t.elapsed();
    let mut count = 0usize;
    let mut bytes = 0usize;
    for kv in ks.iter() {
        let (k, v) = kv.into_inner().expect("read");
        count += 1;
        bytes += k.len() + v.len();
    }
    assert_eq!(count, n, "fjall lost records");
    println!(
        "  recovery after crash: open {opened:.2?}, open + full scan {:.2?} ({count} records, {:.1} MB)",
        t.elapsed(),
        bytes as f64 / 1e6
    );
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(GROUP) {
        let mut b = db.batch();
        for &i in chunk {
            b.remove(&ks, key(i));
        }
        b.commit().expect("commit");
        db.persist(fjall::PersistMode::Buffer).expect("buffer");
    }
    db.persist(fjall::PersistMode::SyncData).expect("sync");
    println!(
        "  delete all: {:.0} records/s; disk right after: {:.1} MB",
        n as f64 / t.elapsed().as_secs_f64(),
        disk_bytes(dir) as f64 / 1e6
    );
    std::thread::sleep(Duration::from_secs(3));
    println!(
        "  disk 3 s later (background compaction): {:.1} MB",
        disk_bytes(dir) as f64 / 1e6
    );
    let t = Instant::now();
    ks.rotate_memtable_and_wait().expect("flush");
    ks.major_compact().expect("compact");
    println!(
        "  after flush + major compaction ({:.2?}): {:.2} MB",
        t.elapsed(),
        disk_bytes(dir) as f64 / 1e6
    );
    drop(ks);
    drop(db);
    println!("  after close: {:.2} MB", disk_bytes(dir) as f64 / 1e6);
}

/// The `log` store: records `[u32 length][u8 op][16-byte key][value]
/// [u64 xxh3 of op, key and value]`, little-endian, appended to one file;
/// a group is one `write`.
struct Log {
    file: std::fs::File,
    buf: Vec<u8>,
}

const LOG_PUT: u8 = 1;
const LOG_DEL: u8 = 2;

impl Log {
    fn create(dir: &Path) -> Log {
        std::fs::create_dir_all(dir).expect("log dir");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("jobs.log"))
            .expect("open log");
        Log {
            file,
            buf: Vec::new(),
        }
    }

    fn record(&mut self, op: u8, key: &[u8; 16], value: &[u8]) {
        let start = self.buf.len();
        self.buf
            .extend_from_slice(&(17 + value.len() as u32).to_le_bytes());
        self.buf.push(op);
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(value);
        let sum = xxhash_rust::xxh3::xxh3_64(&self.buf[start + 4..]);
        self.buf.extend_from_slice(&sum.to_le_bytes());
    }

    fn put(&mut self, key: &[u8; 16], value: &[u8]) {
        self.record(LOG_PUT, key, value);
    }

    fn del(&mut self, key: &[u8; 16]) {
        self.record(LOG_DEL, key, &[]);
    }

    /// Hands the group to the OS.
    fn write(&mut self) {
        use std::io::Write;
        self.file.write_all(&self.buf).expect("write log");
        self.buf.clear();
    }
}

/// Replays the log into the live set (the latest record of each key,
/// where it is in the file), as a node rebuilding its jobs would.
fn log_replay(bytes: &[u8]) -> std::collections::HashMap<[u8; 16], (usize, usize)> {
    let mut live = std::collections::HashMap::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let end = at + 4 + len + 8;
        if len < 17 || end > bytes.len() {
            break;
        }
        let body = &bytes[at + 4..at + 4 + len];
        let sum = u64::from_le_bytes(bytes[end - 8..end].try_into().expect("8 bytes"));
        assert_eq!(
            xxhash_rust::xxh3::xxh3_64(body),
            sum,
            "log record at {at} damaged"
        );
        let key: [u8; 16] = body[1..17].try_into().expect("16 bytes");
        if body[0] == LOG_DEL {
            live.remove(&key);
        } else {
            live.insert(key, (at + 4 + 17, len - 17));
        }
        at = end;
    }
    live
}

fn log_recover_and_drain(dir: &Path, n: usize) {
    let path = dir.join("jobs.log");
    let t = Instant::now();
    let bytes = std::fs::read(&path).expect("read log");
    let live = log_replay(&bytes);
    let live_bytes: usize = live.values().map(|(_, len)| 16 + len).sum();
    assert_eq!(live.len(), n, "log lost records");
    println!(
        "  recovery after crash: read + replay {:.2?} ({} records, {:.1} MB live of {:.1} MB read)",
        t.elapsed(),
        live.len(),
        live_bytes as f64 / 1e6,
        bytes.len() as f64 / 1e6
    );
    drop(bytes);
    let mut log = Log::create(dir);
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(GROUP) {
        for &i in chunk {
            log.del(&key(i));
        }
        log.write();
    }
    log.sync();
    println!(
        "  delete all: {:.0} records/s; disk right after: {:.1} MB (a log gives space back only when rewritten)",
        n as f64 / t.elapsed().as_secs_f64(),
        disk_bytes(dir) as f64 / 1e6
    );
}

fn redb_recover_and_drain(dir: &Path, n: usize) {
    let file = dir.with_extension("redb");
    let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("jobs");
    let t = Instant::now();
    let mut db = redb::Database::create(&file).expect("reopen redb");
    let opened = t.elapsed();
    let mut count = 0usize;
    let mut bytes = 0usize;
    {
        use redb::ReadableDatabase;
        let r = db.begin_read().expect("read");
        let tb = r.open_table(table).expect("table");
        use redb::ReadableTable;
        for kv in tb.iter().expect("iter") {
            let (k, v) = kv.expect("read");
            count += 1;
            bytes += k.value().len() + v.value().len();
        }
    }
    assert_eq!(count, n, "redb lost records");
    println!(
        "  recovery after crash: open (repair) {opened:.2?}, open + full scan {:.2?} ({count} records, {:.1} MB)",
        t.elapsed(),
        bytes as f64 / 1e6
    );
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(GROUP) {
        let w = db.begin_write().expect("begin");
        {
            let mut tb = w.open_table(table).expect("table");
            for &i in chunk {
                tb.remove(&key(i)[..]).expect("remove");
            }
        }
        w.commit().expect("commit");
    }
    println!(
        "  delete all (durable per 256): {:.0} records/s; disk right after: {:.1} MB",
        n as f64 / t.elapsed().as_secs_f64(),
        disk_bytes(&file) as f64 / 1e6
    );
    let t = Instant::now();
    let _ = db.compact();
    println!(
        "  after compact ({:.2?}): {:.2} MB",
        t.elapsed(),
        disk_bytes(&file) as f64 / 1e6
    );
}
