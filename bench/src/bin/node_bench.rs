//! Benchmarks of `ringex node` on NATS JetStream (feature `nats`; needs a nats-server with
//! JetStream, `--nats URL` or RINGEX_NATS_URL):
//!
//! - **throughput**: for 1, 2 and 4 shards (one node each, started as processes of the
//!   `ringex` binary beside this one), the router publishes a seeded multi-instrument
//!   workload (64 instruments, Zipf) as fast as JetStream acknowledges (4096 in flight);
//!   commands/s from the first publish until every shard's event stream holds its last event.
//!   Beside it, the same shard's commands through the matcher alone in this process: the
//!   share of a shard's time that is matching, the rest being JetStream, the journal and
//!   the hops.
//! - **latency**: one shard, closed loop: publish one command, wait for its events on the
//!   event subject; HDR percentiles, to set beside the in-process pipeline's.
//! - **open loop** (`--rate R`): commands sent one message each on a fixed schedule, each
//!   timed from its send to its events; with `--floor`, the same schedule also against
//!   the transport floor ([`ringex_bench::node::echo`]: the node's NATS work and nothing
//!   else), and against this machine's `write` + `fdatasync` of one event, so that the
//!   node's latency can be read against what nats-server and the disk take.
//! - **failover**: a primary and a standby; commands flow at ~2,000/s; the primary is killed
//!   with SIGKILL; the time until the first event message published by the standby. Over
//!   `--trials` runs.
//!
//! ```text
//! cargo build --release -p ringex-bench --features nats --bins
//! target/release/node_bench --nats nats://127.0.0.1:4222 --commands 200000 --trials 20
//! ```

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use ringex_bench::harness::args::{number, value};
use ringex_bench::node::{
    last_published, targets, Names, NodeStatus, Router, Targets, DEFAULT_BATCH,
};
use ringex_engine::workload::MultiSymbolWorkload;
use ringex_engine::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::time::{Duration, Instant};

struct NodeProc(Child, PathBuf);

/// Flags every node gets (`--idle X` and `--message-events N` of this benchmark).
static NODE_ARGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(url: &str, cluster: &str, shard: u32, id: &str, dir: &Path) -> NodeProc {
    let exe = std::env::current_exe()
        .expect("own path")
        .with_file_name("ringex");
    let journal = dir.join(cluster).join(id);
    let child = Proc::new(&exe)
        .args([
            "node",
            "run",
            "--nats",
            url,
            "--cluster",
            cluster,
            "--lease-ms",
            "500",
        ])
        .args(["--shard", &shard.to_string(), "--node-id", id])
        .args(NODE_ARGS.get().map_or(&[][..], |v| v.as_slice()))
        .arg("--journal")
        .arg(&journal)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "start {}: {e} (build with --features nats --bins)",
                exe.display()
            )
        });
    NodeProc(child, journal)
}

fn wait_role(n: &NodeProc, role: &str) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if NodeStatus::read(&n.1).is_some_and(|s| s.role == role) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("node never became {role}");
}

