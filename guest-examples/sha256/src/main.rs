//! `sha256`: prints the lowercase hex SHA-256 digest of the payload,
//! followed by a newline.

use sha2::{Digest, Sha256};

fn main() {
    wasque_guest::run(|payload| {
        let digest = Sha256::digest(&payload);
        // 64 hex digits + newline.
        let mut out = String::with_capacity(65);
        for byte in digest {
            out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap());
            out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap());
        }
        out.push('\n');
        Ok(out.into_bytes())
    });
}
