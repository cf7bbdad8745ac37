//! Limits on how many connections this machine can hold open: naming the
//! limit behind each failed connection attempt (from its errno), saying which
//! setting lifts it, and reading those settings and the kernel's counters
//! (/proc) so the report can quote the values in force.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sys::Stage;

/// A limit that stopped a connection from opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// EMFILE: the per-process open-file limit (RLIMIT_NOFILE).
    ProcessFds,
    /// ENFILE: the system-wide file table (fs.file-max).
    SystemFds,
    /// EADDRNOTAVAIL/EADDRINUSE: no ephemeral port left for a source→target pair.
    EphemeralPorts,
    /// ENOBUFS/ENOMEM: kernel socket memory.
    KernelMemory,
    /// ECONNREFUSED: nothing listening, or the server refused.
    Refused,
    /// The handshake did not finish in time: SYNs dropped (accept queue full).
    ConnectTimeout,
    /// The server closed fresh connections before any request: its own cap.
    ServerClosed,
}

impl LimitKind {
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::ProcessFds => "per-process open files",
            LimitKind::SystemFds => "system-wide open files",
            LimitKind::EphemeralPorts => "ephemeral ports",
            LimitKind::KernelMemory => "kernel socket memory",
            LimitKind::Refused => "connection refused",
            LimitKind::ConnectTimeout => "connect timeout (accept backlog)",
            LimitKind::ServerClosed => "server closed new connections",
        }
    }
}

/// Names the limit behind a failed attempt, and whether retrying the same
/// slot is pointless (the limit will still be there a moment later).
pub fn classify(stage: Stage, errno: i32) -> Option<(LimitKind, bool)> {
    match (stage, errno) {
        (_, libc::EMFILE) => Some((LimitKind::ProcessFds, true)),
        (_, libc::ENFILE) => Some((LimitKind::SystemFds, true)),
        (Stage::Bind | Stage::Connect, libc::EADDRNOTAVAIL | libc::EADDRINUSE) => Some((LimitKind::EphemeralPorts, true)),
        (_, libc::ENOBUFS | libc::ENOMEM) => Some((LimitKind::KernelMemory, true)),
        (Stage::Connect, libc::ECONNREFUSED) => Some((LimitKind::Refused, false)),
        (Stage::Connect, libc::ETIMEDOUT) => Some((LimitKind::ConnectTimeout, false)),
        _ => None,
    }
}

/// The settings that bound connection counts, as found on this machine.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Env {
    pub nofile_soft: u64,
    pub nofile_hard: u64,
    pub port_range: (u32, u32),
    pub somaxconn: Option<u64>,
    pub tcp_max_syn_backlog: Option<u64>,
    pub file_max: Option<u64>,
    pub tcp_tw_reuse: Option<u64>,
    pub cpus: usize,
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.split_whitespace().next()?.parse().ok()
}

