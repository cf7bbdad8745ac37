//! Thin wrappers over the Linux calls the engine needs: the monotonic clock,
//! epoll, timerfd and non-blocking TCP sockets bound to a chosen source
//! address. Kept on `libc` directly (no runtime, no socket crate) so that the
//! exact errno of every failed `socket`/`bind`/`connect` reaches the caller:
//! the limit report names the limit from that errno.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
    // A second Ctrl-C kills at once (signal() is async-signal-safe).
    // SAFETY: resetting a disposition to the default is always valid.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
}

/// Makes the first Ctrl-C end the run early but still print and write its
/// report (worker processes get the same signal and hand in their results).
pub fn install_interrupt_handler() {
    // SAFETY: the handler only touches an atomic and calls signal().
    unsafe { libc::signal(libc::SIGINT, on_interrupt as *const () as libc::sighandler_t) };
}

/// True once Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Nanoseconds on CLOCK_MONOTONIC: the clock the timerfd is armed on, so a
/// request's intended send time and the timer that fires for it agree.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Closes a descriptor; errors from close(2) are not actionable here.
pub fn close(fd: RawFd) {
    // SAFETY: callers own `fd` and never use it again.
    unsafe { libc::close(fd) };
}

/// Closes a connection with an RST instead of a FIN (SO_LINGER 0), so it
/// leaves no TIME_WAIT behind. Used when a run ends: the active closer keeps
/// TIME_WAIT for a minute, on the client's ephemeral ports, and the next run
/// (a search step, a compare round) would find those ports taken.
pub fn close_abort(fd: RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: valid fd and pointer to a linger struct of the stated size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    close(fd);
}

/// Lets this thread's timers fire within a microsecond instead of the
/// default 50 µs slack: the open-loop pacer relies on timely wake-ups.
pub fn tight_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0) };
}

pub struct Epoll {
    fd: RawFd,
}

pub const EV_IN: u32 = libc::EPOLLIN as u32;
pub const EV_OUT: u32 = libc::EPOLLOUT as u32;
pub const EV_ERR: u32 = libc::EPOLLERR as u32;
pub const EV_HUP: u32 = libc::EPOLLHUP as u32;
pub const EV_RDHUP: u32 = libc::EPOLLRDHUP as u32;
const EV_ET: u32 = libc::EPOLLET as u32;

pub type Event = libc::epoll_event;

pub fn empty_events(n: usize) -> Vec<Event> {
    vec![libc::epoll_event { events: 0, u64: 0 }; n]
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll { fd })
    }

    /// Registers `fd` edge-triggered for reads, writes and peer close, once:
    /// with edge triggering no later `epoll_ctl(MOD)` is ever needed, which
    /// keeps the per-request cost at read + send.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: EV_IN | EV_OUT | EV_RDHUP | EV_ET, u64: token };
        // SAFETY: valid epoll fd and event pointer.
        cvt(unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(|_| ())
    }

    /// Registers a level-triggered reader (the timerfd).
    pub fn add_reader(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: EV_IN, u64: token };
        // SAFETY: as above.
        cvt(unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(|_| ())
    }

    pub fn wait(&self, events: &mut [Event], timeout_ms: i32) -> usize {
        // SAFETY: the buffer outlives the call and its length is passed.
        let n = unsafe { libc::epoll_wait(self.fd, events.as_mut_ptr(), events.len() as i32, timeout_ms) };
        // EINTR (a signal) just means "look again".
        n.max(0) as usize
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        close(self.fd);
    }
}

/// A timerfd on CLOCK_MONOTONIC, armed at absolute `now_ns()` times.
pub struct Timer {
    pub fd: RawFd,
    armed_at: u64,
}

impl Timer {
    pub fn new() -> io::Result<Timer> {
        // SAFETY: plain syscall.
        let fd = cvt(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) })?;
        Ok(Timer { fd, armed_at: 0 })
    }

    /// Arms the timer for `at_ns` unless it is already armed for that time.
    pub fn arm(&mut self, at_ns: u64) {
        if self.armed_at == at_ns {
            return;
        }
        self.armed_at = at_ns;
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: (at_ns / 1_000_000_000) as libc::time_t, tv_nsec: (at_ns % 1_000_000_000) as libc::c_long },
        };
        // SAFETY: valid timerfd and spec.
        unsafe { libc::timerfd_settime(self.fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) };
    }

    /// Consumes the expiry count so the level-triggered fd stops reporting.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 8];
        // SAFETY: 8-byte buffer, as timerfd requires.
        unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), 8) };
        self.armed_at = 0;
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        close(self.fd);
    }
}

/// Which call of a connection attempt failed: the same errno means different
/// limits at different stages (EADDRINUSE from bind vs. EADDRNOTAVAIL from
/// connect are both "out of ephemeral ports", EMFILE only comes from socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Socket,
    Bind,
    Connect,
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, val: libc::c_int) {
    // SAFETY: valid fd, pointer to an int of the stated size. Failures only
    // cost an optimisation, so they are ignored.
    unsafe {
        libc::setsockopt(fd, level, name, (&val as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
    };
}

/// Starts a non-blocking connect from `src` (port chosen by the kernel) to
/// `dst`. Returns the socket; completion is reported by epoll as writability.
///
/// IP_BIND_ADDRESS_NO_PORT defers the port choice from bind() to connect(),
/// where the kernel only needs the full 4-tuple to be unique: each source
/// address then gets the whole ephemeral range towards each destination.
pub fn start_connect(src: Option<IpAddr>, dst: SocketAddr) -> Result<RawFd, (Stage, io::Error)> {
    let family = if dst.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain syscall.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })
        .map_err(|e| (Stage::Socket, e))?;
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    if let Some(src) = src {
        set_int_opt(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1);
        let (sa, len) = sockaddr(SocketAddr::new(src, 0));
        // SAFETY: sa is a valid sockaddr of length len.
        if let Err(e) = cvt(unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len) }) {
            close(fd);
            return Err((Stage::Bind, e));
        }
    }
    let (sa, len) = sockaddr(dst);
    // SAFETY: as above.
    let r = unsafe { libc::connect(fd, (&sa as *const libc::sockaddr_storage).cast(), len) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            close(fd);
            return Err((Stage::Connect, e));
        }
    }
    Ok(fd)
}

/// The pending error of a socket (the outcome of a non-blocking connect).
pub fn socket_error(fd: RawFd) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid out-pointers of the stated size.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&mut err as *mut libc::c_int).cast(), &mut len) };
    if r < 0 {
        io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
    } else {
        err
    }
}

/// read(2): Ok(0) is end of stream; WouldBlock and other errors come back as Err.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buffer pointer and length describe writable memory.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// send(2) with MSG_NOSIGNAL: a peer that went away gives EPIPE, not SIGPIPE.
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buffer pointer and length describe readable memory.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The symbolic name of an errno (EMFILE, ECONNREFUSED, …) for reports.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOMEM => "ENOMEM",
        libc::EAGAIN => "EAGAIN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EINVAL => "EINVAL",
        libc::EPIPE => "EPIPE",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        _ => "errno",
    }
}
