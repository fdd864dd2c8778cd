//! `ringex run`: feeds a command script through the engine and writes what came out.

use crate::csv::{write_book, EventCsv};
use crate::script::{Script, ScriptError, ScriptItem};
use ringex_engine::{Command, Event, Matcher, Sequence};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// What to run and where to write.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The command script.
    pub script: PathBuf,
    /// Where the event log goes (stdout when `None`).
    pub events_out: Option<PathBuf>,
    /// Where the final book goes (not written when `None`).
    pub book_out: Option<PathBuf>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Commands sent to the engine.
    pub commands: u64,
    /// Event lines written.
    pub events: u64,
    /// Lines that could not be parsed (reported and skipped).
    pub malformed: Vec<ScriptError>,
}

/// Why a run could not happen at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The script could not be read.
    #[error("cannot read script {path}: {source}")]
    Script {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn out_file(path: &Path) -> Result<BufWriter<File>, RunError> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|source| RunError::Output {
            path: path.to_path_buf(),
            source,
        })
}

/// Runs a script through a matcher, writing events as they come.
pub fn run_script(opts: &RunOptions) -> Result<RunReport, RunError> {
    let script_err = |source| RunError::Script {
        path: opts.script.clone(),
        source,
    };
    let input = BufReader::new(File::open(&opts.script).map_err(script_err)?);
    let mut events_out: Box<dyn Write> = match &opts.events_out {
        Some(p) => Box::new(out_file(p)?),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let events_path = opts.events_out.clone().unwrap_or_else(|| "stdout".into());
    let out_err = |source| RunError::Output {
        path: events_path.clone(),
        source,
    };
    let mut script = Script::new();
    let mut matcher = Matcher::default();
    let mut csv = EventCsv::new();
    let mut report = RunReport::default();
    let mut events: Vec<Event> = Vec::with_capacity(1024);
    let mut seq = 0u64;
    let mut send = |cmd: &Command,
                    script: &Script,
                    out: &mut dyn Write,
                    report: &mut RunReport|
     -> io::Result<()> {
        seq += 1;
        report.commands += 1;
        events.clear();
        matcher.process(Sequence(seq), cmd, &mut events);
        for e in &events {
            if csv.write(script, e, &mut *out)?.is_some() {
                report.events += 1;
            }
        }
        Ok(())
    };
    for line in input.lines() {
        let line = line.map_err(script_err)?;
        match script.parse_line(&line) {
            Ok(ScriptItem::Command { cmd, .. }) | Ok(ScriptItem::Instrument(cmd)) => {
                send(&cmd, &script, &mut events_out, &mut report).map_err(out_err)?
            }
            Ok(ScriptItem::AllocGroup(_)) | Ok(ScriptItem::Nothing) => {}
            Err(e) => {
                tracing::warn!("{e}");
                eprintln!("{}: {e}: {line}", opts.script.display());
                report.malformed.push(e);
            }
        }
    }
    events_out.flush().map_err(out_err)?;
    if let Some(p) = &opts.book_out {
        let mut w = out_file(p)?;
        let err = |source| RunError::Output {
            path: p.clone(),
            source,
        };
        write_book(&script, |i| matcher.resting_orders(i), &mut w).map_err(err)?;
        w.flush().map_err(err)?;
    }
    Ok(report)
}
