//! `thumbnail`: the payload is a PNG or JPEG image; the result is a PNG scaled
//! down to fit within a square of `N`x`N` pixels, keeping the aspect ratio.
//!
//! `N` is the optional first argument (default 64). Images that already fit
//! are not enlarged. An undecodable payload is logged and exits with status 1.

use std::io::Cursor;

use image::{ImageFormat, imageops::FilterType};

const DEFAULT_MAX_SIDE: u32 = 64;

fn thumbnail(payload: &[u8], max_side: u32) -> Result<Vec<u8>, String> {
    let img = image::load_from_memory(payload).map_err(|e| format!("thumbnail: bad image: {e}"))?;
    let thumb = if img.width() > max_side || img.height() > max_side {
        // `resize` keeps the aspect ratio and fits within the given box.
        img.resize(max_side, max_side, FilterType::Triangle)
    } else {
        img
    };
    let mut png = Vec::new();
    thumb
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|e| format!("thumbnail: cannot encode PNG: {e}"))?;
    Ok(png)
}

fn main() {
    let max_side = match std::env::args().nth(1) {
        None => DEFAULT_MAX_SIDE,
        Some(arg) => match arg.parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => wasque_guest::fail(1, &format!("thumbnail: bad max side {arg:?}")),
        },
    };
    wasque_guest::run(|payload| thumbnail(&payload, max_side));
}
