//! Threads and channels.
//!
//! ```text
//! compress:    caller (reader) ──jobs──▶ N workers ──one-shot replies──▶ writer thread
//!                    └──────────── order (one receiver per chunk) ──────────┘
//! decompress:  reader thread ──jobs──▶ N workers ──one-shot replies──▶ caller (consumer)
//!                    └──────────── order (one receiver per chunk) ──────────┘
//! ```
//!
//! As in gzp: for every chunk the producer first queues a one-shot reply receiver on the
//! *order* channel, then sends the job; the consumer takes receivers in order and waits on each,
//! so chunks come out in input order whatever order the workers finish in. Both channels are
//! bounded, so at most about `2 × workers + 3` chunks exist at any time, whatever the input size.
//!
//! Decoding is also bounded in bytes, whatever a (possibly forged) file claims: the reader
//! thread reserves each chunk's decoding memory ([`chunk_cost`]) from a [`Budget`] of half the
//! memory limit before it queues the chunk, and waits while earlier chunks hold it; the
//! consumer gives a chunk's share back when it asks for the next one. A chunk that alone
//! exceeds the budget is refused before anything is allocated for it. The other half bounds
//! what is kept for reuse: workers drop their scratch after a chunk above their share, and
//! the recycling pools keep only buffers below theirs.
//!
//! Errors travel as values: a worker that fails sends `Err` as its reply; the consumer stops at
//! the first `Err` it meets in order (the earliest failing chunk) and drops its channels, which
//! unblocks and ends every other stage. A worker that panics (a bug) catches the panic and
//! replies with an [`Error::Internal`] naming the chunk, then stops.

use crate::threads::{self, JoinHandle};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::chunk::{ChunkCodec, CodecParams, PayloadKind};
use crate::element::{ArrayData, DType};
use crate::error::{Error, Result};
use crate::spare::Spare;

/// Most worker threads a pipeline starts, whatever is asked.
pub(crate) const MAX_THREADS: usize = 256;

/// Default limit on the memory a decompressor's chunk buffers take (`--memory-limit`): files
/// baler writes with its default chunk size need a few tens of MiB at most.
pub const DEFAULT_MEMORY_LIMIT: u64 = 1 << 30;

/// Bytes a chunk of `values` values of `dtype`, coded in `payload` bytes, may take while it is
/// decoded and until the consumer moves on: its values, the codec's scratch (codes and
/// reconstructions, at most 8 bytes per value) and its payload.
pub(crate) fn chunk_cost(dtype: DType, values: u64, payload: usize) -> u64 {
    values
        .saturating_mul(dtype.size() as u64 + 8)
        .saturating_add(payload as u64)
}

/// Bytes of decoding memory shared by the chunks in flight: reserved by the reader thread
/// before it queues a chunk, given back as the consumer moves past it.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    /// Bytes reserved, and whether the pipeline is closing (no one will give bytes back).
    state: Mutex<(u64, bool)>,
    freed: Condvar,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Self {
        Budget {
            limit,
            state: Mutex::new((0, false)),
            freed: Condvar::new(),
        }
    }

    /// The most one chunk may take.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Waits until `bytes` fit beside what is reserved (anything fits when nothing is), then
    /// reserves them. `false` if the pipeline closed meanwhile.
    pub(crate) fn reserve(&self, bytes: u64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !s.1 && s.0 > 0 && s.0.saturating_add(bytes) > self.limit {
            s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.1 {
            return false;
        }
        s.0 = s.0.saturating_add(bytes);
        true
    }

    /// Gives `bytes` back.
    pub(crate) fn release(&self, bytes: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = s.0.saturating_sub(bytes);
        self.freed.notify_all();
    }

    /// Wakes and refuses every reservation from now on.
    fn close(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 = true;
        self.freed.notify_all();
    }
}

/// A chunk codec for either element type.
#[derive(Debug)]
pub(crate) enum AnyCodec {
    F32(ChunkCodec<f32>),
    F64(ChunkCodec<f64>),
}

