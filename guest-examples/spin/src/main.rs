//! `spin` (hostile): loops forever. The node must stop it, normally by
//! running out of fuel (`out-of-fuel`), or by the wall-clock deadline
//! (`deadline`) when that limit is the lower one.

use std::hint::black_box;

fn main() {
    let mut counter: u64 = 0;
    loop {
        // black_box makes the counter observable, so the optimiser can neither
        // delete the loop nor prove it has no effect.
        counter = black_box(counter.wrapping_add(1));
    }
}
