//! What the node keeps on disk under its data dir.
//!
//! Today: the data dir itself, held by one process at a time through an
//! exclusive lock on `DATA_DIR/LOCK`, and the node's persistent id
//! (`DATA_DIR/node-id`). Modules and their compiled artifacts live under
//! `modules/` and `artifacts/` (owned by [`crate::exec`]), the TLS identity
//! under `tls/` (owned by [`crate::net::identity`]).

mod data_dir;

pub use data_dir::{DataDir, DataDirError};
