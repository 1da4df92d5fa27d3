//! Cores the workers leave idle, lent to the chunks still being coded.
//!
//! A pipeline's workers each code whole chunks, and most files users compress one by one hold
//! a few chunks: a 600 KB field is one chunk, three variables are three. With two workers and
//! one chunk one core idles; with three chunks the last one runs alone. A worker that has no
//! chunk left marks its core [`Spare`] (an [`IdleOnExit`] guard, dropped as it returns), and so
//! does one while it waits for a chunk (a [`Waiting`] guard: a file of one chunk lends the
//! other core from its first task, not once the input is known to end; a worker that gets a
//! chunk while its core is lent takes it back after the lent thread's current task), and a
//! codec whose chunk is still running borrows it for the parts of its work that split into
//! independent tasks ([`Spare::share`]): a column's segments, coded or decoded each on their
//! own, or the parts of an interpolation's pass. The codec looks for an idle core before each
//! task it takes, so a core that comes free halfway (a worker that finished the file's other
//! chunk) still joins in. A helper whose thread has not started by the time every task is
//! taken (waking a parked thread took up to milliseconds on a virtual machine, or with every
//! core busy) is called off, not waited for ([`threads::Scope::try_spawn_callable`]). The work
//! is the same whoever does it, so the output does not depend on what was lent, nor on the
//! thread count.

use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use crate::threads;

/// Idle cores of one pipeline (or of one call's scoped workers), to lend.
///
/// `idle` counts the workers idle (out of chunks, or waiting for one) less the cores lent: it
/// goes below zero where a worker that waited for a chunk got one while its core was lent,
/// and a lent thread then gives the core back after its current task.
#[derive(Debug, Default)]
pub(crate) struct Spare {
    idle: AtomicIsize,
}

impl Spare {
    /// A pool with `idle` cores idle from the start (more threads allowed than chunks).
    pub(crate) fn new(idle: usize) -> Arc<Self> {
        Arc::new(Spare {
            idle: AtomicIsize::new(idle as isize),
        })
    }

    /// A guard that marks one more core idle when dropped: a worker holds it while it runs.
    pub(crate) fn idle_on_exit(self: &Arc<Self>) -> IdleOnExit {
        IdleOnExit(Arc::clone(self))
    }

    /// A guard that marks one core idle while it lives: a worker holds it while it waits for
    /// a chunk, so a single chunk's codec can borrow the other core from its first task on
    /// (the worker that would have had a second chunk learns there is none only once the
    /// input ends). A worker that gets a chunk takes its core back, lent or not.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.idle.fetch_add(1, Ordering::Release);
        Waiting(self)
    }

    /// Takes an idle core back for a worker about to start (lent or not: a lent thread then
    /// gives it back after its current task, as for [`waiting`](Self::waiting)'s worker).
    pub(crate) fn take_back(&self) {
        self.idle.fetch_sub(1, Ordering::Acquire);
    }

    /// Gives back a core [`take_back`](Self::take_back) took for a worker that did not start.
    pub(crate) fn give_back(&self) {
        self.idle.fetch_add(1, Ordering::Release);
    }

    /// Whether a worker came back to a core that is lent: the lent thread should give it back.
    fn reclaimed(&self) -> bool {
        self.idle.load(Ordering::Relaxed) < 0
    }

    /// Runs `work(i, scratch)` for every task `i` in `0..tasks`, each exactly once: on the
    /// calling thread (with `scratch[0]`) and on up to `scratch.len() − 1` threads borrowed
    /// as cores come idle (each with a scratch of its own), taking the tasks in order. Returns
    /// when all are done; a panic in any task is the caller's.
    pub(crate) fn share<S: Send>(
        &self,
        tasks: usize,
        scratch: &mut [S],
        work: impl Fn(usize, &mut S) + Sync,
    ) {
        let Some((mine, others)) = scratch.split_first_mut() else {
            return;
        };
        let next = AtomicUsize::new(0);
        let take = || Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&i| i < tasks);
        if tasks <= 1 || others.is_empty() {
            while let Some(i) = take() {
                work(i, mine);
            }
            return;
        }
        let (work, take) = (&work, &take);
        threads::scope(|scope| {
            let mut others = others.iter_mut();
            let mut handles = Vec::new();
            loop {
                // A core idle now, and a task left for it beside the caller's next one.
                if next.load(Ordering::Relaxed) + 1 < tasks && others.len() > 0 {
                    let lease = self.lend(1);
                    if lease.threads == 1 {
                        let theirs = others.next().expect("scratch left");
                        let helper = scope.try_spawn_callable(move || {
                            let _lease = lease;
                            // Until the tasks run out, or the core's worker is back.
                            while !self.reclaimed() {
                                let Some(i) = take() else { break };
                                work(i, theirs);
                            }
                        });
                        // A thread that cannot start (a process at its limit) leaves the
                        // tasks to the others.
                        if let Ok(h) = helper {
                            handles.push(h);
                        }
                    }
                }
                let Some(i) = take() else { break };
                work(i, mine);
            }
            // The tasks are all taken: a helper its thread has not started yet (waking a
            // thread can take milliseconds) is called off rather than waited for, and its
            // core given back here (its lease, never run, is forgotten with it).
            for h in handles {
                if h.call_off() {
                    self.idle.fetch_add(1, Ordering::Release);
                } else if let Err(panic) = h.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        });
    }

    /// Borrows up to `most` idle cores (none where none is idle), given back when the lease
    /// is dropped.
    fn lend(&self, most: usize) -> Lease<'_> {
        let mut idle = self.idle.load(Ordering::Relaxed);
        loop {
            let take = (idle.max(0) as usize).min(most) as isize;
            if take == 0 {
                return Lease {
                    spare: self,
                    threads: 0,
                };
            }
            match self.idle.compare_exchange_weak(
                idle,
                idle - take,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Lease {
                        spare: self,
                        threads: take as usize,
                    };
                }
                Err(now) => idle = now,
            }
        }
    }
}

