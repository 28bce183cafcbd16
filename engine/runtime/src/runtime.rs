//! The engine (one per process), the module cache, and running one task in a fresh store.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::describe::{AddonDescription, TaskKind};
use crate::digest::Digest;
use crate::egress::EgressPolicy;
use crate::error::{GuestErrorKind, Limit, LoadError, TaskError};
use crate::events::{LogLevel, TaskEvents, TracingEvents};
use crate::events::{Notice, PartCount};
use crate::host::bindings::{self, AddonPre};
use crate::host::HostState;
use crate::limits::{Limits, TaskLimiter};
use crate::netpolicy::EgressRules;
use crate::streams::{InputSource, OutputSink};
use crate::target::{ResolveError, ResolvedTarget, Target};
use crate::tcp::TcpMeter;

/// Bytes of guest stdout and stderr kept per task (each).
const STDIO_CAPTURE: usize = 1 << 20;
/// Extra time past the wall-clock limit before the outer timeout drops a blocked task.
const WALL_GRACE: Duration = Duration::from_millis(500);

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Directory of precompiled modules (`<dir>/<engine hash>/<sha256>.cwasm`); `None` = memory
    /// only. It must be private to the engine: its files are loaded as trusted native code.
    pub cache_dir: Option<PathBuf>,
    /// Tasks running at once; more wait for a slot (sizes the pooling allocator).
    pub max_concurrent_tasks: u32,
    /// Largest memory limit a task may ask for (the pool's slot size), bytes. Default 1 GiB.
    pub max_task_memory: u64,
    /// Epoch tick: the granularity of CPU and wall-clock checks. Default 10 ms.
    pub epoch_tick: Duration,
    /// Which addresses a task's target may resolve to (checked before the guest runs, for HTTP
    /// and TCP). Default: link-local and cloud metadata refused, the rest allowed.
    pub egress: EgressRules,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_concurrent_tasks: 16,
            max_task_memory: 1 << 30,
            epoch_tick: Duration::from_millis(10),
            egress: EgressRules::default(),
        }
    }
}

/// Where [`Runtime::load`] found the compiled module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled now (and written to the disk cache if there is one).
    Compiled,
    /// Deserialized from the disk cache.
    DiskCache,
    /// Already loaded in this process.
    MemoryCache,
}

/// The addon host: one wasmtime engine with the pooling allocator, a linker with exactly the
/// addon world's imports, and a cache of loaded modules by digest. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    linker: Linker<HostState>,
    engine_hash: String,
    modules: Mutex<HashMap<Digest, Addon>>,
}

/// What running a task needs; held by every `Addon` (no reference back to the module cache).
struct Shared {
    engine: Engine,
    config: RuntimeConfig,
    slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.shared.config)
            .finish_non_exhaustive()
    }
}

fn setup(e: impl std::fmt::Display) -> LoadError {
    LoadError::Setup(e.to_string())
}

