//! `memtest`: checks that no memory leaks from one instance to the next (the
//! node uses wasmtime's pooling allocator, which recycles linear memories).
//!
//! Payload `write`: fills a 1 MiB static buffer and a new 4 MiB heap block
//! with 0xAB, prints `wrote\n`.
//! Payload `read`: counts the non-zero bytes of the static buffer and of a
//! new, *not zeroed*, 4 MiB heap block, prints `static=<n> heap=<m>\n`.
//! A correct sandbox gives `static=0 heap=0`, whatever ran before in the same
//! slot.
//!
//! The heap block is taken straight from `memory.grow`, not from the Rust
//! allocator: `alloc` may hand back memory this very instance already used and
//! freed (e.g. buffers from reading stdin), which would read as non-zero even
//! on a perfect sandbox. Fresh pages from `memory.grow` must be zero, and as
//! both runs execute the same code they land at the same addresses, exactly
//! where the `write` run left its 0xAB bytes.
//!
//! All accesses are volatile (behind `black_box`ed pointers) so the compiler
//! can make no assumption about the contents.

use std::hint::black_box;
use std::ptr::{read_volatile, write_volatile};

const STATIC_LEN: usize = 1 << 20;
const HEAP_LEN: usize = 4 << 20;
const PATTERN: u8 = 0xAB;

/// Zero-initialised static: lives in the module's linear memory (`.bss`).
static mut BUF: [u8; STATIC_LEN] = [0; STATIC_LEN];

/// A new 4 MiB block of linear memory, obtained with `memory.grow` (as the
/// allocator itself would obtain it) and never freed.
#[cfg(target_family = "wasm")]
fn heap_block() -> *mut u8 {
    const PAGE: usize = 64 * 1024;
    let old_pages = core::arch::wasm32::memory_grow(0, HEAP_LEN / PAGE);
    if old_pages == usize::MAX {
        wasque_guest::fail(1, "memtest: memory.grow refused");
    }
    black_box((old_pages * PAGE) as *mut u8)
}

/// Host builds (for type-checking only): a leaked, uninitialised allocation.
#[cfg(not(target_family = "wasm"))]
fn heap_block() -> *mut u8 {
    let block: &mut [std::mem::MaybeUninit<u8>] = Box::leak(Box::new_uninit_slice(HEAP_LEN));
    black_box(block.as_mut_ptr().cast())
}

fn fill(ptr: *mut u8, len: usize) {
    for i in 0..len {
        // SAFETY: `ptr..ptr+len` is the static buffer or a block of linear
        // memory owned by nobody else.
        unsafe { write_volatile(ptr.add(i), PATTERN) };
    }
}

fn count_nonzero(ptr: *const u8, len: usize) -> usize {
    // SAFETY: as in `fill`. The bytes may be uninitialised from Rust's point
    // of view (that is the point of the test); volatile reads of `u8` behind
    // an opaque pointer are what the Wasm code actually does.
    (0..len)
        .filter(|&i| unsafe { read_volatile(ptr.add(i)) } != 0)
        .count()
}

fn main() {
    let command = wasque_guest::payload_string();
    let static_ptr = black_box(&raw mut BUF).cast::<u8>();
    match command.trim() {
        "write" => {
            fill(static_ptr, STATIC_LEN);
            fill(heap_block(), HEAP_LEN);
            wasque_guest::output(b"wrote\n");
        }
        "read" => {
            let s = count_nonzero(static_ptr, STATIC_LEN);
            let h = count_nonzero(heap_block(), HEAP_LEN);
            wasque_guest::output(format!("static={s} heap={h}\n").as_bytes());
        }
        other => wasque_guest::fail(
            2,
            &format!("memtest: payload must be \"write\" or \"read\", not {other:?}"),
        ),
    }
}
