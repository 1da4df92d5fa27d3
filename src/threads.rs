//! The threads every stage runs on: a process-wide set of parked workers, reused from one call
//! to the next.
//!
//! Starting a thread costs tens of microseconds (a stack mapped, signal masks, affinity), and
//! a call to compress or decompress starts several: the pipeline's workers, its reader or
//! writer, and a helper each time an idle core is lent to a column's segments
//! ([`crate::spare`]). For a field of a few hundred kilobytes, or an HDF5 chunk coded by the
//! filter, that was a tenth of the whole call. Here a thread that finishes its work parks for
//! the next one instead, and leaves after [`IDLE_EXIT`] without work, so a process that stops
//! compressing keeps no threads.
//!
//! Two ways in, as `std::thread` has: [`spawn`] for work that owns what it uses (the
//! pipeline's stages), and [`scope`] for work that borrows from the caller, which waits for
//! all of it before returning (the segments of one column, the runs of a statistics pass).
//! Which thread runs a piece of work never changes what it computes.

use std::any::Any;
use std::io;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

/// How long a parked thread waits for work before it leaves: long enough for a loop of calls
/// (array after array, an HDF5 file's chunks), short enough that a program done compressing
/// soon has no thread of ours (a Python program that forks then has one thread, as before).
pub const IDLE_EXIT: Duration = Duration::from_secs(1);

/// A unit of work for a parked thread: it catches its own panics, and returns how to hand
/// its result over, which the thread does once it is parked again (so whoever waits for the
/// result finds the thread parked: [`release`] then lets it go).
type Job = Box<dyn FnOnce() -> Done + Send + 'static>;
type Done = Box<dyn FnOnce() + Send + 'static>;

/// The threads of process `pid`: those parked, each by its id and the channel it waits on,
/// and every one started, by id, to wait for ([`release`]).
struct Parked {
    pid: u32,
    threads: Vec<(u64, Sender<Job>)>,
    handles: Vec<(u64, thread::JoinHandle<()>)>,
    /// Threads given work that was called off before they started it
    /// ([`Callable::call_off`]), not parked again yet: [`release`] waits for them.
    returning: usize,
}

static PARKED: Mutex<Parked> = Mutex::new(Parked {
    pid: 0,
    threads: Vec::new(),
    handles: Vec::new(),
    returning: 0,
});
/// Signalled as a thread whose work was called off parks again.
static RETURNED: Condvar = Condvar::new();

/// Counts one thread out of those returning from called-off work ([`Parked::returning`]),
/// waking a [`release`] that waits for them.
fn returned() {
    let mut p = parked();
    p.returning = p.returning.saturating_sub(1);
    RETURNED.notify_all();
}
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The parked threads of this process.
fn parked() -> MutexGuard<'static, Parked> {
    parked_in(std::process::id())
}

/// The parked threads of process `pid`. A process made by `fork` has only the thread that
/// forked: the lists it inherited name its parent's threads, whose channels would take work
/// nobody does (and whose handles cannot be waited for), so they start empty (the old
/// entries are forgotten, not dropped: they point into the parent's threads).
fn parked_in(pid: u32) -> MutexGuard<'static, Parked> {
    // Nothing panics while holding it; a poisoned list is still a valid list.
    let mut p = PARKED.lock().unwrap_or_else(|e| e.into_inner());
    if p.pid != pid {
        std::mem::forget(std::mem::take(&mut p.threads));
        std::mem::forget(std::mem::take(&mut p.handles));
        p.returning = 0;
        p.pid = pid;
    }
    p
}