impl Runtime {
    /// Builds the engine (cranelift, epoch interruption, pooling allocator) and the linker.
    pub fn new(config: RuntimeConfig) -> Result<Self, LoadError> {
        let n = config.max_concurrent_tasks.max(1);
        // One extra slot set for the `describe()` instances run while loading.
        let slots = n + 1;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 8)
            .total_memories(slots * 4)
            .total_tables(slots * 8)
            .total_stacks(slots)
            .max_memory_size(config.max_task_memory as usize);
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(setup)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        // WASI p2 is linked because Rust's std imports it; the context grants no capability.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(setup)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(setup)?;
        // The addon's own interfaces, one by one (the wasi ones are linked above).
        {
            use bindings::kstash::addon::{credentials, input, log, output, progress, report};
            use bindings::kstash::addon::{tcp, types};
            use wasmtime::component::HasSelf;
            types::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s).map_err(setup)?;
            output::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s).map_err(setup)?;
            input::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s).map_err(setup)?;
            log::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s).map_err(setup)?;
            progress::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s).map_err(setup)?;
            tcp::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s).map_err(setup)?;
            credentials::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)
                .map_err(setup)?;
            report::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s).map_err(setup)?;
        }
        let engine_hash = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            format!("wasmtime-48-{:016x}", h.finish())
        };
        spawn_ticker(&engine, config.epoch_tick);
        Ok(Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    engine,
                    slots: Arc::new(tokio::sync::Semaphore::new(n as usize)),
                    config,
                }),
                linker,
                engine_hash,
                modules: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The disk cache file for `digest`, if there is a cache dir.
    pub fn cache_path(&self, digest: &Digest) -> Option<PathBuf> {
        self.inner.shared.config.cache_dir.as_ref().map(|d| {
            d.join(&self.inner.engine_hash)
                .join(format!("{}.cwasm", digest.hex()))
        })
    }

    /// Forgets the in-memory copy of every module (the disk cache stays).
    pub fn clear_memory_cache(&self) {
        self.inner
            .modules
            .lock()
            .expect("module cache lock")
            .clear();
    }

    /// Reads a module file and loads it; see [`Runtime::load`].
    pub async fn load_file(&self, path: &Path, pinned: &Digest) -> Result<Addon, LoadError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Read {
                path: path.display().to_string(),
                source,
            })?;
        self.load(&bytes, pinned).await
    }

    /// Loads a module: refuses it unless its SHA-256 is `pinned`, then takes it from the memory
    /// cache, the disk cache, or compiles it (and caches it); type-checks it against the addon
    /// world once (`InstancePre`) and calls `describe()`.
    pub async fn load(&self, wasm: &[u8], pinned: &Digest) -> Result<Addon, LoadError> {
        let actual = Digest::of(wasm);
        if actual != *pinned {
            return Err(LoadError::DigestMismatch {
                pinned: *pinned,
                actual,
            });
        }
        if let Some(a) = self
            .inner
            .modules
            .lock()
            .expect("module cache lock")
            .get(&actual)
        {
            let mut a = a.clone();
            a.source = LoadSource::MemoryCache;
            return Ok(a);
        }
        let invalid = |e: &dyn std::fmt::Display| LoadError::Invalid {
            digest: actual,
            message: e.to_string(),
        };
        let engine = self.inner.shared.engine.clone();
        let cache = self.cache_path(&actual);
        let wasm = wasm.to_vec();
        let (component, source) = tokio::task::spawn_blocking(move || {
            compile_or_cached(&engine, &wasm, cache.as_deref())
        })
        .await
        .map_err(|e| invalid(&e))?
        .map_err(|e| invalid(&format!("{e:#}")))?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(&format!("{e:#}")))?;
        let pre = AddonPre::new(pre).map_err(|e| invalid(&format!("{e:#}")))?;
        let mut addon = Addon {
            shared: self.inner.shared.clone(),
            digest: actual,
            pre,
            description: Arc::new(AddonDescription {
                name: String::new(),
                version: String::new(),
                summary: String::new(),
                tasks: Vec::new(),
                components: Vec::new(),
            }),
            source,
        };
        let description = addon.call_describe().await?;
        description
            .validate()
            .map_err(|message| LoadError::Describe {
                digest: actual,
                message,
            })?;
        addon.description = Arc::new(description);
        self.inner
            .modules
            .lock()
            .expect("module cache lock")
            .insert(actual, addon.clone());
        Ok(addon)
    }
}

fn compile_or_cached(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&Path>,
) -> wasmtime::Result<(Component, LoadSource)> {
    let Some(path) = cache else {
        return Ok((Component::new(engine, wasm)?, LoadSource::Compiled));
    };
    if path.is_file() {
        // SAFETY: the cache dir is private to the engine and holds only files this function
        // wrote with `precompile_component` of the same engine configuration (the directory is
        // keyed by the engine's compatibility hash); wasmtime also checks the header.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(c) => return Ok((c, LoadSource::DiskCache)),
            Err(e) => tracing::warn!("ignoring unusable cache file {}: {e:#}", path.display()),
        }
    }
    let bytes = engine.precompile_component(wasm)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{seq}", std::process::id()));
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, path)?;
    // SAFETY: `bytes` was just produced by `precompile_component` of this engine.
    let c = unsafe { Component::deserialize(engine, &bytes)? };
    Ok((c, LoadSource::Compiled))
}

fn spawn_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("kstash-epoch".to_string())
        .spawn(move || loop {
            std::thread::sleep(tick);
            match weak.upgrade() {
                Some(e) => e.increment_epoch(),
                None => break,
            }
        })
        .expect("spawn the epoch ticker thread");
}

/// One task to run.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Task name from the addon's description.
    pub task: String,
    /// Parameters, in order.
    pub params: Vec<(String, String)>,
    /// The only endpoint the task may reach.
    pub target: Target,
    /// Limits for this task.
    pub limits: Limits,
}