/// Codecs kept from pipelines that ended, their scratch with them (codes, reconstructions,
/// streams: several times a chunk), for the next pipeline's workers. A program that compresses
/// or decompresses array after array (a Python loop, the HDF5 filter, `baler bench`) starts
/// every call with new workers; with fresh scratch each would fault it in page by page again,
/// a third of a small field's time (and of a 5 MB table's two chunks, 1,700 page faults a
/// call). Only codecs whose chunks were at most the default size are kept, and few: at most
/// [`KEEP_CODECS`] codecs of chunks of at most [`KEEP_CHUNK_BYTES`] bytes of values, of at most
/// [`KEEP_BYTES`] in all; [`release_scratch`] frees them.
static KEPT: Mutex<Vec<AnyCodec>> = Mutex::new(Vec::new());
/// Most codecs kept.
const KEEP_CODECS: usize = 8;
/// Largest chunk (bytes of values) a kept codec may have coded: a field's default chunk.
const KEEP_CHUNK_BYTES: u64 = crate::compress::DEFAULT_CHUNK_BYTES as u64;
/// Most bytes of values of the kept codecs' largest chunks together.
const KEEP_BYTES: u64 = 4 * KEEP_CHUNK_BYTES;

/// Frees what baler keeps between calls: the workers' codecs of compressions and
/// decompressions that ended, kept for the next (at most eight, each of chunks of at most
/// 4 MiB of values, 16 MiB of chunks in all: a few tens of MiB), and the threads parked for
/// the next call (which otherwise leave after a second without work), waiting for them to
/// end: a program that forks next does so with its own threads only. The next call starts its
/// own again.
pub fn release_scratch() {
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).clear();
    threads::release();
}

impl AnyCodec {
    pub(crate) fn new(dtype: DType, params: Arc<CodecParams>) -> Self {
        match dtype {
            DType::F32 => AnyCodec::F32(ChunkCodec::new(params)),
            DType::F64 => AnyCodec::F64(ChunkCodec::new(params)),
        }
    }

    /// A codec for `params`: one kept from an earlier pipeline ([`KEPT`]) where there is one
    /// of `dtype`, else a new one.
    pub(crate) fn take(dtype: DType, params: Arc<CodecParams>) -> Self {
        let kept = {
            let mut k = KEPT.lock().unwrap_or_else(|e| e.into_inner());
            let at = k.iter().position(|c| c.dtype() == dtype);
            at.map(|i| k.swap_remove(i))
        };
        match kept {
            Some(AnyCodec::F32(c)) => AnyCodec::F32(c.with_params(params)),
            Some(AnyCodec::F64(c)) => AnyCodec::F64(c.with_params(params)),
            None => AnyCodec::new(dtype, params),
        }
    }

    /// Keeps this codec for a later pipeline ([`KEPT`]) if the largest chunk it coded or
    /// decoded held at most [`KEEP_CHUNK_BYTES`] bytes of values and there is room.
    pub(crate) fn keep(self) {
        let largest = self.largest();
        if largest > KEEP_CHUNK_BYTES {
            return;
        }
        let mut k = KEPT.lock().unwrap_or_else(|e| e.into_inner());
        let kept: u64 = k.iter().map(AnyCodec::largest).sum();
        if k.len() < KEEP_CODECS && kept + largest <= KEEP_BYTES {
            k.push(self);
        }
    }

    /// Borrows idle cores from `spare` ([`crate::spare`]).
    pub(crate) fn lending(&mut self, spare: &Arc<Spare>) {
        match self {
            AnyCodec::F32(c) => c.lending(Arc::clone(spare)),
            AnyCodec::F64(c) => c.lending(Arc::clone(spare)),
        }
    }

    /// The largest chunk (bytes of values) this codec coded or decoded.
    fn largest(&self) -> u64 {
        match self {
            AnyCodec::F32(c) => c.largest(),
            AnyCodec::F64(c) => c.largest(),
        }
    }

    fn dtype(&self) -> DType {
        match self {
            AnyCodec::F32(_) => DType::F32,
            AnyCodec::F64(_) => DType::F64,
        }
    }