/// Runs `job` on a parked thread, or on a new one where none is parked.
fn run(mut job: Job) -> io::Result<()> {
    loop {
        let next = parked().threads.pop();
        let Some((_, tx)) = next else { break };
        match tx.send(job) {
            Ok(()) => return Ok(()),
            // That thread left between parking and now: try the next.
            Err(e) => job = e.into_inner(),
        }
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    // Listed before the thread can look for itself on leaving (it parks under the same lock).
    let mut list = parked();
    let handle = thread::Builder::new()
        .name("baler".into())
        .spawn(move || serve(id, job))?;
    list.handles.push((id, handle));
    Ok(())
}

/// Thread `id`'s life: `first`, then whatever it is given while parked, until [`IDLE_EXIT`]
/// passes without work or [`release`] lets it go.
fn serve(id: u64, first: Job) {
    let mut job = first;
    loop {
        let done = job();
        // A channel for each wait: dropping the parked list's end lets the thread go.
        let (tx, rx): (Sender<Job>, Receiver<Job>) = bounded(1);
        parked().threads.push((id, tx));
        done();
        job = match rx.recv_timeout(IDLE_EXIT) {
            Ok(next) => next,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let mut list = parked();
                if let Some(at) = list.threads.iter().position(|w| w.0 == id) {
                    list.threads.swap_remove(at);
                    break;
                }
                drop(list);
                // Taken off the list: by a caller whose work is on its way, or by `release`.
                match rx.recv() {
                    Ok(next) => next,
                    Err(_) => break,
                }
            }
        };
    }
    // Leaving on its own: nobody will wait for it.
    let mut list = parked();
    if let Some(at) = list.handles.iter().position(|h| h.0 == id) {
        drop(list.handles.swap_remove(at));
    }
}