/// The host ends a task uses: streams and events.
#[derive(Clone)]
pub struct TaskIo {
    /// Output streams (required by backup tasks).
    pub output: Option<Arc<dyn OutputSink>>,
    /// Input streams (required by restore tasks).
    pub input: Option<Arc<dyn InputSource>>,
    /// Log lines and progress.
    pub events: Arc<dyn TaskEvents>,
}

impl Default for TaskIo {
    fn default() -> Self {
        Self {
            output: None,
            input: None,
            events: Arc::new(TracingEvents),
        }
    }
}

/// What a successful task did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReport {
    /// Items the addon says it processed.
    pub items: u64,
    /// Bytes the addon says it wrote or sent.
    pub bytes: u64,
    /// The addon's warnings.
    pub warnings: Vec<String>,
    /// Bytes the host accepted into output streams.
    pub bytes_written: u64,
    /// Finished output streams: name and size, in finish order.
    pub streams: Vec<(String, u64)>,
    /// Requests the host sent to the target.
    pub requests: u64,
    /// TCP connections opened to the target.
    pub connections: u32,
    /// Bytes received from the target over TCP (delivered to the guest).
    pub target_bytes_in: u64,
    /// Bytes sent to the target over TCP by the guest (secrets written by the host excluded).
    pub target_bytes_out: u64,
    /// Per-part counts the guest reported (`report.part`), in first-report order.
    pub parts: Vec<PartCount>,
    /// Warnings and skipped items the guest reported (`report.add-notice`).
    pub notices: Vec<Notice>,
    /// Origins the guest tried and was denied (the task still succeeded).
    pub denied: Vec<String>,
    /// Wall-clock duration of instantiate + call.
    pub duration: Duration,
}

/// A loaded, verified, type-checked addon module. Cheap to clone; run any number of tasks from it.
#[derive(Clone)]
pub struct Addon {
    shared: Arc<Shared>,
    digest: Digest,
    pre: AddonPre<HostState>,
    description: Arc<AddonDescription>,
    source: LoadSource,
}

impl std::fmt::Debug for Addon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Addon")
            .field("digest", &self.digest)
            .field("name", &self.description.name)
            .field("version", &self.description.version)
            .finish_non_exhaustive()
    }
}

