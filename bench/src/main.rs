//! `ringex`: run command scripts, benchmark the pipeline, recover journals, replay LOBSTER.

use clap::{Parser, Subcommand};
use ringex_bench::run::{run_script, RunOptions};
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
    /// Feed a command script (FORMATS.md) through the engine and write its events and book.
    Run {
        /// The command script (CSV).
        script: PathBuf,
        /// Write the event log here (default: stdout).
        #[arg(long)]
        events_out: Option<PathBuf>,
        /// Write the final book here.
        #[arg(long)]
        book_out: Option<PathBuf>,
    },
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
        Cmd::Run {
            script,
            events_out,
            book_out,
        } => match run_script(&RunOptions {
            script,
            events_out,
            book_out,
        }) {
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
    }
}
