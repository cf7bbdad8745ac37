//! A zip fill in progress that clients read while it arrives: the bytes an
//! upstream has sent so far, shared between the blocking thread that
//! fetches and the connections that serve them, with wake-ups across
//! threads instead of polling.
//!
//! Owns one rule above all: no reader ever gets the last byte of a fill
//! before the whole of it has been validated (and stored, or passed
//! through). Readers see every byte but the last while it arrives; if the
//! fill fails they are told to abort, so a client can never hold a
//! complete, corrupt answer (its Content-Length is never met). Nothing
//! here touches the store or the network.
//!
//! The bytes live in one [`FillBuffer`] sized by the upstream's
//! Content-Length: written once, never moved, read in place by every
//! connection (no per-reader copy), and handed on whole, without a copy,
//! for validation and storing. Once the fill is kept, readers finish from
//! the kept copy and the buffer is freed with its last reader's handle.
//!
//! The verbs of a [`Progress`], in the order a fill uses them. The
//! fetching thread: [`start`](Progress::start) (a length was announced),
//! [`note_published`](Progress::note_published) (bytes appended),
//! [`finish_writing`](Progress::finish_writing) (every byte is in: the body
//! is handed over for checking). The filler's verdict, exactly one:
//! [`mark_kept`](Progress::mark_kept) (validated and kept: readers may
//! finish), [`fail`](Progress::fail) (failed for good, with the reason:
//! the sources', or our own),
//! [`void_stream`](Progress::void_stream) (what was streamed is void, not
//! final: a fallback upstream starts over). And the safety net,
//! [`fail_if_unsettled`](Progress::fail_if_unsettled), for a fill that
//! ended without a verdict.

use std::alloc::Layout;
use std::fmt;
use std::future::{poll_fn, Future};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::FetchError;

/// A fixed-capacity byte buffer with one writer ([`FillWriter`]) and any
/// number of readers. The writer appends past the published length and
/// then publishes it; readers see only bytes before it. Published bytes
/// never move or change, so a reader's slice stays valid while the
/// writer goes on.
pub struct FillBuffer {
    /// `capacity` bytes from the global allocator; freed in `Drop`. Only
    /// raw writes past `published` and shared reads before it touch them.
    bytes: NonNull<u8>,
    capacity: usize,
    published: AtomicUsize,
}

// SAFETY: the buffer is plain bytes. Readers only form shared slices of
// the published prefix (acquire); the single writer (`FillWriter` is not
// `Clone` and appends through `&mut`) writes only past it and publishes
// with release, so no byte is ever written while a reference to it exists.
unsafe impl Send for FillBuffer {}
unsafe impl Sync for FillBuffer {}

impl FillBuffer {
    /// A zeroed buffer of `capacity` bytes (the allocator hands out fresh,
    /// untouched pages for large ones: memory is committed as bytes arrive)
    /// and its one writer. `None` for no bytes, or when the memory cannot
    /// be had (the fill is then not streamed, rather than the process
    /// aborting on an upstream's announced length).
    pub fn new(capacity: usize) -> Option<(Arc<FillBuffer>, FillWriter)> {
        let layout = Layout::array::<u8>(capacity).ok().filter(|l| l.size() > 0)?;
        // SAFETY: the layout has a non-zero size.
        let bytes = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        let buffer = Arc::new(FillBuffer { bytes, capacity, published: AtomicUsize::new(0) });
        Some((buffer.clone(), FillWriter { buffer }))
    }