struct Prepared {
    store: Store<HostState>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl Addon {
    /// The module's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// What `describe()` returned.
    pub fn description(&self) -> &AddonDescription {
        &self.description
    }

    /// Where this handle's compiled code came from.
    pub fn load_source(&self) -> LoadSource {
        self.source
    }

    fn prepare(
        &self,
        target: ResolvedTarget,
        limits: Limits,
        io: &TaskIo,
        deadline: Instant,
    ) -> Prepared {
        let stdout = MemoryOutputPipe::new(STDIO_CAPTURE);
        let stderr = MemoryOutputPipe::new(STDIO_CAPTURE);
        // No args, env, preopened dirs or stdin; name lookup stays denied, and every raw socket
        // address is refused (and recorded, so the task ends as `Denied`).
        let sockets_denied: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = sockets_denied.clone();
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            // TCP "allowed" only so that every address reaches the check below, which refuses it
            // and records the attempt; UDP stays off.
            .allow_tcp(true)
            .allow_udp(false)
            .socket_addr_check(move |addr, use_| {
                // The implicit bind of a connect (unspecified address, port 0) is let through so
                // that the connect's own check sees, records and refuses the destination.
                let implicit_bind = matches!(use_, wasmtime_wasi::sockets::SocketAddrUse::TcpBind)
                    && addr.ip().is_unspecified()
                    && addr.port() == 0;
                if !implicit_bind {
                    seen.lock()
                        .expect("sockets denied lock")
                        .push(format!("socket {addr} ({use_:?})"));
                }
                Box::pin(async move { implicit_bind })
            })
            .build();
        let tcp = Arc::new(TcpMeter::new(
            limits.max_target_bytes,
            limits.target_idle,
            limits.max_connections,
        ));
        let state = HostState {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            egress: EgressPolicy::new(target),
            limiter: TaskLimiter {
                memory_bytes: limits.memory_bytes.min(usize::MAX as u64) as usize,
                hit: None,
            },
            limits,
            output: io.output.clone(),
            input: io.input.clone(),
            events: io.events.clone(),
            written: 0,
            finished: Vec::new(),
            opened: Default::default(),
            open_now: 0,
            limit_hit: None,
            cpu_ticks: 0,
            tcp,
            parts: Vec::new(),
            notices: Vec::new(),
            sockets_denied,
        };
        let mut store = Store::new(&self.shared.engine, state);
        store.limiter(|s| &mut s.limiter);
        let tick = self.shared.config.epoch_tick;
        let cpu_max_ticks = (limits.cpu_time.as_nanos() / tick.as_nanos().max(1)).max(1) as u64;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let s = ctx.data_mut();
            s.cpu_ticks += 1;
            if Instant::now() >= deadline {
                let d = format!("task ran longer than {:?}", limits.wall_clock);
                s.limit_hit = Some((Limit::WallClock, d.clone()));
                return Err(wasmtime::format_err!(d));
            }
            if s.cpu_ticks > cpu_max_ticks {
                let d = format!(
                    "guest code ran longer than {:?} of CPU time",
                    limits.cpu_time
                );
                s.limit_hit = Some((Limit::Cpu, d.clone()));
                return Err(wasmtime::format_err!(d));
            }
            // Yield so the executor can run other tasks and cancel this one.
            Ok(UpdateDeadline::Yield(1))
        });
        Prepared {
            store,
            stdout,
            stderr,
        }
    }

    async fn call_describe(&self) -> Result<AddonDescription, LoadError> {
        let describe_err = |message: String| LoadError::Describe {
            digest: self.digest,
            message,
        };
        let target = ResolvedTarget {
            endpoint: crate::target::Endpoint::parse("http://describe.invalid")
                .map_err(describe_err)?,
            origin: Some(
                crate::target::Origin::parse("http://describe.invalid").map_err(describe_err)?,
            ),
            addrs: Vec::new(),
            auth: None,
            tls: None,
            tcp_tls: None,
            credentials: crate::target::Credentials::None,
        };
        let limits = Limits {
            wall_clock: Duration::from_secs(10),
            cpu_time: Duration::from_secs(5),
            ..Limits::default()
        };
        let deadline = Instant::now() + limits.wall_clock;
        let mut p = self.prepare(target, limits, &TaskIo::default(), deadline);
        let store = &mut p.store;
        let res = tokio::time::timeout(limits.wall_clock + WALL_GRACE, async {
            let inst = self.pre.instantiate_async(&mut *store).await?;
            let d = inst.kstash_addon_tasks().call_describe(&mut *store).await?;
            let c = inst
                .kstash_addon_tasks()
                .call_components(&mut *store)
                .await?;
            Ok::<_, wasmtime::Error>((d, c))
        })
        .await;
        match res {
            Ok(Ok((d, c))) => {
                let mut d: AddonDescription = d.into();
                d.apply_components(c).map_err(describe_err)?;
                Ok(d)
            }
            Ok(Err(e)) => Err(describe_err(format!("{e:#}{}", stderr_tail(&p.stderr)))),
            Err(_) => Err(describe_err("timed out".to_string())),
        }
    }

    /// Runs one task in a fresh, sandboxed instance. Waits for a free slot first when
    /// `max_concurrent_tasks` tasks are running. A failure affects only this task.
    pub async fn run(&self, spec: TaskSpec, io: TaskIo) -> Result<TaskReport, TaskError> {
        let def = self.description.task(&spec.task).ok_or_else(|| {
            TaskError::Invalid(format!(
                "addon {} has no task {:?} (tasks: {})",
                self.description.name,
                spec.task,
                self.description
                    .tasks
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let kind = def.kind;
        match kind {
            TaskKind::Backup if io.output.is_none() => {
                return Err(TaskError::Invalid(format!(
                    "task {:?} is a backup and needs an output sink",
                    spec.task
                )))
            }
            TaskKind::Restore if io.input.is_none() => {
                return Err(TaskError::Invalid(format!(
                    "task {:?} is a restore and needs an input source",
                    spec.task
                )))
            }
            _ => {}
        }
        if spec.limits.memory_bytes > self.shared.config.max_task_memory {
            return Err(TaskError::Invalid(format!(
                "memory limit {} bytes exceeds the runtime's maximum {} bytes",
                spec.limits.memory_bytes, self.shared.config.max_task_memory
            )));
        }
        let target = ResolvedTarget::resolve(&spec.target, &self.shared.config.egress)
            .await
            .map_err(|e| match e {
                ResolveError::Invalid(m) => TaskError::Invalid(m),
                ResolveError::Egress { address, reason } => TaskError::EgressDenied {
                    target: crate::target::Endpoint::parse(&spec.target.url)
                        .map(|e| e.to_string())
                        .unwrap_or_else(|_| spec.target.url.clone()),
                    address,
                    reason,
                },
            })?;
        let allowed = target.endpoint.to_string();
        let _slot = self
            .shared
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| TaskError::Invalid("runtime is shutting down".to_string()))?;

        let limits = spec.limits;
        let started = Instant::now();
        let deadline = started + limits.wall_clock;
        let mut p = self.prepare(target, limits, &io, deadline);
        let ctx = bindings::kstash::addon::types::TaskContext {
            task: spec.task.clone(),
            params: spec.params.clone(),
            target_url: spec.target.url.trim_end_matches('/').to_string(),
        };
        let store = &mut p.store;
        let outcome = tokio::time::timeout(limits.wall_clock + WALL_GRACE, async {
            let inst = self.pre.instantiate_async(&mut *store).await?;
            let tasks = inst.kstash_addon_tasks();
            match kind {
                TaskKind::Backup => tasks.call_backup(&mut *store, &ctx).await,
                TaskKind::Restore => tasks.call_restore(&mut *store, &ctx).await,
            }
        })
        .await;
        let duration = started.elapsed();
        forward_stdio(&p, &io.events);
        let state = p.store.data_mut();
        let limit_hit = state
            .limit_hit
            .take()
            .or_else(|| state.limiter.hit.take().map(|d| (Limit::Memory, d)))
            .or_else(|| state.tcp.limit_hit.lock().expect("tcp meter lock").take());
        let first_denied = state.egress.denied.first().cloned().or_else(|| {
            state
                .sockets_denied
                .lock()
                .expect("sockets denied lock")
                .first()
                .cloned()
        });
        match outcome {
            Err(_elapsed) => Err(TaskError::LimitExceeded {
                limit: Limit::WallClock,
                detail: format!(
                    "task ran longer than {:?} (stopped while blocked in a host call)",
                    limits.wall_clock
                ),
            }),
            Ok(Err(trap)) => match limit_hit {
                Some((limit, detail)) => Err(TaskError::LimitExceeded { limit, detail }),
                None => Err(TaskError::Trap {
                    message: format!("{trap:#}{}", stderr_tail(&p.stderr)),
                }),
            },
            Ok(Ok(Err(guest))) => {
                if let Some(first) = first_denied {
                    return Err(TaskError::Denied {
                        target: first,
                        allowed,
                    });
                }
                use bindings::kstash::addon::types::TaskError as W;
                let (kind, message) = match guest {
                    W::InvalidParams(m) => (GuestErrorKind::InvalidParams, m),
                    W::Remote(m) => (GuestErrorKind::Remote, m),
                    W::Connect(m) => (GuestErrorKind::Connect, m),
                    W::Io(m) => (GuestErrorKind::Io, m),
                    W::Other(m) => (GuestErrorKind::Other, m),
                };
                Err(TaskError::Guest { kind, message })
            }
            Ok(Ok(Ok(summary))) => {
                if state.open_now > 0 {
                    io.events.log(
                        LogLevel::Warn,
                        &format!(
                            "{} output stream(s) were not finished and are aborted",
                            state.open_now
                        ),
                    );
                }
                Ok(TaskReport {
                    items: summary.items,
                    bytes: summary.bytes,
                    warnings: summary.warnings,
                    bytes_written: state.written,
                    streams: std::mem::take(&mut state.finished),
                    requests: state.egress.requests,
                    connections: state.tcp.connections.load(Ordering::Relaxed),
                    target_bytes_in: state.tcp.bytes_in.load(Ordering::Relaxed),
                    target_bytes_out: state.tcp.bytes_out.load(Ordering::Relaxed),
                    parts: std::mem::take(&mut state.parts),
                    notices: std::mem::take(&mut state.notices),
                    denied: {
                        let mut d = std::mem::take(&mut state.egress.denied);
                        d.extend(
                            state
                                .sockets_denied
                                .lock()
                                .expect("sockets denied lock")
                                .drain(..),
                        );
                        d
                    },
                    duration,
                })
            }
        }
    }
}

fn forward_stdio(p: &Prepared, events: &Arc<dyn TaskEvents>) {
    for (pipe, level) in [(&p.stdout, LogLevel::Info), (&p.stderr, LogLevel::Warn)] {
        let bytes = pipe.contents();
        for line in String::from_utf8_lossy(&bytes).lines() {
            if !line.trim().is_empty() {
                events.log(level, line);
            }
        }
    }
}

fn stderr_tail(pipe: &MemoryOutputPipe) -> String {
    let bytes = pipe.contents();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(5)..];
    format!("; guest stderr: {}", tail.join(" | "))
}
