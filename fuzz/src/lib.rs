//! Helpers the fuzz targets share: polling a future that never waits (the
//! readers under test read from byte slices in memory, so every poll is
//! ready), and splitting an input into chunk sizes.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs a future that reads only from memory to its end. A future that
/// stays pending for 1,000 polls is a bug of the reader (it waits on
/// something a slice can never deliver), so it panics: a crash.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("a reader over a byte slice stayed pending");
}

/// Cuts `data` into chunks whose sizes cycle through `sizes` (each at
/// least 1), as reads from a socket would deliver it.
pub fn chunks<'a>(data: &'a [u8], sizes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = data;
    let mut i = 0usize;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = sizes
            .get(i % sizes.len().max(1))
            .map_or(rest.len(), |s| usize::from(*s).max(1))
            .min(rest.len());
        i += 1;
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}
