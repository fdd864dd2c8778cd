//! Journal, snapshots and recovery through the `ringex` binary: round trip, continuation,
//! kill -9 at random moments, corruption, snapshot + tail.

use ringex_engine::workload::SplitMix64;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn ringex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringex"))
}

/// A script of `n` command lines over two instruments, ABC funded (ABCC for USD, fees, a
/// band, a largest quantity) and XYZ unfunded: deposits for every account first, then
/// orders, cancels, modifies, deposits and withdrawals, ticks, blocks, halts — and a few bad
/// lines.
fn script(seed: u64, n: usize) -> String {
    let mut r = SplitMix64::new(seed);
    let mut s = String::from(
        "asset,USD,2\nasset,ABCC,0\n\
         instrument,ABC,0.01,1,base=ABCC,quote=USD,maker_fee=-0.0001,taker_fee=0.002,max_qty=8,band=0.02\n\
         instrument,XYZ,0.5,10\n\
         instrument,PRT,1,1,match=pro_rata_top,min_alloc=2\n",
    );
    let mut ts = 1u64;
    for acct in 1..=5 {
        s.push_str(&format!(
            "deposit,1,{acct},USD,5000\ndeposit,1,{acct},ABCC,50\n"
        ));
    }
    for i in 11..=n as u64 {
        ts += r.below(3);
        let sym = ["XYZ", "ABC", "ABC", "ABC", "ABC", "PRT"][r.below(6) as usize];
        let (px, lot) = match sym {
            "ABC" => (format!("{}.{:02}", 97 + r.below(7), r.below(100)), 1),
            "PRT" => (format!("{}", 97 + r.below(7)), 1),
            _ => (format!("{}.{}", 20 + r.below(2), 5 * r.below(2)), 10),
        };
        // Icebergs (XYZ is FIFO; on PRT they are refused) and stops now and then.
        let extra = match r.below(10) {
            0 if sym != "ABC" => format!(",display={}", lot * (1 + r.below(3))),
            1 => match sym {
                "ABC" => format!(",stop={}.{:02}", 97 + r.below(7), r.below(100)),
                "PRT" => format!(",stop={}", 97 + r.below(7)),
                _ => format!(",stop={}.{}", 20 + r.below(2), 5 * r.below(2)),
            },
            _ => String::new(),
        };
        let acct = 1 + r.below(5);
        let line = match r.below(100) {
            0..=49 => {
                let side = if r.below(2) == 0 { "buy" } else { "sell" };
                let tif = ["gtc", "gtc", "gtc", "ioc", "fok"][r.below(5) as usize];
                let tif = if r.below(10) == 0 {
                    format!("gtd:{}", ts + r.below(50))
                } else {
                    tif.to_string()
                };
                format!(
                    "new,{ts},{sym},{acct},{i},{side},limit,{tif},{px},{}{extra}",
                    lot * (1 + r.below(9))
                )
            }
            50..=64 => format!("cancel,{ts},{sym},{acct},{}", i.saturating_sub(r.below(30))),
            65..=84 => format!(
                "modify,{ts},{sym},{acct},{},{px},{}",
                i.saturating_sub(r.below(30)),
                lot * (1 + r.below(9))
            ),
            85..=89 => format!(
                "new,{ts},{sym},{acct},{i},buy,market,ioc,-,{}",
                lot * (1 + r.below(5))
            ),
            90 => format!("tick,{ts}"),
            91 => format!(
                "deposit,{ts},{acct},USD,{}.{:02}",
                r.below(1000),
                r.below(100)
            ),
            92 => format!("withdraw,{ts},{acct},ABCC,{}", r.below(8)),
            93 => format!("block,{ts},{acct}"),
            94..=95 => format!("unblock,{ts},{acct}"),
            96 => format!("mass_cancel,{ts},{acct}"),
            97 => format!("halt,{ts},{sym}"),
            98 => format!("resume,{ts},{sym}"),
            _ => "this line is malformed".to_string(),
        };
        s.push_str(&line);
        s.push('\n');
    }
    s
}

