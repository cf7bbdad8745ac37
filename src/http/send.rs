//! Writing a response to the socket without copying its body.
//!
//! The head and body go out in one vectored, non-blocking `sendmsg` when the
//! socket has room (the common case: one syscall per response). Whatever is
//! left is written straight from where the body lives (a segment map, for
//! blobs) in bounded chunks, yielding between them so one client pulling a
//! huge zip cannot starve the other connections on this core.

use std::io;
use std::os::fd::AsRawFd;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

/// Bytes written per turn before other connections on the core get theirs.
pub const FAIR_CHUNK: usize = 256 << 10;

/// One non-blocking vectored send of `head` then `body`. Ok(0) if it would block.
fn try_sendmsg(fd: i32, head: &[u8], body: &[u8]) -> io::Result<usize> {
    let mut iov = [
        libc::iovec { iov_base: head.as_ptr() as *mut libc::c_void, iov_len: head.len() },
        libc::iovec { iov_base: body.as_ptr() as *mut libc::c_void, iov_len: body.len() },
    ];
    // SAFETY: msghdr is plain data; zeroed is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = if body.is_empty() { 1 } else { 2 };
    loop {
        // SAFETY: the iovecs point into live slices for the duration of the call;
        // the kernel only reads them.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
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

/// Sends `head` and `body` completely; returns the body bytes sent.
pub async fn send(stream: &mut TcpStream, head: &[u8], body: &[u8]) -> io::Result<()> {
    let first_body = body.len().min(FAIR_CHUNK);
    let mut sent = try_sendmsg(stream.as_raw_fd(), head, &body[..first_body])?;
    if sent < head.len() {
        stream.write_all(&head[sent..]).await?;
        sent = head.len();
    }
    let mut pos = sent - head.len();
    while pos < body.len() {
        let end = body.len().min(pos + FAIR_CHUNK);
        stream.write_all(&body[pos..end]).await?;
        pos = end;
        if pos < body.len() {
            glommio::executor().yield_now().await;
        }
    }
    Ok(())
}
