//! `ringex node run | submit | read`: the command line.

use super::*;

/// Waits until `f` holds, polling every 20 ms, for at most `limit`.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `ringex node …`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum NodeCmd {
    /// Run a node of one shard (primary or standby, by lease) until SIGTERM.
    Run(NodeOptions),
    /// Publish a command script's commands to their shards (the router).
    Submit {
        /// The NATS server, deployment and shard count.
        #[command(flatten)]
        target: ClusterArgs,
        /// The command script (docs/formats.md).
        script: PathBuf,
        /// The submission's id: its messages' ids are `<id>.<index>.<shard>` (the index of
        /// the message's first command), so the same submission made again with the same
        /// `--batch` publishes nothing twice (within the command streams' two-minute
        /// duplicate window). Default: a digest of the script's bytes.
        #[arg(long)]
        id: Option<String>,
        /// Commands packed into one message per shard (1 to 8192).
        #[arg(long, default_value_t = DEFAULT_BATCH)]
        batch: usize,
    },
    /// Print every shard's events, merged (per instrument in order), as they come: the event
    /// lines of the script format, as `ringex run --events-out` writes them (one shard's
    /// stream reads exactly as a run of the same script), or JSON lines.
    Read {
        /// The NATS server, deployment and shard count.
        #[command(flatten)]
        target: ClusterArgs,
        /// The command script the events came from: its symbols, tick and lot sizes and
        /// assets print prices and quantities as decimals. Without it, instruments print as
        /// their ids, prices in ticks and quantities in lots.
        #[arg(long)]
        script: Option<PathBuf>,
        /// `csv` (the script format's event lines) or `json` (one object a line, with the
        /// shard and the engine's event sequence).
        #[arg(long, value_enum, default_value_t = ReadFormat::Csv)]
        format: ReadFormat,
        /// Stop after printing this many lines.
        #[arg(long)]
        limit: Option<u64>,
    },
}

/// Which deployment a client command talks to.
#[derive(Clone, Debug, clap::Args)]
pub struct ClusterArgs {
    /// The NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The deployment's name.
    #[arg(long, default_value = "ringex")]
    pub cluster: String,
    /// How many shards.
    #[arg(long)]
    pub shards: u32,
    /// NATS credentials.
    #[command(flatten)]
    pub auth: NatsAuth,
}

/// Runs `ringex node …`.
pub fn node_cmd(cmd: NodeCmd) -> Result<String, NodeError> {
    match cmd {
        NodeCmd::Run(o) => run_node(o).map(|_| String::new()),
        NodeCmd::Submit {
            target,
            script,
            id,
            batch,
        } => {
            let mut sc = crate::script::Script::new();
            let mut meta = crate::meta::EdgeMeta::default();
            let (cmds, malformed) = crate::startup::read_script(&script, &mut sc, 0, &mut meta)?;
            let id = match id {
                Some(id) => id,
                None => script_digest(&script)?,
            };
            let rt = tokio::runtime::Runtime::new().map_err(NodeError::Runtime)?;
            let done = rt.block_on(async {
                let r = Router::connect_with(
                    &target.nats,
                    &target.auth,
                    &target.cluster,
                    target.shards,
                )
                .await?
                .with_batch(batch);
                r.submit_as(&id, &cmds, 1024).await
            })?;
            Ok(format!(
                "submission {id}: {} commands as {} messages to {} shard(s) ({} already \
                 there, {} publishes retried); {} malformed line(s) skipped\n",
                cmds.len(),
                done.messages,
                target.shards,
                done.duplicates,
                done.retries,
                malformed.len()
            ))
        }
        NodeCmd::Read {
            target,
            script,
            format,
            limit,
        } => {
            let mut printer = EventPrinter::new(script.as_deref(), format)?;
            let rt = tokio::runtime::Runtime::new().map_err(NodeError::Runtime)?;
            rt.block_on(async {
                let client = target.auth.connect(&target.nats, "ringex-reader").await?;
                let names = Names::new(&target.cluster);
                let mut rx = follow(jetstream::new(client), &names, target.shards).await?;
                let mut n = 0;
                let mut line = String::new();
                while let Some((shard, seq, e)) = rx.recv().await {
                    line.clear();
                    if printer.line(shard, seq, &e, &mut line) {
                        print!("{line}");
                        n += 1;
                        if limit.is_some_and(|l| n >= l) {
                            break;
                        }
                    }
                }
                Ok(String::new())
            })
        }
    }
}