/// Lets every parked thread go and waits for each to end, so the process runs on its own
/// threads until the next call (before a `fork`, say). Work still running is not waited for.
pub fn release() {
    let (senders, handles) = {
        let mut p = parked();
        // Threads on their way back from work called off are parked again first (they only
        // have to wake), so that they are let go too.
        while p.returning > 0 {
            p = RETURNED.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        let senders = std::mem::take(&mut p.threads);
        let ids: Vec<u64> = senders.iter().map(|w| w.0).collect();
        let (go, stay): (Vec<_>, Vec<_>) = std::mem::take(&mut p.handles)
            .into_iter()
            .partition(|h| ids.contains(&h.0));
        p.handles = stay;
        (senders, go)
    };
    // Each parked thread's channel closes: it returns.
    drop(senders);
    for (_, h) in handles {
        let _ = h.join();
    }
}

/// Where a spawned piece of work leaves its result.
struct Packet<T> {
    result: Mutex<Option<thread::Result<T>>>,
    done: Condvar,
}

impl<T> Packet<T> {
    fn new() -> Self {
        Packet {
            result: Mutex::new(None),
            done: Condvar::new(),
        }
    }

    fn put(&self, r: thread::Result<T>) {
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        self.done.notify_all();
    }

    fn wait(&self) -> thread::Result<T> {
        let mut slot = self.result.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            slot = self.done.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Work started by [`spawn`]: [`join`](Self::join) waits for its result.
pub struct JoinHandle<T> {
    packet: Arc<Packet<T>>,
}

impl<T> JoinHandle<T> {
    /// Waits for the work to end: its result, or the payload of its panic.
    pub fn join(self) -> thread::Result<T> {
        self.packet.wait()
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle").finish_non_exhaustive()
    }
}

/// Runs `f` on a parked thread (or a new one). Fails only where no thread can be started.
pub fn spawn<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    let packet = Arc::new(Packet::new());
    let theirs = Arc::clone(&packet);
    run(Box::new(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        Box::new(move || theirs.put(r)) as Done
    }))?;
    Ok(JoinHandle { packet })
}

/// What a [`scope`] keeps track of: the work still running, and whether a piece of work that
/// nobody joined panicked.
struct ScopeData {
    running: Mutex<usize>,
    ended: Condvar,
    unjoined_panic: AtomicBool,
}

impl ScopeData {
    fn started(&self) {
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    fn finished(&self) {
        let mut n = self.running.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        if *n == 0 {
            self.ended.notify_all();
        }
    }

    fn wait_all(&self) {
        let mut n = self.running.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            n = self.ended.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Work that may borrow from outside it, as [`std::thread::Scope`]: everything spawned on it
/// ends before [`scope`] returns.
pub struct Scope<'scope, 'env: 'scope> {
    data: Arc<ScopeData>,
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// A result of work spawned on a [`Scope`]: a [`Packet`] that tells the scope, when it goes,
/// of a panic nobody joined.
struct ScopedPacket<T> {
    packet: Packet<T>,
    data: Arc<ScopeData>,
}

impl<T> Drop for ScopedPacket<T> {
    fn drop(&mut self) {
        // A panic nobody joined is the scope's to raise, as with `std::thread::scope`.
        let r = self
            .packet
            .result
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        if matches!(r, Some(Err(_))) {
            self.data.unjoined_panic.store(true, Ordering::Relaxed);
        }
    }
}

/// Work spawned on a [`Scope`]: [`join`](Self::join) gives its result.
pub struct ScopedJoinHandle<'scope, T> {
    packet: Arc<ScopedPacket<T>>,
    scope: PhantomData<&'scope ()>,
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the work to end: its result, or the payload of its panic.
    pub fn join(self) -> thread::Result<T> {
        self.packet.packet.wait()
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Runs `f` on a parked thread (or a new one), ending before the scope does. Panics where
    /// no thread can be started, as `std::thread::Scope::spawn` does.
    pub fn spawn<T: Send + 'scope>(
        &'scope self,
        f: impl FnOnce() -> T + Send + 'scope,
    ) -> ScopedJoinHandle<'scope, T> {
        self.try_spawn(f).expect("failed to start a thread")
    }

    /// [`spawn`](Self::spawn), or the error where no thread can be started.
    pub fn try_spawn<T: Send + 'scope>(
        &'scope self,
        f: impl FnOnce() -> T + Send + 'scope,
    ) -> io::Result<ScopedJoinHandle<'scope, T>> {
        self.start(f, None)
    }

    /// [`try_spawn`](Self::try_spawn) for work that may be called off while it waits for its
    /// thread ([`Callable::call_off`]): a thread woken from sleep can take milliseconds to start
    /// (on a virtual machine, or where every core is busy), and whoever lent it work that is
    /// all done meanwhile need not wait for it.
    pub fn try_spawn_callable<T: Send + 'scope>(
        &'scope self,
        f: impl FnOnce() -> T + Send + 'scope,
    ) -> io::Result<Callable<'scope, T>> {
        let state = Arc::new(AtomicU8::new(WAITING));
        let handle = self.start(f, Some(Arc::clone(&state)))?;
        Ok(Callable {
            handle,
            state,
            data: Arc::clone(&self.data),
        })
    }

    #[allow(unsafe_code)]
    fn start<T: Send + 'scope>(
        &'scope self,
        f: impl FnOnce() -> T + Send + 'scope,
        callable: Option<Arc<AtomicU8>>,
    ) -> io::Result<ScopedJoinHandle<'scope, T>> {
        let packet = Arc::new(ScopedPacket {
            packet: Packet::new(),
            data: Arc::clone(&self.data),
        });
        let theirs = Arc::clone(&packet);
        let data = Arc::clone(&self.data);
        let job = move || -> Done {
            if let Some(state) = callable
                && state
                    .compare_exchange(WAITING, STARTED, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                // Called off, and no longer counted by the scope, which may have ended: what
                // `f` holds may be gone, so it is neither run nor dropped (what it owns leaks).
                // Back on the parked list when this returns: counted out of the returning.
                std::mem::forget(f);
                return Box::new(returned);
            }
            let r = catch_unwind(AssertUnwindSafe(f));
            let done = move || {
                theirs.packet.put(r);
                // Nothing borrowed is touched after this: `f` has been consumed and the
                // result handed over; only the scope's own counter (no borrow) is left.
                drop(theirs);
                data.finished();
            };
            let done: Box<dyn FnOnce() + Send + 'scope> = Box::new(done);
            // SAFETY: as for the job, below: handing the result over is its last act.
            unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + 'scope>, Done>(done) }
        };
        let job: Box<dyn FnOnce() -> Done + Send + 'scope> = Box::new(job);
        // SAFETY: the job and what it returns borrow for 'scope only, and `scope` does not
        // return (nor unwind) before `running` is back to 0, which the returned part marks as
        // its last act, after everything borrowed has been dropped (`f`, through the call,
        // the result, handed over, and the packet). Work called off is no longer counted, and
        // when its thread comes to it, touches nothing borrowed (`f` forgotten unrun).
        let job: Job =
            unsafe { std::mem::transmute::<Box<dyn FnOnce() -> Done + Send + 'scope>, Job>(job) };
        self.data.started();
        if let Err(e) = run(job) {
            // Not started: the job was dropped unrun by `run`'s failed spawn.
            self.data.finished();
            return Err(e);
        }
        Ok(ScopedJoinHandle {
            packet,
            scope: PhantomData,
        })
    }
}