    /// Codes one chunk of values of either type, borrowed (the codec's own type: checked at
    /// the API).
    pub(crate) fn encode_values<T: crate::Element>(
        &mut self,
        data: &[T],
        out: &mut Vec<u8>,
    ) -> PayloadKind {
        match self {
            AnyCodec::F32(c) => c.encode(bytemuck::cast_slice(data), out),
            AnyCodec::F64(c) => c.encode(bytemuck::cast_slice(data), out),
        }
    }

    /// Decodes one chunk's payload into `out`, its values, of either type (the codec's own
    /// type: checked at the API).
    pub(crate) fn decode_values<T: crate::Element>(
        &mut self,
        chunk: u64,
        kind: PayloadKind,
        payload: &[u8],
        out: &mut [T],
    ) -> Result<()> {
        let r = match self {
            AnyCodec::F32(c) => c.decode_into(kind, payload, bytemuck::cast_slice_mut(out)),
            AnyCodec::F64(c) => c.decode_into(kind, payload, bytemuck::cast_slice_mut(out)),
        };
        r.map_err(|m| Error::chunk(chunk, m.0))
    }

    pub(crate) fn encode(&mut self, data: &ArrayData, out: &mut Vec<u8>) -> PayloadKind {
        match (self, data) {
            (AnyCodec::F32(c), ArrayData::F32(v)) => c.encode(v, out),
            (AnyCodec::F64(c), ArrayData::F64(v)) => c.encode(v, out),
            _ => unreachable!("codec and data types are checked at the API"),
        }
    }

    pub(crate) fn decode(
        &mut self,
        chunk: u64,
        kind: PayloadKind,
        payload: &[u8],
        values: usize,
        out: &mut ArrayData,
    ) -> Result<()> {
        let r = match (self, out) {
            (AnyCodec::F32(c), ArrayData::F32(v)) => c.decode(kind, payload, values, v),
            (AnyCodec::F64(c), ArrayData::F64(v)) => c.decode(kind, payload, values, v),
            _ => unreachable!("codec and buffer types match"),
        };
        r.map_err(|m| Error::chunk(chunk, m.0))
    }
}

/// Codes or decodes `chunks` chunks of a whole array in memory on up to `threads` scoped
/// workers (`decompress_into`, `compress_slice`): `work(codec, state, k)` for each chunk `k`,
/// taken in order by whichever worker is free, each worker with a codec of its own and a
/// `state()`. Threads beyond the chunks, and each worker once out of chunks, are lent to the
/// chunks still running; a worker out of chunks leaves its codec for the next call. The first
/// error (or panic, as an error about `what` its chunk) stops the workers and is returned.
pub(crate) fn scoped_chunks<S>(
    what: &str,
    threads: usize,
    chunks: usize,
    (dtype, params): (DType, &Arc<CodecParams>),
    state: impl Fn() -> S + Sync,
    work: impl Fn(&mut AnyCodec, &mut S, usize) -> Result<()> + Sync,
) -> Result<()> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let workers = threads.clamp(1, chunks.max(1));
    let spare = Spare::new(threads.max(workers) - workers);
    threads::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let _idle = spare.idle_on_exit();
                let mut codec = AnyCodec::take(dtype, Arc::clone(params));
                codec.lending(&spare);
                let mut state = state();
                loop {
                    if failed.lock().expect("the error slot").is_some() {
                        return;
                    }
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if k >= chunks {
                        codec.keep();
                        return;
                    }
                    if let Err(e) = guarded(k as u64, what, || work(&mut codec, &mut state, k)) {
                        failed.lock().expect("the error slot").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().expect("the error slot") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs `f`, turning a panic into an internal error about `chunk`.
pub(crate) fn guarded<T>(chunk: u64, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = threads::panic_message(&*p);
        Err(Error::Internal(format!(
            "{what} chunk {chunk} panicked: {msg}"
        )))
    })
}

/// Starts a stage of the pipeline on a thread of [`crate::threads`] (`what` names it in the
/// error where no thread can be started).
fn spawn<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    threads::spawn(f).map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("cannot start a thread for the {what}: {e}"),
        ))
    })
}

