//! [`NatsAuth`]: how nodes, routers and readers prove who they are to NATS — a user and
//! password, a token, or a creds file (or credentials in the URL,
//! `nats://user:password@host:4222`). `bench/nats/ringex-nats.conf` is a server
//! configuration with per-subject permissions for each role.

use super::*;

/// NATS credentials (at most one kind).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct NatsAuth {
    /// The NATS user (with `--nats-password`).
    #[arg(long)]
    pub nats_user: Option<String>,
    /// The NATS user's password.
    #[arg(long)]
    pub nats_password: Option<String>,
    /// A NATS token.
    #[arg(long)]
    pub nats_token: Option<String>,
    /// A NATS creds file (JWT and NKey seed).
    #[arg(long)]
    pub nats_creds: Option<PathBuf>,
}

impl NatsAuth {
    /// A user and password.
    pub fn user(user: &str, password: &str) -> Self {
        NatsAuth {
            nats_user: Some(user.into()),
            nats_password: Some(password.into()),
            ..Default::default()
        }
    }

    /// Connects to `url` as `name` with these credentials.
    pub async fn connect(&self, url: &str, name: &str) -> Result<async_nats::Client, NodeError> {
        let o = match (
            &self.nats_user,
            &self.nats_password,
            &self.nats_token,
            &self.nats_creds,
        ) {
            (None, None, None, None) => async_nats::ConnectOptions::new(),
            (Some(u), Some(p), None, None) => {
                async_nats::ConnectOptions::with_user_and_password(u.clone(), p.clone())
            }
            (None, None, Some(t), None) => async_nats::ConnectOptions::with_token(t.clone()),
            (None, None, None, Some(f)) => async_nats::ConnectOptions::with_credentials_file(f)
                .await
                .map_err(|e| NodeError::Nats(format!("creds file {}: {e}", f.display())))?,
            _ => {
                return Err(NodeError::Nats(
                    "give one of --nats-user with --nats-password, --nats-token, --nats-creds"
                        .into(),
                ))
            }
        };
        o.name(name).connect(url).await.map_err(nats("connect"))
    }
}