/// States of work that may be called off ([`Scope::try_spawn_callable`]).
const WAITING: u8 = 0;
const STARTED: u8 = 1;
const CALLED_OFF: u8 = 2;

/// Work spawned on a [`Scope`] that may be called off until its thread starts it.
pub struct Callable<'scope, T> {
    handle: ScopedJoinHandle<'scope, T>,
    state: Arc<AtomicU8>,
    data: Arc<ScopeData>,
}

impl<T> Callable<'_, T> {
    /// Calls the work off where its thread has not started it yet: `true`, and it never runs
    /// (nor does the scope wait for it); `false` where it has started, to be joined.
    pub fn call_off(&self) -> bool {
        // Counted as returning before its thread can see the work called off (and count
        // itself out once parked again).
        parked().returning += 1;
        let off = self
            .state
            .compare_exchange(WAITING, CALLED_OFF, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if off {
            self.data.finished();
        } else {
            returned();
        }
        off
    }

    /// Waits for the work to end (it must not have been called off): its result, or the
    /// payload of its panic.
    pub fn join(self) -> thread::Result<T> {
        self.handle.join()
    }
}

/// Runs `f` with a [`Scope`] to spawn work on that may borrow what lives outside the call,
/// and waits for all of it, as [`std::thread::scope`]. A panic of `f`, or of work nobody
/// joined, is raised once everything has ended.
pub fn scope<'env, T>(f: impl for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T) -> T {
    let s = Scope {
        data: Arc::new(ScopeData {
            running: Mutex::new(0),
            ended: Condvar::new(),
            unjoined_panic: AtomicBool::new(false),
        }),
        scope: PhantomData,
        env: PhantomData,
    };
    let r = catch_unwind(AssertUnwindSafe(|| f(&s)));
    s.data.wait_all();
    match r {
        Err(payload) => resume_unwind(payload),
        Ok(_) if s.data.unjoined_panic.load(Ordering::Relaxed) => {
            panic!("a scoped thread panicked")
        }
        Ok(v) => v,
    }
}

