//! `hog` (hostile): allocates memory in 1 MiB chunks forever, touching every
//! page and keeping every chunk alive. Each chunk needs `memory.grow`; once
//! the node's memory limit refuses it, the allocation fails and the guest
//! aborts. Expected class: `memory-limit`.

use std::hint::black_box;

const CHUNK: usize = 1 << 20;

fn main() {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // A non-zero fill value makes the allocator really write every byte
        // (hence every page); `vec![0; n]` could skip memory it knows is zero.
        let chunk = vec![0xA5u8; CHUNK];
        chunks.push(black_box(chunk));
        if chunks.len().is_multiple_of(64) {
            wasque_guest::log(&format!("hog: holding {} MiB", chunks.len()));
        }
    }
}
