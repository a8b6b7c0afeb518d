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
//! only while it is open: once the caller has run out of chunks it closes
//! the section and waits only for the workers that joined. A worker that
//! the OS has descheduled (other jobs on the machine) therefore never
//! holds up a step; the caller does its share.
//!
//! Nothing in a section is a read-modify-write of a line that every
//! thread shares. Each worker says "joined" and "done" on a cache line of
//! its own, and the caller reads those lines. Until 2026-11-27 a worker
//! joined with a compare-exchange on one shared word and finished with an
//! add on another, so each section paid for two queues of one cache-line
//! transfer per worker: 5.4 µs per empty section with 16 threads on a
//! 16-core Xeon, about 0.8 ms of a 135M model's 150-section decode step.
//!
//! Joining without a shared counter is Dekker's handshake: a worker
//! stores "joined generation g" to its line, then reads the section's
//! state; the caller stores "g closed", then reads the worker's line. All
//! four are sequentially consistent, so at least one side sees the other's
//! store: either the caller sees the worker joined (and waits for it to be
//! done) or the worker sees the section closed (and stays out).

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Spins before a worker goes to sleep: long enough to bridge the serial
/// work between two sections of a step (tens of microseconds).
const SPINS: u32 = 1 << 14;

/// `state` and each worker's `slot`: a section's generation shifted left
/// by one, with this bit set once the section is closed (`state`) or the
/// worker is done with it (`slot`).
const FLAG: u64 = 1;

type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// The current section: `generation << 1`, `| FLAG` once closed.
    state: AtomicU64,
    /// The current section's job (a thin pointer to the fat reference on
    /// `run`'s stack); valid for the workers that joined the section.
    job: AtomicPtr<&'static Job>,
    /// Worker `i`'s line (index `i - 1`): `g << 1` once it joined section
    /// `g`, `g << 1 | FLAG` once it is done with it (or stayed out).
    slots: Box<[Slot]>,
    stop: AtomicBool,
    sleepers: Mutex<usize>,
    wake: Condvar,
}

#[repr(align(128))]
struct Slot(AtomicU64);

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
            state: AtomicU64::new(FLAG),
            job: AtomicPtr::new(std::ptr::null_mut()),
            slots: (1..threads).map(|_| Slot(AtomicU64::new(FLAG))).collect(),
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
        // SAFETY: workers only call the job after joining the section (the
        // handshake in the module's docs), and this function does not
        // return (so `f` stays alive) before every worker that joined is
        // done.
        let mut job: &'static Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Job>(f) };
        sh.job.store(&mut job, Ordering::Relaxed);
        let open = (sh.state.load(Ordering::Relaxed) | FLAG) + 1;
        sh.state.store(open, Ordering::SeqCst);
        if *sh.sleepers.lock().unwrap_or_else(|p| p.into_inner()) > 0 {
            sh.wake.notify_all();
        }
        f(0);
        sh.state.store(open | FLAG, Ordering::SeqCst);
        for slot in sh.slots.iter() {
            if slot.0.load(Ordering::SeqCst) != open {
                // Done, or never joined (and now never will).
                continue;
            }
            let mut spins = 0u32;
            while slot.0.load(Ordering::Acquire) == open {
                spins = spins.wrapping_add(1);
                // A joined worker is running our job; only if it was
                // descheduled for long does yielding help it get a core.
                if spins.is_multiple_of(1 << 16) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        sh.job.store(std::ptr::null_mut(), Ordering::Relaxed);
    }
}

fn worker(shared: &Shared, id: usize) {
    let slot = &shared.slots[id - 1].0;
    let mut seen = FLAG;
    loop {
        let mut spins = 0u32;
        // Wait for a section other than the last one seen, while it is
        // open (a closed one is over for everyone who was not in it).
        let open = loop {
            let s = shared.state.load(Ordering::Acquire);
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            if s & FLAG != 0 {
                // Closed: over, whether this worker was in it or not.
                seen = s;
            } else if s | FLAG != seen {
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
            while shared.state.load(Ordering::Acquire) | FLAG == seen
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
        seen = open | FLAG;
        if join(slot, &shared.state, open) {
            // SAFETY: joined (the caller saw it, or will, before it
            // returns), and the state read in `join` acquired the caller's
            // store that followed the `job` store: the pointer is this
            // section's, alive until this worker says it is done.
            let job = shared.job.load(Ordering::Relaxed);
            if let Some(job) = unsafe { job.as_ref() } {
                job(id);
            }
        }
        slot.store(open | FLAG, Ordering::Release);
    }
}

/// The worker's half of the handshake for the section `open`: says it
/// joined, then looks whether the section is still open. False if the
/// caller closed it (or moved on) first; the caller then did not see the
/// "joined", so it is not waiting for this worker.
fn join(slot: &AtomicU64, state: &AtomicU64, open: u64) -> bool {
    slot.store(open, Ordering::SeqCst);
    state.load(Ordering::SeqCst) == open
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
    fn a_worker_joins_an_open_section_but_never_a_closed_one() {
        let open = 7 << 1;
        let (slot, state) = (AtomicU64::new(5 << 1 | FLAG), AtomicU64::new(open));
        assert!(join(&slot, &state, open));
        assert_eq!(slot.load(Ordering::Relaxed), open);
        // The caller closed it meanwhile: the worker stays out.
        state.store(open | FLAG, Ordering::Relaxed);
        assert!(!join(&slot, &state, open));
        // The next section opened meanwhile: not the one it saw.
        state.store(8 << 1, Ordering::Relaxed);
        assert!(!join(&slot, &state, open));
    }

    #[test]
    fn workers_that_miss_sections_still_join_later_ones() {
        // Sections far shorter than a wake-up: the workers (asleep at
        // first) miss many of them, seeing them closed or not at all, and
        // must still come into the next section that waits for them.
        let pool = Pool::new(3);
        std::thread::sleep(std::time::Duration::from_millis(300));
        for _ in 0..10_000 {
            pool.run(&|_| {});
        }
        assert_eq!(threads_in_a_section_held_open(&pool), 3);
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
