//! The content-addressed module cache: each module is stored once per node
//! under the sha256 of its bytes, compiled once, and kept ready to
//! instantiate as an `InstancePre`.
//!
//! On disk, under the data dir:
//!
//! - `modules/<sha256hex>.wasm`: the module as uploaded (the truth),
//! - `artifacts/<sha256hex>-<compat>.cwasm`: its precompiled code, where
//!   `<compat>` is 16 hex digits of the engine's
//!   `precompile_compatibility_hash`, so a node whose wasmtime or settings
//!   changed never loads code compiled for another engine: it recompiles
//!   from the blob and writes a fresh artifact.
//!
//! Every file is written atomically (temp file, fsync, rename, fsync of the
//! folder). Only artifacts written by this cache are ever deserialized.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use wasmtime::{Engine, ExternType, InstancePre, Linker, Module, ModuleExport};
use wasque_sdk::proto::ModuleHash;

use super::error::ExecError;
use super::run::JobCtx;
use super::{PutOutcome, host, wasi};

/// The WASI import module the sandbox grants (beside its own, `host.rs`).
const WASI_P1: &str = wasi::MODULE;

/// A module ready to run.
pub(crate) struct LoadedModule {
    /// Size of the module's bytes.
    pub(crate) size: u64,
    /// Imports resolved against the sandbox's linker, once.
    pub(crate) pre: InstancePre<JobCtx>,
    /// `_start`, looked up once.
    pub(crate) start: ModuleExport,
    /// `argv[0]` of the guest.
    pub(crate) argv0: Arc<str>,
}

/// The cache: one per executor.
pub(crate) struct ModuleCache {
    engine: Engine,
    compat: String,
    linker: Linker<JobCtx>,
    modules_dir: PathBuf,
    artifacts_dir: PathBuf,
    max_module_bytes: usize,
    map: RwLock<HashMap<ModuleHash, Arc<LoadedModule>>>,
    /// Serialises uploads and removals (and so compiles of one hash).
    writes: Mutex<()>,
    /// Modules compiled by Cranelift since open.
    pub(crate) compiled: AtomicU64,
    /// Modules restored from a precompiled artifact at open.
    pub(crate) loaded: AtomicU64,
}

