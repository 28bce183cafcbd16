//! The write pipeline of one backup, shared by all its streams: blobs are compressed and
//! encrypted on a bounded pool of worker threads, collected into restic pack files (data and
//! tree blobs in separate packs, as restic does), and the packs are uploaded concurrently
//! (a bounded number in flight). Index files and the snapshot file are written at the end.
//!
//! Formats (restic's design doc): a blob is `nonce ‖ AES-256-CTR(zstd(plain)) ‖ Poly1305` and
//! its id is `sha256(plain)`; a pack is the blobs, then the encrypted header (one entry per
//! blob: type, length, [uncompressed length,] id), then the header length (u32 LE); its id is
//! the sha256 of the whole file. Unpacked files (index, snapshot) are encrypted JSON, in v2
//! repositories prefixed with `0x02` and zstd-compressed; their id is the sha256 of the stored
//! bytes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};

use opendal::Operator;
use rustic_core::Id;
use sha2::{Digest, Sha256};

use crate::backend::OpendalBackend;
use crate::bufpool::{BufPool, Pooled};
use crate::error::{Error, Result};
use crate::locks::Crypto;

/// A pack is closed and uploaded once it holds this many bytes (restic 0.14's default).
pub(crate) const PACK_TARGET: usize = 16 << 20;
/// Packs uploading at once; a worker that closes one more waits (back-pressure).
const UPLOADS: usize = 2;
/// Packs listed per index file (restic starts a new index file at about this size).
const INDEX_PACKS: usize = 64;

/// Type of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Data,
    Tree,
}

/// A blob to store.
pub(crate) struct Job {
    pub(crate) kind: Kind,
    pub(crate) id: Id,
    pub(crate) plain: Vec<u8>,
}

#[derive(serde::Serialize)]
struct IndexBlobJson {
    id: String,
    #[serde(rename = "type")]
    tpe: &'static str,
    offset: u32,
    length: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    uncompressed_length: Option<u32>,
}

#[derive(serde::Serialize)]
struct IndexPackJson {
    id: String,
    blobs: Vec<IndexBlobJson>,
}

#[derive(serde::Serialize)]
struct IndexJson<'a> {
    packs: &'a [IndexPackJson],
}

struct Entry {
    id: Id,
    length: u32,
    uncompressed: Option<u32>,
}

#[derive(Default)]
struct OpenPack {
    buf: Vec<u8>,
    entries: Vec<Entry>,
}

/// Counters of what this backup added.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) data_blobs: AtomicU64,
    pub(crate) tree_blobs: AtomicU64,
    pub(crate) data_added: AtomicU64,
    pub(crate) data_added_packed: AtomicU64,
    pub(crate) tree_added: AtomicU64,
    pub(crate) tree_added_packed: AtomicU64,
}

/// Per-stage CPU accounting (nanoseconds, summed over threads), for `kstash bench repo`.
#[derive(Debug, Default)]
pub struct StageTimes {
    /// Stream threads, total (chunking + blob hashing + waiting for the worker pool).
    pub chunk_ns: AtomicU64,
    /// SHA-256 of blobs (blob ids), inside `chunk_ns`.
    pub hash_ns: AtomicU64,
    /// Stream threads waiting for the worker pool (back-pressure), inside `chunk_ns`.
    pub queue_wait_ns: AtomicU64,
    /// SHA-256 of whole packs (pack ids).
    pub pack_hash_ns: AtomicU64,
    /// zstd compression.
    pub compress_ns: AtomicU64,
    /// AES-256-CTR + Poly1305.
    pub encrypt_ns: AtomicU64,
    /// Waiting for an upload slot (back-pressure from storage).
    pub upload_wait_ns: AtomicU64,
}

