//! Hand-written scenarios, one per rule of docs/formats.md: each directory under
//! `tests/scenarios/` holds `script.csv`, the expected `events.csv` and `book.csv`, and
//! optionally `stderr.txt` (lines that must appear in what `ringex run` reports), `md.csv`,
//! `alloc.csv` and `balances.csv` (the market-data feed, the allocations, the balances), and
//! `args.txt` (more flags for `ringex run`, one a line).

use std::path::{Path, PathBuf};
use std::process::Command;

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenario directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("script.csv").exists())
        .collect();
    v.sort();
    v
}

struct Outputs {
    events: String,
    book: String,
    stderr: String,
    alloc: String,
    md: String,
    balances: String,
}

fn run(dir: &Path) -> Outputs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (events, book) = (tmp.path().join("events.csv"), tmp.path().join("book.csv"));
    let alloc = tmp.path().join("alloc.csv");
    let md = tmp.path().join("md.csv");
    let balances = tmp.path().join("balances.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_ringex"))
        .arg("run")
        .arg(dir.join("script.csv"))
        .arg("--events-out")
        .arg(&events)
        .arg("--book-out")
        .arg(&book)
        .arg("--alloc-out")
        .arg(&alloc)
        .arg("--md-out")
        .arg(&md)
        .arg("--balances-out")
        .arg(&balances)
        .args(
            std::fs::read_to_string(dir.join("args.txt"))
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty()),
        )
        .output()
        .expect("run ringex");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Outputs {
        events: std::fs::read_to_string(events).expect("events"),
        book: std::fs::read_to_string(book).expect("book"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        alloc: std::fs::read_to_string(alloc).expect("alloc"),
        md: std::fs::read_to_string(md).expect("md"),
        balances: std::fs::read_to_string(balances).expect("balances"),
    }
}

#[test]
fn every_scenario_gives_exactly_the_expected_events_and_book() {
    let all = scenarios();
    assert!(all.len() >= 12, "only {} scenarios", all.len());
    let mut failures = Vec::new();
    for dir in &all {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let Outputs {
            events,
            book,
            stderr,
            alloc,
            md,
            balances,
        } = run(dir);
        if let Ok(want) = std::fs::read_to_string(dir.join("balances.csv")) {
            if balances != want {
                failures.push(format!(
                    "{name}: balances\n--- got\n{balances}--- want\n{want}"
                ));
            }
        }
        if let Ok(want) = std::fs::read_to_string(dir.join("md.csv")) {
            if md != want {
                failures.push(format!("{name}: md\n--- got\n{md}--- want\n{want}"));
            }
        }
        if let Ok(want) = std::fs::read_to_string(dir.join("alloc.csv")) {
            if alloc != want {
                failures.push(format!("{name}: alloc\n--- got\n{alloc}--- want\n{want}"));
            }
        }
        let want_events = std::fs::read_to_string(dir.join("events.csv")).expect("events.csv");
        let want_book = std::fs::read_to_string(dir.join("book.csv")).expect("book.csv");
        if events != want_events {
            failures.push(format!(
                "{name}: events\n--- got\n{events}--- want\n{want_events}"
            ));
        }
        if book != want_book {
            failures.push(format!(
                "{name}: book\n--- got\n{book}--- want\n{want_book}"
            ));
        }
        if let Ok(want) = std::fs::read_to_string(dir.join("stderr.txt")) {
            for line in want.lines() {
                if !stderr.contains(line) {
                    failures.push(format!("{name}: stderr lacks {line:?}:\n{stderr}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_same_script_gives_the_same_bytes() {
    for dir in scenarios() {
        let (a, b) = (run(&dir), run(&dir));
        assert_eq!(a.events, b.events);
        assert_eq!(a.balances, b.balances);
    }
}
