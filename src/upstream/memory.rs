//! The memory all fills may hold together (`--fill-memory`): bodies on
//! their way in from upstreams are buffered whole (they are validated and
//! hashed before anything is stored), so without a bound a few endless or
//! huge answers at once could take all of the host's memory.
//!
//! Owns the budget and the holds on it. A fetch takes room as its body
//! grows and waits (bounded, on its own thread) when there is none; the
//! hold goes with the body and is given back when the last copy of the
//! body is dropped. It never reads a socket and never decides what a
//! waiting fetch should answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// The process's budget: one for every core and upstream.
pub struct FillMemory {
    limit: AtomicU64,
    used: Mutex<u64>,
    room: Condvar,
}

static FILL_MEMORY: FillMemory = FillMemory { limit: AtomicU64::new(512 << 20), used: Mutex::new(0), room: Condvar::new() };

/// The process's fill memory budget.
pub fn fill_memory() -> &'static FillMemory {
    &FILL_MEMORY
}

impl FillMemory {
    /// Sets the bound (at start-up and on reload; holds already taken stay).
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
        self.room.notify_all();
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes held by fills now.
    pub fn used(&self) -> u64 {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        // Every update is one assignment: a panic elsewhere cannot leave it half-done.
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A hold of nothing yet, for one body.
    pub fn hold(&'static self) -> Held {
        Held { budget: self, bytes: 0 }
    }
}

/// Room one body holds in the budget; given back on drop.
pub struct Held {
    budget: &'static FillMemory,
    bytes: u64,
}

impl Held {
    /// Takes `n` more bytes, waiting until `until` for room. False: no
    /// room came in time. (The bound is strict, for one body too: a lone
    /// endless answer must not take what four could not.)
    pub fn grow(&mut self, n: u64, until: Instant) -> bool {
        let mut used = self.budget.lock();
        loop {
            if *used + n <= self.budget.limit() {
                *used += n;
                self.bytes += n;
                return true;
            }
            let Some(wait) = until.checked_duration_since(Instant::now()) else { return false };
            used = self.budget.room.wait_timeout(used, wait).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.bytes > 0 {
            let mut used = self.budget.lock();
            *used = used.saturating_sub(self.bytes);
            drop(used);
            self.budget.room.notify_all();
        }
    }
}

/// A body and its hold: as bytes (`bytes::Bytes::from_owner`), the hold is
/// given back when the last copy goes.
pub struct Budgeted<T> {
    pub data: T,
    pub held: Held,
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Budgeted<T> {
    fn as_ref(&self) -> &[u8] {
        self.data.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn holds_wait_for_room_and_give_it_back_on_drop() {
        static BUDGET: FillMemory = FillMemory { limit: AtomicU64::new(100), used: Mutex::new(0), room: Condvar::new() };
        let soon = || Instant::now() + Duration::from_millis(20);
        let mut a = BUDGET.hold();
        assert!(!a.grow(150, soon()), "not even one body passes the limit");
        assert!(a.grow(100, soon()));
        let mut b = BUDGET.hold();
        assert!(!b.grow(1, soon()), "no room beside it");
        drop(a);
        assert_eq!(BUDGET.used(), 0);
        assert!(b.grow(60, soon()));
        let mut c = BUDGET.hold();
        assert!(c.grow(40, soon()));
        assert!(!c.grow(1, soon()));
        // Room given back wakes a waiter.
        let waiter = std::thread::spawn(move || {
            let ok = c.grow(30, Instant::now() + Duration::from_secs(10));
            (ok, c.bytes())
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(b);
        assert_eq!(waiter.join().unwrap(), (true, 70));
        assert_eq!(BUDGET.used(), 0, "every hold given back on drop");
    }
}