/// Buffers handed back for reuse, so each chunk does not allocate (and page-fault) fresh
/// memory. Bounded: surplus buffers are simply dropped.
#[derive(Debug)]
pub(crate) struct Pool<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
        }
    }
}

impl<T> Pool<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, rx) = bounded(capacity.max(1));
        Pool { tx, rx }
    }

    /// A free buffer, if there is one.
    pub(crate) fn take(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// Hands a buffer back.
    pub(crate) fn give(&self, v: T) {
        let _ = self.tx.try_send(v);
    }
}

/// The buffers a compression pipeline recycles.
#[derive(Debug, Clone)]
pub(crate) struct EncodeBuffers {
    /// Input chunks, back from the writer to the producer.
    pub data: Pool<ArrayData>,
    /// Coded payloads, back from the writer to the workers.
    pub payload: Pool<Vec<u8>>,
}

/// A coded chunk on its way to the writer.
pub(crate) struct Encoded {
    pub records: u32,
    pub kind: PayloadKind,
    pub payload: Vec<u8>,
    /// The input buffer, handed back for reuse.
    pub data: ArrayData,
}

struct EncodeJob {
    chunk: u64,
    data: ArrayData,
    records: u32,
    reply: Sender<Result<Encoded>>,
}

/// What the writer thread is told.
pub(crate) enum WriterMsg {
    /// The next chunk in order: wait for its reply.
    Chunk(Receiver<Result<Encoded>>),
    /// No more chunks: finish the output.
    Finish,
}

/// The compressing side: workers plus a writer thread running `write`.
pub(crate) struct EncodePool<T: Send + 'static> {
    #[cfg(test)]
    pub(crate) started: usize,
    jobs: Option<Sender<EncodeJob>>,
    order: Option<Sender<WriterMsg>>,
    writer: Option<JoinHandle<Result<T>>>,
    workers: Vec<JoinHandle<()>>,
    buffers: EncodeBuffers,
    submitted: u64,
}

