//! How long `ringex serve` takes to accept orders again after a restart, and its peak RSS
//! while it recovers, with snapshots on and off (feature `serve`).
//!
//! It writes a script of N commands (default 10,000,000: GTC limit orders around 100 from
//! 1,000 accounts, each followed later by its cancel, so the book stays small), runs it into
//! a journal with `ringex run --journal` (the same journal `ringex serve` writes; with
//! `--snapshot-every 1000000` for the snapshot case), then starts `ringex serve` on that
//! journal and measures from the start of the process to the first order accepted over
//! WebSocket, and the process's peak RSS (`VmHWM`) by then.
//!
//! ```text
//! cargo build --release -p ringex-bench --features serve --bins
//! target/release/serve_restart --commands 10000000
//! ```

use ringex_bench::harness::args::{check, number};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{connect, Message};

fn vm(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The script: N commands on one instrument.
fn write_script(path: &std::path::Path, n: u64) {
    let mut w = BufWriter::new(std::fs::File::create(path).expect("script"));
    writeln!(w, "instrument,LOAD,0.01,1").unwrap();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut open: std::collections::VecDeque<(u64, u64)> = Default::default();
    let mut id = 0u64;
    for ts in 1..=n {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if open.len() > 500 || (ts % 2 == 0 && !open.is_empty()) {
            let (acct, oid) = open.pop_front().unwrap();
            writeln!(w, "cancel,{ts},LOAD,{acct},{oid}").unwrap();
        } else {
            id += 1;
            let acct = 1 + rng % 1000;
            let buy = rng >> 20 & 1 == 0;
            let px = 10_000 + (rng >> 8) % 21 - 10;
            let side = if buy { "buy" } else { "sell" };
            writeln!(
                w,
                "new,{ts},LOAD,{acct},{id},{side},limit,gtc,{}.{:02},1",
                px / 100,
                px % 100
            )
            .unwrap();
            open.push_back((acct, id));
        }
    }
}

/// Starts `ringex serve` on `journal`; returns (seconds to the first accepted order, peak
/// RSS in KiB by then).
fn restart(ringex: &std::path::Path, journal: &std::path::Path, snapshots: bool) -> (f64, u64) {
    let t = Instant::now();
    let mut child = Command::new(ringex)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--key",
            "k:1",
            "--journal",
        ])
        .arg(journal)
        .args(["--snapshot-every", if snapshots { "1000000" } else { "0" }])
        .stderr(Stdio::piped())
        .spawn()
        .expect("ringex serve");
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let l = lines.next().expect("ringex serve said nothing").unwrap();
        if let Some(rest) = l.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let (mut ws, _) = connect(format!("ws://{addr}/v1/orders/ws")).expect("connect");
    ws.send(Message::Text(r#"{"type":"auth","key":"k"}"#.into()))
        .unwrap();
    ws.read().unwrap();
    ws.send(Message::Text(
        r#"{"type":"new","symbol":"LOAD","side":"buy","price":"1","qty":"1"}"#.into(),
    ))
    .unwrap();
    loop {
        if let Message::Text(m) = ws.read().unwrap() {
            if m.as_str().contains("accepted") {
                break;
            }
            panic!("{m}");
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let peak = vm(pid, "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    (secs, peak)
}

fn main() {
    check("usage: serve_restart [--commands N]", &["--commands"]);
    let n = number("--commands", 10_000_000);
    let exe = std::env::current_exe().expect("own path");
    let ringex = exe.with_file_name("ringex");
    let dir = std::env::temp_dir().join(format!("ringex-serve-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("script.csv");
    let t = Instant::now();
    write_script(&script, n);
    eprintln!(
        "script of {n} commands written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    println!("# ringex serve restart after {n} commands (journal written by ringex run --journal)");
    println!("| snapshots | journal written in | segments kept | restart → first order accepted | peak RSS during recovery |");
    println!("|---|---:|---:|---:|---:|");
    for snapshots in [true, false] {
        let journal = dir.join(if snapshots { "with" } else { "without" });
        let t = Instant::now();
        let mut run = Command::new(&ringex);
        run.arg("run")
            .arg(&script)
            .args(["--events-out", "/dev/null", "--journal"])
            .arg(&journal);
        if snapshots {
            run.args(["--snapshot-every", "1000000"]);
        }
        let st = run.stderr(Stdio::null()).status().expect("ringex run");
        assert!(st.success());
        let written = t.elapsed().as_secs_f64();
        let segments = std::fs::read_dir(&journal)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "journal"))
                })
                .count()
            })
            .unwrap_or(0);
        let (secs, peak) = restart(&ringex, &journal, snapshots);
        println!(
            "| {} | {written:.1} s | {segments} | {secs:.2} s | {:.0} MiB |",
            if snapshots {
                "every 1,000,000 commands"
            } else {
                "none"
            },
            peak as f64 / 1024.0
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
