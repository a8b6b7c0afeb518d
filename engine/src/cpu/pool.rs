//! A fixed team of threads for the parallel sections of a forward pass.
//!
//! A decode step of a small model is a few hundred matrix products of a
//! few hundred microseconds each; a fork-join that parks and wakes threads
//! (rayon's, say) costs a real fraction of that. Here the workers spin on
//! a generation counter for a short while after each section, so the next
//! one starts within a cache-line transfer, and only then sleep on a
//! condition variable (so an idle server burns no CPU).
//!
//! The calling thread is worker 0 and runs its share too. Work inside a
//! section is handed out in small chunks ([`Chunks`]: each thread's own
//! share first, then what the others left), and a worker joins a section
//! only while it is open: once the caller has run
//! out of chunks it closes the section and waits only for the workers that
//! joined. A worker that the OS has descheduled (other jobs on the
//! machine) therefore never holds up a step; the caller does its share.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Spins before a worker goes to sleep: long enough to bridge the serial
/// work between two sections of a step (tens of microseconds).
const SPINS: u32 = 1 << 14;

/// `state`: the section's generation in the high 32 bits, the closed flag
/// in bit 31, the number of workers that joined below it.
const CLOSED: u64 = 1 << 31;
const JOINED: u64 = CLOSED - 1;

type Job = dyn Fn(usize) + Sync;

struct Shared {
    state: AtomicU64,
    /// The current section's job (a thin pointer to the fat reference on
    /// `run`'s stack: a mutex here was contended by every worker at every
    /// section); valid for the workers that joined the section.
    job: AtomicPtr<&'static Job>,
    /// Workers of the current section that are done.
    finished: AtomicUsize,
    stop: AtomicBool,
    sleepers: Mutex<usize>,
    wake: Condvar,
}

pub struct Pool {
    shared: Arc<Shared>,
    threads: usize,
    /// One section at a time (sequences may step from several threads).
    section: Mutex<()>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} threads)", self.threads)
    }
}

