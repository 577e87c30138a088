//! News of running jobs, while they run: the progress a guest reports
//! (`wasque.progress`, `host.rs`) and the lines it writes to stdout, for
//! watchers (`wasque logs -f`). The result keeps the whole stdout as
//! before; this is a bounded copy of its lines as they come.
//!
//! Each run has a [`JobTap`] in its `Store` (no lock on the hot path). It
//! keeps the latest progress and the complete lines not yet handed over,
//! and hands them to the node's one [`LiveFeed`] at most every
//! [`FLUSH_EVERY`]: on a host call after that long, from the epoch
//! callback (which runs at least that often while Wasm runs), before a
//! guest sleeps, and when the run ends. The feed coalesces: only each
//! job's latest progress is kept, and one wake-up (`Notify`) stands for
//! any number of reports, so the driver task takes them in batches.
//!
//! Bounds: lines are tapped only while the feed is switched on (someone
//! subscribed to events); a line is at most [`MAX_LINE_BYTES`] (a longer
//! one is cut there); a job offers at most [`LINES_PER_SEC`] lines and
//! [`BYTES_PER_SEC`] bytes a second (a bucket that holds one second), and
//! the feed holds at most [`MAX_PENDING_LINES`] lines between two takes.
//! Lines beyond any bound are dropped and counted; the count travels with
//! the job's next line (or alone at its end), so a watcher is told.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasque_sdk::proto::JobId;

/// How often a run hands its news to the feed, at most.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Longest line offered to watchers, in bytes.
pub const MAX_LINE_BYTES: usize = 4096;
/// Lines one job may offer per second (and at once, after a quiet second).
pub const LINES_PER_SEC: f64 = 100.0;
/// Bytes of lines one job may offer per second.
pub const BYTES_PER_SEC: f64 = 64.0 * 1024.0;
/// Lines the feed holds for the driver between two takes, all jobs.
pub const MAX_PENDING_LINES: usize = 4096;

/// A guest's progress report as the executor took it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub done: u64,
    pub total: u64,
    pub note: String,
}

/// One stdout line of a running job (or, with `line: None`, only the
/// count of lines dropped at its end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub job: JobId,
    pub line: Option<String>,
    /// Lines of this job dropped just before this one.
    pub dropped: u64,
}

/// What the feed held when the driver took it.
#[derive(Debug, Default)]
pub struct LiveBatch {
    /// Each job's latest report.
    pub progress: HashMap<JobId, Report>,
    /// Lines in the order they came.
    pub lines: Vec<LogLine>,
}

/// The node's feed of news from running jobs. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct LiveFeed {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    batch: Mutex<LiveBatch>,
    wake: tokio::sync::Notify,
    /// Whether stdout lines are tapped (someone listens).
    lines_on: AtomicBool,
}

impl LiveFeed {
    /// Everything reported since the last take.
    pub fn take(&self) -> LiveBatch {
        std::mem::take(&mut *self.lock())
    }

    /// Waits until something was reported (at once if something was
    /// since the last wait).
    pub async fn changed(&self) {
        self.inner.wake.notified().await;
    }

    /// Switches the tapping of stdout lines on or off (progress is always
    /// taken: it is one value per job).
    pub fn set_lines(&self, on: bool) {
        self.inner.lines_on.store(on, Ordering::Relaxed);
    }