fn unique(tag: &str) -> String {
    format!(
        "b{tag}{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    )
}

fn workload(n: usize) -> Vec<Command> {
    let w = MultiSymbolWorkload {
        instruments: 64,
        ..Default::default()
    }
    .generate(n);
    w.setup.into_iter().chain(w.commands).collect()
}

/// The matcher alone on one shard's commands: (events, seconds).
fn match_alone(cmds: &[Command]) -> (u64, f64) {
    let mut m = Matcher::with_capacity(MatcherCapacity::default());
    let mut out = Vec::with_capacity(64);
    let mut events = 0;
    let t = Instant::now();
    for (k, c) in cmds.iter().enumerate() {
        out.clear();
        m.process(Sequence(k as u64 + 1), c, &mut out);
        events += out.len() as u64;
    }
    (events, t.elapsed().as_secs_f64())
}

fn throughput(
    rt: &tokio::runtime::Runtime,
    url: &str,
    dir: &Path,
    shards: u32,
    batch: usize,
    cmds: &[Command],
) {
    let cluster = unique(&format!("t{shards}"));
    let names = Names::new(&cluster);
    let nodes: Vec<NodeProc> = (0..shards)
        .map(|s| start_node(url, &cluster, s, &format!("n{s}"), dir))
        .collect();
    for n in &nodes {
        wait_role(n, "primary");
    }
    let router = rt
        .block_on(Router::connect(url, &cluster, shards))
        .expect("router")
        .with_batch(batch);
    // Each shard's commands, for its expected last event and its matching time.
    let mut per: Vec<Vec<Command>> = vec![Vec::new(); shards as usize];
    for c in cmds {
        match targets(c, shards) {
            Targets::One(s) => per[s as usize].push(*c),
            Targets::All => per.iter_mut().for_each(|p| p.push(*c)),
        }
    }
    let expect: Vec<(u64, f64)> = per.iter().map(|p| match_alone(p)).collect();
    let t = Instant::now();
    rt.block_on(router.submit(cmds, 4096)).expect("submit");
    let published = t.elapsed().as_secs_f64();
    for s in 0..shards {
        while rt
            .block_on(last_published(router.context(), &names, s))
            .map_or(0, |e| e.last)
            < expect[s as usize].0
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let matching: f64 = expect.iter().map(|e| e.1).fold(0.0, f64::max);
    println!(
        "| {shards} | {batch} | {} | {:.0} | {:.2} s | {:.2} s | {:.1}% |",
        cmds.len(),
        cmds.len() as f64 / secs,
        published,
        secs,
        100.0 * matching / secs
    );
}

/// A fresh deployment of one shard with one node (the primary), and its router.
fn one_node(
    rt: &tokio::runtime::Runtime,
    url: &str,
    dir: &Path,
    tag: &str,
) -> (NodeProc, Names, Router) {
    let cluster = unique(tag);
    let node = start_node(url, &cluster, 0, &format!("{tag}0"), dir);
    wait_role(&node, "primary");
    let router = rt
        .block_on(Router::connect(url, &cluster, 1))
        .expect("router");
    (node, Names::new(&cluster), router)
}

fn latency(rt: &tokio::runtime::Runtime, url: &str, dir: &Path, cmds: &[Command], n: usize) {
    let (node, names, router) = one_node(rt, url, dir, "lat");
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    rt.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let mut sub = client
            .subscribe(names.evt_subject(0))
            .await
            .expect("subscribe");
        // The setup first (instruments, resting orders), then one command at a time; only
        // commands that make events are timed.
        let setup = cmds
            .iter()
            .take_while(|c| matches!(c.kind, CommandKind::AddInstrument(_)))
            .count();
        router.submit(&cmds[..setup], 1).await.expect("setup");
        let mut done = 0;
        for c in &cmds[setup..] {
            if done >= n {
                break;
            }
            let t = Instant::now();
            router
                .submit(std::slice::from_ref(c), 1)
                .await
                .expect("submit");
            // Every command makes at least one event here (the workload has no ticks).
            match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
                Ok(Some(_)) => {
                    let _ = h.record(t.elapsed().as_nanos() as u64);
                    done += 1;
                }
                _ => break,
            }
            // Drain messages of earlier commands, if any arrived late.
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_micros(1), sub.next()).await
            {
            }
        }
    });
    drop(node);
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency, router publish → events on the event subject, closed loop, {} commands: p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
        h.len(),
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1000.0
    );
}

