//! Outputs of `ringex bench`: the percentile table (text and JSON), HdrHistogram logs
//! (`.hlog`, and `.hgrm` percentile distributions), and a percentile-distribution plot
//! (SVG) with one line per stage.

use crate::harness::{BenchResult, StageResult};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2Serializer;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

const QUANTILES: [(&str, f64); 6] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
    ("max", 1.0),
];

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    if q >= 1.0 {
        h.max() as f64 / 1e3
    } else {
        h.value_at_quantile(q) as f64 / 1e3
    }
}

/// The percentile table as text.
pub fn table(r: &BenchResult) -> String {
    let mut s = format!(
        "throughput: {:.0} commands/s, {:.0} events/s over {} measured commands\n\n",
        r.commands_per_sec, r.events_per_sec, r.commands
    );
    let _ = write!(s, "{:<14}{:>10}", "stage (µs)", "count");
    for (n, _) in QUANTILES {
        let _ = write!(s, "{n:>11}");
    }
    s.push('\n');
    for st in &r.stages {
        let _ = write!(s, "{:<14}{:>10}", st.name, st.hist.len());
        for (_, q) in QUANTILES {
            let _ = write!(s, "{:>11.1}", us(&st.hist, q));
        }
        s.push('\n');
    }
    s
}

/// The percentile table as JSON.
pub fn json(r: &BenchResult, header: &[(String, String)]) -> String {
    let mut s = String::from("{\n  \"config\": {");
    for (i, (k, v)) in header.iter().enumerate() {
        let _ = write!(
            s,
            "{}\n    \"{}\": \"{}\"",
            if i > 0 { "," } else { "" },
            k,
            v.replace('"', "'")
        );
    }
    let _ = write!(
        s,
        "\n  }},\n  \"commands_per_sec\": {:.1},\n  \"events_per_sec\": {:.1},\n  \"commands\": {},\n  \"stages\": [",
        r.commands_per_sec, r.events_per_sec, r.commands
    );
    for (i, st) in r.stages.iter().enumerate() {
        let _ = write!(
            s,
            "{}\n    {{\"name\": \"{}\", \"count\": {}, \"unit\": \"us\"",
            if i > 0 { "," } else { "" },
            st.name,
            st.hist.len()
        );
        for (n, q) in QUANTILES {
            let _ = write!(s, ", \"{n}\": {:.3}", us(&st.hist, q));
        }
        s.push('}');
    }
    s.push_str("\n  ]\n}\n");
    s
}

/// HdrHistogram's percentile distribution text (the `.hgrm` format), values in µs.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:14.2}", 1.0 / (1.0 - q))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "{:12.3} {:14.12} {:10} {}",
            v.value_iterated_to() as f64 / 1e3,
            q,
            v.count_since_last_iteration(),
            inv
        );
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1e3,
        h.stdev() / 1e3
    );
    let _ = writeln!(
        s,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / 1e3,
        h.len()
    );
    s
}

/// Writes every output into `dir`.
pub fn write_all(
    dir: &Path,
    r: &BenchResult,
    baselines: &[Baseline],
    header: &[(String, String)],
    secs: f64,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut head = String::new();
    for (k, v) in header {
        let _ = writeln!(head, "# {k}: {v}");
    }
    std::fs::write(dir.join("percentiles.txt"), format!("{head}\n{}", table(r)))?;
    std::fs::write(dir.join("percentiles.json"), json(r, header))?;
    for st in &r.stages {
        std::fs::write(dir.join(format!("{}.hgrm", st.name)), hgrm(&st.hist))?;
    }
    let mut log = Vec::new();
    {
        let mut ser = V2Serializer::new();
        let mut b = IntervalLogWriterBuilder::new();
        b.add_comment("ringex bench: one interval per stage, values in ns");
        let mut w = b.begin_log_with(&mut log, &mut ser)?;
        for st in &r.stages {
            let tag = Tag::new(&st.name);
            w.write_histogram(&st.hist, Duration::ZERO, Duration::from_secs_f64(secs), tag)
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
        }
    }
    std::fs::File::create(dir.join("latency.hlog"))?.write_all(&log)?;
    plot(&dir.join("latency.svg"), &r.stages, baselines, header)
        .map_err(|e| io::Error::other(e.to_string()))
}

