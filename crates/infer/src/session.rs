//! ONNX Runtime through `ort`: loading the runtime library, choosing the device, loading a model
//! (with the optimized-model cache) and running it. Synchronous; callers on an async runtime use
//! `spawn_blocking`.
//!
//! **Optimized-model cache.** Graph optimisation is the slow part of creating a session. The first
//! load of a model runs it and saves the optimized graph to `<cache dir>/<key>.onnx`; the key is a
//! hash of (model sha256, ONNX Runtime build, execution provider, CPU features), because ORT's
//! optimized graphs may hold provider- and ISA-specific kernels. Later loads open that file with
//! optimisation disabled. A cache file that fails to load is deleted and the model is loaded from
//! its source again.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, ValueType};
use parking_lot::{Condvar, Mutex};
use sha2::{Digest, Sha256};

use super::tensor::{Datatype, Tensor, TensorData, TensorSpec};

/// The runtime version this build is made for (`api-31`), used in the install hint.
pub const ORT_VERSION_HINT: &str = "1.31.1";

/// Failures of runtime set-up and model loading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    /// `libonnxruntime` could not be loaded.
    #[error(
        "cannot load the ONNX Runtime library ({detail}); install it with `pip install onnxruntime=={ORT_VERSION_HINT}` \
         and set ORT_DYLIB_PATH (or --ort-lib) to <site-packages>/onnxruntime/capi/libonnxruntime.so.{ORT_VERSION_HINT}"
    )]
    RuntimeMissing {
        /// What the loader said.
        detail: String,
    },
    /// The library loaded but cannot be used (wrong version, environment failure).
    #[error("ONNX Runtime library unusable: {0}")]
    Runtime(String),
    /// The device asked for cannot be used.
    #[error("device {device}: {reason}")]
    Device {
        /// The device asked for.
        device: String,
        /// Why not.
        reason: String,
    },
    /// A model failed to load.
    #[error("model '{model}' ({path}): {reason}")]
    Load {
        /// Model name.
        model: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A failed inference.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// ONNX Runtime rejected the inputs (for example shapes that do not broadcast).
    #[error("{0}")]
    InvalidInput(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl From<ort::Error> for RunError {
    fn from(e: ort::Error) -> Self {
        match e.code() {
            ort::error::ErrorCode::InvalidArgument => RunError::InvalidInput(e.to_string()),
            _ => RunError::Failed(e.to_string()),
        }
    }
}

/// The device asked for on the command line: `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// CUDA when a GPU and the CUDA provider are there, else CPU.
    Auto,
    /// CPU only.
    Cpu,
    /// CUDA on this GPU; an error when it cannot be used.
    Cuda(i32),
}

impl FromStr for DeviceRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<i32>().ok())
                .filter(|n| *n >= 0)
                .map(DeviceRequest::Cuda)
                .ok_or_else(|| {
                    format!("unknown device '{s}' (expected auto, cpu, cuda or cuda:N)")
                }),
        }
    }
}

/// The device sessions are created for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// ONNX Runtime's CPU provider.
    Cpu,
    /// The CUDA provider on this GPU.
    Cuda(i32),
}