/// Open loop: commands published one message each at `rate` a second on a fixed schedule
/// (none waits for another's acknowledgement), every command's latency from its send to
/// the arrival of its events on the event subject (an event message may carry several
/// commands' events).
fn open_loop(
    rt: &tokio::runtime::Runtime,
    url: &str,
    dir: &Path,
    cmds: &[Command],
    rate: u64,
    n: usize,
    floor: bool,
) -> f64 {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let (node, echo, names, router) = if floor {
        // The echo in a thread of its own with its own runtime, as a node is a process.
        let cluster = unique("fl");
        let names = Names::new(&cluster);
        let (u, nm, st) = (url.to_string(), names.clone(), Arc::clone(&stop));
        let echo = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(ringex_bench::node::echo(&u, &nm, 0, st))
        });
        let router = rt.block_on(async {
            // The echo creates the streams; the router needs them.
            let t = Instant::now();
            loop {
                match Router::connect(url, &cluster, 1).await {
                    Ok(r) => break r,
                    Err(e) if t.elapsed() > Duration::from_secs(10) => panic!("router: {e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        (None, Some(echo), names, router)
    } else {
        let (node, names, router) = one_node(rt, url, dir, "ol");
        (Some(node), None, names, router)
    };
    let setup = cmds
        .iter()
        .take_while(|c| matches!(c.kind, CommandKind::AddInstrument(_)))
        .count();
    let body: Vec<Command> = cmds[setup..].iter().take(n).copied().collect();
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let late = rt.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let mut sub = client
            .subscribe(names.evt_subject(0))
            .await
            .expect("subscribe");
        router.submit(&cmds[..setup], 64).await.expect("setup");
        // The setup's events first.
        let setup_seq = setup as u64;
        'setup: while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_secs(10), sub.next()).await
        {
            for c in m.payload.chunks(ringex_engine::codec::EVENT_BYTES) {
                let e = <&[u8; 64]>::try_from(c).ok().and_then(Event::decode);
                if e.is_some_and(|e| e.cmd_seq().0 >= setup_seq) {
                    break 'setup;
                }
            }
        }
        // Scheduled send times (ns after `start`), by command.
        let sent: Arc<Vec<AtomicU64>> =
            Arc::new((0..body.len()).map(|_| AtomicU64::new(0)).collect());
        let start = Instant::now();
        let js = router.context().clone();
        let subject = names.cmd_subject(0);
        // The sender is a thread of its own that sleeps until each command's due time, so
        // the commands arrive evenly spaced (tokio's timer wakes in millisecond steps: at
        // 10,000/s it would send bursts of ten). Each send is stamped when it is made.
        let stop_sending = Arc::new(AtomicBool::new(false));
        let sender = {
            let sent = Arc::clone(&sent);
            let body = body.clone();
            let handle = tokio::runtime::Handle::current();
            let stop = Arc::clone(&stop_sending);
            std::thread::spawn(move || {
                let every = Duration::from_secs_f64(1.0 / rate as f64);
                for (k, c) in body.iter().enumerate() {
                    let due = start + every * k as u32;
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    sent[k].store(start.elapsed().as_nanos() as u64, Ordering::Release);
                    let mut b = [0u8; ringex_engine::codec::COMMAND_BYTES];
                    c.encode(&mut b);
                    let published = handle
                        .block_on(js.publish(subject.clone(), bytes::Bytes::copy_from_slice(&b)));
                    match published {
                        Ok(ack) => {
                            handle.spawn(async move {
                                let _ = ack.await;
                            });
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        let mut seen = vec![false; body.len()];
        let mut got = 0;
        let mut behind = 0u64;
        while got < body.len() {
            let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), sub.next()).await
            else {
                break;
            };
            let now = start.elapsed().as_nanos() as u64;
            for c in m.payload.chunks(ringex_engine::codec::EVENT_BYTES) {
                let Some(e) = <&[u8; 64]>::try_from(c).ok().and_then(Event::decode) else {
                    continue;
                };
                let k = e.cmd_seq().0.saturating_sub(setup_seq + 1) as usize;
                if e.cmd_seq().0 > setup_seq && k < body.len() && !seen[k] {
                    seen[k] = true;
                    got += 1;
                    let at = sent[k].load(Ordering::Acquire);
                    behind += u64::from(now < at);
                    let _ = h.record(now.saturating_sub(at).max(1));
                }
            }
        }
        stop_sending.store(true, Ordering::Relaxed);
        let _ = sender.join();
        behind
    });
    drop(node);
    stop.store(true, Ordering::Relaxed);
    if let Some(e) = echo {
        e.join().expect("echo thread").expect("echo");
    }
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{}latency, open loop at {rate} commands/s, send → its events on the event subject, {} commands: p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs{}",
        if floor { "transport floor (echo, no engine) " } else { "node " },
        h.len(),
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1000.0,
        if late > 0 { format!(" ({late} before their send time: clock skew)") } else { String::new() }
    );
    us(0.5)
}

/// This machine's `write` + `fdatasync` of one 64-byte event at the end of a file, in the
/// benchmark's temp dir, at `rate` a second for `n` writes
/// ([`ringex_bench::harness::floor::fsync_floor_paced`]): p50 in µs (printed with p90, p99).
fn fsync_floor(dir: &Path, rate: u64, n: usize) -> f64 {
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let f = ringex_bench::harness::floor::fsync_floor_paced(dir, n, 64, every)
        .expect("write + fdatasync in the temp dir");
    println!(
        "write + fdatasync of one event at {rate}/s, {n} writes: p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs",
        f.p50_us, f.p90_us, f.p99_us
    );
    f.p50_us
}

fn failover(rt: &tokio::runtime::Runtime, url: &str, dir: &Path, cmds: &[Command], trials: u64) {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    for trial in 0..trials {
        let cluster = unique(&format!("f{trial}"));
        let names = Names::new(&cluster);
        let mut primary = start_node(url, &cluster, 0, "a", dir);
        wait_role(&primary, "primary");
        let standby = start_node(url, &cluster, 0, "b", dir);
        wait_role(&standby, "standby");
        let router = rt
            .block_on(Router::connect(url, &cluster, 1))
            .expect("router");
        let took = rt.block_on(async {
            let client = async_nats::connect(url).await.expect("connect");
            let mut sub = client
                .subscribe(names.evt_subject(0))
                .await
                .expect("subscribe");
            let feed = {
                let cmds = cmds.to_vec();
                tokio::spawn(async move {
                    for chunk in cmds.chunks(20) {
                        if router.submit(chunk, 64).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            };
            // Let it run, then kill the primary.
            tokio::time::sleep(Duration::from_millis(300 + 37 * trial % 200)).await;
            let _ = primary.0.kill();
            let killed = Instant::now();
            let _ = primary.0.wait();
            let mut took = None;
            while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), sub.next()).await
            {
                let by_b = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Ringex-Node"))
                    .is_some_and(|v| v.as_str() == "b");
                if by_b {
                    took = Some(killed.elapsed());
                    break;
                }
            }
            feed.abort();
            took
        });
        drop(standby);
        drop(primary);
        match took {
            Some(d) => {
                let _ = h.record(d.as_nanos() as u64);
                eprintln!("trial {trial}: {:.0} ms", d.as_secs_f64() * 1000.0);
            }
            None => println!("trial {trial}: the standby published nothing within 10 s"),
        }
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e6;
    println!(
        "failover (primary killed → first event from the new primary), {} trials, lease 500 ms: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        h.len(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1e6
    );
}

fn main() {
    ringex_bench::harness::args::check(
        "usage: node_bench [--nats URL] [--commands N] [--trials N] [--shards 1,2,4] [--batch 1,256] [--latency N] [--rate R [--floor]] [--idle backoff|park|yield|spin] [--message-events N]",
        &[
            "--nats",
            "--commands",
            "--trials",
            "--shards",
            "--batch",
            "--latency",
            "--rate",
            "--idle",
            "--message-events",
            "--floor",
        ],
    );
    let mut node_args = Vec::new();
    for flag in ["--idle", "--message-events"] {
        if let Some(v) = value(flag) {
            node_args.extend([flag.to_string(), v]);
        }
    }
    let _ = NODE_ARGS.set(node_args);
    let url = value("--nats")
        .or_else(|| std::env::var("RINGEX_NATS_URL").ok())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let n = number("--commands", 200_000) as usize;
    let trials = number("--trials", 20);
    let dir = std::env::temp_dir().join(format!("ringex-node-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cmds = workload(n);
    println!(
        "# ringex node on NATS JetStream at {url}: {} commands (multi-symbol, 64 instruments)",
        cmds.len()
    );
    println!("| shards | commands a message | commands | commands/s end to end | all published by the router after | last event in the streams after | matching alone, slowest shard, share of the time |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let shard_list = value("--shards").unwrap_or_else(|| "1,2,4".into());
    let batches = value("--batch").unwrap_or_else(|| DEFAULT_BATCH.to_string());
    for b in batches.split(',').filter_map(|b| b.trim().parse().ok()) {
        for s in shard_list.split(',').filter_map(|s| s.trim().parse().ok()) {
            throughput(&rt, &url, &dir, s, b, &cmds);
        }
    }
    latency(&rt, &url, &dir, &cmds, number("--latency", 5000) as usize);
    if let Some(rate) = value("--rate").and_then(|r| r.parse().ok()) {
        // Five seconds of commands at that rate (at most the workload's).
        let n = (rate as usize * 5).min(cmds.len());
        if std::env::args().any(|a| a == "--floor") {
            // The node, the transport floor and the disk's floor, interleaved twice.
            let mut ratios = Vec::new();
            for _ in 0..2 {
                let node = open_loop(&rt, &url, &dir, &cmds, rate, n, false);
                let echo = open_loop(&rt, &url, &dir, &cmds, rate, n, true);
                let disk = fsync_floor(&dir, rate, 5000);
                ratios.push(format!(
                    "node p50 {node:.0} µs = {:.2}× the floor (echo + fdatasync, {:.0} µs); the node adds {:.0} µs to the echo",
                    node / (echo + disk),
                    echo + disk,
                    node - echo
                ));
            }
            for r in ratios {
                println!("{r}");
            }
        } else {
            open_loop(&rt, &url, &dir, &cmds, rate, n, false);
        }
    }
    if trials > 0 {
        failover(&rt, &url, &dir, &cmds, trials);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
