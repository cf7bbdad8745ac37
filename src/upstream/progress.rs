//! A fill in progress that clients may read while it arrives
//! (`--stream-fills`): the bytes an upstream has sent so far, shared
//! between the blocking thread that fetches and the connections that serve.
//!
//! Owns one rule above all: no reader ever gets the last byte of a fill
//! before the whole of it has been validated (and stored, or passed
//! through). Readers see every byte but the last while it arrives; if the
//! fill fails they are told to abort, so a client can never hold a
//! complete, corrupt answer (its Content-Length is never met). Nothing
//! here touches the store or the network.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// Where the fill stands.
enum State {
    /// No length announced yet: nobody may stream.
    Waiting,
    /// Bytes arriving; `total` was announced by the upstream.
    Filling { total: u64, data: Vec<u8> },
    /// Complete and taken for validation and storing; readers wait.
    Checking { total: u64 },
    /// Validated: every byte may go out.
    Done(Arc<Vec<u8>>),
    /// The fill failed (or a fallback started over): readers abort.
    Failed,
}

/// What a reader gets from [`Progress::read`].
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// This many bytes were appended to the reader's buffer.
    Bytes(usize),
    /// Nothing new yet: wait and ask again.
    Wait,
    /// Everything has been read.
    End,
    /// The fill failed: close the connection without completing the body.
    Failed,
}

pub struct Progress {
    state: Mutex<State>,
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Progress(total {:?})", self.total())
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress { state: Mutex::new(State::Waiting) }
    }
}

impl Progress {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The upstream announced `total` bytes: readers may start. Ignored
    /// unless the fill is still waiting (a fallback after a failure never
    /// streams again).
    pub fn start(&self, total: u64) {
        let mut s = self.lock();
        if matches!(*s, State::Waiting) {
            *s = State::Filling { total, data: Vec::new() };
        }
    }

    /// Whether bytes are being streamed (`start` was accepted, and the
    /// fill has not failed).
    pub fn is_streaming(&self) -> bool {
        matches!(*self.lock(), State::Filling { .. } | State::Checking { .. } | State::Done(_))
    }

    /// Appends bytes; false when not filling (the caller keeps them itself).
    pub fn push(&self, chunk: &[u8]) -> bool {
        match &mut *self.lock() {
            State::Filling { data, .. } => {
                data.extend_from_slice(chunk);
                true
            }
            _ => false,
        }
    }

    /// The complete body, handed over for validation; readers wait meanwhile.
    pub fn take(&self) -> Option<Vec<u8>> {
        let mut s = self.lock();
        match std::mem::replace(&mut *s, State::Failed) {
            State::Filling { total, data } => {
                *s = State::Checking { total };
                Some(data)
            }
            other => {
                *s = other;
                None
            }
        }
    }

    /// The validated bytes: readers may finish. Bytes of another length
    /// than announced would not match the Content-Length readers sent:
    /// that fails them instead.
    pub fn complete(&self, bytes: Arc<Vec<u8>>) {
        let mut s = self.lock();
        *s = match &*s {
            State::Filling { total, .. } | State::Checking { total } if *total == bytes.len() as u64 => State::Done(bytes),
            _ => State::Failed,
        };
    }

    /// The fill failed: readers abort. Final.
    pub fn fail(&self) {
        *self.lock() = State::Failed;
    }

    pub fn total(&self) -> Option<u64> {
        match &*self.lock() {
            State::Filling { total, .. } | State::Checking { total } => Some(*total),
            State::Done(b) => Some(b.as_slice().len() as u64),
            State::Waiting | State::Failed => None,
        }
    }

    /// Appends up to `max` bytes from offset `pos` to `out`. Until the fill
    /// is validated the last byte is held back.
    pub fn read(&self, pos: u64, max: usize, out: &mut Vec<u8>) -> Read {
        let s = self.lock();
        let (available, bytes): (u64, &[u8]) = match &*s {
            State::Filling { total, data } => (total.saturating_sub(1).min(data.len() as u64), data),
            State::Checking { .. } | State::Waiting => return Read::Wait,
            State::Done(b) => (b.as_slice().len() as u64, b.as_slice()),
            State::Failed => return Read::Failed,
        };
        if pos >= available {
            return if matches!(*s, State::Done(_)) { Read::End } else { Read::Wait };
        }
        let end = available.min(pos + max as u64);
        // pos < end <= bytes.len(): both fit in usize.
        out.extend_from_slice(&bytes[pos as usize..end as usize]);
        Read::Bytes((end - pos) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(p: &Progress, pos: u64) -> (Read, Vec<u8>) {
        let mut out = Vec::new();
        let r = p.read(pos, 1 << 20, &mut out);
        (r, out)
    }

    #[test]
    fn the_last_byte_waits_for_validation() {
        let p = Progress::default();
        assert_eq!(read_all(&p, 0).0, Read::Wait, "nothing before a length is announced");
        p.start(4);
        assert!(p.push(b"abc"));
        assert_eq!(read_all(&p, 0), (Read::Bytes(3), b"abc".to_vec()));
        assert!(p.push(b"d"));
        assert_eq!(read_all(&p, 3).0, Read::Wait, "the last byte is held back while filling");
        assert_eq!(p.take().as_deref(), Some(&b"abcd"[..]));
        assert_eq!(read_all(&p, 3).0, Read::Wait, "and while checking");
        p.complete(Arc::new(b"abcd".to_vec()));
        assert_eq!(read_all(&p, 3), (Read::Bytes(1), b"d".to_vec()));
        assert_eq!(read_all(&p, 4).0, Read::End);
    }

    #[test]
    fn a_failed_fill_aborts_readers_for_good() {
        let p = Progress::default();
        p.start(10);
        p.push(b"12345");
        p.fail();
        assert_eq!(read_all(&p, 0).0, Read::Failed);
        p.start(10);
        assert!(!p.push(b"x"), "a fallback never streams again");
        p.complete(Arc::new(b"0123456789".to_vec()));
        assert_eq!(read_all(&p, 0).0, Read::Failed);

        let p = Progress::default();
        p.start(3);
        p.push(b"abc");
        p.take();
        p.complete(Arc::new(b"abcd".to_vec()));
        assert_eq!(read_all(&p, 0).0, Read::Failed, "bytes of another length than announced");
    }
}