impl Device {
    fn tag(self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            Device::Cuda(n) => format!("cuda{n}"),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// A loaded ONNX Runtime: the environment plus the device decision.
pub struct Runtime {
    env: Environment,
    device: Device,
    /// True when the device was chosen by `auto`: a CUDA failure then falls back to CPU.
    fallback: bool,
    fingerprint: String,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("device", &self.device).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Loads `libonnxruntime` from `lib` (or `libonnxruntime.so` on the loader's search path) and
    /// resolves the device. Returns the runtime and one line that says which device it uses and
    /// why.
    pub fn init(
        lib: Option<&Path>,
        request: DeviceRequest,
    ) -> Result<(Runtime, String), InferError> {
        let lib = lib.map_or_else(|| PathBuf::from("libonnxruntime.so"), Path::to_path_buf);
        if lib.is_absolute() && !lib.exists() {
            return Err(InferError::RuntimeMissing {
                detail: format!("no file at {}", lib.display()),
            });
        }
        let builder = ort::init_from(&lib).map_err(|e| match e {
            ort::LoadDynamicError::Dlopen { .. } | ort::LoadDynamicError::MissingApi { .. } => {
                InferError::RuntimeMissing { detail: e.to_string() }
            }
            other => InferError::Runtime(other.to_string()),
        })?;
        let env =
            builder.with_name("tessera").build().map_err(|e| InferError::Runtime(e.to_string()))?;
        // ort's `tracing` logger registers at VERBOSE; formatting every verbose message costs ~30%
        // of a session's creation time. Warnings and errors are all we log.
        env.set_log_level(ort::logging::LogLevel::Warning);
        let (device, fallback, line) = resolve_device(request, &lib)?;
        let fingerprint = format!("{}|{}", ort::info(), cpu_features());
        Ok((Runtime { env, device, fallback, fingerprint }, line))
    }

    /// The device new sessions use.
    pub fn device(&self) -> Device {
        self.device
    }
}

fn gpu_present() -> bool {
    let listed = fs::read_dir("/proc/driver/nvidia/gpus").is_ok_and(|mut d| d.next().is_some());
    listed || Path::new("/dev/nvidia0").exists()
}

#[cfg(feature = "cuda")]
fn cuda_provider_reason(lib: &Path) -> Option<String> {
    use ort::ep::ExecutionProvider;
    let compiled = ort::ep::CUDA::is_available().unwrap_or(false);
    let file = lib.parent().map(|d| d.join("libonnxruntime_providers_cuda.so"));
    if !compiled || file.as_ref().is_some_and(|f| lib.is_absolute() && !f.exists()) {
        return Some(format!(
            "the ONNX Runtime library has no CUDA provider (install onnxruntime-gpu=={ORT_VERSION_HINT})"
        ));
    }
    None
}

#[cfg(not(feature = "cuda"))]
fn cuda_provider_reason(_lib: &Path) -> Option<String> {
    Some("this tessera was built without the `cuda` feature".into())
}

fn resolve_device(
    request: DeviceRequest,
    lib: &Path,
) -> Result<(Device, bool, String), InferError> {
    match request {
        DeviceRequest::Cpu => Ok((Device::Cpu, false, "device: CPU (--device cpu)".into())),
        DeviceRequest::Cuda(n) => match cuda_provider_reason(lib) {
            Some(reason) => Err(InferError::Device { device: format!("cuda:{n}"), reason }),
            None => {
                Ok((Device::Cuda(n), false, format!("device: CUDA GPU {n} (--device cuda:{n})")))
            }
        },
        DeviceRequest::Auto => {
            if !gpu_present() {
                return Ok((Device::Cpu, false, "device: CPU (auto: no NVIDIA GPU found)".into()));
            }
            match cuda_provider_reason(lib) {
                Some(reason) => {
                    Ok((Device::Cpu, false, format!("device: CPU (auto: GPU found but {reason})")))
                }
                None => Ok((
                    Device::Cuda(0),
                    true,
                    "device: CUDA GPU 0 (auto: GPU and CUDA provider found)".into(),
                )),
            }
        }
    }
}

/// CPU features that change which kernels an optimized graph holds.
fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut f = vec!["x86_64"];
        macro_rules! feat {
            ($($name:tt),*) => { $( if std::arch::is_x86_feature_detected!($name) { f.push($name); } )* };
        }
        feat!(
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16"
        );
        f.join("+")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

/// How sessions of one model are made and pooled.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Intra-op threads per session.
    pub threads: usize,
    /// Most sessions of this model running at once.
    pub max_sessions: usize,
    /// Where optimized models are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

/// What the optimized-model cache did for a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache, without graph optimisation.
    Hit,
    /// Optimized from the source and written to the cache.
    Written,
    /// The cache is off.
    Disabled,
    /// The cache could not be used; the model was loaded from its source.
    Failed(String),
}

/// A model ready to run: its declared inputs and outputs and a pool of sessions.
pub struct LoadedModel {
    /// The name it is served under.
    pub name: String,
    /// Its source file.
    pub path: PathBuf,
    /// Declared inputs.
    pub inputs: Vec<TensorSpec>,
    /// Declared outputs.
    pub outputs: Vec<TensorSpec>,
    /// `source`, and `repo`, `commit`, `sha256` when the file carries `user.tessera.*` xattrs.
    pub parameters: BTreeMap<String, String>,
    /// Time to create the first session (hashing included).
    pub load_time: Duration,
    /// What the optimized-model cache did.
    pub cache: CacheOutcome,
    /// The device its sessions run on.
    pub device: Device,
    pool: SessionPool,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Reads the `user.tessera.*` extended attributes a mount puts on a file; absent ones are skipped.
pub fn tessera_xattrs(path: &Path) -> BTreeMap<String, String> {
    use tessera_protocol::xattrs;
    [xattrs::REPO, xattrs::COMMIT, xattrs::SHA256]
        .into_iter()
        .filter_map(|attr| {
            let v = xattr::get(path, attr).ok().flatten()?;
            Some((xattrs::short_name(attr).to_string(), String::from_utf8(v).ok()?))
        })
        .collect()
}

/// The file's sha256, remembered under `<dir>/sha256/` per (device, inode, size, mtime) of the
/// file, so that a restart does not hash an unchanged model again.
fn remembered_sha256(dir: &Path, path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path)?;
    let stat = format!(
        "{} {} {} {}.{:09}",
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    let canonical = fs::canonicalize(path)?;
    let memo_dir = dir.join("sha256");
    let memo =
        memo_dir.join(hex::encode(&Sha256::digest(canonical.as_os_str().as_encoded_bytes())[..16]));
    if let Ok(text) = fs::read_to_string(&memo) {
        if let Some((seen, sha)) = text.trim_end().split_once('\n') {
            if seen == stat && sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(sha.to_string());
            }
        }
    }
    let sha = file_sha256(path)?;
    fs::create_dir_all(&memo_dir)?;
    let tmp = memo.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, format!("{stat}\n{sha}\n"))?;
    fs::rename(&tmp, &memo)?;
    Ok(sha)
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// How the pool makes a session.
#[derive(Debug, Clone)]
struct Recipe {
    file: PathBuf,
    level: GraphOptimizationLevel,
    device: Device,
    threads: usize,
}

impl LoadedModel {
    /// Loads `path` as `name`: hashes it, creates the first session (through the cache when
    /// enabled) and reads its inputs and outputs.
    pub fn load(
        rt: &Runtime,
        name: &str,
        path: &Path,
        opts: &ModelOptions,
    ) -> Result<LoadedModel, InferError> {
        let start = Instant::now();
        let fail =
            |reason: String| InferError::Load { model: name.into(), path: path.into(), reason };
        if !path.is_file() {
            return Err(fail("no such file".into()));
        }
        let mut parameters = tessera_xattrs(path);
        parameters.insert("source".into(), path.display().to_string());
        let (session, recipe, cache, device) =
            open_first(rt, path, &parameters, opts).map_err(fail)?;
        let inputs = session.inputs().iter().map(|o| spec(o.name(), o.dtype())).collect();
        let outputs = session.outputs().iter().map(|o| spec(o.name(), o.dtype())).collect();
        let pool = SessionPool::new(session, recipe, rt.env.clone(), opts.max_sessions.max(1));
        Ok(LoadedModel {
            name: name.into(),
            path: path.into(),
            inputs,
            outputs,
            parameters,
            load_time: start.elapsed(),
            cache,
            device,
            pool,
        })
    }

    /// Runs the model. `inputs` must have passed [`super::tensor::check_inputs`]; `wanted` limits
    /// the outputs returned (all, in the model's order, when `None`).
    pub fn run(
        &self,
        inputs: Vec<Tensor>,
        wanted: Option<&[String]>,
    ) -> Result<Vec<Tensor>, RunError> {
        let values = inputs
            .into_iter()
            .map(|t| Ok((t.name, to_value(&t.shape, t.data)?)))
            .collect::<Result<Vec<(String, DynValue)>, RunError>>()?;
        let mut guard = self.pool.checkout()?;
        let outputs = guard.session().run(values)?;
        self.outputs
            .iter()
            .filter(|s| wanted.is_none_or(|w| w.contains(&s.name)))
            .map(|s| match outputs.get(&s.name) {
                Some(v) => from_value(&s.name, v),
                None => Err(RunError::Failed(format!("output '{}' missing from the run", s.name))),
            })
            .collect()
    }

    /// Creates every session the model may use and runs `inputs` once on each, so that the first
    /// requests after ready find them made and warm (a session's creation and its first run cost
    /// many times a steady request). Returns the warm-up runs that failed, as messages; the
    /// sessions exist either way.
    pub fn warm_up(&self, inputs: &[Tensor]) -> Result<Vec<String>, RunError> {
        let sessions = self.pool.fill()?;
        let mut failures = Vec::new();
        for mut session in sessions {
            let values = inputs
                .iter()
                .map(|t| Ok((t.name.clone(), to_value(&t.shape, t.data.clone())?)))
                .collect::<Result<Vec<(String, DynValue)>, RunError>>()?;
            if let Err(e) = session.session().run(values) {
                failures.push(e.to_string());
            }
        }
        Ok(failures)
    }

    /// Zeros for every input, dynamic dimensions 1: the warm-up when none is given.
    pub fn zero_inputs(&self) -> Vec<Tensor> {
        self.inputs
            .iter()
            .filter_map(|s| {
                let shape: Vec<usize> =
                    s.shape.iter().map(|&d| usize::try_from(d).unwrap_or(1)).collect();
                let n = shape.iter().product();
                let data = zeros(Datatype::from_name(&s.datatype)?, n);
                Some(Tensor { name: s.name.clone(), shape, data })
            })
            .collect()
    }

    /// Sessions created so far.
    pub fn sessions(&self) -> usize {
        self.pool.state.lock().created
    }
}

/// Creates the first session, going through the cache. Returns the session, the recipe for more,
/// the cache outcome and the device used.
fn open_first(
    rt: &Runtime,
    path: &Path,
    params: &BTreeMap<String, String>,
    opts: &ModelOptions,
) -> Result<(Session, Recipe, CacheOutcome, Device), String> {
    let mut device = rt.device;
    let source = |device| Recipe {
        file: path.into(),
        level: GraphOptimizationLevel::All,
        device,
        threads: opts.threads,
    };
    let open = |recipe: &Recipe, save: Option<&Path>| -> Result<Session, String> {
        let t = Instant::now();
        let mut b = builder(&rt.env, recipe)?;
        if let Some(save) = save {
            b = b.with_optimized_model_path(save).map_err(|e| e.to_string())?;
        }
        let s = b.commit_from_file(&recipe.file).map_err(|e| e.to_string());
        tracing::debug!(
            "session from {} ({:?}) in {:.1} ms",
            recipe.file.display(),
            recipe.level,
            t.elapsed().as_secs_f64() * 1e3
        );
        s
    };
    // With `auto`, a CUDA provider that fails on this machine means CPU.
    if let (Device::Cuda(n), true) = (device, rt.fallback) {
        if let Err(e) = builder(&rt.env, &source(device)) {
            tracing::warn!("CUDA GPU {n} unusable ({e}); using CPU");
            device = Device::Cpu;
        }
    }
    let Some(dir) = &opts.cache_dir else {
        let r = source(device);
        return Ok((open(&r, None)?, r, CacheOutcome::Disabled, device));
    };
    let cached = match cache_file(rt, dir, path, params, device) {
        Ok(f) => f,
        Err(e) => {
            let r = source(device);
            return Ok((open(&r, None)?, r, CacheOutcome::Failed(e), device));
        }
    };
    let hit = Recipe {
        file: cached.clone(),
        level: GraphOptimizationLevel::Disable,
        device,
        threads: opts.threads,
    };
    // A model whose weights are external data cannot be cached: the optimized graph refers to
    // its data file by a path relative to the model, which the cache directory does not have.
    let uncacheable = cached.with_extension("uncacheable");
    if uncacheable.is_file() {
        let r = source(device);
        return Ok((
            open(&r, None)?,
            r,
            CacheOutcome::Failed("the model uses external data".into()),
            device,
        ));
    }
    if cached.is_file() {
        match open(&hit, None) {
            Ok(s) => return Ok((s, hit, CacheOutcome::Hit, device)),
            Err(e) => {
                tracing::warn!(
                    "optimized-model cache entry {} unusable ({e}); rebuilding it",
                    cached.display()
                );
                let _ = fs::remove_file(&cached);
            }
        }
    }
    // Miss: optimize from the source, saving to a temporary name, then publish atomically.
    let tmp = cached.with_extension(format!("tmp{}.onnx", std::process::id()));
    let r = source(device);
    match open(&r, Some(&tmp))
        .and_then(|s| fs::rename(&tmp, &cached).map(|()| s).map_err(|e| e.to_string()))
    {
        // More sessions come from the cache entry: it must open on its own.
        Ok(s) => match open(&hit, None) {
            Ok(_) => Ok((s, hit, CacheOutcome::Written, device)),
            Err(e) => {
                tracing::info!(
                    "optimized-model cache entry does not open on its own ({e}); not caching this model"
                );
                let _ = fs::remove_file(&cached);
                let _ = fs::write(&uncacheable, e.as_bytes());
                Ok((s, r, CacheOutcome::Failed(e), device))
            }
        },
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Ok((open(&r, None)?, r, CacheOutcome::Failed(e), device))
        }
    }
}

/// The cache file for this model on this runtime and device.
fn cache_file(
    rt: &Runtime,
    dir: &Path,
    path: &Path,
    params: &BTreeMap<String, String>,
    device: Device,
) -> Result<PathBuf, String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let sha = match params.get("sha256") {
        Some(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            s.to_ascii_lowercase()
        }
        _ => {
            let t = Instant::now();
            let sha =
                remembered_sha256(dir, path).map_err(|e| format!("hashing the model: {e}"))?;
            tracing::debug!(
                "sha256 of {} in {:.1} ms",
                path.display(),
                t.elapsed().as_secs_f64() * 1e3
            );
            sha
        }
    };
    let mut h = Sha256::new();
    for part in [sha.as_str(), rt.fingerprint.as_str(), &device.tag(), "ORT_ENABLE_ALL"] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let key = hex::encode(h.finalize());
    Ok(dir.join(format!("{}-{}.onnx", &sha[..16], &key[..32])))
}