/// Marks one core of a [`Spare`] idle when dropped.
#[derive(Debug)]
pub(crate) struct IdleOnExit(Arc<Spare>);

impl Drop for IdleOnExit {
    fn drop(&mut self) {
        self.0.idle.fetch_add(1, Ordering::Release);
    }
}

/// Marks one core of a [`Spare`] idle until dropped ([`Spare::waiting`]).
#[derive(Debug)]
pub(crate) struct Waiting<'a>(&'a Spare);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.idle.fetch_sub(1, Ordering::Acquire);
    }
}

/// Cores borrowed from a [`Spare`], given back when dropped.
#[derive(Debug)]
struct Lease<'a> {
    spare: &'a Spare,
    threads: usize,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.threads > 0 {
            self.spare
                .idle
                .fetch_add(self.threads as isize, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn idle_cores_are_lent_once_and_come_back() {
        let spare = Spare::new(1);
        {
            let worker = spare.idle_on_exit();
            let a = spare.lend(4);
            assert_eq!(a.threads, 1);
            assert_eq!(spare.lend(4).threads, 0, "lent already");
            drop(worker);
            let b = spare.lend(4);
            assert_eq!(b.threads, 1, "the worker's core, idle once it returned");
        }
        assert_eq!(spare.lend(8).threads, 2, "both back");
        assert_eq!(spare.lend(0).threads, 0);
    }

    #[test]
    fn a_waiting_worker_lends_its_core_and_takes_it_back() {
        let spare = Spare::new(0);
        assert_eq!(spare.lend(1).threads, 0, "no core idle");
        let waiting = spare.waiting();
        let lease = spare.lend(2);
        assert_eq!(lease.threads, 1, "the waiting worker's core");
        assert!(!spare.reclaimed());
        // The worker got a chunk while its core was lent: the lent thread should give it back.
        drop(waiting);
        assert!(spare.reclaimed());
        assert_eq!(spare.lend(1).threads, 0);
        drop(lease);
        assert!(!spare.reclaimed());
        assert_eq!(spare.lend(1).threads, 0, "busy again, nothing to lend");

        // A core lent while its worker waits, the worker back halfway through the tasks: the
        // lent thread stops after its current task, and every task still runs once.
        for back_at in [0, 5, 39] {
            let spare = Spare::new(0);
            let waiting = Mutex::new(Some(spare.waiting()));
            let mut scratch: Vec<Vec<usize>> = vec![Vec::new(); 2];
            let done = Mutex::new(Vec::new());
            spare.share(40, &mut scratch, |i, mine| {
                if i == back_at {
                    drop(waiting.lock().unwrap().take());
                }
                mine.push(i);
                done.lock().unwrap().push(i);
            });
            let mut done = done.into_inner().unwrap();
            done.sort();
            assert_eq!(done, (0..40).collect::<Vec<_>>());
            assert!(!spare.reclaimed(), "the lent core given back");
            assert_eq!(spare.lend(1).threads, 0);
        }
    }

    #[test]
    fn every_task_runs_once_whoever_runs_it() {
        for (idle, helpers) in [(0, 3), (1, 3), (3, 3), (3, 0), (2, 1)] {
            let spare = Spare::new(idle);
            let mut scratch: Vec<Vec<usize>> = vec![Vec::new(); helpers + 1];
            let done = Mutex::new(Vec::new());
            spare.share(40, &mut scratch, |i, mine| {
                mine.push(i);
                done.lock().unwrap().push(i);
            });
            let mut done = done.into_inner().unwrap();
            done.sort();
            assert_eq!(done, (0..40).collect::<Vec<_>>());
            let mut seen: Vec<usize> = scratch.concat();
            seen.sort();
            assert_eq!(
                seen, done,
                "each task in the scratch of the thread that ran it"
            );
            assert!(
                scratch.iter().all(|s| s.windows(2).all(|w| w[0] < w[1])),
                "in order"
            );
            assert_eq!(spare.lend(8).threads, idle, "every core given back");
        }
        Spare::new(2).share(0, &mut [(), ()], |_, _| panic!("no task"));
    }
}