/// How `ringex node read` prints events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadFormat {
    /// The event lines of the script format.
    #[default]
    Csv,
    /// One JSON object a line.
    Json,
}

/// Prints events as `ringex run --events-out` does (numbering the lines from 1), or as JSON.
pub struct EventPrinter {
    script: crate::script::Script,
    /// Whether the script came from the user (else instruments are learnt from the stream).
    given: bool,
    csv: crate::csv::EventCsv,
    format: ReadFormat,
    /// The line being written (reused).
    buf: Vec<u8>,
}

impl EventPrinter {
    /// A printer with the definitions of `script` (if any).
    pub fn new(script: Option<&std::path::Path>, format: ReadFormat) -> Result<Self, NodeError> {
        let mut sc = crate::script::Script::new();
        if let Some(p) = script {
            let mut meta = crate::meta::EdgeMeta::default();
            crate::startup::read_script(p, &mut sc, 0, &mut meta)?;
        }
        Ok(EventPrinter {
            script: sc,
            given: script.is_some(),
            csv: crate::csv::EventCsv::new(),
            format,
            buf: Vec::new(),
        })
    }

    /// Appends the line of event `seq` of `shard` to `out`; false when the format has none.
    pub fn line(&mut self, shard: u32, seq: u64, e: &Event, out: &mut String) -> bool {
        if let (false, ringex_engine::EventKind::InstrumentAdded(d)) = (self.given, e.kind) {
            self.learn(d.id);
        }
        self.buf.clear();
        match self.csv.write(&self.script, e, &mut self.buf) {
            Ok(Some(_)) => {}
            _ => return false,
        }
        let text = String::from_utf8_lossy(&self.buf);
        match self.format {
            ReadFormat::Csv => out.push_str(&text),
            ReadFormat::Json => {
                out.push_str(&csv_line_json(text.trim_end(), shard, seq));
                out.push('\n');
            }
        }
        true
    }

    /// An instrument the stream defines that no script named: its id as its symbol, tick and
    /// lot of one unit.
    fn learn(&mut self, id: InstrumentId) {
        if self.script.spec(id).is_some() {
            return;
        }
        let mut specs = self.script.specs().to_vec();
        if let Ok(s) = ringex_engine::InstrumentSpec::new(
            id,
            &id.0.to_string(),
            rust_decimal::Decimal::ONE,
            rust_decimal::Decimal::ONE,
        ) {
            specs.push(s);
        }
        self.script = crate::script::Script::restored(
            specs,
            self.script.groups().to_vec(),
            self.script.assets().to_vec(),
            0,
        );
    }
}

/// An event line of the script format as a JSON object: its fields by name, with the shard
/// and the engine's event sequence.
fn csv_line_json(line: &str, shard: u32, seq: u64) -> String {
    let f: Vec<&str> = line.split(',').collect();
    let names: &[&str] = match f[0] {
        "accepted" => &["seq", "symbol", "order_id"],
        "rejected" => &["seq", "symbol", "order_id", "code"],
        "fill" => &[
            "seq",
            "symbol",
            "taker_order_id",
            "maker_order_id",
            "price",
            "qty",
        ],
        "cancelled" => &["seq", "symbol", "order_id", "qty", "reason"],
        "modified" => &["seq", "symbol", "order_id", "price", "qty"],
        "expired" => &["seq", "symbol", "order_id", "qty"],
        "status" => &["seq", "symbol", "status"],
        "deposited" | "withdrawn" => &["seq", "account", "asset", "amount"],
        _ => &[],
    };
    let mut o = serde_json::Map::new();
    o.insert("shard".into(), shard.into());
    o.insert("event_seq".into(), seq.into());
    o.insert("event".into(), f[0].into());
    for (k, v) in names.iter().zip(&f[1..]) {
        let v = match (*k, v.parse::<u64>()) {
            ("seq", Ok(n)) => serde_json::Value::from(n),
            _ => serde_json::Value::from(*v),
        };
        o.insert((*k).into(), v);
    }
    serde_json::Value::Object(o).to_string()
}

/// A submission id from the script's bytes: CRC-32 and length.
fn script_digest(path: &std::path::Path) -> Result<String, NodeError> {
    let bytes = std::fs::read(path).map_err(|source| RunError::Script {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(format!("s{:08x}{:x}", crc32fast::hash(&bytes), bytes.len()))
}