fn builder(env: &Environment, r: &Recipe) -> Result<SessionBuilder, String> {
    let e = |e: ort::Error<SessionBuilder>| e.to_string();
    let mut b = Session::builder(env).map_err(|e| e.to_string())?;
    b = b.with_optimization_level(r.level).map_err(e)?;
    b = b.with_intra_threads(r.threads.max(1)).map_err(e)?;
    b = b.with_inter_threads(1).map_err(e)?;
    register_device(b, r.device)
}

#[cfg(feature = "cuda")]
fn register_device(b: SessionBuilder, device: Device) -> Result<SessionBuilder, String> {
    match device {
        Device::Cpu => Ok(b),
        Device::Cuda(n) => b
            .with_execution_providers([ort::ep::CUDA::default()
                .with_device_id(n)
                .build()
                .error_on_failure()])
            .map_err(|e| format!("CUDA execution provider: {e}")),
    }
}

#[cfg(not(feature = "cuda"))]
fn register_device(b: SessionBuilder, device: Device) -> Result<SessionBuilder, String> {
    match device {
        Device::Cpu => Ok(b),
        Device::Cuda(_) => Err("built without the `cuda` feature".into()),
    }
}

fn spec(name: &str, ty: &ValueType) -> TensorSpec {
    match ty {
        ValueType::Tensor { ty, shape, .. } => TensorSpec {
            name: name.into(),
            datatype: datatype_of(*ty)
                .map_or_else(|| format!("{ty:?}").to_uppercase(), |d| d.name().into()),
            shape: shape.iter().copied().collect(),
        },
        ValueType::Sequence(_) => {
            TensorSpec { name: name.into(), datatype: "SEQUENCE".into(), shape: vec![] }
        }
        ValueType::Map { .. } => {
            TensorSpec { name: name.into(), datatype: "MAP".into(), shape: vec![] }
        }
        ValueType::Optional(_) => {
            TensorSpec { name: name.into(), datatype: "OPTIONAL".into(), shape: vec![] }
        }
    }
}