impl ModuleCache {
    /// Opens (creating) the cache under `data_dir` and loads every stored
    /// module. A stored module that cannot be loaded is logged and skipped:
    /// it never stops the node from starting.
    pub(crate) fn open(
        engine: Engine,
        compat: String,
        data_dir: &Path,
        max_module_bytes: usize,
    ) -> Result<ModuleCache, ExecError> {
        let modules_dir = data_dir.join("modules");
        let artifacts_dir = data_dir.join("artifacts");
        for d in [&modules_dir, &artifacts_dir] {
            fs::create_dir_all(d).map_err(|e| ExecError::io(d, e))?;
        }
        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker)
            .map_err(|e| ExecError::Engine(format!("cannot link WASI: {e}")))?;
        host::add_to_linker(&mut linker)
            .map_err(|e| ExecError::Engine(format!("cannot link the wasque module: {e}")))?;
        let cache = ModuleCache {
            engine,
            compat,
            linker,
            modules_dir,
            artifacts_dir,
            max_module_bytes,
            map: RwLock::new(HashMap::new()),
            writes: Mutex::new(()),
            compiled: AtomicU64::new(0),
            loaded: AtomicU64::new(0),
        };
        cache.load_all()?;
        Ok(cache)
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The module with this hash, if the node has it.
    pub(crate) fn get(&self, hash: &ModuleHash) -> Option<Arc<LoadedModule>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .cloned()
    }

    pub(crate) fn contains(&self, hash: &ModuleHash) -> bool {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(hash)
    }

    /// Every module: hash and byte size, ordered by hash.
    pub(crate) fn list(&self) -> Vec<(ModuleHash, u64)> {
        let mut v: Vec<_> = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(h, m)| (*h, m.size))
            .collect();
        v.sort_unstable();
        v
    }

    /// Validates, compiles and stores `bytes` (see `Executor::put_module`).
    pub(crate) fn put(&self, bytes: &[u8]) -> Result<PutOutcome, ExecError> {
        let size = bytes.len() as u64;
        if bytes.len() > self.max_module_bytes {
            return Err(ExecError::TooLarge {
                size,
                max: self.max_module_bytes as u64,
            });
        }
        check_header(bytes)?;
        let hash = ModuleHash::of(bytes);
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        if self.contains(&hash) {
            return Ok(PutOutcome {
                hash,
                size,
                compiled_now: false,
            });
        }
        let module = self.compile(bytes)?;
        let loaded = self.prepare(&hash, &module, size)?;
        let artifact = module
            .serialize()
            .map_err(|e| ExecError::Engine(format!("cannot serialize compiled module: {e}")))?;
        write_atomic(&self.modules_dir, &blob_name(&hash), bytes)?;
        write_atomic(&self.artifacts_dir, &self.artifact_name(&hash), &artifact)?;
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash, Arc::new(loaded));
        Ok(PutOutcome {
            hash,
            size,
            compiled_now: true,
        })
    }

    /// Forgets a module and deletes its files. Jobs already running it
    /// finish. `Ok(false)` when the node did not have it.
    /// The module's bytes as uploaded, if the node has it.
    pub(crate) fn blob(&self, hash: &ModuleHash) -> Option<Vec<u8>> {
        if !self.contains(hash) {
            return None;
        }
        std::fs::read(self.modules_dir.join(blob_name(hash))).ok()
    }

    pub(crate) fn remove(&self, hash: &ModuleHash) -> Result<bool, ExecError> {
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let known = self
            .map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(hash)
            .is_some();
        let blob = remove_file(&self.modules_dir.join(blob_name(hash)))?;
        // Artifacts of this module for any engine.
        let prefix = format!("{}-", hash.to_hex());
        for (name, path) in list_dir(&self.artifacts_dir)? {
            if name.starts_with(&prefix) {
                remove_file(&path)?;
            }
        }
        if blob || known {
            sync_dir(&self.modules_dir)?;
        }
        Ok(known || blob)
    }

    fn artifact_name(&self, hash: &ModuleHash) -> String {
        format!("{}-{}.cwasm", hash.to_hex(), self.compat)
    }

    fn compile(&self, bytes: &[u8]) -> Result<Module, ExecError> {
        let module = Module::from_binary(&self.engine, bytes)
            .map_err(|e| ExecError::InvalidModule(error_text(&e)))?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        Ok(module)
    }

    /// Checks what the sandbox grants and resolves the imports once.
    fn prepare(
        &self,
        hash: &ModuleHash,
        module: &Module,
        size: u64,
    ) -> Result<LoadedModule, ExecError> {
        for import in module.imports() {
            let ours = import.module() == host::MODULE && host::NAMES.contains(&import.name());
            if import.module() != WASI_P1 && !ours {
                return Err(ExecError::InvalidModule(format!(
                    "the module imports `{}.{}`, which the sandbox does not grant \
                     (only WASI preview 1 functions of `{WASI_P1}` and `{}.{}` are available)",
                    import.module(),
                    import.name(),
                    host::MODULE,
                    host::NAMES.join("`, `")
                )));
            }
        }
        match module.get_export("_start") {
            Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
            Some(_) => {
                return Err(ExecError::InvalidModule(
                    "the module's `_start` export is not a function taking and returning nothing"
                        .into(),
                ));
            }
            None => {
                return Err(ExecError::InvalidModule(
                    "the module has no `_start` export: wasque runs WASI commands \
                     (a program with `main`, built for wasm32-wasip1)"
                        .into(),
                ));
            }
        }
        let start = module
            .get_export_index("_start")
            .ok_or_else(|| ExecError::InvalidModule("the module has no `_start` export".into()))?;
        let pre = self.linker.instantiate_pre(module).map_err(|e| {
            ExecError::InvalidModule(format!(
                "the module cannot be linked against WASI preview 1: {}",
                error_text(&e)
            ))
        })?;
        Ok(LoadedModule {
            size,
            pre,
            start,
            argv0: format!("{}.wasm", &hash.to_hex()[..16]).into(),
        })
    }

    /// Loads every stored module and deletes files that are not ours to
    /// keep (temp files of an interrupted write, artifacts for another
    /// engine or of a removed module).
    fn load_all(&self) -> Result<(), ExecError> {
        let mut keep = HashSet::new();
        for (name, path) in list_dir(&self.modules_dir)? {
            if is_temp(&name) {
                remove_file(&path)?;
                continue;
            }
            let Some(hash) = name
                .strip_suffix(".wasm")
                .and_then(|h| h.parse::<ModuleHash>().ok())
            else {
                continue;
            };
            match self.load_one(&hash, &path) {
                Ok(m) => {
                    keep.insert(self.artifact_name(&hash));
                    self.map
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(hash, Arc::new(m));
                }
                Err(e) => {
                    tracing::warn!(module = %hash, error = %e, "stored module skipped");
                }
            }
        }
        for (name, path) in list_dir(&self.artifacts_dir)? {
            if !keep.contains(&name) {
                remove_file(&path)?;
            }
        }
        Ok(())
    }

    fn load_one(&self, hash: &ModuleHash, path: &Path) -> Result<LoadedModule, ExecError> {
        let bytes = fs::read(path).map_err(|e| ExecError::io(path, e))?;
        if ModuleHash::of(&bytes) != *hash {
            return Err(ExecError::InvalidModule(format!(
                "{} does not hash to its name",
                path.display()
            )));
        }
        let artifact = self.artifacts_dir.join(self.artifact_name(hash));
        if artifact.exists() {
            // SAFETY: `deserialize_file` trusts the file to be code that
            // wasmtime compiled. This artifact was written by this cache
            // (`put` or a recompile below, through `write_atomic`, so never
            // half-written) into the node's own data dir, under a name
            // carrying this engine's compatibility hash; wasmtime also
            // checks the engine settings recorded in it and refuses a
            // mismatch, in which case we recompile.
            match unsafe { Module::deserialize_file(&self.engine, &artifact) } {
                Ok(module) => {
                    let m = self.prepare(hash, &module, bytes.len() as u64)?;
                    self.loaded.fetch_add(1, Ordering::Relaxed);
                    return Ok(m);
                }
                Err(e) => {
                    tracing::warn!(module = %hash, error = %e, "artifact unusable; recompiling");
                }
            }
        }
        let module = self.compile(&bytes)?;
        let m = self.prepare(hash, &module, bytes.len() as u64)?;
        let code = module
            .serialize()
            .map_err(|e| ExecError::Engine(format!("cannot serialize compiled module: {e}")))?;
        write_atomic(&self.artifacts_dir, &self.artifact_name(hash), &code)?;
        Ok(m)
    }
}

