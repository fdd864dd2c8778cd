//! The harness's own logic on short runs: every recorded command is seen once per stage,
//! warm-up is not recorded, the slowest stage dominates every stage per command, and the
//! output files are written and parse. No test asserts a speed.

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use ringex_bench::harness::report::write_all;
use ringex_bench::harness::{run, timed, BenchConfig};
use ringex_consumers::journal::{FsyncPolicy, Journal, JournalConfig};
use ringex_consumers::market_data::MarketData;
use ringex_engine::workload::ExchangeCoreWorkload;

#[test]
fn every_stage_records_every_measured_command_and_outputs_parse() {
    let tmp = tempfile::tempdir().expect("tmp");
    let work = ExchangeCoreWorkload::default().generate(6_000);
    let mut jc = JournalConfig::new(tmp.path().join("j"));
    jc.fsync = FsyncPolicy::None;
    let consumers = vec![timed(Journal::new(jc)), timed(MarketData::new(10).0)];
    let cfg = BenchConfig {
        commands: 5_000,
        warmup: 1_000,
        rate: Some(200_000),
        ring: 1 << 10,
        matcher_core: None,
        consumer_cores: Vec::new(),
        idle: None,
        grouped: vec![true, false, true, true],
    };
    let r = run(&work, consumers, &cfg, |_| {}).expect("run");
    let names: Vec<&str> = r.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["ring", "journal", "market-data", "slowest"]);
    for s in &r.stages {
        assert_eq!(
            s.hist.len(),
            5_000,
            "{}: each measured command once, warm-up excluded",
            s.name
        );
        assert!(s.hist.min() >= 1);
    }
    let slowest = &r.stages[3].hist;
    for s in &r.stages[..3] {
        // Per command, slowest = max over stages, so it dominates every quantile.
        for q in [0.5, 0.9, 0.99, 1.0] {
            assert!(
                slowest.value_at_quantile(q) >= s.hist.value_at_quantile(q),
                "{} at {q}",
                s.name
            );
        }
    }
    let header = vec![("title".to_string(), "test".to_string())];
    let out = tmp.path().join("out");
    let baselines = [ringex_bench::harness::report::Baseline {
        name: "the ring alone".into(),
        hist: Some(r.stages[0].hist.clone()),
    }];
    write_all(&out, &r, &baselines, &header, 1.0).expect("outputs");
    // The chart: a log latency axis and the baseline in the legend.
    let svg = std::fs::read_to_string(out.join("latency.svg")).expect("svg");
    assert!(svg.contains("log scale") && svg.contains("the ring alone"));
    let json = std::fs::read_to_string(out.join("percentiles.json")).expect("json");
    for n in [
        "\"ring\"",
        "\"journal\"",
        "\"market-data\"",
        "\"slowest\"",
        "\"p99.99\"",
    ] {
        assert!(json.contains(n), "{n} in {json}");
    }
    assert!(std::fs::read_to_string(out.join("percentiles.txt"))
        .expect("txt")
        .contains("p99.9"));
    let hgrm = std::fs::read_to_string(out.join("journal.hgrm")).expect("hgrm");
    assert!(hgrm.starts_with("       Value     Percentile TotalCount"));
    assert!(hgrm.contains("Total count    =         5000"), "{hgrm}");
    let log = std::fs::read(out.join("latency.hlog")).expect("hlog");
    let tags: Vec<String> = IntervalLogIterator::new(&log)
        .filter_map(|e| match e {
            Ok(LogEntry::Interval(h)) => h.tag().map(|t| t.as_str().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(tags, vec!["ring", "journal", "market-data", "slowest"]);
    let svg = std::fs::read_to_string(out.join("latency.svg")).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("slowest"));
}