impl StageTimes {
    pub(crate) fn add(slot: &AtomicU64, t: std::time::Instant) {
        slot.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Process-wide stage timers (cheap atomics; read by the benchmark).
pub fn stage_times() -> &'static StageTimes {
    static T: std::sync::OnceLock<StageTimes> = std::sync::OnceLock::new();
    T.get_or_init(StageTimes::default)
}

struct Shared {
    op: Operator,
    backend: OpendalBackend,
    location: String,
    crypto: Crypto,
    level: Option<i32>,
    version: u32,
    known: Mutex<HashSet<Id>>,
    data_pack: Mutex<OpenPack>,
    tree_pack: Mutex<OpenPack>,
    index: Mutex<Vec<IndexPackJson>>,
    inflight: Mutex<(usize, Vec<tokio::task::JoinHandle<()>>)>,
    slot_free: Condvar,
    error: Mutex<Option<String>>,
    stats: Stats,
    /// Chunk buffers: filled by the stream threads, returned once a blob is encoded.
    chunks: Arc<BufPool>,
    /// Pack buffers: returned when their upload drops them.
    packs: Arc<BufPool>,
}

/// The shared pipeline of one backup.
pub(crate) struct Packer {
    shared: Arc<Shared>,
    tx: Mutex<Option<SyncSender<Job>>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Settings read from the repository config.
pub(crate) struct RepoParams {
    pub(crate) crypto: Crypto,
    pub(crate) level: Option<i32>,
    pub(crate) version: u32,
    pub(crate) known: HashSet<Id>,
}

/// Chunk and pack buffers come from pools ([`crate::bufpool`]); what remains are the callers'
/// blocks (typically 1 MiB, allocated per write and freed by the stream thread) and the
/// occasional buffer a pool does not keep. glibc's defaults serve a 1 MiB block with a fresh
/// mmap (page faults on every write: ~0.9 CPU s per GiB here) and adapt the threshold to the
/// largest freed block (after which 16 MiB packs came from per-thread arenas that kept the
/// freed memory, and RSS grew well past the live data). Fixed thresholds instead: blocks below
/// 4 MiB come from the arenas (reused warm, the top 16 MiB of a heap kept rather than trimmed
/// and faulted in again), larger ones are mmapped and returned on free. Process-wide, set
/// once by the first backup.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes malloc tuning parameters; it is thread-safe.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
        });
    }
}

/// Capacity of a new chunk buffer: most chunks (restic's sizes: min 512 KiB + on average
/// 1 MiB) fit without growing.
const CHUNK_BUF: usize = 2 << 20;
/// Chunk buffers grown past this are freed, not kept: bounds what an idle pool holds.
const CHUNK_BUF_KEEP_MAX: usize = 4 << 20;

impl Packer {
    /// Starts the worker pool (`available_parallelism` threads).
    pub(crate) fn start(
        op: Operator,
        backend: OpendalBackend,
        location: &str,
        params: RepoParams,
    ) -> Self {
        tune_allocator();
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let shared = Arc::new(Shared {
            op,
            backend,
            location: location.to_string(),
            crypto: params.crypto,
            level: params.level,
            version: params.version,
            known: Mutex::new(params.known),
            data_pack: Mutex::default(),
            tree_pack: Mutex::default(),
            index: Mutex::default(),
            inflight: Mutex::new((0, vec![])),
            slot_free: Condvar::new(),
            error: Mutex::default(),
            stats: Stats::default(),
            chunks: BufPool::new(2 * n + 4, CHUNK_BUF, CHUNK_BUF_KEEP_MAX),
            packs: BufPool::new(UPLOADS + 2, PACK_TARGET + (1 << 20), 2 * PACK_TARGET),
        });
        let (tx, rx) = sync_channel::<Job>(n);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..n)
            .map(|i| {
                let (sh, rx) = (shared.clone(), rx.clone());
                std::thread::Builder::new()
                    .name(format!("kstash-pack-{i}"))
                    .spawn(move || worker(&sh, &rx))
                    .expect("spawning a pack worker thread")
            })
            .collect();
        Packer {
            shared,
            tx: Mutex::new(Some(tx)),
            workers: Mutex::new(workers),
        }
    }

    /// A sender for a stream's new blobs (blocks when the workers are behind).
    pub(crate) fn sender(&self) -> Option<SyncSender<Job>> {
        self.tx.lock().unwrap().clone()
    }

    /// The pool the stream threads take chunk buffers from.
    pub(crate) fn chunk_pool(&self) -> Arc<BufPool> {
        self.shared.chunks.clone()
    }

    /// Marks `id` as stored (or about to be); `false` if it already was (deduplicated).
    pub(crate) fn claim(&self, id: &Id) -> bool {
        self.shared.known.lock().unwrap().insert(*id)
    }

    /// The first failure of the pipeline (upload or encoding), if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.shared.error.lock().unwrap().clone()
    }

    /// Counters of what was added.
    pub(crate) fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Stores a blob from the calling thread (used for the few tree blobs at commit).
    pub(crate) fn store_now(&self, job: Job) -> Result<()> {
        store(&self.shared, job);
        self.check()
    }

    fn check(&self) -> Result<()> {
        match self.failure() {
            Some(e) => Err(Error::restic(&self.shared.location, "backup", e)),
            None => Ok(()),
        }
    }

    /// Waits for the workers (all senders must be dropped first).
    pub(crate) fn drain(&self) -> Result<()> {
        self.tx.lock().unwrap().take();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap());
        for w in workers {
            let _ = w.join();
        }
        self.check()
    }

    /// Uploads the open packs, waits for all uploads and writes the index files.
    pub(crate) fn flush(&self) -> Result<()> {
        self.drain()?;
        for kind in [Kind::Data, Kind::Tree] {
            let pack = std::mem::take(&mut *self.shared.pack(kind).lock().unwrap());
            if !pack.entries.is_empty() {
                close_pack(&self.shared, kind, pack);
            }
        }
        let handles = std::mem::take(&mut self.shared.inflight.lock().unwrap().1);
        for h in handles {
            let _ = futures::executor::block_on(h);
        }
        self.check()?;
        let packs = std::mem::take(&mut *self.shared.index.lock().unwrap());
        for chunk in packs.chunks(INDEX_PACKS) {
            let json = serde_json::to_vec(&IndexJson { packs: chunk })
                .map_err(|e| Error::restic(&self.shared.location, "encode index", e))?;
            self.write_unpacked(rustic_core::FileType::Index, &json)?;
        }
        Ok(())
    }

    /// Writes an unpacked repository file (index, snapshot); returns its id.
    pub(crate) fn write_unpacked(&self, tpe: rustic_core::FileType, json: &[u8]) -> Result<Id> {
        let sh = &self.shared;
        let plain = if sh.version >= 2 {
            let mut v = vec![2u8];
            v.extend(
                zstd::bulk::compress(json, sh.level.unwrap_or(0))
                    .map_err(|e| Error::restic(&sh.location, "compress", e))?,
            );
            v
        } else {
            json.to_vec()
        };
        let data = sh.crypto.encrypt(&plain);
        let id = Id::new(Sha256::digest(&data).into());
        let path = sh.backend.path(tpe, &id);
        let op = sh.op.clone();
        let p2 = path.clone();
        crate::io::block_io(async move { op.write(&p2, data).await })?
            .map_err(|e| Error::restic(&sh.location, "write", format!("{path}: {e}")))?;
        Ok(id)
    }
}

