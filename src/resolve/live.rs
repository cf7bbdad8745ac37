//! Settings a reload (SIGHUP) replaces while the server runs: the fill's
//! sources, the cache TTLs, what the protocol is told.
//!
//! Owns the hand-over. [`Live`] holds the current value behind a mutex
//! that only a reload and a core catching up with one take; every core
//! reads through its own [`View`], which re-reads the value only when the
//! reload generation moved (one relaxed load of a rarely written word per
//! use; no lock, no shared reference count on the request path). Work that
//! started before a reload (a fill, a streamed zip) keeps the value it
//! began with. It never decides what a setting means.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The current value of a setting every core reads.
pub struct Live<T> {
    generation: AtomicU64,
    current: Mutex<Arc<T>>,
}

impl<T> Live<T> {
    pub fn new(value: T) -> Arc<Live<T>> {
        Arc::new(Live { generation: AtomicU64::new(0), current: Mutex::new(Arc::new(value)) })
    }

    /// Replaces the value; every core's view sees it on its next use.
    pub fn replace(&self, value: T) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn load(&self) -> Arc<T> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A view for one core.
    pub fn view(self: &Arc<Self>) -> View<T> {
        let generation = self.generation.load(Ordering::Acquire);
        View { live: self.clone(), seen: Cell::new(generation), value: RefCell::new(self.load()) }
    }
}

/// One core's view of a [`Live`] value.
pub struct View<T> {
    live: Arc<Live<T>>,
    seen: Cell<u64>,
    value: RefCell<Arc<T>>,
}

impl<T> View<T> {
    fn catch_up(&self) {
        let now = self.live.generation.load(Ordering::Acquire);
        if now != self.seen.get() {
            *self.value.borrow_mut() = self.live.load();
            self.seen.set(now);
        }
    }

    /// Reads the current value (never hold across an await: use [`View::get`]).
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        self.catch_up();
        f(&self.value.borrow())
    }

    /// The current value, to keep (a fill keeps the sources it started with).
    pub fn get(&self) -> Arc<T> {
        self.catch_up();
        self.value.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_see_a_replacement_on_their_next_use_and_kept_values_stay() {
        let live = Live::new(1);
        let (a, b) = (live.view(), live.view());
        let kept = a.get();
        live.replace(2);
        assert_eq!(a.with(|v| *v), 2);
        assert_eq!(*b.get(), 2);
        assert_eq!(*kept, 1, "what a fill took before the reload stays");
        live.replace(3);
        live.replace(4);
        assert_eq!(b.with(|v| *v), 4);
    }
}