impl<T: Send + 'static> EncodePool<T> {
    /// Starts `threads` workers and a writer thread. `write` is handed each chunk's reply
    /// receiver in order, then `Finish`; it returns what `finish` gives back. Where the input
    /// is known to hold fewer `chunks`, only that many workers start, and the other cores are
    /// lent to their chunks from the first task on (a worker that waits for a chunk lends its
    /// core only once its thread runs, which on a virtual machine took up to milliseconds:
    /// longer than a small field's whole coding).
    pub(crate) fn start(
        threads: usize,
        chunks: Option<u64>,
        dtype: DType,
        params: Arc<CodecParams>,
        write: impl FnOnce(Receiver<WriterMsg>, EncodeBuffers) -> Result<T> + Send + 'static,
    ) -> Result<Self> {
        let threads = threads.clamp(1, MAX_THREADS);
        let (jobs_tx, jobs_rx) = bounded::<EncodeJob>(threads);
        let (order_tx, order_rx) = bounded::<WriterMsg>(2 * threads);
        let buffers = EncodeBuffers {
            data: Pool::new(2 * threads + 2),
            payload: Pool::new(2 * threads + 2),
        };
        let started = chunks.map_or(threads, |c| (c.max(1) as usize).min(threads));
        let mut workers = Vec::with_capacity(started);
        let spare = Spare::new(threads - started);
        for _ in 0..started {
            let jobs = jobs_rx.clone();
            let params = Arc::clone(&params);
            let payloads = buffers.payload.clone();
            let spare = Arc::clone(&spare);
            workers.push(spawn("coding workers", move || {
                // Once out of chunks, this worker's core is lent to the others' chunks.
                let _idle = spare.idle_on_exit();
                let mut codec = AnyCodec::take(dtype, params);
                codec.lending(&spare);
                // While it waits for a chunk, its core too.
                while let Ok(job) = {
                    let _waiting = spare.waiting();
                    jobs.recv()
                } {
                    let mut payload = payloads.take().unwrap_or_default();
                    let r = guarded(job.chunk, "coding", || {
                        Ok(codec.encode(&job.data, &mut payload))
                    });
                    let failed = r.is_err();
                    let reply = r.map(|kind| Encoded {
                        records: job.records,
                        kind,
                        payload,
                        data: job.data,
                    });
                    // The writer may have stopped on an error; nothing to do then.
                    let _ = job.reply.send(reply);
                    if failed {
                        return;
                    }
                }
                codec.keep();
            })?);
        }
        let for_writer = buffers.clone();
        let writer = spawn("writer", move || write(order_rx, for_writer))?;
        Ok(EncodePool {
            #[cfg(test)]
            started,
            jobs: Some(jobs_tx),
            order: Some(order_tx),
            writer: Some(writer),
            workers,
            buffers,
            submitted: 0,
        })
    }

    /// A recycled input buffer, if one is free.
    pub(crate) fn recycled(&self) -> Option<ArrayData> {
        self.buffers.data.take()
    }

    /// Queues a chunk. Fails (with the real cause, from the writer) if the pipeline has stopped.
    pub(crate) fn submit(&mut self, data: ArrayData, records: u32) -> Result<()> {
        let (tx, rx) = bounded(1);
        let chunk = self.submitted;
        let sent = self
            .order
            .as_ref()
            .is_some_and(|o| o.send(WriterMsg::Chunk(rx)).is_ok())
            && self.jobs.as_ref().is_some_and(|j| {
                j.send(EncodeJob {
                    chunk,
                    data,
                    records,
                    reply: tx,
                })
                .is_ok()
            });
        if sent {
            self.submitted += 1;
            return Ok(());
        }
        // A stage stopped: its error is the one to report.
        Err(self
            .shutdown(false)
            .err()
            .unwrap_or_else(|| Error::Io(std::io::Error::other("compression pipeline stopped"))))
    }

    /// Finishes: tells the writer to complete, joins every thread, returns the writer's result.
    pub(crate) fn finish(mut self) -> Result<T> {
        self.shutdown(true)
    }

    fn shutdown(&mut self, finish: bool) -> Result<T> {
        if let Some(order) = self.order.take()
            && finish
        {
            let _ = order.send(WriterMsg::Finish);
        }
        self.jobs.take();
        let result = match self.writer.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("the writer thread panicked".into()))),
            None => Err(Error::Io(std::io::Error::other(
                "compression pipeline already stopped",
            ))),
        };
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        result
    }
}

impl<T: Send + 'static> Drop for EncodePool<T> {
    fn drop(&mut self) {
        // Dropped without `finish` (an error elsewhere, or the caller gave up): close the
        // channels so every thread ends, then wait for them, so the writer drops its output
        // (an `OutputFile` removes its temporary file then) before the process can exit. The
        // wait is bounded by the chunks already in flight. Without `Finish` there is no end
        // mark: the output is detectably incomplete.
        if self.writer.is_some() {
            let _ = self.shutdown(false);
        }
    }
}

/// Waits for the next reply in order.
pub(crate) fn wait_reply<T>(rx: &Receiver<Result<T>>) -> Result<T> {
    rx.recv().unwrap_or_else(|_| {
        Err(Error::Internal(
            "a worker thread stopped without replying".into(),
        ))
    })
}

/// A decoded chunk.
pub(crate) struct Decoded {
    pub data: ArrayData,
}

/// What the consumer receives, in order.
pub(crate) enum DecodeMsg {
    /// A chunk's reply, and the share of the budget it holds until the consumer moves on.
    Chunk(Receiver<Result<Decoded>>, u64),
    /// The end mark and footer were read and verified.
    End,
    Failed(Error),
}

pub(crate) struct DecodeJob {
    pub chunk: u64,
    pub kind: PayloadKind,
    pub payload: Vec<u8>,
    pub values: usize,
    pub reply: Sender<Result<Decoded>>,
}

/// The buffers a decompression pipeline recycles.
#[derive(Debug, Clone)]
pub(crate) struct DecodeBuffers {
    /// Payloads, back from the workers to the reader.
    pub payload: Pool<Vec<u8>>,
    /// Decoded chunks, back from the consumer to the workers.
    pub data: Pool<ArrayData>,
}