fn datatype_of(t: TensorElementType) -> Option<Datatype> {
    Some(match t {
        TensorElementType::Bool => Datatype::Bool,
        TensorElementType::Uint8 => Datatype::Uint8,
        TensorElementType::Uint16 => Datatype::Uint16,
        TensorElementType::Uint32 => Datatype::Uint32,
        TensorElementType::Uint64 => Datatype::Uint64,
        TensorElementType::Int8 => Datatype::Int8,
        TensorElementType::Int16 => Datatype::Int16,
        TensorElementType::Int32 => Datatype::Int32,
        TensorElementType::Int64 => Datatype::Int64,
        TensorElementType::Float16 => Datatype::Fp16,
        TensorElementType::Bfloat16 => Datatype::Bf16,
        TensorElementType::Float32 => Datatype::Fp32,
        TensorElementType::Float64 => Datatype::Fp64,
        TensorElementType::String => Datatype::Bytes,
        _ => return None,
    })
}

fn to_value(shape: &[usize], data: TensorData) -> Result<DynValue, RunError> {
    let shape = shape.to_vec();
    macro_rules! owned {
        ($v:expr) => {
            OrtTensor::from_array((shape, $v))?.into_dyn()
        };
    }
    Ok(match data {
        TensorData::Bool(v) => owned!(v),
        TensorData::Uint8(v) => owned!(v),
        TensorData::Uint16(v) => owned!(v),
        TensorData::Uint32(v) => owned!(v),
        TensorData::Uint64(v) => owned!(v),
        TensorData::Int8(v) => owned!(v),
        TensorData::Int16(v) => owned!(v),
        TensorData::Int32(v) => owned!(v),
        TensorData::Int64(v) => owned!(v),
        TensorData::Fp16(v) => owned!(v),
        TensorData::Bf16(v) => owned!(v),
        TensorData::Fp32(v) => owned!(v),
        TensorData::Fp64(v) => owned!(v),
        TensorData::Bytes(v) => OrtTensor::from_string_array((shape, v.as_slice()))?.into_dyn(),
    })
}