/// A same-run baseline drawn beside the stages: its latency distribution, and a note for
/// the legend (its throughput against ours, say).
pub struct Baseline {
    /// Legend label.
    pub name: String,
    /// Its latency histogram (ns), when it measured one.
    pub hist: Option<Histogram<u64>>,
}

/// The percentile-distribution chart in the style of HdrHistogram's plots: x = percentile
/// on the 1/(1-p) log scale, y = latency on a log scale (µs), every stage a solid line and
/// every same-run baseline a dashed one; baselines without a latency distribution appear as
/// legend notes.
pub fn plot(
    path: &Path,
    stages: &[StageResult],
    baselines: &[Baseline],
    header: &[(String, String)],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let (ylo, yhi) = latency_axis(stages, baselines);
    let title = header
        .iter()
        .find(|(k, _)| k == "title")
        .map_or("ringex latency by percentile".to_string(), |(_, v)| {
            v.clone()
        });
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .margin_right(45)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((1f64..100_000f64).log_scale(), (ylo..yhi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency from intended send time (µs, log scale)")
        .x_label_formatter(&|x| {
            let p = format!("{:.3}", 100.0 * (1.0 - 1.0 / x));
            format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
        })
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y}")
            }
        })
        .draw()?;
    let colors = [
        RED,
        BLUE,
        GREEN,
        MAGENTA,
        CYAN,
        BLACK,
        RGBColor(255, 140, 0),
        RGBColor(128, 0, 128),
    ];
    let points = |h: &Histogram<u64>| percentile_points(h, ylo, yhi);
    // "slowest" first, wide and pale, so the stage it follows stays visible on top of it.
    let mut order: Vec<usize> = (0..stages.len()).collect();
    order.sort_by_key(|&i| stages[i].name != "slowest");
    for i in order {
        let st = &stages[i];
        let c = if st.name == "slowest" {
            RGBColor(190, 190, 190)
        } else {
            colors[i % colors.len()]
        };
        let w = if st.name == "slowest" { 6 } else { 2 };
        chart
            .draw_series(LineSeries::new(points(&st.hist), c.stroke_width(w)))?
            .label(st.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(w)));
    }
    let grey = RGBColor(110, 110, 110);
    for b in baselines {
        match &b.hist {
            Some(h) => {
                let pts = points(h);
                // Dashed: every other segment.
                let dashes: Vec<Vec<(f64, f64)>> = pts
                    .windows(2)
                    .enumerate()
                    .filter(|(k, _)| k % 2 == 0)
                    .map(|(_, w)| w.to_vec())
                    .collect();
                let mut first = true;
                for d in dashes {
                    let s = chart.draw_series(LineSeries::new(d, grey.stroke_width(2)))?;
                    if first {
                        first = false;
                        s.label(b.name.clone()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 8, y)], grey.stroke_width(2))
                        });
                    }
                }
            }
            None => {
                // A note in the legend only.
                chart
                    .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?
                    .label(b.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], WHITE.stroke_width(1))
                    });
            }
        }
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The latency axis in µs: whole decades around every histogram's minimum and maximum.
fn latency_axis(stages: &[StageResult], baselines: &[Baseline]) -> (f64, f64) {
    let hists = stages
        .iter()
        .map(|s| &s.hist)
        .chain(baselines.iter().filter_map(|b| b.hist.as_ref()));
    let (mut lo, mut hi) = (f64::MAX, 0f64);
    for h in hists {
        lo = lo.min(h.min().max(1) as f64 / 1e3);
        hi = hi.max(h.max().max(1) as f64 / 1e3);
    }
    if lo > hi {
        (lo, hi) = (0.1, 10.0);
    }
    let ylo = 10f64.powf(lo.log10().floor()).max(0.01);
    let yhi = 10f64.powf(hi.log10().ceil()).max(ylo * 10.0);
    (ylo, yhi)
}

/// A histogram as (1/(1−p), µs) points, clamped to the axis.
fn percentile_points(h: &Histogram<u64>, ylo: f64, yhi: f64) -> Vec<(f64, f64)> {
    h.iter_quantiles(5)
        .map(|v| {
            let q = v.quantile_iterated_to().min(0.99999);
            (
                1.0 / (1.0 - q),
                (v.value_iterated_to() as f64 / 1e3).clamp(ylo, yhi),
            )
        })
        .collect()
}
