//! The ranges client values must fall in, whatever door they came through.
//!
//! Disque checks only signs (TTL > 0, RETRY and DELAY >= 0, a timeout not
//! negative, COUNT and MAXLEN > 0) and then adds a client's number to the
//! clock, which overflows for a large one. wasque keeps Disque's checks and
//! messages and adds an upper bound to every value that meets time, so that
//! every `now + value` (in ms) stays far from the end of `u64` and a client
//! sending `i64::MAX` gets a clear error instead of a wrapped clock. RESP
//! checks them as it parses (Disque's messages); the engine checks them
//! again for the typed doors (QUIC, the SDK), so none is missed.

/// The longest TTL, RETRY or DELAY, in seconds: ten years.
pub const MAX_JOB_SECS: u64 = 10 * 365 * 24 * 3600;

/// The longest a client may ask the node to wait, in ms (ADDJOB's
/// ms-timeout, GETJOB TIMEOUT, WAITJOB, a QUIC wait): ten years too.
pub const MAX_TIMEOUT_MS: u64 = MAX_JOB_SECS * 1000;

/// `Err(message)` when a time in seconds (`what`: TTL, RETRY, DELAY) is
/// over [`MAX_JOB_SECS`].
pub fn secs(what: &str, v: u64) -> Result<u64, String> {
    if v > MAX_JOB_SECS {
        Err(format!(
            "{what} of {v} seconds is over the most a job may use, {MAX_JOB_SECS} seconds (ten years)"
        ))
    } else {
        Ok(v)
    }
}

/// `Err(message)` when a timeout in ms is over [`MAX_TIMEOUT_MS`].
pub fn timeout_ms(what: &str, v: u64) -> Result<u64, String> {
    if v > MAX_TIMEOUT_MS {
        Err(format!(
            "{what} of {v} ms is over the longest wait, {MAX_TIMEOUT_MS} ms (ten years)"
        ))
    } else {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_keep_clock_arithmetic_far_from_overflow() {
        // The clock in ms for the next thousand years fits with room.
        let far_future_ms: u64 = 1000 * 365 * 24 * 3600 * 1000;
        assert!(far_future_ms.checked_add(MAX_TIMEOUT_MS).is_some());
        assert!(far_future_ms.checked_add(MAX_JOB_SECS * 1000 * 3).is_some());
        assert_eq!(secs("TTL", MAX_JOB_SECS), Ok(MAX_JOB_SECS));
        assert!(secs("TTL", MAX_JOB_SECS + 1).is_err());
        assert!(secs("TTL", u64::MAX).is_err());
        assert!(timeout_ms("timeout", u64::MAX).is_err());
        assert_eq!(timeout_ms("timeout", 0), Ok(0));
    }
}
