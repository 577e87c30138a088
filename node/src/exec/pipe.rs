//! `BoundedPipe`: a job's stdout or stderr, kept in memory up to a bound.
//!
//! Stdout is the job's result, so writing past its bound is an error: the
//! write traps the guest at once and the pipe records the overflow, which is
//! how the job gets `ErrorClass::OutputLimit` (the class comes from this
//! record, not from the trap). Stderr is a log: past its bound bytes are
//! dropped and the guest is told the write succeeded, so a chatty guest
//! behaves the same with or without the bound.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// What a full pipe does with more bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Refuse the write, trap the guest and record the overflow (stdout).
    Fail,
    /// Keep what fits, drop the rest, report success (stderr).
    Discard,
}

/// The error a guest's stdout write traps with once over the bound.
#[derive(Debug, thiserror::Error)]
#[error("output exceeded the limit of {0} bytes")]
pub(crate) struct OutputLimitExceeded(pub(crate) usize);

/// A cheap-clone handle on one job's output buffer.
#[derive(Clone)]
pub(crate) struct BoundedPipe {
    shared: Arc<Shared>,
}

struct Shared {
    cap: usize,
    mode: Overflow,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    overflowed: bool,
}

/// How many bytes a writer is told it may write at once. The bound is
/// enforced in `write`, so this only needs to be positive.
const PERMIT: usize = 64 << 10;

impl BoundedPipe {
    pub(crate) fn new(cap: usize, mode: Overflow) -> BoundedPipe {
        BoundedPipe {
            shared: Arc::new(Shared {
                cap,
                mode,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Takes the bytes written so far, and whether a write went past the
    /// bound.
    pub(crate) fn take(&self) -> (Vec<u8>, bool) {
        let mut st = self.lock();
        (std::mem::take(&mut st.buf), st.overflowed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned lock still
        // holds consistent bytes.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `bytes`; `Err` when the pipe is in `Fail` mode and they do
    /// not fit.
    fn append(&self, bytes: &[u8]) -> Result<(), OutputLimitExceeded> {
        let cap = self.shared.cap;
        let mut st = self.lock();
        let room = cap.saturating_sub(st.buf.len());
        if bytes.len() <= room {
            st.buf.extend_from_slice(bytes);
            return Ok(());
        }
        st.overflowed = true;
        match self.shared.mode {
            Overflow::Fail => Err(OutputLimitExceeded(cap)),
            Overflow::Discard => {
                st.buf.extend_from_slice(&bytes[..room]);
                Ok(())
            }
        }
    }
}

impl IsTerminal for BoundedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for BoundedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes)
            .map_err(|e| StreamError::Trap(wasmtime::Error::new(e)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for BoundedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.append(buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_mode_refuses_past_the_bound_and_records_it() {
        let p = BoundedPipe::new(4, Overflow::Fail);
        assert!(p.append(b"ab").is_ok());
        assert!(p.append(b"cd").is_ok());
        assert!(p.append(b"e").is_err());
        assert_eq!(p.take(), (b"abcd".to_vec(), true));
    }

    #[test]
    fn exactly_the_bound_is_fine() {
        let p = BoundedPipe::new(4, Overflow::Fail);
        assert!(p.append(b"abcd").is_ok());
        assert_eq!(p.take(), (b"abcd".to_vec(), false));
    }

    #[test]
    fn discard_mode_keeps_the_head() {
        let p = BoundedPipe::new(3, Overflow::Discard);
        assert!(p.append(b"ab").is_ok());
        assert!(p.append(b"cdef").is_ok());
        assert_eq!(p.take(), (b"abc".to_vec(), true));
    }
}
