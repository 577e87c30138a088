//! `BoundedPipe`: a job's stdout or stderr, kept in memory up to a bound.
//!
//! Stdout is the job's result, so writing past its bound is an error: the
//! write traps the guest at once and the pipe records the overflow, which is
//! how the job gets `ErrorClass::OutputLimit` (the class comes from this
//! record, not from the trap). Stderr is a log: past its bound bytes are
//! dropped and the guest is told the write succeeded, so a chatty guest
//! behaves the same with or without the bound.
//!
//! The pipe lives in the job's `Store` and is written by the sandbox's
//! `fd_write` (`wasi.rs`) with the store borrowed, so it needs no lock.

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

/// One job's output buffer.
pub(crate) struct BoundedPipe {
    cap: usize,
    mode: Overflow,
    buf: Vec<u8>,
    overflowed: bool,
}

impl BoundedPipe {
    pub(crate) fn new(cap: usize, mode: Overflow) -> BoundedPipe {
        BoundedPipe {
            cap,
            mode,
            buf: Vec::new(),
            overflowed: false,
        }
    }

    /// Takes the bytes written so far, and whether a write went past the
    /// bound.
    pub(crate) fn take(&mut self) -> (Vec<u8>, bool) {
        (std::mem::take(&mut self.buf), self.overflowed)
    }

    /// Appends `bytes`; `Err` when the pipe is in `Fail` mode and they do
    /// not fit.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<(), OutputLimitExceeded> {
        let room = self.cap.saturating_sub(self.buf.len());
        if bytes.len() <= room {
            self.buf.extend_from_slice(bytes);
            return Ok(());
        }
        self.overflowed = true;
        match self.mode {
            Overflow::Fail => Err(OutputLimitExceeded(self.cap)),
            Overflow::Discard => {
                self.buf.extend_from_slice(&bytes[..room]);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_mode_refuses_past_the_bound_and_records_it() {
        let mut p = BoundedPipe::new(4, Overflow::Fail);
        assert!(p.append(b"ab").is_ok());
        assert!(p.append(b"cd").is_ok());
        assert!(p.append(b"e").is_err());
        assert_eq!(p.take(), (b"abcd".to_vec(), true));
    }

    #[test]
    fn exactly_the_bound_is_fine() {
        let mut p = BoundedPipe::new(4, Overflow::Fail);
        assert!(p.append(b"abcd").is_ok());
        assert_eq!(p.take(), (b"abcd".to_vec(), false));
    }

    #[test]
    fn discard_mode_keeps_the_head() {
        let mut p = BoundedPipe::new(3, Overflow::Discard);
        assert!(p.append(b"ab").is_ok());
        assert!(p.append(b"cdef").is_ok());
        assert_eq!(p.take(), (b"abc".to_vec(), true));
    }
}
