//! `ringex run`: feeds a command script through the real pipeline (gateway → input ring →
//! matcher → output ring → consumers) and writes what came out.

use crate::csv::{write_book, EventCsv};
use crate::script::{Script, ScriptError, ScriptItem};
use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::{Command, Consumer, Event, Pipeline, PipelineError, Sequence};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Commands sent to the engine (definitions included).
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
    /// The pipeline did not start.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

fn out_file(path: &Path) -> Result<BufWriter<File>, RunError> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|source| RunError::Output {
            path: path.to_path_buf(),
            source,
        })
}

/// A consumer that writes the CSV event log, flushing at the end of every ring batch.
pub struct CsvEventWriter<W: Write + Send + 'static> {
    script: Arc<Script>,
    csv: EventCsv,
    out: W,
    /// The first write error; later events are not written.
    pub error: Option<io::Error>,
}

impl<W: Write + Send + 'static> CsvEventWriter<W> {
    /// Writes to `out`, naming instruments from `script`.
    pub fn new(script: Arc<Script>, out: W) -> Self {
        CsvEventWriter {
            script,
            csv: EventCsv::new(),
            out,
            error: None,
        }
    }

    /// Lines written.
    pub fn lines(&self) -> u64 {
        self.csv.last_seq()
    }
}

impl<W: Write + Send + 'static> Consumer for CsvEventWriter<W> {
    fn name(&self) -> &str {
        "csv-events"
    }

    fn on_event(&mut self, e: &Event, _: Sequence, end_of_batch: bool) {
        if self.error.is_some() {
            return;
        }
        let r = self
            .csv
            .write(&self.script, e, &mut self.out)
            .and_then(|_| {
                if end_of_batch {
                    self.out.flush()
                } else {
                    Ok(())
                }
            });
        if let Err(err) = r {
            self.error = Some(err);
        }
    }

    fn on_shutdown(&mut self) {
        if let Err(err) = self.out.flush() {
            self.error.get_or_insert(err);
        }
    }
}

/// Reads and parses a whole script; malformed lines are reported on stderr and skipped.
pub fn read_script(path: &Path) -> Result<(Script, Vec<Command>, Vec<ScriptError>), RunError> {
    let script_err = |source| RunError::Script {
        path: path.to_path_buf(),
        source,
    };
    let input = BufReader::new(File::open(path).map_err(script_err)?);
    let mut script = Script::new();
    let mut cmds = Vec::new();
    let mut malformed = Vec::new();
    for line in input.lines() {
        let line = line.map_err(script_err)?;
        match script.parse_line(&line) {
            Ok(ScriptItem::Command { cmd, .. }) | Ok(ScriptItem::Instrument(cmd)) => cmds.push(cmd),
            Ok(ScriptItem::AllocGroup(_)) | Ok(ScriptItem::Nothing) => {}
            Err(e) => {
                tracing::warn!("{e}");
                eprintln!("{}: {e}: {line}", path.display());
                malformed.push(e);
            }
        }
    }
    Ok((script, cmds, malformed))
}

/// Runs a script through the pipeline.
pub fn run_script(opts: &RunOptions) -> Result<RunReport, RunError> {
    let (script, cmds, malformed) = read_script(&opts.script)?;
    let script = Arc::new(script);
    let events_path = opts.events_out.clone().unwrap_or_else(|| "stdout".into());
    let out_err = |source| RunError::Output {
        path: events_path.clone(),
        source,
    };
    let sink: Box<dyn Write + Send> = match &opts.events_out {
        Some(p) => Box::new(out_file(p)?),
        None => Box::new(BufWriter::new(io::stdout())),
    };
    let mut builder = Pipeline::builder();
    let writer = builder.add_consumer(
        CsvEventWriter::new(Arc::clone(&script), sink),
        ConsumerOptions::default(),
    );
    let pipeline = builder.start()?;
    let mut gateway = pipeline.gateway();
    for cmd in &cmds {
        if gateway.submit_at(*cmd).is_err() {
            break;
        }
    }
    drop(gateway);
    let mut done = pipeline.shutdown();
    let mut report = RunReport {
        commands: done.commands_processed,
        events: 0,
        malformed,
    };
    if let Some(mut w) = done.take_consumer::<CsvEventWriter<Box<dyn Write + Send>>>(writer) {
        report.events = w.lines();
        if let Some(e) = w.error.take() {
            return Err(out_err(e));
        }
    }
    if let Some(p) = &opts.book_out {
        let mut w = out_file(p)?;
        let err = |source| RunError::Output {
            path: p.clone(),
            source,
        };
        if let Some(m) = &done.matcher {
            write_book(&script, |i| m.resting_orders(i), &mut w).map_err(err)?;
        }
        w.flush().map_err(err)?;
    }
    Ok(report)
}
