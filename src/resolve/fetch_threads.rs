//! The threads upstream fetches run on, shared by every core: as many as
//! run at once (each core's fetch gate bounds that), started when none is
//! idle and kept a while after their last job, so a cold wave pays for no
//! thread start per fetch.
//!
//! Owns starting those threads, handing each job to exactly one of them
//! and retiring the ones left idle. It never runs a job on the caller's
//! thread (a core's executor must not block), never knows what a job does,
//! and never spins: an idle thread sleeps until a job is handed to it or
//! its time is up. (A channel every idle thread waits on spins and yields
//! before it sleeps; with a wave's worth of threads on a busy CPU those
//! yields took the CPU from the cores they serve.)

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

pub type Job = Box<dyn FnOnce() + Send>;

pub struct FetchThreads {
    /// Idle threads' slots, each put here by its thread when it goes idle
    /// and taken by the submitter that claims it. A slot whose thread has
    /// retired stays until a submitter takes and drops it: no more of them
    /// than threads ever retired, since a thread is started only when this
    /// holds no live slot.
    idle: crossbeam_channel::Receiver<Arc<Slot>>,
    idle_tx: crossbeam_channel::Sender<Arc<Slot>>,
    /// How long a thread waits for its next job before it retires.
    linger: Duration,
    /// Threads started so far (for tests and the log; never decremented).
    started: AtomicUsize,
}

/// One idle thread's mailbox: the submitter that moves it from
/// [`WAITING`] to [`CLAIMED`] owns the one job it will hold; the thread
/// retires only by moving it from [`WAITING`] to [`RETIRED`], so a claim
/// and a retirement never both succeed.
struct Slot {
    state: AtomicU8,
    /// Filled by the claiming submitter, emptied by the thread: two
    /// parties, never contended for longer than a take.
    job: Mutex<Option<Job>>,
    thread: Thread,
}

const WAITING: u8 = 0;
const CLAIMED: u8 = 1;
const RETIRED: u8 = 2;

/// How long an idle fetch thread is kept.
pub const LINGER: Duration = Duration::from_secs(60);

impl FetchThreads {
    pub fn new(linger: Duration) -> FetchThreads {
        let (idle_tx, idle) = crossbeam_channel::unbounded();
        FetchThreads { idle, idle_tx, linger, started: AtomicUsize::new(0) }
    }

    /// The process's pool, kept [`LINGER`].
    pub fn get() -> &'static FetchThreads {
        static THREADS: std::sync::OnceLock<FetchThreads> = std::sync::OnceLock::new();
        THREADS.get_or_init(|| FetchThreads::new(LINGER))
    }

    /// Threads started so far.
    pub fn started(&self) -> usize {
        self.started.load(Ordering::Relaxed)
    }

    /// Hands `job` to an idle thread, or to a new one. False: no thread
    /// could be started (the job is dropped unrun).
    pub fn run(&'static self, job: Job) -> bool {
        // `try_recv` never waits: the queue holds slots or it is empty.
        while let Ok(slot) = self.idle.try_recv() {
            if slot.state.compare_exchange(WAITING, CLAIMED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                *lock(&slot.job) = Some(job);
                slot.thread.unpark();
                return true;
            }
            // Retired: its thread is gone; the slot goes with this drop.
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        std::thread::Builder::new()
            .name("gomodproxy-fetch".into())
            .spawn(move || {
                job();
                self.serve();
            })
            .is_ok()
    }

    /// An idle thread's life: offer its slot, sleep until a job arrives or
    /// [`FetchThreads::linger`] passes with none, run it, offer again.
    fn serve(&self) {
        let slot = Arc::new(Slot { state: AtomicU8::new(WAITING), job: Mutex::new(None), thread: std::thread::current() });
        loop {
            slot.state.store(WAITING, Ordering::Release);
            if self.idle_tx.send(slot.clone()).is_err() {
                return;
            }
            let deadline = Instant::now() + self.linger;
            let job = loop {
                if let Some(job) = lock(&slot.job).take() {
                    break job;
                }
                match slot.state.load(Ordering::Acquire) {
                    // Claimed: the job is on its way, and so is the unpark.
                    CLAIMED => std::thread::park(),
                    _ => {
                        let now = Instant::now();
                        if now < deadline {
                            std::thread::park_timeout(deadline - now);
                        } else if slot.state.compare_exchange(WAITING, RETIRED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                            return;
                        }
                    }
                }
            };
            job();
        }
    }
}

