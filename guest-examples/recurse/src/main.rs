//! `recurse` (hostile): unbounded, non-tail recursion. Expected class: `trap`
//! (wasmtime's "call stack exhausted" stack-overflow trap).
//!
//! The recursion deliberately keeps nothing in linear memory (no
//! address-taken locals, hence no use of the shadow stack): every frame lives
//! on wasmtime's native Wasm stack, so it is that stack, guarded by the
//! engine's `max_wasm_stack`, which overflows.

use std::ptr::{read_volatile, write_volatile};

/// Written and read with volatile accesses around every call: the optimiser
/// must perform the calls in order and cannot turn the recursion into a loop.
static mut DEPTH: u64 = 0;

#[expect(unconditional_recursion, reason = "the point of this guest")]
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // SAFETY: single-threaded program; raw pointer access to a static.
    unsafe { write_volatile(&raw mut DEPTH, depth) };
    let below = recurse(depth + 1);
    // Work after the call makes it a non-tail call: the frame must stay.
    below ^ unsafe { read_volatile(&raw const DEPTH) }
}

fn main() {
    let r = recurse(0);
    // Never reached.
    wasque_guest::output(format!("{r}\n").as_bytes());
}
