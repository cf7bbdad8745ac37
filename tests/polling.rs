//! `--spin-before-park`: a core polls for that long after it runs out of
//! work, then sleeps. It answers as a sleeping server does, an idle server
//! burns no CPU with it, and a window past 10ms is refused at start-up.

mod common;

use common::*;
use std::time::Duration;

/// User and system CPU time of `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_polling_server_answers_and_sleeps_when_idle() {
    let fx = Fixture::builder().module(Module::new("example.com/a", "v1.0.0")).build();
    let mut opts = ServerOpts::new(fx.file_url());
    opts.extra_args = vec!["--spin-before-park".into(), "1ms".into()];
    let server = Server::start_with(opts);
    let info = format!("/{}", artifact_path("example.com/a", "v1.0.0", "info"));
    for _ in 0..50 {
        let r = http_get(server.addr(), &info);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, fx.artifact("example.com/a", "v1.0.0", "info"));
    }
    // Both cores polled after that work; now, idle, they must sleep. A core
    // that kept polling would take a whole CPU: 300 ticks in these 3 s.
    let pid = server.pid().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let idle = cpu_ticks(pid) - before;
    assert!(idle < 30, "an idle server with --spin-before-park 1ms used {idle} ticks of CPU in 3 s");
}

#[test]
fn a_polling_window_past_10ms_or_not_a_duration_refuses_to_start() {
    let stderr = refused_start(&["serve", "--listen", "127.0.0.1:0", "--spin-before-park", "20ms"]);
    assert!(stderr.contains("--spin-before-park") && stderr.contains("longer than 10ms"), "{stderr}");
    let stderr = refused_start(&["serve", "--listen", "127.0.0.1:0", "--spin-before-park", "soon"]);
    assert!(stderr.contains("--spin-before-park") && stderr.contains("soon"), "{stderr}");
}
