//! The load test of `ringex serve` (feature `serve`): N WebSocket clients on loopback send
//! orders at a fixed aggregate rate (open loop: each client keeps its schedule whatever the
//! answers do, and how late its sends went is reported); each command's latency runs from
//! the client's send to its receipt of its first execution report (accepted, rejected or cancelled: the report goes out after the
//! journal's fsync). HDR percentiles per rate, the highest sustained rate, and how many idle
//! sessions one server holds with the memory each costs.
//!
//! ```text
//! cargo build --release -p ringex-bench --features serve --bins
//! target/release/serve_load --rates 10000,100000 --clients 50 --seconds 5 --idle 10000
//! target/release/serve_load --fsync none …   # the network alone, without the fsync
//! target/release/serve_load --rates 10000 --rest 1 --idle 0   # WebSocket, then REST
//! target/release/serve_load --rates 10000,75000 --dropcopy 1 --idle 0   # and drop copies
//! ```
//!
//! With `--dropcopy 1`, a drop copy of every client account runs beside the load; every
//! 100 ms the newest report any of them holds is compared with the events published (how
//! many events behind they are), and after the load, how long they take to catch up.
//!
//! With `--rest 1` each rate also runs over REST order entry (`POST /v1/orders`, `DELETE
//! /v1/orders/{id}`), one kept-alive connection per client: latency from the call's
//! scheduled send to its response, which carries the command's reports (after the fsync).
//!
//! It starts `ringex serve` (the `ringex` binary beside it) on a free loopback port with a
//! fresh journal (fsync per batch), so the server's memory is read from its own process.
//! The flow: each client alternates a GTC limit order (buy or sell, ±5 ticks around 100)
//! with a cancel of its previous one, so the book stays small and about half the orders
//! trade.
//!
//! `--funded` makes the instrument funded (assets, fees, deposits for every client: every
//! trade settles money and ends with its fees event), and `--soak N` runs N orders at the
//! first rate while sampling the server's RSS every two seconds, then reads
//! `ringex_session_pending_requests` once the clients are gone:
//!
//! ```text
//! target/release/serve_load --funded 1 --soak 2000000 --rates 20000 --clients 50 --idle 0
//! ```

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use ringex_bench::harness::args::{number, value};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, connect_async_with_config};

