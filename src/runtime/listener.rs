//! Listening sockets: one per core, all bound to the same address with
//! SO_REUSEPORT so the kernel spreads connections over the cores.
//!
//! Built by hand (socket2) because glommio's own `bind` fixes the backlog at
//! 1024; an L4 balancer in front of a busy host needs `--backlog` honoured.
//! Owns binding only: it never accepts, and never lets a second server
//! silently share the port.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

fn one(addr: SocketAddr, backlog: u32) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(sock)
}

/// SO_REUSEPORT would let a second server of the same user join this port
/// and silently take part of its traffic. A plain bind first fails if
/// anyone listens there already.
fn ensure_port_free(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    probe.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(e.kind(), "address already in use (is another gomodproxy running there?)")
        } else {
            e
        }
    })
}

/// Binds `count` listeners to `addr`. A port of 0 is resolved by the first
/// bind, and the rest join that port.
pub fn bind_all(addr: SocketAddr, backlog: u32, count: usize) -> io::Result<(SocketAddr, Vec<Socket>)> {
    ensure_port_free(addr)?;
    let first = one(addr, backlog)?;
    let local = first.local_addr()?.as_socket().ok_or_else(|| io::Error::other("listener has no inet address"))?;
    let mut all = vec![first];
    for _ in 1..count {
        all.push(one(local, backlog)?);
    }
    Ok((local, all))
}
