//! `ringex`: run command scripts, benchmark the pipeline, recover journals, replay LOBSTER.

use clap::{Parser, Subcommand};
use ringex_bench::cli::run::{recover_to_book, run_script, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ringex",
    version,
    about = "ringex exchange core: run, bench, recover"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Feed a command script (docs/formats.md) through the engine and write its events and book.
    Run(RunOptions),
    /// The latency harness: the full pipeline on a workload, HDR histograms per stage.
    Bench(ringex_bench::cli::bench::BenchArgs),
    /// Replay LOBSTER messages and check the book against LOBSTER's after every message.
    Lobster {
        /// The message file (CSV), or a LOBSTER sample zip.
        message: PathBuf,
        /// The orderbook file (default: the message file's name with `orderbook`).
        orderbook: Option<PathBuf>,
        /// Also measure replay throughput (matcher alone and full pipeline), checking off.
        #[arg(long)]
        throughput: bool,
    },
    /// Recover a journal directory, write its book, and print the last durable command.
    Recover {
        /// The journal directory.
        #[arg(long)]
        journal: PathBuf,
        /// Write the recovered book here.
        #[arg(long)]
        book_out: Option<PathBuf>,
        /// Write the recovered balances here (`balance,<account>,<asset>,<total>,<held>`).
        #[arg(long)]
        balances_out: Option<PathBuf>,
        /// Also bring this history store (SQLite) up to the journal: the events it does not
        /// hold yet are applied, exactly once.
        #[arg(long)]
        history: Option<PathBuf>,
    },
    /// Query the order history store (`ringex run --history FILE`). Prices are in ticks,
    /// quantities in lots.
    Query {
        /// The store (SQLite file).
        #[arg(long, required_unless_present = "pg")]
        db: Option<PathBuf>,
        /// A PostgreSQL store instead (a URL or `host=… dbname=…`; built with `--features
        /// postgres`).
        #[arg(long, conflicts_with = "db")]
        pg: Option<String>,
        #[command(subcommand)]
        what: ringex_bench::cli::query::Query,
    },
    /// Serve the engine over the network: WebSocket order entry and market data, REST,
    /// Prometheus metrics and a live web page (built with `--features serve`).
    #[cfg(feature = "serve")]
    Serve(ringex_bench::serve::ServeOptions),
    /// Hot standby and scale-out on NATS JetStream: run a shard's node, publish commands
    /// to the shards, read their events (built with `--features nats`).
    #[cfg(feature = "nats")]
    #[command(subcommand)]
    Node(ringex_bench::node::NodeCmd),
    /// Compare the history store's active orders with the books recovered from the journal;
    /// prints every difference and exits non-zero when there is one.
    Reconcile {
        /// The journal directory.
        #[arg(long)]
        journal: PathBuf,
        /// The store (SQLite file).
        #[arg(long, required_unless_present = "pg")]
        db: Option<PathBuf>,
        /// A PostgreSQL store instead (built with `--features postgres`).
        #[arg(long, conflicts_with = "db")]
        pg: Option<String>,
    },
}

/// The answer from the SQLite store (`--db`) or the PostgreSQL one (`--pg`).
fn store_answer<T>(
    db: Option<PathBuf>,
    pg: Option<String>,
    sqlite: impl FnOnce(&std::path::Path) -> Result<T, ringex_bench::startup::RunError>,
    postgres: impl FnOnce(&str) -> Result<T, ringex_bench::startup::RunError>,
) -> Result<T, ringex_bench::startup::RunError> {
    match (db, pg) {
        (_, Some(url)) => postgres(&url),
        (Some(db), None) => sqlite(&db),
        (None, None) => Err(ringex_bench::startup::RunError::History(
            ringex_consumers::history::HistoryError::Format("give --db FILE or --pg URL".into()),
        )),
    }
}

/// `--pg` in a build without PostgreSQL.
#[cfg(not(feature = "postgres"))]
fn no_pg() -> ringex_bench::startup::RunError {
    ringex_bench::startup::RunError::History(ringex_consumers::history::HistoryError::Format(
        "--pg needs a build with --features postgres".into(),
    ))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(opts) => match run_script(&opts) {
            Ok(report) => {
                if !report.malformed.is_empty() {
                    eprintln!("{} malformed line(s) skipped", report.malformed.len());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringex run: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Bench(args) => match ringex_bench::cli::bench::bench(&args) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringex bench: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Lobster {
            message,
            orderbook,
            throughput,
        } => match ringex_bench::cli::lobster::run(&message, orderbook.as_deref(), throughput) {
            Ok((text, failed)) => {
                print!("{text}");
                if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("ringex lobster: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Query { db, pg, what } => match store_answer(
            db,
            pg,
            |db| ringex_bench::cli::query::query(db, &what),
            |_url| {
                #[cfg(feature = "postgres")]
                return ringex_bench::cli::query::query_pg(_url, &what);
                #[cfg(not(feature = "postgres"))]
                return Err(no_pg());
            },
        ) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringex query: {e}");
                ExitCode::FAILURE
            }
        },
        #[cfg(feature = "serve")]
        Cmd::Serve(opts) => {
            let listen = opts.listen;
            match ringex_bench::serve::start(opts) {
                Ok(server) => {
                    eprintln!(
                        "ringex serve: listening on http://{} (web page /, order entry \
                         ws://{0}/v1/orders/ws, market data ws://{0}/v1/md, metrics /metrics); \
                         Ctrl-C stops",
                        server.addr
                    );
                    match server.join() {
                        Ok(r) => {
                            eprintln!(
                                "ringex serve: stopped after {} commands, {} events",
                                r.commands_processed, r.events_published
                            );
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("ringex serve: {e}");
                            ExitCode::FAILURE
                        }
                    }
                }
                Err(e) => {
                    eprintln!("ringex serve ({listen}): {e}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "nats")]
        Cmd::Node(cmd) => match ringex_bench::node::node_cmd(cmd) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringex node: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Reconcile { journal, db, pg } => {
            let r = store_answer(
                db,
                pg,
                |db| ringex_bench::cli::query::reconcile_cmd(&journal, db),
                |_url| {
                    #[cfg(feature = "postgres")]
                    return ringex_bench::cli::query::reconcile_pg(&journal, _url);
                    #[cfg(not(feature = "postgres"))]
                    return Err(no_pg());
                },
            );
            match r {
                Ok(diffs) if diffs.is_empty() => {
                    println!("the store and the journal's books agree");
                    ExitCode::SUCCESS
                }
                Ok(diffs) => {
                    for d in &diffs {
                        println!("{d}");
                    }
                    eprintln!("ringex reconcile: {} difference(s)", diffs.len());
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("ringex reconcile: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Recover {
            journal,
            book_out,
            balances_out,
            history,
        } => {
            match recover_to_book(&journal, book_out.as_deref(), balances_out.as_deref()).and_then(
                |r| match &history {
                    Some(db) => {
                        let (n, at) = ringex_bench::cli::query::recover_history(&journal, db)?;
                        eprintln!("history: {n} events applied, the store holds events up to {at}");
                        Ok(r)
                    }
                    None => Ok(r),
                },
            ) {
                Ok((k, report)) => {
                    if let Some(r) = report {
                        eprintln!(
                        "recovery: snapshot {:?}, {} records / {} events replayed, torn tail {:?}, {:.1} ms",
                        r.snapshot,
                        r.records,
                        r.events,
                        r.torn_tail,
                        r.elapsed.as_secs_f64() * 1e3
                    );
                    }
                    println!("recovered through command {k}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ringex recover: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