struct ServerProc {
    child: Child,
    addr: String,
    dir: std::path::PathBuf,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server(clients: u64, fsync: &str, funded: bool) -> ServerProc {
    let dir = std::env::temp_dir().join(format!("ringex-serve-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let exe = std::env::current_exe().expect("own path");
    let ringex = exe.with_file_name("ringex");
    assert!(
        ringex.exists(),
        "{} is missing: cargo build --release -p ringex-bench --features serve --bins",
        ringex.display()
    );
    let setup = dir.join("setup.csv");
    let text = if funded {
        let mut t = String::from(
            "asset,USD,2\nasset,XYZ,0\ninstrument,LOAD,0.01,1,base=XYZ,quote=USD,maker_fee=0.0001,taker_fee=0.0002\n",
        );
        for i in 0..clients {
            t += &format!(
                "deposit,0,{a},USD,100000000000\ndeposit,0,{a},XYZ,100000000000\n",
                a = 1000 + i
            );
        }
        t
    } else {
        "instrument,LOAD,0.01,1\n".to_string()
    };
    std::fs::write(&setup, text).expect("setup file");
    let keys = dir.join("keys");
    let mut k = String::from("idle:999999\n");
    for i in 0..clients {
        k.push_str(&format!("load{i}:{}\n", 1000 + i));
    }
    std::fs::write(&keys, k).expect("keys file");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(&ringex)
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--journal")
        .arg(dir.join("journal"))
        .arg("--setup")
        .arg(&setup)
        .arg("--keys-file")
        .arg(&keys)
        .arg("--fsync")
        .arg(fsync)
        .arg("--layout")
        .arg(value("--layout").unwrap_or_else(|| "auto".into()))
        .arg("--max-msgs-per-sec")
        .arg("1000000")
        // More flags for the server (e.g. `--snapshot-every 0`), space-separated.
        .args(
            std::env::var("RINGEX_SERVE_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringex serve");
    let err = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(err).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("listening on") => break,
            Some(Ok(_)) => continue,
            _ => panic!("ringex serve did not start"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    ServerProc {
        child,
        addr: format!("127.0.0.1:{port}"),
        dir,
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

struct RunResult {
    rate: u64,
    sent: u64,
    answered: u64,
    secs: f64,
    hist: Histogram<u64>,
    /// How late each send was against its schedule (the generator's own lag).
    late: Histogram<u64>,
}

/// One client: sends `n` commands at `interval`, records each first report's latency.
async fn client(
    addr: String,
    key: String,
    interval: Duration,
    n: u64,
    offset: Duration,
    epoch: Instant,
    seed: u64,
) -> (u64, Histogram<u64>, Histogram<u64>) {
    let (ws, _) = connect_async_with_config(format!("ws://{addr}/v1/orders/ws"), None, true)
        .await
        .expect("connect");
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::Text(
        json!({"type": "auth", "key": key}).to_string().into(),
    ))
    .await
    .expect("auth");
    let first = rx.next().await.expect("auth reply").expect("auth reply");
    assert!(first.to_text().unwrap_or("").contains("authenticated"));
    // The reader hands the ids of accepted orders to the sender, which cancels them.
    let (ids_tx, mut ids_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let reader = tokio::spawn(async move {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
        let mut got = 0u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        while got < n {
            let m = match tokio::time::timeout_at(deadline, rx.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => t,
                Ok(Some(Ok(_))) => continue,
                _ => break,
            };
            let v: Value = serde_json::from_str(m.as_str()).unwrap_or_default();
            // The scheduled send time rides in the request: cl_ord_id "t<ns>" or req_id.
            let sched = match v["type"].as_str() {
                Some("accepted") => v["cl_ord_id"].as_str().and_then(|c| c[1..].parse().ok()),
                Some("rejected") | Some("cancelled") => v["req_id"]
                    .as_u64()
                    .or_else(|| v["cl_ord_id"].as_str().and_then(|c| c[1..].parse().ok())),
                _ => None,
            };
            if v["type"] == "accepted" {
                let _ = ids_tx.send(v["order_id"].as_u64().unwrap_or(0));
            }
            if let Some(s) = sched {
                let now = now_ns(epoch);
                let _ = h.record(now.saturating_sub(s).max(1));
                got += 1;
            }
        }
        (got, h)
    });
    let start = tokio::time::Instant::now() + offset;
    let mut rng = seed | 1;
    let mut lateness = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    for k in 0..n {
        let at = start + interval * (k as u32);
        tokio::time::sleep_until(at).await;
        let late = (tokio::time::Instant::now() - at).as_nanos() as u64;
        let _ = lateness.record(late.max(1));
        let sched = now_ns(epoch);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let cancel = if k % 2 == 1 {
            ids_rx.try_recv().ok()
        } else {
            None
        };
        let msg = if let Some(id) = cancel {
            json!({"type": "cancel", "order_id": id, "symbol": "LOAD", "req_id": sched})
        } else {
            let buy = rng & 1 == 0;
            let px = 10_000 + (rng >> 8) % 11 - 5;
            json!({"type": "new", "cl_ord_id": format!("t{sched}"), "symbol": "LOAD",
                "side": if buy { "buy" } else { "sell" }, "price": format!("{}.{:02}", px / 100, px % 100),
                "qty": "1"})
        };
        if tx
            .send(Message::Text(msg.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let (got, h) = reader.await.expect("reader");
    let _ = tx.close().await;
    (got, h, lateness)
}

/// Reads one HTTP/1.1 response (headers, then a `Content-Length` body) from a kept-alive
/// connection: (status, body).
async fn read_response(
    r: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Option<(u16, Vec<u8>)> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut line = String::new();
    r.read_line(&mut line).await.ok()?;
    let status: u16 = line.get(9..12)?.parse().ok()?;
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line).await.ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.ok()?;
    Some((status, body))
}

/// One REST client on one kept-alive connection: the same flow as [`client`] (a new order,
/// then a cancel of an accepted one, alternating), each call's latency from its scheduled
/// send to its response, which carries the command's reports (after the journal's fsync).
/// A call that starts late (the previous answer took longer than the interval) counts its
/// latency from its schedule, so a slow answer is never hidden.
async fn rest_client(
    addr: String,
    key: String,
    interval: Duration,
    n: u64,
    offset: Duration,
    seed: u64,
) -> (u64, Histogram<u64>, Histogram<u64>) {
    use tokio::io::AsyncWriteExt;
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = tokio::io::BufReader::new(rd);
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let mut lateness = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let start = tokio::time::Instant::now() + offset;
    let mut rng = seed | 1;
    let mut open: Vec<u64> = Vec::new();
    let mut got = 0u64;
    for k in 0..n {
        let at = start + interval * (k as u32);
        tokio::time::sleep_until(at).await;
        let late = (tokio::time::Instant::now() - at).as_nanos() as u64;
        let _ = lateness.record(late.max(1));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let req = match (k % 2 == 1).then(|| open.pop()).flatten() {
            Some(id) => format!(
                "DELETE /v1/orders/{id}?symbol=LOAD HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
            ),
            None => {
                let buy = rng & 1 == 0;
                let px = 10_000 + (rng >> 8) % 11 - 5;
                let body = json!({"symbol": "LOAD", "side": if buy { "buy" } else { "sell" },
                    "price": format!("{}.{:02}", px / 100, px % 100), "qty": "1"})
                .to_string();
                format!(
                    "POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        if wr.write_all(req.as_bytes()).await.is_err() {
            break;
        }
        let Some((status, body)) = read_response(&mut rd).await else {
            break;
        };
        let _ = h.record(((tokio::time::Instant::now() - at).as_nanos() as u64).max(1));
        if status == 200 {
            got += 1;
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            if v["reports"][0]["type"] == "accepted"
                && v["reports"].as_array().map_or(0, |a| a.len()) == 1
            {
                open.push(v["order_id"].as_u64().unwrap_or(0));
            }
        }
    }
    let _ = wr.shutdown().await;
    (got, h, lateness)
}

fn run_rate(addr: &str, rate: u64, clients: u64, secs: f64) -> RunResult {
    run_rate_over(addr, rate, clients, secs, false)
}

/// One rate over WebSocket sessions, or REST calls (`rest`).
fn run_rate_over(addr: &str, rate: u64, clients: u64, secs: f64, rest: bool) -> RunResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let per_client = (rate as f64 / clients as f64).max(1.0);
    let interval = Duration::from_secs_f64(1.0 / per_client);
    let n = ((per_client * secs) as u64).max(2);
    let epoch = Instant::now();
    let t0 = Instant::now();
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..clients {
            // Clients start spread over one interval.
            let offset = Duration::from_millis(300) + interval.mul_f64(c as f64 / clients as f64);
            let seed = 0x9E37_79B9_7F4A_7C15 ^ (c + 1);
            if rest {
                tasks.push(tokio::spawn(rest_client(
                    addr.to_string(),
                    format!("load{c}"),
                    interval,
                    n,
                    offset,
                    seed,
                )));
            } else {
                tasks.push(tokio::spawn(client(
                    addr.to_string(),
                    format!("load{c}"),
                    interval,
                    n,
                    offset,
                    epoch,
                    seed,
                )));
            }
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("client"));
        }
        out
    });
    let elapsed = t0.elapsed().as_secs_f64() - 0.3;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let mut late = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let mut answered = 0;
    for (g, h, l) in results {
        answered += g;
        hist.add(&h).expect("same bounds");
        late.add(&l).expect("same bounds");
    }
    RunResult {
        rate,
        sent: n * clients,
        answered,
        secs: elapsed,
        hist,
        late,
    }
}

fn us(ns: u64) -> String {
    format!("{:.0}", ns as f64 / 1000.0)
}

fn idle_sessions(addr: &str, pid: u32, m: u64) -> (u64, u64, u64, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(pid);
    let held = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (socks, probe_us) = rt.block_on(async {
        let mut socks = Vec::new();
        for i in 0..m {
            let r = connect_async(format!("ws://{addr}/v1/orders/ws")).await;
            let Ok((mut ws, _)) = r else {
                eprintln!("connection {i} failed: {:?}", r.err());
                break;
            };
            if ws
                .send(Message::Text(
                    json!({"type": "auth", "key": "idle"}).to_string().into(),
                ))
                .await
                .is_err()
            {
                break;
            }
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str().contains("authenticated") => {}
                _ => break,
            }
            held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            socks.push(ws);
        }
        // With every idle session open, one more order still round-trips.
        let (mut ws, _) = connect_async(format!("ws://{addr}/v1/orders/ws"))
            .await
            .expect("probe connect");
        ws.send(Message::Text(json!({"type": "auth", "key": "load0"}).to_string().into()))
            .await
            .expect("probe auth");
        ws.next().await;
        let t = Instant::now();
        ws.send(Message::Text(
            json!({"type": "new", "cl_ord_id": "probe", "symbol": "LOAD", "side": "buy", "price": "1", "qty": "1"})
                .to_string()
                .into(),
        ))
        .await
        .expect("probe send");
        let _ = ws.next().await;
        (socks, t.elapsed().as_secs_f64() * 1e6)
    });
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    let n = socks.len() as u64;
    drop(socks);
    drop(rt);
    (n, before, after, probe_us)
}

/// `GET /metrics` of the server, as text.
fn metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(
        c,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = c.read_to_string(&mut body);
    body
}

/// Drop copies of every client account (`--dropcopy 1`), each resumed live, on their own
/// runtime: the highest event sequence any of them has received, and how many reports.
struct DropCopies {
    max_seq: Arc<std::sync::atomic::AtomicU64>,
    reports: Arc<std::sync::atomic::AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

fn drop_copies(addr: &str, clients: u64) -> DropCopies {
    use std::sync::atomic::Ordering;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let max_seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reports = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for c in 0..clients {
        let (addr, max_seq, reports) =
            (addr.to_string(), Arc::clone(&max_seq), Arc::clone(&reports));
        let ready = std::sync::mpsc::channel::<()>();
        rt.spawn(async move {
            let (ws, _) = connect_async(format!("ws://{addr}/v1/dropcopy"))
                .await
                .expect("drop copy");
            let (mut tx, mut rx) = ws.split();
            for m in [
                json!({"type": "auth", "key": format!("load{c}")}),
                json!({"type": "resume"}),
            ] {
                tx.send(Message::Text(m.to_string().into()))
                    .await
                    .expect("send");
                let _ = rx.next().await;
            }
            let _ = ready.0.send(());
            while let Some(Ok(m)) = rx.next().await {
                if let Message::Text(t) = m {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    if let Some(seq) = v["seq"].as_u64() {
                        max_seq.fetch_max(seq, Ordering::Relaxed);
                        reports.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        let _ = ready.1.recv_timeout(Duration::from_secs(10));
    }
    DropCopies {
        max_seq,
        reports,
        _rt: rt,
    }
}

/// The server's events published (`/v1/status`).
fn events_published(addr: &str) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = write!(
        c,
        "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = c.read_to_string(&mut body);
    let json = body.split_once("\r\n\r\n").map_or("", |x| x.1);
    serde_json::from_str::<Value>(json)
        .ok()
        .and_then(|v| v["events_published"].as_u64())
        .unwrap_or(0)
}

/// A metric's value (`None` if absent).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `--soak N`: N orders at `rate`, the server's RSS every two seconds, then the pending
/// requests once the clients have gone.
fn soak(server: &ServerProc, orders: u64, rate: u64, clients: u64) {
    let pid = server.child.id();
    let secs = orders as f64 / rate as f64;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let t = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                v.push((t.elapsed().as_secs_f64(), rss_kib(pid)));
                std::thread::sleep(Duration::from_secs(2));
            }
            v
        })
    };
    let r = run_rate(&server.addr, rate, clients, secs);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    std::thread::sleep(Duration::from_millis(500));
    let m = metrics(&server.addr);
    let pending = metric(&m, "ringex_session_pending_requests");
    let rss: Vec<u64> = samples.iter().map(|s| s.1).collect();
    let warm = rss.len() / 10;
    let after: Vec<u64> = rss[warm.min(rss.len().saturating_sub(1))..].to_vec();
    let (lo, hi) = (
        after.iter().copied().min().unwrap_or(0),
        after.iter().copied().max().unwrap_or(0),
    );
    println!(
        "# soak: {} orders sent, {} answered in {:.0} s ({:.0}/s); p50 {} µs, p99 {} µs",
        r.sent,
        r.answered,
        r.secs,
        r.answered as f64 / r.secs.max(1e-9),
        us(r.hist.value_at_quantile(0.5)),
        us(r.hist.value_at_quantile(0.99)),
    );
    println!(
        "# server RSS every 2 s (MiB): {}",
        rss.iter()
            .map(|k| format!("{:.0}", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "# after the first tenth: {:.1}–{:.1} MiB ({:+.1}% spread); ringex_session_pending_requests after the clients left: {}",
        lo as f64 / 1024.0,
        hi as f64 / 1024.0,
        (hi as f64 / lo.max(1) as f64 - 1.0) * 100.0,
        pending.map_or("absent".into(), |p| format!("{p}"))
    );
}

fn main() {
    ringex_bench::harness::args::check("usage: serve_load [--rates R1,R2,…] [--clients N] [--seconds S] [--idle N] [--fsync batch|none|interval:<ms>] [--layout auto|threads|grouped] [--funded 1] [--soak ORDERS] [--keep 1: print the server address and its /metrics] [--rest 1: each rate over WebSocket, then over REST] [--dropcopy 1: a drop copy of every client account, and its lag]", &["--rates", "--clients", "--seconds", "--idle", "--fsync", "--layout", "--keep", "--funded", "--soak", "--rest", "--dropcopy"]);
    let rates: Vec<u64> = value("--rates")
        .unwrap_or_else(|| "10000,100000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let clients = number("--clients", 50);
    let secs = number("--seconds", 5) as f64;
    let idle = number("--idle", 10_000);
    let fsync = value("--fsync").unwrap_or_else(|| "batch".into());
    let funded = value("--funded").is_some();
    let server = start_server(clients, &fsync, funded);
    if let Some(orders) = value("--soak").and_then(|v| v.parse::<u64>().ok()) {
        println!("# ringex serve soak: {clients} clients, funded {funded}, journal fsync {fsync}");
        soak(
            &server,
            orders,
            rates.first().copied().unwrap_or(20_000),
            clients,
        );
        return;
    }
    if value("--keep").is_some() {
        eprintln!("server at {} (pid {})", server.addr, server.child.id());
    }
    println!("# ringex serve load test: {clients} clients on loopback, {secs} s per rate, journal fsync {fsync}");
    println!("# latency: the client's send -> its first execution report for that command (µs); sends late: how far behind schedule the sends went (open loop, µs)");
    println!("| target/s | achieved/s | answered | p50 | p90 | p99 | p99.9 | max | sends late p50 / p99 |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // `--dropcopy 1`: a drop copy of every client account beside the load, and every 100 ms
    // how far the newest report any of them holds is behind the events published.
    let copies = value("--dropcopy").map(|_| drop_copies(&server.addr, clients));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = copies.as_ref().map(|d| {
        let (addr, max_seq, on) = (
            server.addr.clone(),
            Arc::clone(&d.max_seq),
            Arc::clone(&sampling),
        );
        std::thread::spawn(move || {
            let mut lags = Vec::new();
            while on.load(std::sync::atomic::Ordering::Relaxed) {
                let published = events_published(&addr);
                let seen = max_seq.load(std::sync::atomic::Ordering::Relaxed);
                lags.push(published.saturating_sub(seen));
                std::thread::sleep(Duration::from_millis(100));
            }
            lags
        })
    });
    let mut sustained = None;
    // `--rest 1`: each rate over WebSocket and then over REST, on the same server.
    let over: &[bool] = if value("--rest").is_some() {
        &[false, true]
    } else {
        &[false]
    };
    for (&rate, &rest) in rates.iter().flat_map(|r| over.iter().map(move |o| (r, o))) {
        let r = run_rate_over(&server.addr, rate, clients, secs, rest);
        let achieved = r.answered as f64 / r.secs.max(1e-9);
        if r.answered == r.sent
            && achieved >= 0.99 * rate as f64
            && r.hist.value_at_quantile(0.99) <= 10_000_000
        {
            sustained = Some(sustained.map_or(rate, |s: u64| s.max(rate)));
        }
        let h = &r.hist;
        println!(
            "| {}{} | {:.0} | {}/{} | {} | {} | {} | {} | {} | {} / {} |",
            r.rate,
            if rest {
                " REST"
            } else if over.len() > 1 {
                " WebSocket"
            } else {
                ""
            },
            achieved,
            r.answered,
            r.sent,
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.9)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max()),
            us(r.late.value_at_quantile(0.5)),
            us(r.late.value_at_quantile(0.99)),
        );
    }
    if let (Some(d), Some(h)) = (&copies, sampler) {
        // Drained: the copies' newest report reaches the last event published.
        let t = Instant::now();
        let last = events_published(&server.addr);
        while d.max_seq.load(std::sync::atomic::Ordering::Relaxed) < last
            && t.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let drain = t.elapsed();
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        let lags = h.join().expect("sampler");
        let half = lags.len() / 2;
        let max = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
        let mut sorted = lags.clone();
        sorted.sort_unstable();
        println!(
            "# drop copies ({clients}, one per client account): {} reports; events behind the published ones, sampled every 100 ms: p50 {}, max {} (first half of the run max {}, second half max {}); caught up {:.1} ms after the load ended",
            d.reports.load(std::sync::atomic::Ordering::Relaxed),
            sorted.get(sorted.len() / 2).copied().unwrap_or(0),
            max(&lags),
            max(&lags[..half]),
            max(&lags[half..]),
            drain.as_secs_f64() * 1e3
        );
    }
    match sustained {
        Some(s) => println!("# highest sustained rate of those tried: {s}/s (every command answered, at least 99% of the target rate, p99 at most 10 ms)"),
        None => println!("# none of the rates tried was sustained (every command answered, at least 99% of the target rate, p99 at most 10 ms)"),
    }
    if value("--keep").is_some() {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&server.addr).expect("metrics");
        let _ = write!(
            c,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut body = String::new();
        let _ = c.read_to_string(&mut body);
        for l in body
            .lines()
            .filter(|l| l.starts_with("ringex_order_roundtrip"))
        {
            eprintln!("{l}");
        }
    }
    if idle > 0 {
        let (n, before, after, probe) = idle_sessions(&server.addr, server.child.id(), idle);
        println!(
            "# idle sessions held: {n} of {idle} (server RSS {:.1} -> {:.1} MiB: {:.1} KiB per session); \
             an order with all of them open answered in {probe:.0} µs",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            (after.saturating_sub(before)) as f64 / n.max(1) as f64
        );
    }
}
