//! `ExecError`: why a module could not be stored or the executor could not
//! start. Job failures are not errors here: they are `JobResult`s with an
//! `ErrorClass`.

use std::path::PathBuf;

use wasque_sdk::proto::ErrorClass;

/// An executor operation that failed (upload, removal, start-up).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The bytes are not a module this node can run: not Wasm, invalid Wasm,
    /// an import the sandbox does not grant, no `_start`.
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// The module is larger than the node accepts.
    #[error("module of {size} bytes is larger than the node's limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    /// Reading or writing the module cache failed.
    #[error("module cache: {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// wasmtime refused the engine configuration or failed internally.
    #[error("wasm engine: {0}")]
    Engine(String),
    /// The executor's threads could not be started.
    #[error("cannot start executor thread: {0}")]
    Thread(std::io::Error),
}

impl ExecError {
    /// The job error class a job gets when this error stops it.
    pub fn class(&self) -> ErrorClass {
        match self {
            ExecError::InvalidModule(_) | ExecError::TooLarge { .. } => ErrorClass::InvalidModule,
            ExecError::Io { .. } | ExecError::Engine(_) | ExecError::Thread(_) => {
                ErrorClass::Internal
            }
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ExecError {
        ExecError::Io {
            path: path.into(),
            source,
        }
    }
}