fn from_value(name: &str, v: &DynValue) -> Result<Tensor, RunError> {
    let ValueType::Tensor { ty, .. } = v.dtype() else {
        return Err(RunError::Failed(format!(
            "output '{name}' is not a tensor; only tensors are served"
        )));
    };
    let Some(dtype) = datatype_of(*ty) else {
        return Err(RunError::Failed(format!(
            "output '{name}' has element type {ty:?}, which is not served"
        )));
    };
    macro_rules! take {
        ($variant:ident, $t:ty) => {{
            let (shape, data) = v.try_extract_tensor::<$t>()?;
            (shape.iter().map(|&d| d as usize).collect(), TensorData::$variant(data.to_vec()))
        }};
    }
    let (shape, data): (Vec<usize>, TensorData) = match dtype {
        Datatype::Bool => take!(Bool, bool),
        Datatype::Uint8 => take!(Uint8, u8),
        Datatype::Uint16 => take!(Uint16, u16),
        Datatype::Uint32 => take!(Uint32, u32),
        Datatype::Uint64 => take!(Uint64, u64),
        Datatype::Int8 => take!(Int8, i8),
        Datatype::Int16 => take!(Int16, i16),
        Datatype::Int32 => take!(Int32, i32),
        Datatype::Int64 => take!(Int64, i64),
        Datatype::Fp16 => take!(Fp16, half::f16),
        Datatype::Bf16 => take!(Bf16, half::bf16),
        Datatype::Fp32 => take!(Fp32, f32),
        Datatype::Fp64 => take!(Fp64, f64),
        Datatype::Bytes => {
            let (shape, data) = v.try_extract_strings()?;
            (shape.iter().map(|&d| d as usize).collect(), TensorData::Bytes(data))
        }
    };
    Ok(Tensor { name: name.into(), shape, data })
}