    /// The bytes published so far.
    pub fn published(&self) -> &[u8] {
        let len = self.published.load(Ordering::Acquire);
        // SAFETY: `len <= capacity` bytes were written before being
        // published (release above pairs with this acquire) and are never
        // written again.
        unsafe { std::slice::from_raw_parts(self.bytes.as_ptr(), len) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_full(&self) -> bool {
        self.published.load(Ordering::Acquire) == self.capacity
    }
}

impl Drop for FillBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout (which was valid
        // then); no reader can outlive the buffer (they borrow it).
        unsafe { std::alloc::dealloc(self.bytes.as_ptr(), Layout::from_size_align_unchecked(self.capacity, 1)) };
    }
}

/// The one writer of a [`FillBuffer`].
pub struct FillWriter {
    buffer: Arc<FillBuffer>,
}

impl FillWriter {
    /// Appends and publishes `chunk`; false (and nothing written) when it
    /// does not fit.
    pub fn append(&mut self, chunk: &[u8]) -> bool {
        let b = &*self.buffer;
        // Only this writer stores `published`: its own last value.
        let at = b.published.load(Ordering::Relaxed);
        if chunk.len() > b.capacity - at {
            return false;
        }
        // SAFETY: `at + chunk.len() <= capacity`; bytes past `at` are not
        // published, so no reader holds a reference to them, and `&mut self`
        // makes this the only writer.
        unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), b.bytes.as_ptr().add(at), chunk.len()) };
        b.published.store(at + chunk.len(), Ordering::Release);
        true
    }
}

/// What a connection streams from: the fill's progress (how far it may
/// send, when to give up) and the buffer it sends from.
#[derive(Clone)]
pub struct FillStream {
    pub progress: Arc<Progress>,
    pub buffer: Arc<FillBuffer>,
}

impl fmt::Debug for FillStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FillStream({} bytes)", self.buffer.capacity())
    }
}

/// A full buffer, seen as the bytes it holds (for [`Bytes::from_owner`]).
struct Whole(Arc<FillBuffer>);

impl AsRef<[u8]> for Whole {
    fn as_ref(&self) -> &[u8] {
        self.0.published()
    }
}

/// Why a fill failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillFailure {
    /// The sources failed, or sent something invalid.
    Source(FetchError),
    /// Our own failure (a fetch that panicked): never blamed on a source.
    Internal(&'static str),
}

/// Where the fill stands.
enum State {
    /// No length announced yet (or too small to stream): nobody may stream.
    Waiting,
    /// Bytes arriving into the buffer.
    Filling(Arc<FillBuffer>),
    /// Complete and taken for validation and storing; the last byte waits.
    Checking(Arc<FillBuffer>),
    /// Validated and kept: every byte may go out, from the kept copy (the
    /// stored blob), so readers let go of the fill buffer.
    Done(Bytes),
    /// The fill failed, for this reason when it is final (none while a
    /// fallback upstream starts over): readers abort.
    Failed(Option<FillFailure>),
}

struct Inner {
    state: State,
    /// Tasks waiting for more bytes or for the fill to start, end or fail.
    /// Executor tasks, woken from the fetching thread (glommio queues such
    /// foreign wake-ups to the task's own executor and rings its eventfd).
    wakers: Vec<Waker>,
    /// Whether any reader could have been handed bytes of this fill.
    streamed: bool,
    /// Published length at the last wake-up of readers.
    woken_at: usize,
}

/// Bytes published between wake-ups of the readers.
pub const WAKE_EVERY: usize = 256 << 10;

/// What a reader may do next (see [`Progress::readable`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Readable {
    /// Bytes up to (not including) this offset may be sent.
    UpTo(usize),
    /// Everything has been sent.
    End,
    /// The fill failed: close the connection without completing the body.
    Failed,
}

pub struct Progress {
    /// Smallest announced length that is streamed; `None`: never stream.
    stream_from: Option<u64>,
    inner: Mutex<Inner>,
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Progress(total {:?})", self.total())
    }
}

impl Default for Progress {
    /// A progress that never streams: fetchers keep the bytes themselves.
    fn default() -> Self {
        Progress::new(None)
    }
}