/// The payload of a panic as text, where it is one.
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn work_called_off_before_its_thread_starts_it_never_runs_nor_drops() {
        // Called off at once, most jobs have not been started yet (a parked thread takes
        // microseconds to wake): those never run, what they hold is not dropped (it may be
        // gone: here it is not, so it can be counted), and the scope ends without them. The
        // others run and are joined.
        struct Held<'a>(&'a AtomicUsize);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (ran, dropped) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut off = 0;
        for _ in 0..200 {
            scope(|s| {
                let held = Held(&dropped);
                let h = s
                    .try_spawn_callable(|| {
                        let _held = held;
                        ran.fetch_add(1, Ordering::Relaxed);
                        7
                    })
                    .unwrap();
                if h.call_off() {
                    off += 1;
                    assert!(!h.call_off(), "called off once");
                } else {
                    assert_eq!(h.join().unwrap(), 7);
                }
            });
        }
        // Any thread that comes to a job called off has had time to.
        thread::sleep(Duration::from_millis(50));
        let ran = ran.load(Ordering::Relaxed);
        assert_eq!(ran + off, 200);
        assert_eq!(dropped.load(Ordering::Relaxed), ran);
        assert!(off > 0, "none called off in time");
    }

    #[test]
    fn threads_are_reused_and_results_come_back() {
        let first = spawn(|| thread::current().id()).unwrap().join().unwrap();
        // The thread that ran the first job is parked now (or about to be): later jobs find
        // it rather than starting threads of their own.
        let mut ids = Vec::new();
        for i in 0..50 {
            let h = spawn(move || (thread::current().id(), i * 2)).unwrap();
            let (id, v) = h.join().unwrap();
            assert_eq!(v, i * 2);
            ids.push(id);
        }
        ids.sort_by_key(|id| format!("{id:?}"));
        ids.dedup();
        assert!(ids.len() < 50, "threads reused: {} for 50 jobs", ids.len());
        let _ = first;
    }

    #[test]
    fn a_forked_process_forgets_its_parents_threads() {
        // Parked threads, then the list as a child of a fork sees it (another process id):
        // empty, so its work goes to threads of its own.
        let h = spawn(|| 1).unwrap();
        assert_eq!(h.join().unwrap(), 1);
        let me = std::process::id();
        let child = me.wrapping_add(1);
        drop(parked_in(me));
        assert!(
            parked_in(child).threads.is_empty(),
            "the parent's threads forgotten"
        );
        // Back in this process's view (as a later fork would see its own), work still runs.
        drop(parked_in(me));
        assert_eq!(spawn(|| 2).unwrap().join().unwrap(), 2);
    }

    #[test]
    fn released_threads_end_and_work_goes_on() {
        let ids: Vec<_> = (0..4)
            .map(|_| spawn(|| thread::current().id()).unwrap().join().unwrap())
            .collect();
        assert_eq!(ids.len(), 4);
        release();
        // Released again with nothing parked, and with scoped work running meanwhile.
        scope(|s| {
            let h = s.spawn(|| {
                thread::sleep(Duration::from_millis(20));
                3
            });
            release();
            assert_eq!(h.join().unwrap(), 3);
        });
        assert_eq!(spawn(|| 5).unwrap().join().unwrap(), 5);
    }

    #[test]
    fn a_panic_comes_back_as_the_join_error() {
        let r = spawn(|| -> u32 { panic!("boom") }).unwrap().join();
        let p = r.unwrap_err();
        assert_eq!(panic_message(&*p), "boom");
        // The thread that panicked is still good for work.
        assert_eq!(spawn(|| 7).unwrap().join().unwrap(), 7);
    }

    #[test]
    fn scoped_work_borrows_and_ends_before_the_scope() {
        let mut data = vec![0u64; 1000];
        let total = AtomicUsize::new(0);
        scope(|s| {
            for (i, part) in data.chunks_mut(100).enumerate() {
                let total = &total;
                s.spawn(move || {
                    for x in part.iter_mut() {
                        *x = i as u64;
                    }
                    thread::sleep(Duration::from_millis(1));
                    total.fetch_add(part.len(), Ordering::Relaxed);
                });
            }
        });
        assert_eq!(
            total.load(Ordering::Relaxed),
            1000,
            "all ended with the scope"
        );
        assert!(
            data.chunks(100)
                .enumerate()
                .all(|(i, p)| p.iter().all(|&x| x == i as u64))
        );
        let sums: Vec<u64> = scope(|s| {
            let hs: Vec<_> = data
                .chunks(250)
                .map(|p| s.spawn(move || p.iter().sum::<u64>()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let expected: Vec<u64> = data.chunks(250).map(|p| p.iter().sum()).collect();
        assert_eq!(sums, expected);
        assert_eq!(
            sums.iter().sum::<u64>(),
            (0..10).map(|i| 100 * i).sum::<u64>()
        );
    }

    #[test]
    fn scoped_panics_reach_the_caller() {
        // Joined: the error is the joiner's.
        let joined = scope(|s| s.spawn(|| -> u8 { panic!("joined") }).join());
        assert_eq!(panic_message(&*joined.unwrap_err()), "joined");
        // Not joined: the scope raises it once everything has ended.
        let ended = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            scope(|s| {
                s.spawn(|| panic!("lost"));
                s.spawn(|| {
                    thread::sleep(Duration::from_millis(20));
                    ended.fetch_add(1, Ordering::Relaxed);
                });
            })
        }));
        assert!(r.is_err());
        assert_eq!(
            ended.load(Ordering::Relaxed),
            1,
            "the other work ended first"
        );
        // The scope's own panic, after its work has ended.
        let ended = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            scope(|s| {
                s.spawn(|| {
                    thread::sleep(Duration::from_millis(20));
                    ended.fetch_add(1, Ordering::Relaxed);
                });
                panic!("body");
            })
        }));
        assert_eq!(panic_message(&*r.unwrap_err()), "body");
        assert_eq!(ended.load(Ordering::Relaxed), 1);
    }
}