/// The reader's end of the decoding workers' jobs: [`send`](Self::send) starts another
/// worker where the chunks queued outnumber those started, up to the thread count.
pub(crate) struct Jobs {
    tx: Sender<DecodeJob>,
    sent: usize,
    started: usize,
    threads: usize,
    spare: Arc<Spare>,
    start_worker: Box<dyn Fn() -> Result<JoinHandle<()>> + Send>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Jobs {
    /// Queues `job` for the workers, after starting one more where every worker started has
    /// a chunk already (its core, lent meanwhile, is taken back: the lent thread gives it up
    /// after its current task). Fails where the workers have all stopped.
    pub(crate) fn send(&mut self, job: DecodeJob) -> std::result::Result<(), DecodeJob> {
        if self.sent >= self.started && self.started < self.threads {
            self.spare.take_back();
            match (self.start_worker)() {
                Ok(h) => {
                    self.workers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(h);
                    self.started += 1;
                }
                // A thread that cannot start (a process at its limit): the workers started
                // decode every chunk, and the core stays idle, to lend.
                Err(_) => {
                    self.spare.give_back();
                    self.threads = self.started;
                }
            }
        }
        self.sent += 1;
        self.tx.send(job).map_err(|e| e.into_inner())
    }
}

/// The decompressing side: a reader thread and workers feeding the consumer in order.
pub(crate) struct DecodePool<T: Send + 'static> {
    order: Receiver<DecodeMsg>,
    /// The workers started so far (the reader starts more: [`Jobs`]).
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// The reader thread; it returns its input when done.
    reader: Option<JoinHandle<T>>,
    buffers: DecodeBuffers,
    budget: Arc<Budget>,
    /// Largest buffer kept for reuse, in bytes.
    keep: u64,
}

