//! Hand-written scenarios, one per rule of FORMATS.md: each directory under
//! `tests/scenarios/` holds `script.csv`, the expected `events.csv` and `book.csv`, and
//! optionally `stderr.txt` (lines that must appear in what `ringex run` reports).

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

fn run(dir: &Path) -> (String, String, String, String, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (events, book) = (tmp.path().join("events.csv"), tmp.path().join("book.csv"));
    let alloc = tmp.path().join("alloc.csv");
    let md = tmp.path().join("md.csv");
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
        .output()
        .expect("run ringex");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::read_to_string(events).expect("events"),
        std::fs::read_to_string(book).expect("book"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read_to_string(alloc).expect("alloc"),
        std::fs::read_to_string(md).expect("md"),
    )
}

#[test]
fn every_scenario_gives_exactly_the_expected_events_and_book() {
    let all = scenarios();
    assert!(all.len() >= 12, "only {} scenarios", all.len());
    let mut failures = Vec::new();
    for dir in &all {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let (events, book, stderr, alloc, md) = run(dir);
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
        assert_eq!(run(&dir).0, run(&dir).0);
    }
}
