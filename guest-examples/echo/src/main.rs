//! `echo`: the result is the payload, byte for byte.

fn main() {
    // The simplest possible task: no parsing, no allocation beyond the payload.
    wasque_guest::run(Ok);
}