impl<T: Send + 'static> DecodePool<T> {
    /// Starts a reader thread running `read`, which sends jobs and order messages until the
    /// end of the input or an error, then returns its input, and up to `threads` workers: one
    /// now, another each time `read` queues more chunks than there are workers ([`Jobs`]), so
    /// a file of one chunk starts one and lends the other cores to it from its first task on
    /// (a worker started to wait lends its core only once its thread runs, which on a virtual
    /// machine took up to milliseconds: longer than a small field's whole decoding). Chunk
    /// buffers stay within `memory_limit` bytes (see the module docs): `read` reserves each
    /// chunk's share of the [`Budget`] it is given before queuing it.
    pub(crate) fn start(
        threads: usize,
        memory_limit: u64,
        dtype: DType,
        params: Arc<CodecParams>,
        read: impl FnOnce(Jobs, Sender<DecodeMsg>, Pool<Vec<u8>>, Arc<Budget>) -> T + Send + 'static,
    ) -> Result<Self> {
        let threads = threads.clamp(1, MAX_THREADS);
        let (jobs_tx, jobs_rx) = bounded::<DecodeJob>(threads);
        let (order_tx, order_rx) = bounded::<DecodeMsg>(2 * threads);
        let pooled = 2 * threads + 2;
        let buffers = DecodeBuffers {
            payload: Pool::new(pooled),
            data: Pool::new(pooled),
        };
        // Half the limit for the chunks in flight, a quarter for the workers' scratch, a
        // quarter for the two pools' buffers.
        let budget = Arc::new(Budget::new(memory_limit / 2));
        let scratch_keep = memory_limit / 4 / threads as u64;
        let keep = memory_limit / 8 / pooled as u64;
        // The cores of the workers not started yet are idle.
        let spare = Spare::new(threads - 1);
        let bufs = buffers.clone();
        let worker_spare = Arc::clone(&spare);
        let start_worker = move || {
            let jobs = jobs_rx.clone();
            let params = Arc::clone(&params);
            let bufs = bufs.clone();
            let spare = Arc::clone(&worker_spare);
            spawn("decoding workers", move || {
                // Once out of chunks, this worker's core is lent to the others' chunks.
                let _idle = spare.idle_on_exit();
                let mut codec = AnyCodec::take(dtype, Arc::clone(&params));
                codec.lending(&spare);
                // While it waits for a chunk, its core too.
                while let Ok(job) = {
                    let _waiting = spare.waiting();
                    jobs.recv()
                } {
                    let mut data = match bufs.data.take() {
                        Some(mut d) if d.dtype() == dtype => {
                            d.clear();
                            d
                        }
                        _ => ArrayData::with_capacity(dtype, job.values),
                    };
                    let r = guarded(job.chunk, "decoding", || {
                        codec.decode(job.chunk, job.kind, &job.payload, job.values, &mut data)
                    });
                    if chunk_cost(dtype, job.values as u64, 0) > scratch_keep {
                        // Scratch this large is not kept between chunks.
                        codec = AnyCodec::new(dtype, Arc::clone(&params));
                        codec.lending(&spare);
                    }
                    if job.payload.capacity() as u64 <= keep {
                        bufs.payload.give(job.payload);
                    }
                    let failed = matches!(r, Err(Error::Internal(_)));
                    let _ = job.reply.send(r.map(|()| Decoded { data }));
                    if failed {
                        return;
                    }
                }
                codec.keep();
            })
        };
        let workers = Arc::new(Mutex::new(vec![start_worker()?]));
        let jobs = Jobs {
            tx: jobs_tx,
            sent: 0,
            started: 1,
            threads,
            spare,
            start_worker: Box::new(start_worker),
            workers: Arc::clone(&workers),
        };
        let payloads = buffers.payload.clone();
        let for_reader = Arc::clone(&budget);
        let reader = spawn("reader", move || read(jobs, order_tx, payloads, for_reader))?;
        Ok(DecodePool {
            order: order_rx,
            workers,
            reader: Some(reader),
            buffers,
            budget,
            keep,
        })
    }

    /// The workers started so far.
    #[cfg(test)]
    pub(crate) fn workers_started(&self) -> usize {
        self.workers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Hands a decoded chunk's buffer back for reuse (kept only if small enough).
    pub(crate) fn recycle(&self, data: ArrayData) {
        if (data.capacity() * data.dtype().size()) as u64 <= self.keep {
            self.buffers.data.give(data);
        }
    }

    /// Gives back the share of the budget a chunk the consumer is done with held.
    pub(crate) fn release(&self, bytes: u64) {
        self.budget.release(bytes);
    }

    /// The next message in order; `None` once every stage has stopped.
    pub(crate) fn next(&self) -> Option<DecodeMsg> {
        self.order.recv().ok()
    }

    /// Joins the threads (after the end was reached); returns what the reader thread returned.
    pub(crate) fn join(mut self) -> Option<T> {
        self.budget.close();
        drop(std::mem::replace(&mut self.order, bounded(0).1));
        let reader = self.reader.take().and_then(|h| h.join().ok());
        // The reader has ended, so it starts no more.
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for h in workers {
            let _ = h.join();
        }
        reader
    }
}

impl<T: Send + 'static> Drop for DecodePool<T> {
    fn drop(&mut self) {
        // A reader waiting for budget would wait for a consumer that has gone.
        self.budget.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn the_budget_admits_what_fits_and_closing_wakes_a_waiter() {
        let b = Arc::new(Budget::new(100));
        // Anything fits when nothing is reserved; then only what fits beside it.
        assert!(b.reserve(60));
        assert!(b.reserve(40));
        let waiter = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.reserve(50))
        };
        thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "50 more does not fit in 100 beside 100"
        );
        b.release(60);
        assert!(waiter.join().unwrap(), "admitted once 60 were given back");
        let waiter = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.reserve(80))
        };
        thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished());
        b.close();
        assert!(!waiter.join().unwrap(), "refused once the pipeline closes");
        assert!(!b.reserve(1));
    }

    #[test]
    fn chunk_cost_counts_values_scratch_and_payload() {
        assert_eq!(chunk_cost(DType::F32, 10, 7), 10 * 12 + 7);
        assert_eq!(chunk_cost(DType::F64, 10, 0), 160);
        assert_eq!(chunk_cost(DType::F64, u64::MAX, 1), u64::MAX);
    }
}
