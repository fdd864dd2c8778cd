//! Start-up shared by the command line, the server and the node: reading a command script,
//! recovering a journal directory (engine and edge state), and opening the history store
//! caught up with the journal.

use crate::meta::EdgeMeta;
use crate::script::{Script, ScriptError, ScriptItem};
use ringex_consumers::history::sqlite::SqliteStore;
use ringex_consumers::history::{History, HistoryConfig, HistoryError};
use ringex_consumers::recovery::{
    journal_events_timed_after, recover, RecoveryError, RecoveryReport,
};
use ringex_engine::pipeline::PipelineError;
use ringex_engine::state::EngineState;
use ringex_engine::{Command, InstrumentSpec};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

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
    /// Recovery refused to go on.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// The journal directory's edge state could not be read or written.
    #[error("journal directory {path}: {source}")]
    Meta {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The pipeline halted on a failure (a consumer failed, or the matcher panicked).
    #[error("the pipeline halted: {0}")]
    Halted(String),
    /// `recover` was pointed at a directory that does not exist.
    #[error(
        "no journal directory at {0}: give the --journal DIR of an earlier `ringex run --journal`"
    )]
    NoJournal(PathBuf),
    /// The journal failed while running (the events before the failure are durable).
    #[error("journal failed: {0}")]
    Journal(io::Error),
    /// The history store failed.
    #[error(transparent)]
    History(#[from] ringex_consumers::history::HistoryError),
}

/// Reads and parses a whole script with `script` as the edge; malformed lines are reported
/// on stderr and skipped. Input sequences continue after `cmd_seq`, and `meta` gets the
/// anchors that map them back to command numbers.
pub fn read_script(
    path: &Path,
    script: &mut Script,
    cmd_seq: u64,
    meta: &mut EdgeMeta,
) -> Result<(Vec<Command>, Vec<ScriptError>), RunError> {
    let script_err = |source| RunError::Script {
        path: path.to_path_buf(),
        source,
    };
    let input = BufReader::new(File::open(path).map_err(script_err)?);
    let mut cmds = Vec::new();
    let mut malformed = Vec::new();
    let mut seq = cmd_seq;
    for bytes in input.split(b'\n') {
        let mut bytes = bytes.map_err(script_err)?;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        // A line that is not UTF-8 is one malformed line, not the end of the run.
        let parsed = match String::from_utf8(bytes) {
            Ok(line) => script.parse_line(&line).map_err(|e| (e, line)),
            Err(b) => Err((
                script.bad_bytes_line(),
                String::from_utf8_lossy(b.as_bytes()).into_owned(),
            )),
        };
        match parsed {
            Ok(ScriptItem::Command { cmd, number, terms }) => {
                // An order's terms go just before it, under the same command line.
                for c in terms.into_iter().chain([cmd]) {
                    seq += 1;
                    meta.anchor(seq, number);
                    cmds.push(c);
                }
            }
            Ok(ScriptItem::Instrument(cmd, policy)) => {
                for c in [cmd].into_iter().chain(policy) {
                    seq += 1;
                    meta.anchor(seq, script.commands_read());
                    cmds.push(c);
                }
            }
            Ok(ScriptItem::AllocGroup(_)) | Ok(ScriptItem::Nothing) => {}
            Err((e, line)) => {
                tracing::warn!("{e}");
                eprintln!("{}: {e}: {line}", path.display());
                malformed.push(e);
            }
        }
    }
    Ok((cmds, malformed))
}

pub(crate) fn meta_err(dir: &Path) -> impl Fn(io::Error) -> RunError + '_ {
    move |source| RunError::Meta {
        path: dir.to_path_buf(),
        source,
    }
}

/// The state in a journal directory: edge state, engine state, recovery report.
pub fn recover_dir(
    dir: &Path,
) -> Result<(EdgeMeta, EngineState, Option<RecoveryReport>), RunError> {
    let meta = EdgeMeta::read(dir).map_err(meta_err(dir))?;
    let Some(mut meta) = meta else {
        return Ok((EdgeMeta::default(), EngineState::default(), None));
    };
    let rec = recover(dir)?;
    // Instruments whose definition never became durable are forgotten.
    meta.specs
        .retain(|s| rec.state.instruments.iter().any(|(i, _)| *i == s.id));
    // Assets are numbered in declaration order: those from the first one the engine does
    // not have on never became durable.
    let known = (0..meta.assets.len())
        .take_while(|&n| rec.state.assets.iter().any(|(a, _)| a.0 as usize == n))
        .count();
    meta.assets.truncate(known);
    Ok((meta, rec.state, Some(rec.report)))
}

/// The history consumer for a run: the SQLite store at `path`, caught up with the journal
/// in `journal` (events it holds that the store does not: a crash between the journal's
/// sync and the store's commit), with the script's symbols.
pub fn open_history(
    path: &Path,
    journal: Option<&Path>,
    specs: &[InstrumentSpec],
) -> Result<History<SqliteStore>, RunError> {
    let mut h = History::new(SqliteStore::open(path)?, HistoryConfig::default())?
        .with_symbols(specs.iter().map(|s| (s.id, s.symbol.clone())));
    if let Some(dir) = journal.filter(|d| d.is_dir()) {
        catch_up(&mut h, dir)?;
    }
    Ok(h)
}

/// Applies the journal's events after the store's last sequence; returns how many. Reads
/// the journal from the segment the store needs on. A store ahead of the journal (it was
/// kept for another journal directory) is refused: applying this journal to it would mix
/// two histories.
pub fn catch_up<S: ringex_consumers::history::HistoryStore>(
    h: &mut History<S>,
    dir: &Path,
) -> Result<u64, RunError> {
    // Recovery first: a torn tail is cut, so only durable events are applied.
    let (_, state, _) = recover_dir(dir)?;
    let after = h.applied();
    if after > state.event_seq {
        return Err(RunError::History(HistoryError::Format(format!(
            "the history store holds events up to {after} but the journal in {} ends at {}: \
             the store belongs to another journal (a new journal directory?); give the \
             store of this journal, or a new store file",
            dir.display(),
            state.event_seq
        ))));
    }
    let events = journal_events_timed_after(dir, after)?;
    if events.first().is_some_and(|(s, _, _)| *s > after + 1) {
        return Err(RunError::History(HistoryError::Format(format!(
            "the journal starts at event {} but the store holds only up to {after} (segments \
             were pruned after a snapshot): rebuild the store from a journal that starts at 1",
            events[0].0
        ))));
    }
    Ok(h.catch_up(events)?)
}

/// `ringex recover --history FILE`: brings the store up to the journal.
pub fn recover_history(journal: &Path, db: &Path) -> Result<(u64, u64), RunError> {
    let mut h = History::new(SqliteStore::open(db)?, HistoryConfig::default())?;
    let n = catch_up(&mut h, journal)?;
    Ok((n, h.applied()))
}

/// The snapshot consumer of a journal directory: a snapshot every `every` commands from a
/// replica of the recovered `state`, gated after the journal (`durable`), pruning the
/// segments the older of the two newest snapshots covers.
pub fn snapshotter(
    dir: &Path,
    every: u64,
    state: &EngineState,
    durable: ringex_consumers::journal::DurableSeq,
) -> ringex_consumers::snapshot::Snapshotter {
    ringex_consumers::snapshot::Snapshotter::new(
        ringex_consumers::snapshot::SnapshotConfig {
            dir: dir.to_path_buf(),
            every_commands: every.max(1),
            prune: true,
        },
        ringex_engine::BookReplica::from_state(state),
        durable,
        state.cmd_seq,
        state.event_seq,
    )
}
