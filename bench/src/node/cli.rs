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
    },
    /// Print every shard's events, merged (per instrument in order), as they come.
    Read {
        /// The NATS server, deployment and shard count.
        #[command(flatten)]
        target: ClusterArgs,
        /// Stop after this many events.
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
}

/// Runs `ringex node …`.
pub fn node_cmd(cmd: NodeCmd) -> Result<String, NodeError> {
    match cmd {
        NodeCmd::Run(o) => run_node(o).map(|_| String::new()),
        NodeCmd::Submit {
            target:
                ClusterArgs {
                    nats: url,
                    cluster,
                    shards,
                },
            script,
        } => {
            let mut sc = crate::script::Script::new();
            let mut meta = crate::meta::EdgeMeta::default();
            let (cmds, malformed) = crate::startup::read_script(&script, &mut sc, 0, &mut meta)?;
            let rt = tokio::runtime::Runtime::new().map_err(NodeError::Runtime)?;
            let n = rt.block_on(async {
                let r = Router::connect(&url, &cluster, shards).await?;
                r.submit(&cmds, 1024).await
            })?;
            Ok(format!(
                "{} commands published as {n} messages to {shards} shard(s); {} malformed line(s) skipped\n",
                cmds.len(),
                malformed.len()
            ))
        }
        NodeCmd::Read {
            target:
                ClusterArgs {
                    nats: url,
                    cluster,
                    shards,
                },
            limit,
        } => {
            let rt = tokio::runtime::Runtime::new().map_err(NodeError::Runtime)?;
            rt.block_on(async {
                let client = async_nats::connect(&url).await.map_err(nats("connect"))?;
                let mut rx = follow(jetstream::new(client), &Names::new(&cluster), shards).await?;
                let mut n = 0;
                while let Some((shard, seq, e)) = rx.recv().await {
                    println!("{shard},{seq},{:?}", e.kind);
                    n += 1;
                    if limit.is_some_and(|l| n >= l) {
                        break;
                    }
                }
                Ok(String::new())
            })
        }
    }
}
