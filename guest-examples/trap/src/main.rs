//! `trap` (hostile): executes the Wasm `unreachable` instruction.
//! Expected class: `trap` (unreachable).

fn main() {
    wasque_guest::log("trap: about to execute `unreachable`");
    #[cfg(target_family = "wasm")]
    core::arch::wasm32::unreachable();
    // Host builds (for type-checking only) abort instead.
    #[cfg(not(target_family = "wasm"))]
    std::process::abort();
}