/// Refuses what is plainly not a core Wasm binary, with a message that says
/// what it is instead.
fn check_header(bytes: &[u8]) -> Result<(), ExecError> {
    if !bytes.starts_with(b"\0asm") {
        let hint = if bytes.trim_ascii_start().starts_with(b"(") {
            " (it looks like WAT text: compile it to a binary .wasm first)"
        } else {
            ""
        };
        return Err(ExecError::InvalidModule(format!(
            "not a WebAssembly binary: it does not start with the `\\0asm` magic{hint}"
        )));
    }
    if bytes.len() >= 8 && bytes[4..8] != [1, 0, 0, 0] {
        return Err(ExecError::InvalidModule(
            "not a core WebAssembly module (version 1): components and other formats are not \
             run by wasque; build for wasm32-wasip1"
                .into(),
        ));
    }
    Ok(())
}

/// wasmtime's message with its causes, one after the other.
fn error_text(e: &wasmtime::Error) -> String {
    let mut s = String::new();
    for (i, cause) in e.chain().enumerate() {
        if i > 0 {
            s.push_str(": ");
        }
        s.push_str(&cause.to_string());
    }
    s
}

fn blob_name(hash: &ModuleHash) -> String {
    format!("{}.wasm", hash.to_hex())
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp")
}

/// Writes `dir/name` atomically: a temp file in the same folder, fsync,
/// rename over the final name, fsync of the folder.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ExecError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{name}.tmp{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let dst = dir.join(name);
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(ExecError::io(&tmp, e));
    }
    if let Err(e) = fs::rename(&tmp, &dst) {
        let _ = fs::remove_file(&tmp);
        return Err(ExecError::io(&dst, e));
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), ExecError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ExecError::io(dir, e))
}

/// Removes a file; `Ok(false)` if it was not there.
fn remove_file(path: &Path) -> Result<bool, ExecError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ExecError::io(path, e)),
    }
}

/// `(file name, path)` of the plain files in `dir` (names that are not
/// UTF-8 are not ours and are left alone).
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, ExecError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| ExecError::io(dir, e))? {
        let entry = entry.map_err(|e| ExecError::io(dir, e))?;
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if let (true, Ok(name)) = (is_file, entry.file_name().into_string()) {
            out.push((name, entry.path()));
        }
    }
    Ok(out)
}