/// `n` zero elements of `dtype` (empty strings for BYTES).
fn zeros(dtype: Datatype, n: usize) -> TensorData {
    match dtype {
        Datatype::Bool => TensorData::Bool(vec![false; n]),
        Datatype::Uint8 => TensorData::Uint8(vec![0; n]),
        Datatype::Uint16 => TensorData::Uint16(vec![0; n]),
        Datatype::Uint32 => TensorData::Uint32(vec![0; n]),
        Datatype::Uint64 => TensorData::Uint64(vec![0; n]),
        Datatype::Int8 => TensorData::Int8(vec![0; n]),
        Datatype::Int16 => TensorData::Int16(vec![0; n]),
        Datatype::Int32 => TensorData::Int32(vec![0; n]),
        Datatype::Int64 => TensorData::Int64(vec![0; n]),
        Datatype::Fp16 => TensorData::Fp16(vec![half::f16::ZERO; n]),
        Datatype::Bf16 => TensorData::Bf16(vec![half::bf16::ZERO; n]),
        Datatype::Fp32 => TensorData::Fp32(vec![0.0; n]),
        Datatype::Fp64 => TensorData::Fp64(vec![0.0; n]),
        Datatype::Bytes => TensorData::Bytes(vec![String::new(); n]),
    }
}