impl Shared {
    fn pack(&self, kind: Kind) -> &Mutex<OpenPack> {
        match kind {
            Kind::Data => &self.data_pack,
            Kind::Tree => &self.tree_pack,
        }
    }

    fn fail(&self, e: String) {
        let mut g = self.error.lock().unwrap();
        if g.is_none() {
            *g = Some(e);
        }
    }
}

fn worker(sh: &Arc<Shared>, rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock().unwrap().recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        if sh.error.lock().unwrap().is_some() {
            continue; // keep draining so senders never block forever
        }
        store(sh, job);
    }
}

/// Per-thread reused state of the blob encoder: the zstd compression context (a fresh one per
/// blob costs an allocation and initialisation of several MiB) and the output buffers, so a
/// blob costs no allocation once a worker is warm.
struct Encoder {
    ctx: Option<(i32, zstd::bulk::Compressor<'static>)>,
    compressed: Vec<u8>,
    sealed: Vec<u8>,
}

thread_local! {
    static ENCODER: std::cell::RefCell<Encoder> = const {
        std::cell::RefCell::new(Encoder { ctx: None, compressed: Vec::new(), sealed: Vec::new() })
    };
}

/// Compresses (when `level` is set) and encrypts `plain` into the thread's `sealed` buffer,
/// then calls `f` with it; returns `f`'s result.
fn encode<T>(
    sh: &Shared,
    plain: &[u8],
    level: Option<i32>,
    f: impl FnOnce(&[u8]) -> T,
) -> std::io::Result<T> {
    let times = stage_times();
    ENCODER.with(|e| {
        let e = &mut *e.borrow_mut();
        let body: &[u8] = match level {
            Some(level) => {
                let t = std::time::Instant::now();
                if e.ctx.as_ref().map(|(l, _)| *l) != Some(level) {
                    e.ctx = Some((level, zstd::bulk::Compressor::new(level)?));
                }
                let ctx = &mut e.ctx.as_mut().expect("set above").1;
                e.compressed.clear();
                e.compressed
                    .reserve(zstd::zstd_safe::compress_bound(plain.len()));
                ctx.compress_to_buffer(plain, &mut e.compressed)?;
                StageTimes::add(&times.compress_ns, t);
                &e.compressed
            }
            None => plain,
        };
        let t = std::time::Instant::now();
        e.sealed.clear();
        sh.crypto.encrypt_append(body, &mut e.sealed);
        StageTimes::add(&times.encrypt_ns, t);
        Ok(f(&e.sealed))
    })
}

/// Compresses, encrypts and appends one blob to the open pack of its kind.
fn store(sh: &Arc<Shared>, job: Job) {
    let raw_len = job.plain.len();
    let uncompressed = sh.level.map(|_| raw_len as u32);
    let appended = encode(sh, &job.plain, sh.level, |enc| {
        let mut p = sh.pack(job.kind).lock().unwrap();
        if p.buf.capacity() == 0 {
            match job.kind {
                Kind::Data => p.buf = sh.packs.take(),
                // Tree packs stay small (a few KiB of trees per backup).
                Kind::Tree => p.buf.reserve(enc.len().max(64 << 10)),
            }
        }
        p.buf.extend_from_slice(enc);
        p.entries.push(Entry {
            id: job.id,
            length: enc.len() as u32,
            uncompressed,
        });
        let full = (p.buf.len() >= PACK_TARGET).then(|| std::mem::take(&mut *p));
        (enc.len(), full)
    });
    sh.chunks.give(job.plain);
    let (enc_len, full) = match appended {
        Ok(r) => r,
        Err(e) => return sh.fail(format!("zstd: {e}")),
    };
    let st = &sh.stats;
    let (blobs, added, packed) = match job.kind {
        Kind::Data => (&st.data_blobs, &st.data_added, &st.data_added_packed),
        Kind::Tree => (&st.tree_blobs, &st.tree_added, &st.tree_added_packed),
    };
    blobs.fetch_add(1, Ordering::Relaxed);
    added.fetch_add(raw_len as u64, Ordering::Relaxed);
    packed.fetch_add(enc_len as u64, Ordering::Relaxed);
    if let Some(pack) = full {
        close_pack(sh, job.kind, pack);
    }
}

/// Appends the encrypted header, computes the pack id and starts the upload (waits for a free
/// upload slot first).
fn close_pack(sh: &Arc<Shared>, kind: Kind, mut pack: OpenPack) {
    let mut header = Vec::with_capacity(pack.entries.len() * 41);
    for e in &pack.entries {
        let tpe: u8 = match (kind, e.uncompressed.is_some()) {
            (Kind::Data, false) => 0,
            (Kind::Tree, false) => 1,
            (Kind::Data, true) => 2,
            (Kind::Tree, true) => 3,
        };
        header.push(tpe);
        header.extend_from_slice(&e.length.to_le_bytes());
        if let Some(u) = e.uncompressed {
            header.extend_from_slice(&u.to_le_bytes());
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(e.id.to_hex().as_bytes(), &mut raw).expect("an id is 64 hex digits");
        header.extend_from_slice(&raw);
    }
    let header = sh.crypto.encrypt(&header);
    let (hlen, st) = (header.len() as u64 + 4, &sh.stats);
    match kind {
        Kind::Data => st.data_added_packed.fetch_add(hlen, Ordering::Relaxed),
        Kind::Tree => st.tree_added_packed.fetch_add(hlen, Ordering::Relaxed),
    };
    pack.buf.extend_from_slice(&header);
    pack.buf
        .extend_from_slice(&(header.len() as u32).to_le_bytes());
    let t = std::time::Instant::now();
    let id = Id::new(Sha256::digest(&pack.buf).into());
    StageTimes::add(&stage_times().pack_hash_ns, t);
    let tpe = match kind {
        Kind::Data => "data",
        Kind::Tree => "tree",
    };
    let mut offset = 0u32;
    let blobs = pack
        .entries
        .iter()
        .map(|e| {
            let b = IndexBlobJson {
                id: e.id.to_hex().to_string(),
                tpe,
                offset,
                length: e.length,
                uncompressed_length: e.uncompressed,
            };
            offset += e.length;
            b
        })
        .collect();
    let entry = IndexPackJson {
        id: id.to_hex().to_string(),
        blobs,
    };
    // Wait for an upload slot: bounds the packs held in memory.
    let t = std::time::Instant::now();
    {
        let mut g = sh.inflight.lock().unwrap();
        while g.0 >= UPLOADS {
            g = sh.slot_free.wait(g).unwrap();
        }
        g.0 += 1;
    }
    StageTimes::add(&stage_times().upload_wait_ns, t);
    let path = sh.backend.path(rustic_core::FileType::Pack, &id);
    let op = sh.op.clone();
    let buf = Pooled::bytes(std::mem::take(&mut pack.buf), sh.packs.clone());
    let sh2 = sh.clone();
    let h = crate::io::spawn_io(async move {
        if let Err(e) = op.write(&path, buf).await {
            sh2.fail(format!("upload pack {path}: {e}"));
        }
        sh2.inflight.lock().unwrap().0 -= 1;
        sh2.slot_free.notify_all();
    });
    sh.inflight.lock().unwrap().1.push(h);
    sh.index.lock().unwrap().push(entry);
}