impl Progress {
    /// Streams fills whose announced length is at least `stream_from`.
    pub fn new(stream_from: Option<u64>) -> Progress {
        Progress { stream_from, inner: Mutex::new(Inner { state: State::Waiting, wakers: Vec::new(), streamed: false, woken_at: 0 }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves to `state` and wakes everyone waiting.
    fn set(&self, state: State) {
        let wakers = {
            let mut inner = self.lock();
            inner.state = state;
            std::mem::take(&mut inner.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// The upstream announced `total` bytes. Returns the writer to append
    /// them with when they are to be streamed: the fill is still waiting
    /// (a fallback after a failure never streams again) and `total` is
    /// within the streaming bounds. Otherwise the fetcher keeps the bytes.
    pub fn start(&self, total: u64) -> Option<FillWriter> {
        let min = self.stream_from?;
        let len = usize::try_from(total).ok().filter(|&n| n > 0 && total >= min)?;
        let (writer, wakers) = {
            let mut inner = self.lock();
            if !matches!(inner.state, State::Waiting) {
                return None;
            }
            let (buffer, writer) = FillBuffer::new(len)?;
            inner.state = State::Filling(buffer);
            inner.streamed = true;
            (writer, std::mem::take(&mut inner.wakers))
        };
        wakers.into_iter().for_each(Waker::wake);
        Some(writer)
    }

    /// Wakes readers after the writer appended: for the first bytes, then
    /// once per [`WAKE_EVERY`] bytes and for the last ones, so a reader
    /// sends a worthwhile piece per wake-up instead of one per upstream read.
    pub fn note_published(&self) {
        let wakers = {
            let mut inner = self.lock();
            let State::Filling(b) = &inner.state else { return };
            let len = b.published().len();
            if inner.woken_at > 0 && len < inner.woken_at + WAKE_EVERY && len < b.capacity() {
                return;
            }
            inner.woken_at = len;
            std::mem::take(&mut inner.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// The complete body, handed over for validation (without a copy);
    /// readers keep waiting for the last byte. `None` when the buffer is
    /// not full (the upstream sent less than it announced) or the fill
    /// already failed.
    pub fn finish_writing(&self, writer: FillWriter) -> Option<Bytes> {
        let mut inner = self.lock();
        match &inner.state {
            State::Filling(b) if Arc::ptr_eq(b, &writer.buffer) && b.is_full() => {
                let b = b.clone();
                inner.state = State::Checking(b.clone());
                Some(Bytes::from_owner(Whole(b)))
            }
            _ => None,
        }
    }

    /// `body` was validated and kept as `kept` (the same bytes, where they
    /// now live: the stored blob, or `body` itself when it could not be
    /// stored): if `body` is this fill's buffer (what [`Progress::finish_writing`]
    /// handed over), readers may finish, from `kept`. Any other body (a
    /// fallback's) voids the stream.
    pub fn mark_kept(&self, body: &Bytes, kept: Bytes) {
        let done = match &self.lock().state {
            // (`kept` was written from `body`; comparing them byte by byte
            // would cost the owner core a pass over up to 500 MiB.)
            State::Checking(b)
                if body.as_ptr() == b.bytes.as_ptr().cast_const() && body.len() == b.capacity() && kept.len() == body.len() =>
            {
                State::Done(kept)
            }
            State::Done(_) => return,
            _ => State::Failed(None),
        };
        if matches!(done, State::Failed(None)) {
            self.void_stream();
        } else {
            self.set(done);
        }
    }

    /// Ends a stream the fill left unsettled (a bug, or a fetch that
    /// panicked): readers abort rather than wait forever.
    pub fn fail_if_unsettled(&self) {
        if !matches!(self.lock().state, State::Done(_) | State::Failed(_)) {
            self.void_stream();
        }
    }

    /// A reader's handle, while the fill is under way (once it is done,
    /// requesters get the kept answer instead).
    pub fn stream(self: &Arc<Self>) -> Option<FillStream> {
        self.buffer().map(|buffer| FillStream { progress: self.clone(), buffer })
    }

    /// What was streamed is void (a fallback upstream starts over, and its
    /// bytes may differ): readers abort. Never streams again.
    pub fn void_stream(&self) {
        let mut inner = self.lock();
        if !matches!(inner.state, State::Failed(_)) {
            inner.state = State::Failed(None);
        }
        let wakers = std::mem::take(&mut inner.wakers);
        drop(inner);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// The fill failed for good, for this reason: readers abort.
    pub fn fail(&self, reason: FillFailure) {
        self.set(State::Failed(Some(reason)));
    }

    /// Why the fill failed, once that is final.
    pub fn failure(&self) -> Option<FillFailure> {
        match &self.lock().state {
            State::Failed(e) => e.clone(),
            _ => None,
        }
    }

    /// Whether bytes are being streamed (a start was accepted, and the
    /// fill has not failed).
    pub fn is_streaming(&self) -> bool {
        matches!(self.lock().state, State::Filling(_) | State::Checking(_) | State::Done(_))
    }

    /// Whether readers may have been handed some of this fill's bytes,
    /// even if it failed since.
    pub fn was_streamed(&self) -> bool {
        self.lock().streamed
    }

    /// The announced length, while streaming.
    pub fn total(&self) -> Option<u64> {
        match &self.lock().state {
            State::Filling(b) | State::Checking(b) => Some(b.capacity() as u64),
            State::Done(kept) => Some(kept.len() as u64),
            State::Waiting | State::Failed(_) => None,
        }
    }

    /// The buffer readers send from, while the fill is under way.
    pub fn buffer(&self) -> Option<Arc<FillBuffer>> {
        match &self.lock().state {
            State::Filling(b) | State::Checking(b) => Some(b.clone()),
            State::Waiting | State::Done(_) | State::Failed(_) => None,
        }
    }

    /// The kept copy, once the fill is done: readers finish from it.
    pub fn kept(&self) -> Option<Bytes> {
        match &self.lock().state {
            State::Done(kept) => Some(kept.clone()),
            _ => None,
        }
    }

    /// Resolves once the fill has left `Waiting`: streaming started, or it failed.
    pub fn started(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| {
            let mut inner = self.lock();
            if matches!(inner.state, State::Waiting) {
                register(&mut inner.wakers, cx);
                return Poll::Pending;
            }
            Poll::Ready(())
        })
    }

    /// Resolves when a reader that has sent `pos` bytes may send more, has
    /// sent everything, or must abort.
    pub fn readable(&self, pos: usize) -> impl Future<Output = Readable> + '_ {
        poll_fn(move |cx| self.poll_readable(pos, cx))
    }

    fn poll_readable(&self, pos: usize, cx: &mut Context<'_>) -> Poll<Readable> {
        let mut inner = self.lock();
        let released = match &inner.state {
            // The last byte waits for validation.
            State::Filling(b) | State::Checking(b) => b.published().len().min(b.capacity().saturating_sub(1)),
            State::Done(kept) if pos >= kept.len() => return Poll::Ready(Readable::End),
            State::Done(kept) => return Poll::Ready(Readable::UpTo(kept.len())),
            State::Failed(_) => return Poll::Ready(Readable::Failed),
            State::Waiting => 0,
        };
        if released > pos {
            return Poll::Ready(Readable::UpTo(released));
        }
        register(&mut inner.wakers, cx);
        Poll::Pending
    }
}

fn register(wakers: &mut Vec<Waker>, cx: &Context<'_>) {
    if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
        wakers.push(cx.waker().clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(p: &Progress, pos: usize, count: &Arc<Count>) -> Poll<Readable> {
        let waker = Waker::from(count.clone());
        p.poll_readable(pos, &mut Context::from_waker(&waker))
    }

    #[test]
    fn the_last_byte_waits_for_validation() {
        let count = Arc::new(Count::default());
        let p = Progress::new(Some(0));
        assert_eq!(poll(&p, 0, &count), Poll::Pending, "nothing before a length is announced");
        let mut w = p.start(4).expect("streams");
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "a start wakes the waiting");
        assert!(w.append(b"abc"));
        p.note_published();
        assert_eq!(poll(&p, 0, &count), Poll::Ready(Readable::UpTo(3)));
        assert_eq!(&p.buffer().unwrap().published()[..3], b"abc");
        assert!(w.append(b"d"));
        assert!(!w.append(b"e"), "never past the announced length");
        assert_eq!(poll(&p, 3, &count), Poll::Pending, "the last byte is held back while filling");
        let body = p.finish_writing(w).expect("full");
        assert_eq!(&body[..], b"abcd");
        assert_eq!(poll(&p, 3, &count), Poll::Pending, "and while checking");
        let before = count.0.load(Ordering::SeqCst);
        let buffer = Arc::downgrade(&p.buffer().unwrap());
        p.mark_kept(&body, Bytes::from_static(b"abcd"));
        assert!(count.0.load(Ordering::SeqCst) > before, "completion wakes readers");
        assert_eq!(poll(&p, 3, &count), Poll::Ready(Readable::UpTo(4)));
        assert_eq!(poll(&p, 4, &count), Poll::Ready(Readable::End));
        assert_eq!(p.kept().as_deref(), Some(&b"abcd"[..]), "readers finish from the kept copy");
        assert!(p.buffer().is_none());
        assert_eq!(&body[..], b"abcd", "the handed-over body outlives the progress");
        drop(body);
        assert!(buffer.upgrade().is_none(), "done, the progress lets go of the fill buffer");
    }

    #[test]
    fn a_failed_fill_aborts_readers_for_good() {
        let count = Arc::new(Count::default());
        let p = Progress::new(Some(0));
        let mut w = p.start(10).unwrap();
        w.append(b"12345");
        assert_eq!(poll(&p, 5, &count), Poll::Pending);
        p.void_stream();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "failure wakes readers");
        assert_eq!(poll(&p, 0, &count), Poll::Ready(Readable::Failed));
        assert!(p.start(10).is_none(), "a fallback never streams again");
        assert!(p.finish_writing(w).is_none());
        p.mark_kept(&Bytes::from_static(b"0123456789"), Bytes::from_static(b"0123456789"));
        assert_eq!(poll(&p, 0, &count), Poll::Ready(Readable::Failed));
        assert!(p.was_streamed());
    }

    #[test]
    fn only_the_streamed_bytes_complete_a_stream() {
        let count = Arc::new(Count::default());
        let p = Progress::new(Some(0));
        let mut w = p.start(4).unwrap();
        w.append(b"abcd");
        let streamed = p.finish_writing(w).unwrap();
        p.mark_kept(&Bytes::from_static(b"abcd"), streamed.clone());
        assert_eq!(poll(&p, 3, &count), Poll::Ready(Readable::Failed), "equal bytes elsewhere are not the validated buffer");

        let p = Progress::new(Some(0));
        let mut w = p.start(4).unwrap();
        w.append(b"ab");
        p.fail_if_unsettled();
        assert_eq!(poll(&p, 0, &count), Poll::Ready(Readable::Failed), "an unsettled stream ends");
        assert!(FillBuffer::new(0).is_none());
    }

    #[test]
    fn a_short_body_is_never_handed_over() {
        let p = Progress::new(Some(0));
        let mut w = p.start(4).unwrap();
        w.append(b"abc");
        assert!(p.finish_writing(w).is_none(), "fewer bytes than announced");
    }

    #[test]
    fn small_or_unwanted_fills_are_not_streamed() {
        assert!(Progress::default().start(100).is_none());
        assert!(Progress::new(Some(1000)).start(999).is_none());
        assert!(Progress::new(Some(0)).start(0).is_none(), "nothing to stream");
        let p = Progress::new(Some(1000));
        assert!(p.start(1000).is_some());
        assert!(!Progress::new(Some(1000)).was_streamed());
    }

    #[test]
    fn readers_see_appends_from_another_thread() {
        let p = Arc::new(Progress::new(Some(0)));
        let n = 1 << 20;
        let mut w = p.start(n as u64).unwrap();
        // Taken before the writer runs: once it has kept the bytes, the
        // progress lets its fill buffer go.
        let buffer = p.buffer().unwrap();
        let writer = {
            let p = p.clone();
            std::thread::spawn(move || {
                for i in 0..n / 4096 {
                    assert!(w.append(&[(i % 251) as u8; 4096]));
                    p.note_published();
                }
                let body = p.finish_writing(w).unwrap();
                p.mark_kept(&body, body.clone());
                body
            })
        };
        let mut pos = 0;
        while pos < n {
            let upto = buffer.published().len();
            for (j, byte) in buffer.published()[pos..upto].iter().enumerate() {
                assert_eq!(*byte, (((pos + j) / 4096) % 251) as u8);
            }
            pos = upto;
            std::thread::yield_now();
        }
        assert_eq!(writer.join().unwrap().len(), n);
    }
}
