//! Worker processes. Every process has its own open-file limit, so beyond
//! one process's worth of descriptors loadgen re-executes itself (`loadgen
//! __worker`) with a share of the connections and rate. The parent writes the
//! phase as JSON to the child's stdin; the child answers with JSON lines on
//! stdout: one per interval, then its total. Its stderr passes through.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use crate::engine::{aggregate, run_local, Msg, PhaseSpec};
use crate::stats::{Stats, WireStats};
use crate::workload::{Source, SourceSpec};

/// What a worker process reads from stdin.
#[derive(Serialize, Deserialize)]
pub struct ChildInput {
    pub spec: PhaseSpec,
    pub source: SourceSpec,
}

/// One line a worker process writes to stdout.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChildLine {
    Interval { index: u32, stats: WireStats },
    Done { stats: WireStats },
}

/// Runs a phase in this process (`processes` ≤ 1) or spread over worker
/// processes, calling `on_interval` with merged per-interval stats.
pub fn run_phase(
    spec: &PhaseSpec,
    source_spec: &SourceSpec,
    source: &Source,
    processes: usize,
    on_interval: &mut dyn FnMut(u32, &Stats),
) -> Result<Stats, String> {
    if processes <= 1 {
        return Ok(run_local(spec, source, on_interval));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable to start worker processes: {e}"))?;
    let parts = spec.split(processes);
    let (tx, rx) = mpsc::channel();
    let mut children = Vec::new();
    let mut readers = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let mut child = Command::new(&exe)
            .arg("__worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting worker process {i}: {e}"))?;
        let input = serde_json::to_vec(&ChildInput { spec: part.clone(), source: source_spec.clone() }).expect("serializable");
        let mut stdin = child.stdin.take().expect("piped stdin");
        // Written from a thread: a large workload could fill the pipe while
        // the child is still starting.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let _ = writer.join();
            let mut sent_done = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<ChildLine>(&line) {
                    Ok(ChildLine::Interval { index, stats }) => {
                        let _ = tx.send(Msg::Interval { worker: i, index, stats: stats.into() });
                    }
                    Ok(ChildLine::Done { stats }) => {
                        let _ = tx.send(Msg::Done { worker: i, stats: stats.into() });
                        sent_done = true;
                    }
                    Err(e) => eprintln!("loadgen: worker process {i}: bad line ({e}): {line}"),
                }
            }
            if !sent_done {
                eprintln!("loadgen: worker process {i} ended without a result; its connections are missing from the totals");
                let _ = tx.send(Msg::Done { worker: i, stats: Stats::default() });
            }
        }));
        children.push(child);
    }
    drop(tx);
    // Ctrl-C from a terminal reaches the whole process group, but a signal
    // sent to this process alone (timeout(1), kill) must be passed on.
    let pids: Vec<i32> = children.iter().map(|c| c.id() as i32).collect();
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let finished = finished.clone();
        std::thread::spawn(move || {
            while !finished.load(std::sync::atomic::Ordering::Relaxed) {
                if crate::sys::interrupted() {
                    for &pid in &pids {
                        // SAFETY: plain kill(2) of our own child.
                        unsafe { libc::kill(pid, libc::SIGINT) };
                    }
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let stats = aggregate(rx, parts.len(), on_interval);
    finished.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    for r in readers {
        let _ = r.join();
    }
    for mut c in children {
        let _ = c.wait();
    }
    Ok(stats)
}

/// Entry point of `loadgen __worker`.
pub fn child_main() -> Result<(), String> {
    crate::limits::raise_nofile();
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).map_err(|e| format!("reading the phase: {e}"))?;
    let ChildInput { spec, source: source_spec } = serde_json::from_slice(&input).map_err(|e| format!("bad phase input: {e}"))?;
    let source = Source::prepare(&source_spec);
    let stdout = std::io::stdout();
    let emit = |line: ChildLine| {
        let mut out = stdout.lock();
        let _ = serde_json::to_writer(&mut out, &line);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    };
    let total = run_local(&spec, &source, &mut |index, stats| emit(ChildLine::Interval { index, stats: stats.into() }));
    emit(ChildLine::Done { stats: (&total).into() });
    Ok(())
}