    fn lines_on(&self) -> bool {
        self.inner.lines_on.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveBatch> {
        self.inner
            .batch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One run's side of the feed, kept in its `Store`.
pub(crate) struct JobTap {
    job: JobId,
    feed: LiveFeed,
    /// The end of a line not yet written whole.
    partial: Vec<u8>,
    /// Whether `partial` was cut at `MAX_LINE_BYTES` (the rest of that
    /// line is skipped).
    cut: bool,
    /// Lines not handed over yet, each with the count of lines dropped
    /// just before it.
    pending: Vec<(String, u64)>,
    /// Lines dropped since the last one kept.
    dropped: u64,
    progress: Option<Report>,
    dirty: bool,
    flushed_at: Instant,
    /// Rate buckets: lines and bytes left, refilled with time.
    lines_left: f64,
    bytes_left: f64,
    filled_at: Instant,
}

impl JobTap {
    pub(crate) fn new(job: JobId, feed: LiveFeed) -> JobTap {
        let now = Instant::now();
        JobTap {
            job,
            feed,
            partial: Vec::new(),
            cut: false,
            pending: Vec::new(),
            dropped: 0,
            progress: None,
            dirty: false,
            flushed_at: now,
            lines_left: LINES_PER_SEC,
            bytes_left: BYTES_PER_SEC,
            filled_at: now,
        }
    }

    /// Bytes the guest wrote to stdout (already in its result).
    pub(crate) fn stdout(&mut self, mut bytes: &[u8]) {
        if !self.feed.lines_on() {
            return;
        }
        while !bytes.is_empty() {
            let (piece, ends) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[..i], Some(i + 1)),
                None => (bytes, None),
            };
            if !self.cut {
                let room = MAX_LINE_BYTES - self.partial.len();
                self.partial
                    .extend_from_slice(&piece[..piece.len().min(room)]);
                if self.partial.len() == MAX_LINE_BYTES && ends.is_none() {
                    // Over the bound: offered as it is, the rest skipped.
                    self.line();
                    self.cut = true;
                }
            }
            match ends {
                Some(i) => {
                    if !self.cut {
                        self.line();
                    }
                    self.cut = false;
                    bytes = &bytes[i..];
                }
                None => break,
            }
        }
        self.flush_due();
    }

    /// A progress report (the latest wins).
    pub(crate) fn progress(&mut self, r: Report) {
        self.progress = Some(r);
        self.dirty = true;
        self.flush_due();
    }

    /// Hands news over if the last hand-over is [`FLUSH_EVERY`] old.
    pub(crate) fn flush_due(&mut self) {
        if self.dirty && self.flushed_at.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// The run ends: a last partial line is a line, and everything goes.
    pub(crate) fn finish(&mut self) {
        if !self.partial.is_empty() && !self.cut {
            self.line();
        }
        self.flush();
    }

    /// Hands the news over now.
    pub(crate) fn flush(&mut self) {
        self.flushed_at = Instant::now();
        if !self.dirty {
            return;
        }
        self.dirty = false;
        {
            let mut b = self.feed.lock();
            if let Some(p) = self.progress.take() {
                b.progress.insert(self.job, p);
            }
            // Lines the full feed refuses count as dropped before the next.
            let mut carry = 0;
            for (line, dropped) in self.pending.drain(..) {
                if b.lines.len() >= MAX_PENDING_LINES {
                    carry += dropped + 1;
                    continue;
                }
                b.lines.push(LogLine {
                    job: self.job,
                    line: Some(line),
                    dropped: dropped + std::mem::take(&mut carry),
                });
            }
            self.dropped += carry;
            if self.dropped > 0 && b.lines.len() < MAX_PENDING_LINES {
                b.lines.push(LogLine {
                    job: self.job,
                    line: None,
                    dropped: std::mem::take(&mut self.dropped),
                });
            }
        }
        self.feed.inner.wake.notify_one();
    }

    /// `partial` is a whole line: offered if the rate allows.
    fn line(&mut self) {
        let bytes = std::mem::take(&mut self.partial);
        let now = Instant::now();
        let secs = now.duration_since(self.filled_at).as_secs_f64();
        self.filled_at = now;
        self.lines_left = (self.lines_left + secs * LINES_PER_SEC).min(LINES_PER_SEC);
        self.bytes_left = (self.bytes_left + secs * BYTES_PER_SEC).min(BYTES_PER_SEC);
        let cost = bytes.len() as f64;
        if self.lines_left < 1.0 || self.bytes_left < cost {
            self.dropped += 1;
            self.dirty = true;
            return;
        }
        self.lines_left -= 1.0;
        self.bytes_left -= cost;
        let mut s = String::from_utf8_lossy(&bytes).into_owned();
        if s.ends_with('\r') {
            s.pop();
        }
        self.pending.push((s, std::mem::take(&mut self.dropped)));
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap() -> (JobTap, LiveFeed) {
        let feed = LiveFeed::default();
        feed.set_lines(true);
        let id = JobId::compose(1, 0, 1, false, 60, 0);
        (JobTap::new(id, feed.clone()), feed)
    }

    fn lines(b: &LiveBatch) -> Vec<(Option<&str>, u64)> {
        b.lines
            .iter()
            .map(|l| (l.line.as_deref(), l.dropped))
            .collect()
    }

    #[test]
    fn lines_are_split_across_writes_and_the_last_partial_one_kept() {
        let (mut t, feed) = tap();
        t.stdout(b"one\ntw");
        t.stdout(b"o\r\nthree");
        t.finish();
        let b = feed.take();
        assert_eq!(
            lines(&b),
            [(Some("one"), 0), (Some("two"), 0), (Some("three"), 0)]
        );
    }

    #[test]
    fn nothing_is_tapped_while_the_feed_is_off() {
        let (mut t, feed) = tap();
        feed.set_lines(false);
        t.stdout(b"quiet\n");
        t.finish();
        assert!(feed.take().lines.is_empty());
    }

    #[test]
    fn a_long_line_is_cut_and_its_rest_skipped() {
        let (mut t, feed) = tap();
        t.stdout(&vec![b'x'; MAX_LINE_BYTES + 10]);
        t.stdout(b"yy\nnext\n");
        t.finish();
        let b = feed.take();
        assert_eq!(b.lines.len(), 2);
        assert_eq!(
            b.lines[0].line.as_ref().map(String::len),
            Some(MAX_LINE_BYTES)
        );
        assert_eq!(b.lines[1].line.as_deref(), Some("next"));
    }

    #[test]
    fn lines_over_the_rate_are_dropped_and_counted() {
        let (mut t, feed) = tap();
        let many: String = (0..150).map(|i| format!("{i}\n")).collect();
        t.stdout(many.as_bytes());
        t.finish();
        let b = feed.take();
        let shown = b.lines.iter().filter(|l| l.line.is_some()).count();
        let dropped: u64 = b.lines.iter().map(|l| l.dropped).sum();
        assert_eq!(shown, LINES_PER_SEC as usize);
        assert_eq!(dropped, 150 - LINES_PER_SEC as u64);
        assert_eq!(b.lines.last().map(|l| l.line.is_none()), Some(true));
    }

    #[test]
    fn only_the_latest_progress_is_kept() {
        let (mut t, feed) = tap();
        for i in 0..5 {
            t.progress(Report {
                done: i,
                total: 5,
                note: String::new(),
            });
        }
        t.finish();
        let b = feed.take();
        assert_eq!(b.progress.len(), 1);
        assert_eq!(b.progress.values().next().map(|r| r.done), Some(4));
    }
}