/// Sessions of one model: created on demand up to `max`, each used by one run at a time
/// (`Session::run` takes `&mut self`).
struct SessionPool {
    state: Mutex<PoolState>,
    freed: Condvar,
    recipe: Recipe,
    env: Environment,
    max: usize,
}

struct PoolState {
    idle: Vec<Session>,
    created: usize,
}

impl SessionPool {
    fn new(first: Session, recipe: Recipe, env: Environment, max: usize) -> Self {
        SessionPool {
            state: Mutex::new(PoolState { idle: vec![first], created: 1 }),
            freed: Condvar::new(),
            recipe,
            env,
            max,
        }
    }

    /// Creates sessions up to `max` and lends out all of them (they come back when dropped).
    /// For warm-up before the model is published: nothing else holds a session then.
    fn fill(&self) -> Result<Vec<PooledSession<'_>>, RunError> {
        let mut lent = Vec::with_capacity(self.max);
        while lent.len() < self.max {
            lent.push(self.checkout()?);
        }
        Ok(lent)
    }

    /// Takes an idle session, makes a new one while under `max`, or waits for one.
    fn checkout(&self) -> Result<PooledSession<'_>, RunError> {
        let mut st = self.state.lock();
        loop {
            if let Some(s) = st.idle.pop() {
                return Ok(PooledSession { pool: self, session: Some(s) });
            }
            if st.created < self.max {
                st.created += 1;
                drop(st);
                let made = builder(&self.env, &self.recipe).and_then(|mut b| {
                    b.commit_from_file(&self.recipe.file).map_err(|e| e.to_string())
                });
                return match made {
                    Ok(s) => Ok(PooledSession { pool: self, session: Some(s) }),
                    Err(e) => {
                        self.state.lock().created -= 1;
                        self.freed.notify_one();
                        Err(RunError::Failed(format!("creating a session: {e}")))
                    }
                };
            }
            self.freed.wait(&mut st);
        }
    }
}

/// A session on loan; goes back to the pool when dropped.
struct PooledSession<'p> {
    pool: &'p SessionPool,
    session: Option<Session>,
}

impl PooledSession<'_> {
    fn session(&mut self) -> &mut Session {
        // Always Some until drop.
        self.session.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.pool.state.lock().idle.push(s);
            self.pool.freed.notify_one();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn device_requests_parse() {
        assert_eq!("auto".parse(), Ok(DeviceRequest::Auto));
        assert_eq!("cpu".parse(), Ok(DeviceRequest::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceRequest::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceRequest::Cuda(3)));
        assert!("cuda:-1".parse::<DeviceRequest>().is_err());
        assert!("gpu".parse::<DeviceRequest>().unwrap_err().contains("unknown device 'gpu'"));
    }

    #[test]
    fn missing_library_is_one_clear_line() {
        let Err(e) =
            Runtime::init(Some(Path::new("/nonexistent/libonnxruntime.so")), DeviceRequest::Cpu)
        else {
            panic!("loaded a library that does not exist");
        };
        let msg = e.to_string();
        assert!(!msg.contains('\n'));
        assert!(
            msg.contains("pip install onnxruntime==") && msg.contains("ORT_DYLIB_PATH"),
            "{msg}"
        );
    }
}