/// The definitions plus the first `k` command lines of a script.
fn prefix(script: &str, k: u64) -> String {
    let mut out = String::new();
    let mut n = 0;
    for line in script.lines() {
        let is_def = line.starts_with("instrument,")
            || line.starts_with("alloc_group,")
            || line.starts_with("asset,");
        if !is_def {
            if n == k {
                break;
            }
            n += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Runs a script: (events, book followed by balances).
fn run(dir: &Path, name: &str, script: &str, extra: &[&str]) -> (String, String) {
    let path = dir.join(format!("{name}.csv"));
    std::fs::write(&path, script).expect("write script");
    let events = dir.join(format!("{name}.events"));
    let book = dir.join(format!("{name}.book"));
    let balances = dir.join(format!("{name}.balances"));
    let out = ringex()
        .arg("run")
        .arg(&path)
        .arg("--events-out")
        .arg(&events)
        .arg("--book-out")
        .arg(&book)
        .arg("--balances-out")
        .arg(&balances)
        .args(extra)
        .output()
        .expect("ringex run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::read_to_string(events).expect("events"),
        std::fs::read_to_string(book).expect("book")
            + &std::fs::read_to_string(balances).expect("balances"),
    )
}

/// Recovers a journal: (K, book followed by balances, stderr).
fn recover(journal: &Path, book: &Path) -> (u64, String, String) {
    let balances = book.with_extension("balances");
    let out = ringex()
        .args(["recover", "--journal"])
        .arg(journal)
        .arg("--book-out")
        .arg(book)
        .arg("--balances-out")
        .arg(&balances)
        .output()
        .expect("ringex recover");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "recover failed: {stderr}");
    let k = stdout
        .trim()
        .strip_prefix("recovered through command ")
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {stdout:?}"));
    let state = std::fs::read_to_string(book).expect("book")
        + &std::fs::read_to_string(balances).expect("balances");
    (k, state, stderr)
}

/// `ringex run SCRIPT --events-out /dev/null --journal J` plus `extra`, in the background.
fn spawn_run(script: &Path, j: &Path, extra: &[&std::ffi::OsStr]) -> std::process::Child {
    ringex()
        .arg("run")
        .arg(script)
        .arg("--events-out")
        .arg("/dev/null")
        .arg("--journal")
        .arg(j)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

/// Waits until a run is past parsing (its edge state is written) or has ended.
fn wait_for_meta(j: &Path, child: &mut std::process::Child) {
    for _ in 0..20_000 {
        if j.join("edge.meta").exists() || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Waits until a file (a run's `--acks-out`, written as each batch becomes durable) holds
/// `bytes` bytes or the run has ended. The journal's own files are preallocated, so their
/// length says nothing of progress.
fn wait_for_bytes(file: &Path, bytes: u64, child: &mut std::process::Child) {
    for _ in 0..400_000 {
        let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        if len >= bytes || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Runs to the end and returns how many bytes it wrote to its `--acks-out` file: the
/// whole run's progress, against which kills are placed.
fn acked_bytes(mut child: std::process::Child, acks: &Path) -> u64 {
    let _ = child.wait();
    let n = std::fs::metadata(acks).map(|m| m.len()).unwrap_or(0);
    assert!(n > 0, "the uninterrupted run acknowledged nothing");
    n
}

/// kill -9 once the run is past parsing (its edge state in `j` is written) and has
/// acknowledged `bytes` bytes, a random few microseconds later (inside a write, a flush or
/// an fsync as it falls). The kill follows the run's progress, not a clock: a timing
/// measured once (cold files, a busy CI machine) let most kills land after the end.
fn kill_after(
    mut child: std::process::Child,
    j: &Path,
    acks: &Path,
    bytes: u64,
    rng: &mut SplitMix64,
) {
    wait_for_meta(j, &mut child);
    wait_for_bytes(acks, bytes, &mut child);
    std::thread::sleep(Duration::from_micros(rng.below(200)));
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

/// The highest event sequence in an `--acks-out` file (`durable,<event_seq>,<cmd_seq>`).
fn max_ack(acks: &Path) -> u64 {
    std::fs::read_to_string(acks)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(',').nth(1)?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

/// The events `ringex recover` replayed, from its report on stderr.
fn replayed(stderr: &str) -> u64 {
    stderr
        .split(" events replayed")
        .next()
        .and_then(|x| x.rsplit(' ').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or(0)
}

#[test]
fn round_trip_and_continuation_equal_one_uninterrupted_engine() {
    let tmp = tempfile::tempdir().expect("tmp");
    let j = tmp.path().join("journal");
    let (s1, s2) = (script(1, 3000), script(2, 2000));
    let s2_body: String = s2.lines().skip(5).map(|l| format!("{l}\n")).collect();
    let jarg = j.to_str().expect("utf8");
    let (e1, b1) = run(
        tmp.path(),
        "one",
        &s1,
        &["--journal", jarg, "--fsync", "batch"],
    );
    let (k, rb, _) = recover(&j, &tmp.path().join("rec.book"));
    assert_eq!(k, 3000);
    assert_eq!(rb, b1, "recovered book equals the run's book");
    let (e2, b2) = run(tmp.path(), "two", &s2_body, &["--journal", jarg]);
    let (eall, ball) = run(tmp.path(), "all", &format!("{s1}{s2_body}"), &[]);
    assert_eq!(
        format!("{e1}{e2}"),
        eall,
        "events across the restart equal one run"
    );
    assert_eq!(b2, ball);
    // The script exercises the money rules: balances move, funds and bands reject.
    assert!(ball.contains("balance,1,USD,") && ball.contains("balance,5,ABCC,"));
    for code in [
        "insufficient_funds",
        "price_band",
        "max_qty",
        "withdrawn",
        "deposited",
        "triggered",
        "invalid_display",
        "stop_would_trigger",
    ] {
        assert!(eall.contains(code), "no {code} in the run");
    }
    let (k, rb, _) = recover(&j, &tmp.path().join("rec2.book"));
    assert_eq!((k, rb), (5000, ball));
}

/// Runs a script journaled into `j` with a snapshot every `every` commands; returns the
/// book followed by the balances.
fn run_with_snapshots(dir: &Path, j: &Path, script: &str, every: u64) -> String {
    let every = every.to_string();
    let jarg = j.to_str().expect("utf8");
    run(
        dir,
        "s",
        script,
        &["--journal", jarg, "--snapshot-every", &every],
    )
    .1
}

/// The snapshot files of a journal directory, oldest first.
fn snapshots(j: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(j)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".snap"))
        .collect();
    v.sort();
    v
}

#[test]
fn snapshot_plus_tail_equals_full_replay() {
    let tmp = tempfile::tempdir().expect("tmp");
    let j = tmp.path().join("journal");
    let s = script(3, 5000);
    let book = run_with_snapshots(tmp.path(), &j, &s, 700);
    assert!(!snapshots(&j).is_empty(), "a snapshot was written");
    let (k, rb, stderr) = recover(&j, &tmp.path().join("r.book"));
    assert!(stderr.contains("snapshot Some("), "{stderr}");
    // The last command lines may make no events (ticks, bad lines): K is the last with events.
    assert!((4990..=5000).contains(&k), "{k}");
    assert_eq!(rb, book);
    // Without the snapshot (full journal replay in a fresh directory) the book is the same.
    let j2 = tmp.path().join("journal2");
    run(
        tmp.path(),
        "s2",
        &s,
        &["--journal", j2.to_str().expect("utf8")],
    );
    let (_, rb2, _) = recover(&j2, &tmp.path().join("r2.book"));
    assert_eq!(rb2, book);
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "journal"))
        .collect();
    v.sort();
    v
}

/// Offsets of the records in a segment (walks the headers).
fn record_offsets(seg: &Path) -> Vec<usize> {
    let b = std::fs::read(seg).expect("segment");
    let mut v = Vec::new();
    let mut at = 0;
    while at + 64 <= b.len() && b[at..at + 4] == 0x334A_4752u32.to_le_bytes() {
        v.push(at);
        let len = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize;
        at += 64 + len;
    }
    v
}

fn flip(seg: &Path, at: usize) {
    let mut b = std::fs::read(seg).expect("segment");
    b[at] ^= 0x5a;
    std::fs::write(seg, b).expect("write");
}

#[test]
fn damaged_last_record_is_cut_and_reported_and_damage_in_the_middle_is_an_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = script(4, 20_000);
    let j = tmp.path().join("j");
    let jarg = j.to_str().expect("utf8");
    run(tmp.path(), "a", &s, &["--journal", jarg]);
    let seg = segments(&j).pop().expect("a segment");
    let offs = record_offsets(&seg);
    assert!(offs.len() >= 2, "several records");
    let last = *offs.last().expect("last");
    // Flip a byte inside the last record's events: detected by the CRC and cut.
    flip(&seg, last + 72);
    let (k1, book1, stderr) = recover(&j, &tmp.path().join("b1"));
    assert!(stderr.contains("torn tail Some("), "{stderr}");
    assert!(k1 < 20_000);
    let expect = run(tmp.path(), "p1", &prefix(&s, k1), &[]).1;
    assert_eq!(
        book1, expect,
        "recovered book equals the first K commands' book"
    );
    // The cut is permanent: recovering again finds nothing more to cut and the same state.
    let (k1b, book1b, stderr) = recover(&j, &tmp.path().join("b1b"));
    assert!(stderr.contains("torn tail None"), "{stderr}");
    assert_eq!((k1b, book1b), (k1, book1));

    // A truncated tail (a torn write) is cut the same way.
    let j2 = tmp.path().join("j2");
    run(
        tmp.path(),
        "b",
        &s,
        &["--journal", j2.to_str().expect("utf8")],
    );
    let seg2 = segments(&j2).pop().expect("segment");
    let last2 = *record_offsets(&seg2).last().expect("last");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg2)
        .expect("open");
    f.set_len(last2 as u64 + 100).expect("truncate");
    let (k2, book2, stderr) = recover(&j2, &tmp.path().join("b2"));
    assert!(stderr.contains("torn tail Some("), "{stderr}");
    assert_eq!(book2, run(tmp.path(), "p2", &prefix(&s, k2), &[]).1);

    // A flipped byte in a record in the middle: a clear error, no book.
    let j3 = tmp.path().join("j3");
    run(
        tmp.path(),
        "c",
        &s,
        &["--journal", j3.to_str().expect("utf8")],
    );
    let seg3 = segments(&j3).pop().expect("segment");
    let offs3 = record_offsets(&seg3);
    flip(&seg3, offs3[offs3.len() / 2] + 50);
    let out = ringex()
        .args(["recover", "--journal"])
        .arg(&j3)
        .arg("--book-out")
        .arg(tmp.path().join("b3"))
        .output()
        .expect("recover");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt"), "{err}");
    assert!(
        !tmp.path().join("b3").exists(),
        "no book from a corrupt journal"
    );
}

/// kill -9 at random moments: the recovered book is the book of exactly the first K
/// commands, and every acknowledged event is there. `RINGEX_CRASH_TRIALS` sets the count
/// (default 20; the long mode runs 100).
#[test]
fn kill_minus_nine_at_random_moments_loses_nothing_acknowledged() {
    let trials: u64 = std::env::var("RINGEX_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().expect("tmp");
    let s = script(5, 60_000);
    let path = tmp.path().join("big.csv");
    std::fs::write(&path, &s).expect("script");
    let mut rng = SplitMix64::new(42);
    let mut ks = Vec::new();
    let spawn = |j: &Path, acks: &Path| {
        spawn_run(
            &path,
            j,
            &[
                "--fsync".as_ref(),
                "batch".as_ref(),
                "--acks-out".as_ref(),
                acks.as_os_str(),
            ],
        )
    };
    let full_acks = tmp.path().join("acks-full");
    let full_bytes = acked_bytes(spawn(&tmp.path().join("full"), &full_acks), &full_acks);
    for trial in 0..trials {
        let j = tmp.path().join(format!("j{trial}"));
        let acks = tmp.path().join(format!("acks{trial}"));
        // Killed after a random share of what the whole run acknowledges.
        let at = rng.below(full_bytes);
        kill_after(spawn(&j, &acks), &j, &acks, at, &mut rng);
        if !j.join("edge.meta").exists() {
            continue; // killed before it wrote anything: nothing to recover
        }
        let (k, book, stderr) = recover(&j, &tmp.path().join(format!("b{trial}")));

        let expect = run(tmp.path(), &format!("p{trial}"), &prefix(&s, k), &[]).1;
        assert_eq!(
            book, expect,
            "trial {trial}: recovered book and balances != those after the first {k} commands"
        );
        // Every acknowledged event is durable: the recovered mark is at or past every ack.
        let (max_ack, replayed) = (max_ack(&acks), replayed(&stderr));
        assert!(
            replayed >= max_ack,
            "trial {trial}: acked {max_ack}, recovered {replayed} events"
        );
        ks.push(k);
    }
    assert!(
        ks.len() as u64 >= trials / 2,
        "most trials got far enough to journal"
    );
    eprintln!("recovered K per trial: {ks:?}");
    let partial = ks.iter().filter(|&&k| k > 0 && k < 60_000).count();
    assert!(
        partial as u64 >= trials / 4,
        "most kills landed mid-run: {ks:?}"
    );
}

/// Allocations of block orders filled partly before a restart carry on exactly as in one
/// uninterrupted run (the allocator's state is rebuilt from the journal).
#[test]
fn allocations_continue_across_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let defs = "instrument,ABC,0.01,1\nalloc_group,7,100:50;101:30;102:20\nalloc_group,8,200:1;201:1;202:1\n";
    let mut s1 = String::from(defs);
    let mut s2 = String::new();
    s1.push_str(
        "new,1,ABC,1,1,buy,limit,gtc,100,97,alloc=7\nnew,1,ABC,1,2,sell,limit,gtc,101,50,alloc=8\n",
    );
    for i in 0..20u64 {
        let line = format!(
            "new,{},ABC,2,{},sell,limit,ioc,100,{}\n",
            2 + i,
            10 + i,
            1 + i % 7
        );
        let buy = format!(
            "new,{},ABC,3,{},buy,limit,ioc,101,{}\n",
            2 + i,
            100 + i,
            1 + i % 4
        );
        let target = if i < 9 { &mut s1 } else { &mut s2 };
        target.push_str(&line);
        target.push_str(&buy);
    }
    let run_alloc = |name: &str, script: &str, journal: Option<&Path>| -> String {
        let path = tmp.path().join(format!("{name}.csv"));
        std::fs::write(&path, script).expect("script");
        let alloc = tmp.path().join(format!("{name}.alloc"));
        let mut c = ringex();
        c.arg("run")
            .arg(&path)
            .args(["--events-out", "/dev/null"])
            .arg("--alloc-out")
            .arg(&alloc);
        if let Some(j) = journal {
            c.arg("--journal").arg(j);
        }
        let out = c.output().expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(alloc).expect("alloc")
    };
    let j = tmp.path().join("j");
    let a1 = run_alloc("one", &s1, Some(&j));
    let a2 = run_alloc("two", &s2, Some(&j));
    let all = run_alloc("all", &format!("{s1}{s2}"), None);
    assert!(!a2.is_empty());
    assert_eq!(format!("{a1}{a2}"), all);
}

/// `recover` on a directory that does not exist is a clear error, not "command 0".
#[test]
fn recover_of_a_missing_directory_is_an_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = ringex()
        .args(["recover", "--journal"])
        .arg(tmp.path().join("nothing-here"))
        .output()
        .expect("ringex recover");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no journal directory"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// A real full filesystem (a 2 MiB tmpfs, where this machine lets the test mount one): the
/// run stops with a clear error and a non-zero exit, every acknowledged event is durable,
/// and what was journaled recovers to the book of the first K commands.
#[test]
fn a_full_disk_halts_the_run_and_no_ack_passes_what_is_durable() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mnt = tmp.path().join("tiny");
    std::fs::create_dir_all(&mnt).expect("dir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("cannot mount a tmpfs here (not root?): only the injected-failure tests run");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let s = script(6, 60_000);
    let path = tmp.path().join("big.csv");
    std::fs::write(&path, &s).expect("script");
    let j = mnt.join("j");
    let acks = tmp.path().join("acks");
    let out = ringex()
        .arg("run")
        .arg(&path)
        .arg("--events-out")
        .arg(tmp.path().join("events"))
        .arg("--journal")
        .arg(&j)
        .arg("--acks-out")
        .arg(&acks)
        .output()
        .expect("ringex run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a full disk must fail the run");
    assert!(stderr.contains("journal"), "{stderr}");
    let (k, book, rec_err) = recover(&j, &tmp.path().join("r.book"));
    assert!(k < 60_000, "{k}");
    let expect = run(tmp.path(), "prefix", &prefix(&s, k), &[]).1;
    assert_eq!(book, expect, "recovered state != first {k} commands");
    let (max_ack, replayed) = (max_ack(&acks), replayed(&rec_err));
    assert!(max_ack <= replayed, "acked {max_ack}, durable {replayed}");
}

/// The two newest snapshots are kept, with the journal the older one needs: a damaged newest
/// snapshot recovers from the older one plus the journal, to the same book and balances.
#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_older_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let j = tmp.path().join("journal");
    let s = script(8, 20_000);
    let book = run_with_snapshots(tmp.path(), &j, &s, 2000);
    let snaps = snapshots(&j);
    assert_eq!(
        snaps.len(),
        2,
        "the two newest snapshots are kept: {snaps:?}"
    );
    let (older, newest) = (snaps[0].clone(), snaps[1].clone());
    let mut bytes = std::fs::read(&newest).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&newest, bytes).expect("write");
    let (_, rb, stderr) = recover(&j, &tmp.path().join("r.book"));
    assert!(
        stderr.contains(&*older.file_name().expect("name").to_string_lossy()),
        "recovered from the older snapshot: {stderr}"
    );
    assert_eq!(rb, book);
}

/// Every row of a history store: orders, trades, transfers.
fn history_rows(db: &Path) -> String {
    let s = ringex_consumers::history::sqlite::SqliteStore::open(db).expect("store");
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        s.all_orders().expect("orders"),
        s.all_trades().expect("trades"),
        s.all_transfers().expect("transfers"),
        s.all_balance_changes().expect("balance changes")
    )
}

/// kill -9 during `ringex run --journal --history`, then `ringex recover --history`: the
/// store equals the store of one uninterrupted run of the commands the journal kept, every
/// event applied exactly once; `ringex reconcile` finds no difference and `ringex query`
/// answers from it.
#[test]
fn the_history_store_after_kill_minus_nine_equals_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = script(8, 30_000);
    let path = tmp.path().join("h.csv");
    std::fs::write(&path, &s).expect("script");
    let mut rng = SplitMix64::new(7);
    let mut partial = 0;
    let spawn = |j: &Path, db: &Path, acks: &Path| {
        spawn_run(
            &path,
            j,
            &[
                "--history".as_ref(),
                db.as_os_str(),
                "--acks-out".as_ref(),
                acks.as_os_str(),
            ],
        )
    };
    let full_acks = tmp.path().join("hacks-full");
    let full = spawn(
        &tmp.path().join("hfull"),
        &tmp.path().join("hfull.db"),
        &full_acks,
    );
    let full_bytes = acked_bytes(full, &full_acks);
    for trial in 0..12 {
        if partial >= 4 {
            break;
        }
        let j = tmp.path().join(format!("hj{trial}"));
        let db = tmp.path().join(format!("h{trial}.db"));
        let acks = tmp.path().join(format!("hacks{trial}"));
        // Killed between 1/8 and 7/8 of what the whole run acknowledges.
        let at = full_bytes / 8 + rng.below(full_bytes * 3 / 4);
        kill_after(spawn(&j, &db, &acks), &j, &acks, at, &mut rng);
        if !j.join("edge.meta").exists() {
            continue;
        }
        let out = ringex()
            .args(["recover", "--journal"])
            .arg(&j)
            .arg("--history")
            .arg(&db)
            .output()
            .expect("recover");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let k: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .strip_prefix("recovered through command ")
            .and_then(|k| k.parse().ok())
            .expect("K");
        eprintln!("trial {trial}: K = {k}");
        if k > 0 && k < 30_000 {
            partial += 1;
        }
        let whole = tmp.path().join(format!("w{trial}.db"));
        run(
            tmp.path(),
            &format!("hp{trial}"),
            &prefix(&s, k),
            &["--history", whole.to_str().expect("utf8")],
        );
        assert!(
            history_rows(&db) == history_rows(&whole),
            "trial {trial}: the store after recovery differs from one uninterrupted run of {k} commands"
        );
        let rec = ringex()
            .args(["reconcile", "--journal"])
            .arg(&j)
            .arg("--db")
            .arg(&db)
            .output()
            .expect("reconcile");
        assert!(
            rec.status.success(),
            "trial {trial}: {}",
            String::from_utf8_lossy(&rec.stdout)
        );
    }
    assert!(partial >= 2, "kills landed mid-run: {partial}");
    // The query CLI answers from the store.
    let db = tmp.path().join("h0.db");
    let q = ringex()
        .args(["query", "--db"])
        .arg(&db)
        .args(["open-orders", "--account", "1", "--symbol", "ABC"])
        .output()
        .expect("query");
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let text = String::from_utf8_lossy(&q.stdout);
    assert!(text.starts_with("# order,id,symbol"), "{text}");
    assert!(text
        .lines()
        .skip(1)
        .all(|l| l.contains(",ABC,1,") && l.contains(",active,")));
}

/// A history store kept for one journal, given with a new journal directory, is refused
/// with a clear error instead of being silently skipped (its events are not this journal's).
#[test]
fn a_history_store_ahead_of_its_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s.csv");
    std::fs::write(&s, script(7, 300)).unwrap();
    let db = dir.path().join("h.db");
    let first = ringex()
        .arg("run")
        .arg(&s)
        .arg("--journal")
        .arg(dir.path().join("j1"))
        .arg("--history")
        .arg(&db)
        .arg("--events-out")
        .arg(dir.path().join("e1.csv"))
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = ringex()
        .arg("run")
        .arg(&s)
        .arg("--journal")
        .arg(dir.path().join("j2"))
        .arg("--history")
        .arg(&db)
        .arg("--events-out")
        .arg(dir.path().join("e2.csv"))
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("belongs to another journal"), "{err}");
}
