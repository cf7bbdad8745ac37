//! Writing a response to the socket without copying its body through user space.
//!
//! Small responses go out as one vectored, non-blocking `sendmsg` of head and
//! body (one syscall per response). A large body that lies in a segment
//! file goes out with `sendfile(2)` where the connection's [`Sendfile`]
//! policy says so: page-cache pages handed to the socket, which a network
//! card sends without a copy. Otherwise it goes out by `sendmsg` straight
//! from the body's memory (the segment's map, for a stored blob): the
//! kernel copies it into the socket, and nothing copies it in user space.
//! Over loopback, where the receiver copies every byte anyway, that copy
//! costs the sender less than `sendfile`'s page references (BENCHMARKS.md).
//! When the socket is full we wait for room through glommio's write path
//! with a single byte (the only copy), then go on. Bodies are sent in
//! bounded turns with a yield between them, so one client pulling a huge
//! zip cannot starve the other connections on this core.
//!
//! glommio drives sockets with `MSG_DONTWAIT` calls and readiness polls, so
//! marking a socket `O_NONBLOCK` (needed for `sendfile`) changes nothing for it.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

/// Where large bodies that lie in a segment file go out with `sendfile`
/// (`--sendfile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sendfile {
    /// For every peer but a loopback one.
    #[default]
    Auto,
    On,
    /// Always from memory, by `sendmsg`.
    Off,
}

impl Sendfile {
    /// Whether a connection whose TCP peer is `peer` sends with `sendfile`.
    pub fn for_peer(self, peer: std::net::IpAddr) -> bool {
        match self {
            Sendfile::On => true,
            Sendfile::Off => false,
            Sendfile::Auto => !peer.to_canonical().is_loopback(),
        }
    }
}

/// Bytes written per turn before other connections on the core get theirs.
pub const FAIR_CHUNK: usize = 1 << 20;
/// Below this, head and body in one `sendmsg` beat a separate `sendfile`.
const SENDFILE_MIN: usize = 64 << 10;

fn retry_eintr(mut f: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = f();
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(err),
        }
    }
}

/// One non-blocking vectored send of `head` then `body`. Ok(0) if it would block.
fn try_sendmsg(fd: RawFd, head: &[u8], body: &[u8], more: bool) -> io::Result<usize> {
    let mut iov = [
        libc::iovec { iov_base: head.as_ptr() as *mut libc::c_void, iov_len: head.len() },
        libc::iovec { iov_base: body.as_ptr() as *mut libc::c_void, iov_len: body.len() },
    ];
    // SAFETY: msghdr is plain data; zeroed is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = if body.is_empty() { 1 } else { 2 };
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    // SAFETY: the iovecs point into live slices for the duration of the call; the kernel only reads them.
    retry_eintr(|| unsafe { libc::sendmsg(fd, &msg, flags) as isize })
}

/// Non-blocking sendfile of `len` bytes at `offset` of `file`. Ok(None) if it would block.
fn try_sendfile(sock: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<Option<usize>> {
    let mut off = offset as libc::off_t;
    loop {
        // SAFETY: plain descriptors and an offset we own; the kernel copies nothing into our memory.
        let n = unsafe { libc::sendfile(sock, file, &mut off, len) };
        if n > 0 {
            return Ok(Some(n as usize));
        }
        if n == 0 {
            // The file ends before the body does: it was cut under us. The
            // connection must end short, never be padded or left waiting.
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "segment file shorter than the blob it holds"));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// Makes the socket non-blocking so `sendfile` never stalls the executor.
pub fn make_nonblocking(stream: &TcpStream) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `head` and `body` completely. `file`, when given, holds `body` at
/// that offset, to send it from with `sendfile` (pass `None` to send it
/// from memory). The socket must be non-blocking (see [`make_nonblocking`]).
pub async fn send(stream: &mut TcpStream, head: &[u8], body: &[u8], file: Option<(RawFd, u64)>) -> io::Result<()> {
    let sock = stream.as_raw_fd();
    let use_sendfile = file.is_some() && body.len() >= SENDFILE_MIN;
    let first = if use_sendfile { &[][..] } else { &body[..body.len().min(FAIR_CHUNK)] };
    let mut sent = try_sendmsg(sock, head, first, use_sendfile)?;
    if sent < head.len() {
        stream.write_all(&head[sent..]).await?;
        sent = head.len();
    }
    let mut pos = sent - head.len();
    while pos < body.len() {
        let end = body.len().min(pos + FAIR_CHUNK);
        match file {
            Some((fd, offset)) if use_sendfile => match try_sendfile(sock, fd, offset + pos as u64, end - pos)? {
                // Socket full: wait for room. glommio has no bare "wait until
                // writable", so one byte goes through its write path (which
                // waits for room); sendfile carries the rest of the turn. A
                // larger write here would copy the body through user space.
                None => pos += stream.write(&body[pos..pos + 1]).await?,
                Some(n) => pos += n,
            },
            _ => match try_sendmsg(sock, &[], &body[pos..end], false)? {
                // Socket full: wait for room as above.
                0 => pos += stream.write(&body[pos..pos + 1]).await?,
                n => pos += n,
            },
        }
        if pos < body.len() {
            glommio::executor().yield_now().await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Sendfile;

    #[test]
    fn auto_sends_with_sendfile_to_every_peer_but_loopback() {
        let peer = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        for local in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(!Sendfile::Auto.for_peer(peer(local)), "{local}");
            assert!(Sendfile::On.for_peer(peer(local)), "{local}");
        }
        for remote in ["10.0.0.7", "192.0.2.1", "2001:db8::1", "::ffff:10.0.0.7"] {
            assert!(Sendfile::Auto.for_peer(peer(remote)), "{remote}");
            assert!(!Sendfile::Off.for_peer(peer(remote)), "{remote}");
        }
    }
}