/// A job panics inside `catch_unwind` (the caller's wrapper), never while
/// a slot's lock is held; a poisoned lock still holds a usable `Option`.
fn lock(job: &Mutex<Option<Job>>) -> std::sync::MutexGuard<'_, Option<Job>> {
    job.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn pool(linger: Duration) -> &'static FetchThreads {
        Box::leak(Box::new(FetchThreads::new(linger)))
    }

    #[test]
    fn jobs_one_after_another_share_one_thread() {
        let threads = pool(Duration::from_secs(60));
        let (tx, rx) = mpsc::channel();
        for i in 0..50 {
            let tx = tx.clone();
            assert!(threads.run(Box::new(move || tx.send((i, std::thread::current().id())).unwrap())));
            let (got, _) = rx.recv().unwrap();
            assert_eq!(got, i);
            // Let the thread offer its slot again before the next job.
            while threads.idle.is_empty() {
                std::thread::yield_now();
            }
        }
        assert_eq!(threads.started(), 1);
    }

    #[test]
    fn jobs_at_once_each_get_a_thread_and_all_run() {
        let threads = pool(Duration::from_secs(60));
        let (tx, rx) = mpsc::channel();
        let gate = Arc::new(std::sync::Barrier::new(8));
        for _ in 0..8 {
            let (tx, gate) = (tx.clone(), gate.clone());
            // Each waits for all the others: only 8 threads at once can end.
            assert!(threads.run(Box::new(move || {
                gate.wait();
                tx.send(std::thread::current().id()).unwrap();
            })));
        }
        let ids: std::collections::HashSet<_> = (0..8).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(ids.len(), 8);
        assert_eq!(threads.started(), 8);
    }

    #[test]
    fn an_idle_thread_retires_and_its_slot_is_passed_over() {
        let threads = pool(Duration::from_millis(20));
        let (tx, rx) = mpsc::channel();
        let first = {
            let tx = tx.clone();
            threads.run(Box::new(move || tx.send(std::thread::current().id()).unwrap()));
            rx.recv().unwrap()
        };
        // Its slot is still queued after it retires.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(threads.idle.len(), 1);
        assert!(threads.run(Box::new(move || tx.send(std::thread::current().id()).unwrap())));
        assert_ne!(rx.recv().unwrap(), first);
        assert_eq!(threads.started(), 2);
    }

    /// Claims racing retirements (a linger of a millisecond, submitters
    /// arriving around it): every job runs exactly once, none is lost.
    #[test]
    fn no_job_is_lost_to_a_thread_retiring_as_it_is_claimed() {
        let threads = pool(Duration::from_millis(1));
        let ran = Arc::new(AtomicUsize::new(0));
        let submitters: Vec<_> = (0..4u64)
            .map(|s| {
                let ran = ran.clone();
                std::thread::spawn(move || {
                    for i in 0..500u64 {
                        let ran = ran.clone();
                        assert!(threads.run(Box::new(move || {
                            ran.fetch_add(1, Ordering::Relaxed);
                        })));
                        // Around the linger: some claims land as threads retire.
                        std::thread::sleep(Duration::from_micros((i * 7 + s * 13) % 1500));
                    }
                })
            })
            .collect();
        for s in submitters {
            s.join().unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while ran.load(Ordering::Relaxed) < 2000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(ran.load(Ordering::Relaxed), 2000);
        // Retirements happened, so the race was run, not just the fast path.
        assert!(threads.started() > 4, "started {}", threads.started());
    }
}
