//! `fib`: the payload is a decimal `n`; prints `fib(n)` followed by a newline.
//!
//! This is the CPU-heavy benchmark, so it deliberately uses the naive,
//! doubly-recursive definition (exponential time: fib(25) takes a few
//! milliseconds, fib(40) several seconds). Additions wrap on `u64` overflow.
//! A payload that is not a number is logged and the task exits with status 2.

use std::hint::black_box;

/// fib(0) = 0, fib(1) = 1, fib(n) = fib(n-1) + fib(n-2).
fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1).wrapping_add(fib(n - 2))
    }
}

fn main() {
    let text = wasque_guest::payload_string();
    let n: u64 = match text.trim().parse() {
        Ok(n) => n,
        Err(e) => wasque_guest::fail(
            2,
            &format!("fib: payload {:?} is not a number: {e}", text.trim()),
        ),
    };
    // black_box keeps the compiler from specialising on a known argument.
    let result = fib(black_box(n));
    wasque_guest::output(format!("{result}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_values() {
        let got: Vec<u64> = (0..10).map(super::fib).collect();
        assert_eq!(got, [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]);
    }
}
