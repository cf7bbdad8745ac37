//! Surviving a segment file that shrinks under its map.
//!
//! A read of a mapped page past the end of its file raises SIGBUS, which
//! kills the process by default. Files only shrink when something outside
//! gomodproxy cuts them (an operator, a broken disk, a filesystem repair),
//! but a proxy must outlive that: this module installs a SIGBUS handler
//! that, for an address inside a registered segment map, maps a page of
//! zeros over the faulting page and lets the read go on. The reader then
//! sees zeros where the file has nothing, which no payload hash accepts,
//! so the blob is quarantined instead of served (see
//! [`super::segment::StoredBlob::verify`]). Faults anywhere else keep the
//! default action.
//!
//! Owns the registry of mapped ranges (a fixed table of atomics, readable
//! from a signal handler) and the handler. It never decides what a fault
//! means for a blob: the hash check that follows does.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once};

/// Mapped ranges the handler knows; a segment beyond this many open at
/// once is served as before, without the handler's protection.
const SLOTS: usize = 16 * 1024;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    /// The map's "cut" flag (an `AtomicBool` its [`Registration`] keeps
    /// alive), set when a page of it faults: its file lost bytes, and
    /// the zeros now mapped there must never be served.
    cut: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot { start: AtomicUsize::new(0), len: AtomicUsize::new(0), cut: AtomicUsize::new(0) };
static RANGES: [Slot; SLOTS] = [EMPTY; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
static FAULTS: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

/// Pages past the end of their segment file that were read (and replaced
/// by zeros) since the process started.
pub fn faults() -> u64 {
    FAULTS.load(Ordering::Relaxed)
}

/// A registered range; dropping it unregisters the range. Drop it before
/// the map is unmapped.
#[derive(Debug)]
pub struct Registration {
    slot: Option<usize>,
    /// Kept alive while the handler may set it.
    _cut: Arc<AtomicBool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            RANGES[i].len.store(0, Ordering::Release);
            RANGES[i].cut.store(0, Ordering::Release);
            RANGES[i].start.store(0, Ordering::Release);
        }
    }
}

/// Registers `start..start+len` (a read-only file map) with the handler,
/// which sets `cut` if a page of it faults.
pub fn register(start: *const u8, len: usize, cut: Arc<AtomicBool>) -> Registration {
    install();
    let start = start as usize;
    for (i, slot) in RANGES.iter().enumerate() {
        if slot.start.compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            slot.cut.store(Arc::as_ptr(&cut) as usize, Ordering::Release);
            slot.len.store(len, Ordering::Release);
            return Registration { slot: Some(i), _cut: cut };
        }
    }
    log::warn!("more than {SLOTS} segment maps open: a segment file cut short under the server may crash it");
    Registration { slot: None, _cut: cut }
}

/// The slot whose range holds `addr`.
fn covering(addr: usize) -> Option<&'static Slot> {
    RANGES.iter().find(|s| {
        let start = s.start.load(Ordering::Acquire);
        let len = s.len.load(Ordering::Acquire);
        start != 0 && addr >= start && addr - start < len
    })
}

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(slot) = covering(addr) {
        let cut = slot.cut.load(Ordering::Acquire) as *const AtomicBool;
        if !cut.is_null() {
            // SAFETY: the registration keeps the flag alive while its slot names it.
            unsafe { (*cut).store(true, Ordering::Release) };
        }
        let page = PAGE.load(Ordering::Relaxed);
        let at = addr & !(page - 1);
        // SAFETY: mmap(2) is async-signal-safe; MAP_FIXED replaces exactly one
        // page of a read-only map this process owns (checked just above) with
        // zeros, which the map's own munmap later releases with the rest.
        let p = unsafe {
            libc::mmap(at as *mut libc::c_void, page, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED, -1, 0)
        };
        if p != libc::MAP_FAILED {
            FAULTS.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    // Not a segment's page: back to the default action, which the
    // repeated fault then takes (the process dies as it would have).
    // SAFETY: signal(2) is async-signal-safe.
    unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: a zeroed sigaction is valid; the handler is an
        // `extern "C"` function that only touches atomics and calls
        // async-signal-safe functions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
                log::warn!("could not install the SIGBUS handler: {}", std::io::Error::last_os_error());
            }
        }
    });
}
