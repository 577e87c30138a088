//! The config file parser (`RawConfig::parse`) and the resolution of what
//! it read into a `Config` (`RawConfig::resolve`), on arbitrary text.
//!
//! A crash: a panic (an unchecked number, a slice past a line's end), or a
//! resolved config whose bounds do not hold.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wasque_node::config::{RawConfig, parse_size};

fuzz_target!(|data: &[u8]| {
    // A file is read with read_to_string: only UTF-8 reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_size(text);
    let Ok(raw) = RawConfig::parse(text, Path::new("fuzz.conf")) else {
        return;
    };
    if let Ok(c) = raw.resolve() {
        assert_ne!(c.port, 0);
    }
});