impl Env {
    pub fn read() -> Env {
        let (nofile_soft, nofile_hard) = nofile();
        let port_range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().filter_map(|x| x.parse().ok());
                Some((it.next()?, it.next()?))
            })
            .unwrap_or((32768, 60999));
        Env {
            nofile_soft,
            nofile_hard,
            port_range,
            somaxconn: read_u64("/proc/sys/net/core/somaxconn"),
            tcp_max_syn_backlog: read_u64("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
            file_max: read_u64("/proc/sys/fs/file-max"),
            tcp_tw_reuse: read_u64("/proc/sys/net/ipv4/tcp_tw_reuse"),
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }

    /// Ephemeral ports per source address towards one destination.
    pub fn ports_per_source(&self) -> usize {
        (self.port_range.1.saturating_sub(self.port_range.0) + 1) as usize
    }

    /// Connections one process can hold: the fd limit less a reserve for
    /// epoll, timerfds, stdio and the runtime.
    pub fn conns_per_process(&self) -> usize {
        (self.nofile_soft.saturating_sub(64)).max(16) as usize
    }

    /// The remedy for a limit, quoting the values in force and naming the
    /// file under tuning/ that sets it (`tuning/preflight --role loadgen
    /// --connections N` checks a host against all of them).
    pub fn advice(&self, kind: LimitKind) -> String {
        let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
        match kind {
            LimitKind::ProcessFds => format!(
                "each connection is a file descriptor and one process may hold {} (RLIMIT_NOFILE soft {}, hard {}): \
                 use more --processes (each has its own limit; `auto` does this), or raise the hard limit \
                 (`ulimit -n`, nofile in tuning/limits.d/gomodproxy.conf, LimitNOFILE= in tuning/systemd/gomodproxy.service)",
                self.nofile_soft, self.nofile_soft, self.nofile_hard
            ),
            LimitKind::SystemFds => format!(
                "the system-wide file table is full (fs.file-max = {}): raise fs.file-max and fs.nr_open \
                 (tuning/sysctl.d/91-loadgen.conf, 90-gomodproxy.conf)",
                opt(self.file_max)
            ),
            LimitKind::EphemeralPorts => format!(
                "no ephemeral port left for a source address → target pair (net.ipv4.ip_local_port_range = {}-{}, \
                 {} ports per source address): add --source-ips (each 127.0.0.x address has its own ports), widen \
                 net.ipv4.ip_local_port_range and let TIME_WAIT tuples be reused (net.ipv4.tcp_tw_reuse = {}) \
                 as tuning/sysctl.d/91-loadgen.conf does",
                self.port_range.0,
                self.port_range.1,
                self.ports_per_source(),
                opt(self.tcp_tw_reuse)
            ),
            LimitKind::KernelMemory => "the kernel ran out of socket memory: check net.ipv4.tcp_mem against \
                 `TCP: ... mem` in /proc/net/sockstat, and RAM (tuning/README.md, memory per connection)"
                .to_string(),
            LimitKind::Refused => format!(
                "the target refused connections: nothing listening, or its accept queue overflowed with \
                 net.ipv4.tcp_abort_on_overflow = 1 — raise the server's --backlog and net.core.somaxconn (= {}), \
                 keep tcp_abort_on_overflow = 0 (tuning/sysctl.d/90-gomodproxy.conf)",
                opt(self.somaxconn)
            ),
            LimitKind::ConnectTimeout => format!(
                "handshakes did not finish within --connect-timeout: SYNs were dropped, normally because an accept \
                 queue was full — either the server stopped accepting at its own connection cap \
                 (gomodproxy --max-connections / GOMODPROXY_MAX_CONNECTIONS, its LimitNOFILE: tuning/systemd/), or \
                 the queue is too short for the burst: net.core.somaxconn (= {}), net.ipv4.tcp_max_syn_backlog (= {}) \
                 and the server's --backlog (tuning/sysctl.d/90-gomodproxy.conf), or a gentler --connect-concurrency",
                opt(self.somaxconn),
                opt(self.tcp_max_syn_backlog)
            ),
            LimitKind::ServerClosed => "the server closed connections as soon as it accepted them: it is at its own \
                 connection cap (gomodproxy --max-connections / GOMODPROXY_MAX_CONNECTIONS and its LimitNOFILE: \
                 tuning/systemd/)"
                .to_string(),
        }
    }
}

/// The current RLIMIT_NOFILE (soft, hard).
pub fn nofile() -> (u64, u64) {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    (rl.rlim_cur, rl.rlim_max)
}

/// Raises the soft open-file limit to the hard one: the soft default (often
/// 1024) is a convention, the hard limit is the real ceiling.
pub fn raise_nofile() -> (u64, u64) {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointers; raising soft up to hard needs no privilege.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
    nofile()
}

/// Kernel counters that reveal limits the client cannot see directly (a
/// dropped SYN looks like a slow connect): TcpExt from /proc/net/netstat and
/// TCP from /proc/net/sockstat.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetCounters {
    pub listen_overflows: u64,
    pub listen_drops: u64,
    pub tcp_inuse: u64,
    pub tcp_time_wait: u64,
    /// Pages of memory used by TCP socket buffers.
    pub tcp_mem_pages: u64,
    /// Kernel slab memory (socket, file and inode objects live there), bytes.
    pub slab_bytes: u64,
    /// Packets dropped because a CPU's input backlog was full (loopback
    /// traffic goes through it too): net.core.netdev_max_backlog.
    pub softnet_dropped: u64,
}

pub fn net_counters() -> NetCounters {
    let mut c = NetCounters::default();
    if let Ok(text) = std::fs::read_to_string("/proc/net/netstat") {
        let ext = parse_netstat(&text);
        c.listen_overflows = ext.get("ListenOverflows").copied().unwrap_or(0);
        c.listen_drops = ext.get("ListenDrops").copied().unwrap_or(0);
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/sockstat") {
        if let Some(line) = text.lines().find(|l| l.starts_with("TCP:")) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let get = |k: &str| f.iter().position(|x| *x == k).and_then(|i| f.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(0);
            c.tcp_inuse = get("inuse");
            c.tcp_time_wait = get("tw");
            c.tcp_mem_pages = get("mem");
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/softnet_stat") {
        c.softnet_dropped = text.lines().filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok()).sum();
    }
    if let Ok(text) = std::fs::read_to_string("/proc/meminfo") {
        if let Some(kb) = text.lines().find(|l| l.starts_with("Slab:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()) {
            c.slab_bytes = kb * 1024;
        }
    }
    c
}

/// The TcpExt header/value line pair of /proc/net/netstat as a map.
fn parse_netstat(text: &str) -> BTreeMap<String, u64> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = BTreeMap::new();
    for pair in lines.windows(2) {
        if pair[0].starts_with("TcpExt:") && pair[1].starts_with("TcpExt:") {
            for (k, v) in pair[0].split_whitespace().zip(pair[1].split_whitespace()).skip(1) {
                if let Ok(v) = v.parse() {
                    out.insert(k.to_string(), v);
                }
            }
        }
    }
    out
}

