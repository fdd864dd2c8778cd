//! `ringex node` on a real NATS JetStream server (CI starts one and sets RINGEX_NATS_URL; the
//! test fails, never skips, without it): two shards, each a primary and a standby, fed a
//! seeded multi-instrument workload through the router; each primary is killed with
//! SIGKILL at a random moment while commands flow, and restarted later from its journal.
//! Afterwards each shard's event stream equals, event for event, what one in-process engine
//! gives for the shard's commands (no gap, no duplicate), and the restarted nodes' books
//! equal the engine's.
#![cfg(feature = "nats")]

use ringex_bench::node::{last_published, read_commands, read_events, Names, NodeStatus, Router};
use ringex_engine::workload::{MultiSymbolWorkload, SplitMix64};
use ringex_engine::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::time::{Duration, Instant};

fn nats_url() -> String {
    std::env::var("RINGEX_NATS_URL").expect(
        "RINGEX_NATS_URL is not set: start nats-server with JetStream (`bash .ci/test` does) \
         and point RINGEX_NATS_URL at it",
    )
}

struct Node {
    child: Option<Child>,
    journal: PathBuf,
    id: String,
    shard: u32,
}

impl Node {
    fn start(cluster: &str, shard: u32, id: &str, journal: &Path) -> Node {
        Node::start_on(&nats_url(), cluster, shard, id, journal, &[])
    }

    /// A node on the server at `url`, with more flags.
    fn start_on(
        url: &str,
        cluster: &str,
        shard: u32,
        id: &str,
        journal: &Path,
        more: &[&str],
    ) -> Node {
        let child = Proc::new(env!("CARGO_BIN_EXE_ringex"))
            .args(["node", "run", "--nats", url, "--cluster", cluster])
            .args(more)
            .args([
                "--shard",
                &shard.to_string(),
                "--node-id",
                id,
                "--lease-ms",
                "500",
                // Snapshots (and pruning) while the run goes on: restarts recover from them.
                "--snapshot-every",
                "997",
            ])
            .arg("--journal")
            .arg(journal)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ringex node");
        Node {
            child: Some(child),
            journal: journal.to_path_buf(),
            id: id.to_string(),
            shard,
        }
    }

    fn status(&self) -> Option<NodeStatus> {
        NodeStatus::read(&self.journal)
    }

