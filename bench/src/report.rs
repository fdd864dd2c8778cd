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
    plot(&dir.join("latency.svg"), &r.stages, header).map_err(|e| io::Error::other(e.to_string()))
}

/// The percentile-distribution chart: x = percentile on the 1/(1-p) log scale, y = µs.
pub fn plot(
    path: &Path,
    stages: &[StageResult],
    header: &[(String, String)],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let ymax = stages
        .iter()
        .map(|s| s.hist.value_at_quantile(0.99999))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        / 1e3;
    let title = header
        .iter()
        .find(|(k, _)| k == "title")
        .map_or("ringex latency by percentile".to_string(), |(_, v)| {
            v.clone()
        });
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..100_000f64).log_scale(), 0f64..ymax * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency from intended send time (µs)")
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 1.0 / x);
            format!("{p:.3}%").replace(".000%", "%")
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
    for (i, st) in stages.iter().enumerate() {
        let c = colors[i % colors.len()];
        let pts: Vec<(f64, f64)> = st
            .hist
            .iter_quantiles(5)
            .map(|v| {
                let q = v.quantile_iterated_to().min(0.99999);
                (1.0 / (1.0 - q), v.value_iterated_to() as f64 / 1e3)
            })
            .collect();
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
            .label(st.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