impl Pool {
    /// A team of `threads` (at least 1, the caller included).
    pub fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            // Generation 0 closed: nothing to join before the first run.
            state: AtomicU64::new(CLOSED),
            job: AtomicPtr::new(std::ptr::null_mut()),
            finished: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            sleepers: Mutex::new(0),
            wake: Condvar::new(),
        });
        let workers = (1..threads)
            .map(|id| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("cocoon-cpu-{id}"))
                    .spawn(move || worker(&shared, id))
                    .expect("spawning an engine thread")
            })
            .collect();
        Pool {
            shared,
            threads,
            section: Mutex::new(()),
            workers,
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(thread)` on this thread and on every worker that joins
    /// before this thread is done with it; returns when all of them are.
    /// `f` must share its work out (see [`Chunks`]): a worker may join
    /// late or not at all.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            f(0);
            return;
        }
        let _one = self.section.lock().unwrap_or_else(|p| p.into_inner());
        let sh = &self.shared;
        // SAFETY: workers only call the job after joining the section (a
        // CAS on `state`), and this function does not return (so `f`
        // stays alive) before every worker that joined has finished.
        let mut job: &'static Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Job>(f) };
        sh.job.store(&mut job, Ordering::Relaxed);
        sh.finished.store(0, Ordering::Relaxed);
        let generation = (sh.state.load(Ordering::Relaxed) >> 32) + 1;
        sh.state.store(generation << 32, Ordering::SeqCst);
        if *sh.sleepers.lock().unwrap_or_else(|p| p.into_inner()) > 0 {
            sh.wake.notify_all();
        }
        f(0);
        let joined = (sh.state.fetch_or(CLOSED, Ordering::AcqRel) & JOINED) as usize;
        let mut spins = 0u32;
        while sh.finished.load(Ordering::Acquire) != joined {
            spins = spins.wrapping_add(1);
            // A joined worker is running our job; only if it was
            // descheduled for long does yielding help it get a core.
            if spins.is_multiple_of(1 << 16) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        sh.job.store(std::ptr::null_mut(), Ordering::Relaxed);
    }
}

fn worker(shared: &Shared, id: usize) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        let state = loop {
            let s = shared.state.load(Ordering::Acquire);
            if s >> 32 != seen || shared.stop.load(Ordering::Acquire) {
                break s;
            }
            spins += 1;
            if spins < SPINS {
                std::hint::spin_loop();
                continue;
            }
            // Sleep until the next section (re-checking under the lock
            // that `run` takes before notifying, so no wake-up is lost).
            let mut sleepers = shared.sleepers.lock().unwrap_or_else(|p| p.into_inner());
            *sleepers += 1;
            while shared.state.load(Ordering::Acquire) >> 32 == seen
                && !shared.stop.load(Ordering::Acquire)
            {
                sleepers = shared
                    .wake
                    .wait(sleepers)
                    .unwrap_or_else(|p| p.into_inner());
            }
            *sleepers -= 1;
            spins = 0;
        };
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        seen = state >> 32;
        if !join(&shared.state, state) {
            continue;
        }
        // SAFETY: having joined (the CAS above, which acquires the
        // `state` store that followed the `job` store), the pointer is this
        // section's, and `run` keeps it alive until this worker finishes.
        let job = shared.job.load(Ordering::Relaxed);
        if let Some(job) = unsafe { job.as_ref() } {
            job(id);
        }
        shared.finished.fetch_add(1, Ordering::Release);
    }
}

/// Counts this worker into the section it saw open in `seen`; false if
/// that section has closed (or moved on) meanwhile. The other workers join
/// at the same moment, so a failed exchange usually means only that one of
/// them got in first: retry on what it left. (Giving up there, as this did
/// until 2026-11-26, let only a few of 16 workers into each section: the
/// rest had all read the same count.)
fn join(state: &AtomicU64, seen: u64) -> bool {
    let mut s = seen;
    while s >> 32 == seen >> 32 && s & CLOSED == 0 {
        match state.compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => s = now,
        }
    }
    false
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        drop(self.shared.sleepers.lock());
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Hands out `0..n` in chunks of `chunk`. Each thread of the section owns
/// a contiguous share of the chunks and takes them through a counter on a
/// cache line of its own; when its share is done it takes what is left of
/// the others' (so a thread that joins late, or not at all, holds up
/// nothing). One shared counter for everyone was a cache line that every
/// core fought over for every chunk: with 16 threads a section of a small
/// model hands out over a hundred chunks of a few rows each.
pub struct Chunks {
    n: usize,
    chunk: usize,
    shares: Box<[Share]>,
}

/// One thread's chunks: `next..end` (chunk indices), `next` only growing.
#[repr(align(128))]
struct Share {
    next: AtomicUsize,
    end: usize,
}

impl Chunks {
    /// `0..n` in chunks of `chunk`, shared out among `threads` (the pool's
    /// thread count: [`take`](Chunks::take) is called with a thread's index).
    pub fn new(n: usize, chunk: usize, threads: usize) -> Chunks {
        let chunk = chunk.max(1);
        let count = n.div_ceil(chunk);
        let threads = threads.max(1);
        let shares = (0..threads)
            .map(|t| Share {
                next: AtomicUsize::new(count * t / threads),
                end: count * (t + 1) / threads,
            })
            .collect();
        Chunks { n, chunk, shares }
    }

    /// The next range for `thread`: from its own share while it lasts, then
    /// from the others', in turn after it. `None` once every chunk is out.
    pub fn take(&self, thread: usize) -> Option<std::ops::Range<usize>> {
        let len = self.shares.len();
        for i in 0..len {
            let share = &self.shares[(thread + i) % len];
            // Look before taking from another's share: an exhausted share
            // costs a read of a line that stays shared, not a write.
            if i > 0 && share.next.load(Ordering::Relaxed) >= share.end {
                continue;
            }
            let c = share.next.fetch_add(1, Ordering::Relaxed);
            if c < share.end {
                let start = c * self.chunk;
                return Some(start..(start + self.chunk).min(self.n));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_exactly_once_per_section() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads);
            for round in 0..200 {
                let hits: Vec<AtomicUsize> = (0..97).map(|_| AtomicUsize::new(0)).collect();
                let chunks = Chunks::new(hits.len(), 1 + round % 7, threads);
                pool.run(&|thread| {
                    while let Some(r) = chunks.take(thread) {
                        for i in r {
                            hits[i].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn the_shares_of_threads_that_never_ask_are_taken_by_the_others() {
        // Shared out for 5 threads, asked for by 2 (as when workers have
        // not joined): every chunk still goes out, exactly once.
        for (n, chunk) in [(97, 3), (4, 1), (0, 2), (64, 64), (1000, 7)] {
            let chunks = Chunks::new(n, chunk, 5);
            let mut seen = vec![0u32; n];
            let mut turn = 0;
            // The two askers alternate; the others' shares are stolen.
            while let Some(r) = chunks.take([1, 3][turn % 2]) {
                turn += 1;
                assert!(r.len() <= chunk && !r.is_empty(), "{r:?}");
                r.for_each(|i| seen[i] += 1);
            }
            assert!(seen.iter().all(|&h| h == 1), "n {n} chunk {chunk}");
            assert_eq!(chunks.take(0), None);
            assert_eq!(turn, n.div_ceil(chunk));
        }
    }

    #[test]
    fn a_thread_takes_its_own_contiguous_share_first() {
        let chunks = Chunks::new(100, 10, 4);
        // 10 chunks over 4 threads: shares of 2, 3, 2, 3 chunks.
        assert_eq!(chunks.take(1), Some(20..30));
        assert_eq!(chunks.take(1), Some(30..40));
        assert_eq!(chunks.take(1), Some(40..50));
        // Its share done, it helps thread 2 next.
        assert_eq!(chunks.take(1), Some(50..60));
        assert_eq!(chunks.take(2), Some(60..70));
    }

    #[test]
    fn a_worker_joins_after_others_got_in_first_but_never_a_closed_section() {
        let open = 7u64 << 32;
        let state = AtomicU64::new(open + 3);
        // Seen with no one in; three others joined since.
        assert!(join(&state, open));
        assert_eq!(state.load(Ordering::Relaxed), open + 4);
        // The caller closed it meanwhile: stays out, changes nothing.
        state.store(open + 4 + CLOSED, Ordering::Relaxed);
        assert!(!join(&state, open));
        assert_eq!(state.load(Ordering::Relaxed), open + 4 + CLOSED);
        // The next section opened meanwhile: not the one seen.
        state.store(8 << 32, Ordering::Relaxed);
        assert!(!join(&state, open));
        assert_eq!(state.load(Ordering::Relaxed), 8 << 32);
    }

    #[test]
    fn every_worker_gets_into_a_section_held_open() {
        // Seven workers see the section open at about the same moment.
        let pool = Pool::new(8);
        for _ in 0..5 {
            assert_eq!(threads_in_a_section_held_open(&pool), 8);
        }
    }

    #[test]
    fn sleeping_workers_wake_and_join_the_next_section() {
        let pool = Pool::new(2);
        // Long enough for the worker to give up spinning and sleep.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(threads_in_a_section_held_open(&pool), 2);
    }

    /// Runs one section that each thread entering it holds open until the
    /// whole team is in (or 10 s pass); returns how many came in.
    fn threads_in_a_section_held_open(pool: &Pool) -> usize {
        let seen = AtomicUsize::new(0);
        pool.run(&|_| {
            seen.fetch_add(1, Ordering::SeqCst);
            let t = std::time::Instant::now();
            while seen.load(Ordering::SeqCst) < pool.threads() && t.elapsed().as_secs() < 10 {
                std::thread::yield_now();
            }
        });
        seen.load(Ordering::SeqCst)
    }
}