    fn wait_for(&self, what: &str, f: impl Fn(&NodeStatus) -> bool) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if self.status().is_some_and(|s| f(&s)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "node {} (shard {}): never {what}: {:?}",
            self.id,
            self.shard,
            self.status()
        );
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A seeded multi-instrument flow, its setup first, with a tick and a mass cancel of every
/// symbol (commands for every shard) after every `every`-th command (0: none).
fn flow(seed: u64, instruments: u32, accounts: u64, n: usize, every: usize) -> Vec<Command> {
    let w = MultiSymbolWorkload {
        seed,
        instruments,
        accounts,
        orders_per_instrument: 5,
        ..Default::default()
    }
    .generate(n);
    let mut cmds = w.setup.clone();
    for (k, c) in w.commands.iter().enumerate() {
        cmds.push(*c);
        if every > 0 && k % every == 0 {
            cmds.push(Command::new(c.ts, CommandKind::Tick));
            cmds.push(Command::new(
                c.ts,
                CommandKind::MassCancel {
                    account: AccountId(1 + k as u64 % accounts),
                    instrument: None,
                },
            ));
        }
    }
    cmds
}

/// The engine's events for commands fed in order from input sequence 1.
fn reference(cmds: &[Command]) -> (Matcher, Vec<(u64, Event)>) {
    let mut m = Matcher::with_capacity(MatcherCapacity::default());
    let mut out = Vec::new();
    for (k, c) in cmds.iter().enumerate() {
        m.process(Sequence(k as u64 + 1), c, &mut out);
    }
    let events = out
        .into_iter()
        .enumerate()
        .map(|(k, e)| (k as u64 + 1, e))
        .collect();
    (m, events)
}

#[test]
fn two_shards_survive_killed_primaries_with_nothing_lost_or_duplicated() {
    let url = nats_url();
    let dir = tempfile::tempdir().unwrap();
    let cluster = format!(
        "t{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let names = Names::new(&cluster);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut router = rt.block_on(Router::connect(&url, &cluster, 2)).unwrap();

    // The workload: 8 instruments (4 per shard), with account-wide commands (mass cancels of
    // every symbol, ticks) that go to both shards.
    let w = MultiSymbolWorkload {
        seed: 42,
        instruments: 8,
        accounts: 40,
        orders_per_instrument: 10,
        ..Default::default()
    }
    .generate(12_000);
    let mut cmds = w.setup.clone();
    for (k, c) in w.commands.iter().enumerate() {
        cmds.push(*c);
        if k % 997 == 0 {
            let ts = c.ts;
            cmds.push(Command::new(
                ts,
                CommandKind::MassCancel {
                    account: AccountId(1 + k as u64 % 40),
                    instrument: None,
                },
            ));
            cmds.push(Command::new(ts, CommandKind::Tick));
        }
    }

    let jd = |n: &str| dir.path().join(n);
    let mut primaries = [
        Node::start(&cluster, 0, "p0", &jd("p0")),
        Node::start(&cluster, 1, "p1", &jd("p1")),
    ];
    for p in &primaries {
        p.wait_for("primary", |s| s.role == "primary");
    }
    let standbys = [
        Node::start(&cluster, 0, "s0", &jd("s0")),
        Node::start(&cluster, 1, "s1", &jd("s1")),
    ];
    for s in &standbys {
        s.wait_for("standby", |s| s.role == "standby");
    }

    // Feed in chunks over ~3 s; kill each primary at a random chunk in the first two
    // thirds (commands keep coming for a second or more after it), and restart it once its
    // standby has taken over.
    let mut rng = SplitMix64::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    // Chunks of random lengths, each packed into messages of a random batch size (1 to
    // 300 commands): messages are cut at random points, and a kill lands in the middle of
    // one (its node restarts with part of a message in its journal).
    let mut chunks: Vec<&[Command]> = Vec::new();
    let mut rest = &cmds[..];
    while !rest.is_empty() {
        let (a, b) = rest.split_at((50 + rng.below(400) as usize).min(rest.len()));
        chunks.push(a);
        rest = b;
    }
    let n = chunks.len() as u64;
    let kill_at = [2 + rng.below(n / 3), n / 3 + rng.below(n / 3)];
    eprintln!("{n} chunks; primaries killed after chunks {kill_at:?}");
    let mut restarted: Vec<Node> = Vec::new();
    let mut killed = [false; 2];
    for (k, chunk) in chunks.iter().enumerate() {
        router.set_batch(1 + rng.below(300) as usize);
        rt.block_on(router.submit(chunk, 256)).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        for s in 0..2 {
            if k as u64 == kill_at[s] {
                primaries[s].kill9();
                killed[s] = true;
            }
            if killed[s] && standbys[s].status().is_some_and(|st| st.role == "primary") {
                killed[s] = false;
                restarted.push(Node::start(
                    &cluster,
                    s as u32,
                    &format!("p{s}"),
                    &jd(&format!("p{s}")),
                ));
            }
        }
    }
    for s in 0..2 {
        if killed[s] {
            standbys[s].wait_for("primary", |st| st.role == "primary");
            restarted.push(Node::start(
                &cluster,
                s as u32,
                &format!("p{s}"),
                &jd(&format!("p{s}")),
            ));
        }
    }

    for shard in 0..2u32 {
        let shard_cmds = rt
            .block_on(read_commands(router.context(), &names, shard))
            .unwrap();
        let (engine, expected) = reference(&shard_cmds);
        let last = expected.last().unwrap().0;
        let t = Instant::now();
        while rt
            .block_on(last_published(router.context(), &names, shard))
            .unwrap()
            .last
            < last
        {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "shard {shard}: events stopped short of {last}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let got = rt
            .block_on(read_events(router.context(), &names, shard))
            .unwrap();
        assert_eq!(got.duplicates, 0, "shard {shard}: duplicated messages");
        assert_eq!(got.events.len(), expected.len(), "shard {shard}");
        assert!(
            got.events == expected,
            "shard {shard}: the events differ from the engine's"
        );
        // The kill landed while the shard was publishing: both nodes published part of it.
        let publishers: std::collections::BTreeSet<_> =
            got.publishers.iter().map(|p| p.1.as_str()).collect();
        assert!(
            publishers.contains(format!("p{shard}").as_str())
                && publishers.contains(format!("s{shard}").as_str()),
            "shard {shard}: publishers {publishers:?}"
        );

        // The restarted node caught up from its journal and the stream; its books are the
        // engine's.
        let node = restarted.iter_mut().find(|r| r.shard == shard).unwrap();
        let total = shard_cmds.len() as u64;
        node.wait_for("caught up", |s| s.cmd_seq == total && s.role == "standby");
        node.kill9();
        let state = ringex_consumers::recovery::recover(&node.journal)
            .unwrap()
            .state;
        assert_eq!((state.cmd_seq, state.event_seq), (total, last));
        let replica = BookReplica::from_state(&state);
        for i in (shard..8).step_by(2) {
            let i = InstrumentId(i);
            assert_eq!(
                replica.resting_orders(i),
                engine.resting_orders(i),
                "shard {shard}, {i:?}"
            );
        }
    }
}

/// Shard 0's events once its stream reaches event `last` (30 s at most).
fn events_through(
    rt: &tokio::runtime::Runtime,
    router: &Router,
    names: &Names,
    last: u64,
) -> ringex_bench::node::ShardEvents {
    let t = Instant::now();
    while rt
        .block_on(last_published(router.context(), names, 0))
        .map_or(0, |e| e.last)
        < last
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "events stopped short of {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(read_events(router.context(), names, 0))
        .unwrap()
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A unique deployment name on the shared server.
fn cluster_name(tag: &str) -> String {
    format!(
        "{tag}{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A fresh cluster of one shard on `url`: its name, names, a runtime and a router (which
/// creates the streams).
fn one_shard(url: &str, tag: &str) -> (String, Names, tokio::runtime::Runtime, Router) {
    let cluster = cluster_name(tag);
    let names = Names::new(&cluster);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let router = rt.block_on(Router::connect(url, &cluster, 1)).unwrap();
    (cluster, names, rt, router)
}

/// `ringex node read` prints a shard's stream as `ringex run --events-out` writes the same
/// script's events (byte for byte), and JSON lines with `--format json`.
#[test]
fn node_read_prints_the_event_lines_of_a_run_of_the_same_script() {
    let url = nats_url();
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster_name("r");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scripts/demo.csv");
    let run_out = dir.path().join("run.csv");
    let st = Proc::new(env!("CARGO_BIN_EXE_ringex"))
        .arg("run")
        .arg(&script)
        .arg("--events-out")
        .arg(&run_out)
        .status()
        .unwrap();
    assert!(st.success());
    let expected = std::fs::read_to_string(&run_out).unwrap();
    let lines = expected.lines().count();
    let node = Node::start(&cluster, 0, "a", &dir.path().join("a"));
    node.wait_for("primary", |s| s.role == "primary");
    let st = Proc::new(env!("CARGO_BIN_EXE_ringex"))
        .args([
            "node",
            "submit",
            "--nats",
            &url,
            "--cluster",
            &cluster,
            "--shards",
            "1",
        ])
        .arg(&script)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let read = |format: &str| {
        let out = Proc::new(env!("CARGO_BIN_EXE_ringex"))
            .args([
                "node",
                "read",
                "--nats",
                &url,
                "--cluster",
                &cluster,
                "--shards",
                "1",
            ])
            .args([
                "--format",
                format,
                "--limit",
                &lines.to_string(),
                "--script",
            ])
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(read("csv"), expected);
    let json = read("json");
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"shard": 0, "event_seq": 3, "event": "accepted", "seq": 1,
                           "symbol": "ABC", "order_id": "1"})
    );
    let fill = json.lines().find(|l| l.contains("\"fill\"")).unwrap();
    let fill: serde_json::Value = serde_json::from_str(fill).unwrap();
    assert_eq!(
        (
            fill["price"].as_str(),
            fill["qty"].as_str(),
            fill["taker_order_id"].as_str()
        ),
        (Some("100.05"), Some("3"), Some("4"))
    );
    assert_eq!(json.lines().count(), lines);
}

/// Every command message has a stable id: acknowledgements lost after the message was
/// stored are retried with the same id and dropped by the stream as duplicates, and the
/// same submission made again publishes nothing twice; commands for every shard reach each
/// shard once.
#[test]
fn lost_acks_and_resubmissions_sequence_nothing_twice() {
    use ringex_bench::node::{targets, Targets};
    let url = nats_url();
    let cluster = cluster_name("d");
    let names = Names::new(&cluster);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cmds = flow(7, 6, 20, 1_500, 301);
    let expected: Vec<Vec<Command>> = (0..2u32)
        .map(|s| {
            cmds.iter()
                .filter(|c| match targets(c, 2) {
                    Targets::One(t) => t == s,
                    Targets::All => true,
                })
                .copied()
                .collect()
        })
        .collect();
    // Five commands a message per shard (the last of each shard's shorter).
    let messages = expected
        .iter()
        .map(|e| e.len().div_ceil(5) as u64)
        .sum::<u64>();
    let lossy = rt
        .block_on(Router::connect(&url, &cluster, 2))
        .unwrap()
        .with_batch(5)
        .lose_acks_every(3);
    let done = rt.block_on(lossy.submit_as("sub-1", &cmds, 32)).unwrap();
    assert_eq!(done.messages, messages);
    assert!(done.retries >= messages / 3, "{done:?}");
    assert_eq!(
        done.duplicates, done.retries,
        "every retried message was stored already"
    );
    let streams = |r: &Router| -> Vec<Vec<Command>> {
        (0..2)
            .map(|s| rt.block_on(read_commands(r.context(), &names, s)).unwrap())
            .collect()
    };
    assert_eq!(streams(&lossy), expected, "each command once, in order");
    // The same submission again (a script resubmitted after an error): nothing new.
    let other = rt
        .block_on(Router::connect(&url, &cluster, 2))
        .unwrap()
        .with_batch(5);
    let again = rt.block_on(other.submit_as("sub-1", &cmds, 32)).unwrap();
    assert_eq!((again.messages, again.duplicates), (messages, messages));
    assert_eq!(streams(&lossy), expected);
    // A broadcast command that reached one shard only is completed by the resubmission.
    let tick = [Command::new(Timestamp(1 << 40), CommandKind::Tick)];
    let one = rt.block_on(Router::connect(&url, &cluster, 1)).unwrap();
    // (A one-shard router publishes it to shard 0 only, as a router that stopped would.)
    let r1 = rt.block_on(one.submit_as("sub-2", &tick, 1)).unwrap();
    assert_eq!(r1.messages, 1);
    let two = rt.block_on(Router::connect(&url, &cluster, 2)).unwrap();
    let r2 = rt.block_on(two.submit_as("sub-2", &tick, 1)).unwrap();
    assert_eq!((r2.messages, r2.duplicates), (2, 1));
    let s = streams(&two);
    assert_eq!(
        (s[0].len(), s[1].len()),
        (expected[0].len() + 1, expected[1].len() + 1)
    );
}

/// A nats-server of the test's own, on a free port with its store in `dir`.
/// (With a configuration file and the environment it reads, when given.)
type NatsConf = Option<(PathBuf, Vec<(&'static str, &'static str)>)>;

struct OwnNats {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    conf: NatsConf,
}

impl OwnNats {
    fn start(dir: &Path, port: u16) -> OwnNats {
        OwnNats::start_with(dir, port, None)
    }

    fn start_with(dir: &Path, port: u16, conf: NatsConf) -> OwnNats {
        let mut n = OwnNats {
            child: None,
            port,
            dir: dir.to_path_buf(),
            conf,
        };
        n.up();
        n
    }

    fn up(&mut self) {
        let mut cmd = Proc::new("nats-server");
        if let Some((conf, env)) = &self.conf {
            cmd.arg("-c").arg(conf).envs(env.iter().copied());
        }
        let child = cmd
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.join("js"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH (bash .ci/test installs it)");
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A clean restart (SIGTERM, then the same port and store).
    fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Proc::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            c.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        self.up();
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The NATS server restarts in the middle of a run (its store on disk): the router's
/// submissions are made again with the same ids until they go through, the nodes follow the
/// command stream again and the lease is taken again, and the shard's event stream ends up
/// equal to one engine's, with no gap and no duplicate.
#[test]
fn a_nats_server_restart_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = OwnNats::start(dir.path(), port);
    let url = server.url();
    let (cluster, names, rt, router) = one_shard(&url, "n");
    let cmds = flow(11, 4, 20, 4_000, 0);
    let start = |id: &str, j: &str| Node::start_on(&url, &cluster, 0, id, &dir.path().join(j), &[]);
    let primary = start("p", "p");
    primary.wait_for("primary", |s| s.role == "primary");
    let standby = start("s", "s");
    standby.wait_for("standby", |s| s.role == "standby");
    let chunks: Vec<&[Command]> = cmds.chunks(200).collect();
    for (k, chunk) in chunks.iter().enumerate() {
        if k == chunks.len() / 2 {
            server.restart();
        }
        // The same submission again until it goes through (nothing is sequenced twice).
        let t = Instant::now();
        while rt
            .block_on(router.submit_as(&format!("chunk{k}"), chunk, 64))
            .is_err()
        {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "chunk {k} never went through"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let shard_cmds = rt
        .block_on(read_commands(router.context(), &names, 0))
        .unwrap();
    assert_eq!(shard_cmds, cmds, "each command once, in order");
    let (_, expected) = reference(&cmds);
    let last = expected.last().unwrap().0;
    let got = events_through(&rt, &router, &names, last);
    assert_eq!(got.duplicates, 0);
    assert!(
        got.events == expected,
        "the events differ from the engine's"
    );
    for n in [&primary, &standby] {
        n.wait_for("caught up", |s| s.cmd_seq == cmds.len() as u64);
    }
}

/// A message on the event subject that no node wrote does not wedge the primary: the next
/// publication steps over it, and readers skip it.
#[test]
fn a_foreign_message_on_the_event_subject_does_not_wedge_the_primary() {
    let url = nats_url();
    let dir = tempfile::tempdir().unwrap();
    let (cluster, names, rt, router) = one_shard(&url, "f");
    let node = Node::start(&cluster, 0, "p", &dir.path().join("p"));
    node.wait_for("primary", |s| s.role == "primary");
    let cmds = flow(3, 2, 5, 300, 0);
    let (a, b) = cmds.split_at(cmds.len() / 2);
    rt.block_on(router.submit(a, 64)).unwrap();
    node.wait_for("published the first half", |s| s.cmd_seq == a.len() as u64);
    // Someone else publishes on the event subject.
    rt.block_on(async {
        router
            .context()
            .publish(
                names.evt_subject(0),
                bytes::Bytes::from_static(b"not events"),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    });
    rt.block_on(router.submit(b, 64)).unwrap();
    let (_, expected) = reference(&cmds);
    let got = events_through(&rt, &router, &names, expected.last().unwrap().0);
    assert_eq!((got.foreign, got.duplicates), (1, 0));
    assert!(got.events == expected);
}

/// Releasing a lease that expired and went to another node leaves the new holder's alone.
#[test]
fn releasing_a_lost_lease_leaves_the_new_holder_alone() {
    use ringex_bench::node::Lease;
    let url = nats_url();
    // (Connecting creates the streams; the lease lives 500 ms.)
    let (_, names, rt, router) = one_shard(&url, "l");
    let lease = Lease::new(router.context().clone(), &names, 0);
    let a = rt.block_on(lease.acquire("a")).unwrap();
    std::thread::sleep(Duration::from_millis(900));
    let b = rt.block_on(lease.acquire("b")).expect("a's lease expired");
    rt.block_on(lease.release(a)).unwrap();
    assert!(
        rt.block_on(lease.acquire("c")).is_err(),
        "b still holds the lease after a released its old one"
    );
    rt.block_on(lease.release(b)).unwrap();
    assert!(
        rt.block_on(lease.acquire("c")).is_ok(),
        "b's own release frees it"
    );
}

/// Against a nats-server that requires credentials and grants each role its subjects
/// (`bench/nats/ringex-nats.conf`): nodes, router and reader work with theirs; an
/// unauthenticated client is refused, and a router cannot publish events.
#[test]
fn with_credentials_and_per_subject_permissions() {
    use ringex_bench::node::NatsAuth;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("nats/ringex-nats.conf");
    let env = vec![
        ("RINGEX_NODE_PASSWORD", "n0de"),
        ("RINGEX_ROUTER_PASSWORD", "r0uter"),
        ("RINGEX_READER_PASSWORD", "re4der"),
    ];
    let _server = OwnNats::start_with(dir.path(), port, Some((conf, env)));
    let url = format!("nats://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // No credentials: refused.
    assert!(
        rt.block_on(async_nats::connect(&url)).is_err(),
        "anonymous connection taken"
    );
    // A node with the node's credentials (the deployment the configuration names: ringex).
    let node = Node::start_on(
        &url,
        "ringex",
        0,
        "p",
        &dir.path().join("p"),
        &["--nats-user", "node", "--nats-password", "n0de"],
    );
    node.wait_for("primary", |s| s.role == "primary");
    let router = rt
        .block_on(Router::connect_with(
            &url,
            &NatsAuth::user("router", "r0uter"),
            "ringex",
            1,
        ))
        .expect("the router connects with its credentials");
    let cmds = flow(5, 2, 5, 200, 0);
    rt.block_on(router.submit(&cmds, 32)).unwrap();
    node.wait_for("caught up", |s| s.cmd_seq == cmds.len() as u64);
    // The router may not publish on the event subject.
    let names = Names::new("ringex");
    let refused = rt.block_on(async {
        let mut js = router.context().clone();
        js.set_timeout(Duration::from_millis(500));
        match js
            .publish(names.evt_subject(0), bytes::Bytes::from_static(b"forged"))
            .await
        {
            Ok(ack) => ack.await.is_err(),
            Err(_) => true,
        }
    });
    assert!(refused, "a router published an event");
    // The reader reads the events: the engine's, and nothing forged.
    let reader = rt
        .block_on(NatsAuth::user("reader", "re4der").connect(&url, "reader"))
        .unwrap();
    let (_, expected) = reference(&cmds);
    let t = Instant::now();
    let js = async_nats::jetstream::new(reader);
    loop {
        let got = rt.block_on(read_events(&js, &names, 0)).unwrap();
        if got.events.len() == expected.len() {
            assert!(got.events == expected && got.foreign == 0);
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "events stopped short"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A wrong password is refused.
    assert!(rt
        .block_on(NatsAuth::user("router", "wrong").connect(&url, "x"))
        .is_err());
    drop(node);
}

/// A long backlog does not starve the lease: a node that takes over with tens of thousands
/// of events to publish renews its lease between chunks, so an intruder that tries to take
/// the lease all the while never gets it.
#[test]
fn a_long_backlog_does_not_starve_lease_renewal() {
    use ringex_bench::node::Lease;
    let url = nats_url();
    let dir = tempfile::tempdir().unwrap();
    let (cluster, names, rt, router) = one_shard(&url, "b");
    // Someone else holds the lease: the node follows the commands as a standby and
    // publishes nothing, so its backlog grows.
    let lease = Lease::new(router.context().clone(), &names, 0);
    let rev = rt.block_on(lease.acquire("other")).unwrap();
    // A message per command's events, so that the backlog takes many chunks.
    let node = Node::start_on(
        &url,
        &cluster,
        0,
        "p",
        &dir.path().join("p"),
        &["--message-events", "1"],
    );
    let cmds = flow(9, 8, 50, 40_000, 0);
    let total = cmds.len() as u64;
    // "other" renews its lease every 100 ms on a thread of its own (however slow the
    // submissions are on a busy machine) until the node has every command.
    let caught_up = std::sync::atomic::AtomicBool::new(false);
    let rev = std::thread::scope(|sc| {
        let holder = sc.spawn(|| {
            let mut rev = rev;
            while !caught_up.load(std::sync::atomic::Ordering::Acquire) {
                rev = rt
                    .block_on(lease.renew("other", rev))
                    .expect("other keeps its lease");
                std::thread::sleep(Duration::from_millis(100));
            }
            rev
        });
        for chunk in cmds.chunks(2_000) {
            rt.block_on(router.submit(chunk, 512)).unwrap();
        }
        let t = Instant::now();
        while node.status().is_none_or(|s| s.cmd_seq < total) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the node never caught up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        caught_up.store(true, std::sync::atomic::Ordering::Release);
        holder.join().unwrap()
    });
    assert_eq!(node.status().unwrap().role, "standby");
    // The lease goes: the node takes it with the whole backlog to publish.
    rt.block_on(lease.release(rev)).unwrap();
    node.wait_for("primary", |s| s.role == "primary");
    let (_, expected) = reference(&cmds);
    let last = expected.last().unwrap().0;
    let t = Instant::now();
    let mut tries = 0;
    while rt
        .block_on(last_published(router.context(), &names, 0))
        .map_or(0, |e| e.last)
        < last
    {
        assert!(
            rt.block_on(lease.acquire("intruder")).is_err(),
            "the node's lease lapsed while it published its backlog"
        );
        tries += 1;
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the backlog never went out"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        tries >= 5,
        "the backlog went out in {tries} tries: too short to tell"
    );
    let got = rt
        .block_on(read_events(router.context(), &names, 0))
        .unwrap();
    assert!(got.events == expected && got.duplicates == 0);
}

/// A node killed while it consumes batched command messages comes back from its anchor
/// (a message whose commands before it are durable), not from the stream's start: it skips
/// the commands its journal holds — the part of a message it had applied included — and
/// ends with the engine's state, every event once.
#[test]
fn a_restart_takes_up_batched_commands_from_its_anchor() {
    use ringex_bench::node::Anchor;
    let url = nats_url();
    let dir = tempfile::tempdir().unwrap();
    let (cluster, names, rt, router) = one_shard(&url, "a");
    let router = router.with_batch(333);
    let journal = dir.path().join("p");
    let mut node = Node::start(&cluster, 0, "p", &journal);
    node.wait_for("primary", |s| s.role == "primary");
    let cmds = flow(11, 6, 30, 60_000, 0);
    let total = cmds.len() as u64;
    let (first, second) = cmds.split_at(cmds.len() / 2);
    rt.block_on(router.submit(first, 64)).unwrap();
    node.wait_for("the first half", |s| s.cmd_seq == first.len() as u64);
    // An anchor is written about a second after commands flowed.
    std::thread::sleep(Duration::from_millis(1500));
    rt.block_on(router.submit(&second[..1000], 64)).unwrap();
    let t = Instant::now();
    while Anchor::read(&journal, total) == Anchor::START {
        assert!(t.elapsed() < Duration::from_secs(10), "no anchor written");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Killed while the rest streams in.
    let rest = &second[1000..];
    let (a, b) = rest.split_at(rest.len() / 2);
    rt.block_on(router.submit(a, 64)).unwrap();
    node.kill9();
    let at_kill = ringex_consumers::recovery::recover(&journal)
        .unwrap()
        .state
        .cmd_seq;
    let anchor = Anchor::read(&journal, at_kill);
    assert!(
        anchor.before > 0 && anchor.before <= at_kill,
        "anchor {anchor:?} with {at_kill} commands journaled"
    );
    rt.block_on(router.submit(b, 64)).unwrap();
    // (Restarted with the stages yielding when idle: the same results.)
    let node = Node::start_on(&url, &cluster, 0, "p", &journal, &["--idle", "yield"]);
    node.wait_for("caught up", |s| s.cmd_seq == total && s.role == "primary");
    let (engine, expected) = reference(&cmds);
    let last = expected.last().unwrap().0;
    let got = events_through(&rt, &router, &names, last);
    assert_eq!(got.duplicates, 0);
    assert!(
        got.events == expected,
        "the events differ from the engine's"
    );
    drop(node);
    let state = ringex_consumers::recovery::recover(&journal).unwrap().state;
    assert_eq!((state.cmd_seq, state.event_seq), (total, last));
    let replica = BookReplica::from_state(&state);
    for i in 0..6 {
        let i = InstrumentId(i);
        assert_eq!(replica.resting_orders(i), engine.resting_orders(i), "{i:?}");
    }
}