/// The accept queue of the local listening socket(s) on `port`: connections
/// waiting to be accepted, summed over SO_REUSEPORT siblings. Past
/// its connection cap a server stops accepting, yet the kernel still
/// completes handshakes into this queue: those count as open for the client
/// but are not (yet) the server's. None if nothing local listens there.
pub fn listen_queue(port: u16) -> Option<u64> {
    use std::io::BufRead;
    let mut found = None;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(f) = std::fs::File::open(file) else { continue };
        for line in std::io::BufReader::new(f).lines().skip(1) {
            let Ok(line) = line else { break };
            match parse_listen_line(&line, port) {
                // Listening sockets come first: stop at the first other one
                // instead of reading a line per open connection.
                ListenLine::NotListening => break,
                ListenLine::Other => {}
                ListenLine::Match(q) => found = Some(found.unwrap_or(0) + q),
            }
        }
    }
    found
}

#[derive(Debug, PartialEq)]
enum ListenLine {
    NotListening,
    Other,
    Match(u64),
}

/// One /proc/net/tcp line: `sl local rem st tx_queue:rx_queue ...`; for a
/// listener, rx_queue is the accept queue length (the backlog itself is not
/// shown; it is at most net.core.somaxconn).
fn parse_listen_line(line: &str, port: u16) -> ListenLine {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 5 || f[3] != "0A" {
        return ListenLine::NotListening;
    }
    let local_port = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
    let queued = f[4].split_once(':').and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok());
    match (local_port, queued) {
        (Some(p), Some(rx)) if p == port => ListenLine::Match(rx),
        _ => ListenLine::Other,
    }
}

/// Resident memory of a process, in bytes (None if it is gone).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn page_size() -> u64 {
    // SAFETY: plain query.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_map_to_limits() {
        assert_eq!(classify(Stage::Socket, libc::EMFILE), Some((LimitKind::ProcessFds, true)));
        assert_eq!(classify(Stage::Connect, libc::EADDRNOTAVAIL), Some((LimitKind::EphemeralPorts, true)));
        assert_eq!(classify(Stage::Bind, libc::EADDRINUSE), Some((LimitKind::EphemeralPorts, true)));
        assert_eq!(classify(Stage::Connect, libc::ECONNREFUSED), Some((LimitKind::Refused, false)));
        assert_eq!(classify(Stage::Connect, libc::ETIMEDOUT), Some((LimitKind::ConnectTimeout, false)));
        assert_eq!(classify(Stage::Connect, libc::ENETUNREACH), None);
    }

    #[test]
    fn advice_names_the_setting() {
        let env = Env { nofile_soft: 20000, nofile_hard: 20000, port_range: (32768, 60999), somaxconn: Some(4096), ..Env::default() };
        assert!(env.advice(LimitKind::ProcessFds).contains("--processes"));
        assert!(env.advice(LimitKind::ProcessFds).contains("LimitNOFILE"));
        assert!(env.advice(LimitKind::EphemeralPorts).contains("28232 ports per source address"));
        assert!(env.advice(LimitKind::ConnectTimeout).contains("somaxconn (= 4096)"));
        for kind in
            [LimitKind::ProcessFds, LimitKind::SystemFds, LimitKind::EphemeralPorts, LimitKind::ConnectTimeout, LimitKind::ServerClosed]
        {
            assert!(env.advice(kind).contains("tuning/"), "{kind:?} names no tuning/ file");
        }
        assert_eq!(env.conns_per_process(), 19936);
    }

    #[test]
    fn listen_lines() {
        let l = "   0: 0100007F:1F90 00000000:0000 0A 00001000:00000F12 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_listen_line(l, 8080), ListenLine::Match(0xF12));
        assert_eq!(parse_listen_line(l, 8081), ListenLine::Other);
        let est = "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0";
        assert_eq!(parse_listen_line(est, 8080), ListenLine::NotListening);
        // This test process listens somewhere: the live table parses.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(listen_queue(listener.local_addr().unwrap().port()), Some(0));
    }

    #[test]
    fn netstat_parsing() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 12 34\nIpExt: InNoRoutes\nIpExt: 0\n";
        let m = parse_netstat(text);
        assert_eq!(m["ListenOverflows"], 12);
        assert_eq!(m["ListenDrops"], 34);
    }
}
