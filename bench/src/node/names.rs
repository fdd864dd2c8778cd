//! [`Names`]: the streams and subjects of one deployment.

/// The names of one deployment's streams and subjects: `cluster` (letters, digits, `_`,
/// `-`; `ringex` by default) keeps deployments (and tests) on one NATS server apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub(crate) cluster: String,
}

impl Names {
    /// The names of `cluster`.
    pub fn new(cluster: &str) -> Self {
        Names {
            cluster: cluster.to_string(),
        }
    }
    /// The command stream of a shard: `<CLUSTER>_CMD_<shard>`.
    pub fn cmd_stream(&self, shard: u32) -> String {
        format!("{}_CMD_{shard}", self.cluster.to_uppercase())
    }
    /// The subject of a shard's commands: `<cluster>.cmd.<shard>`.
    pub fn cmd_subject(&self, shard: u32) -> String {
        format!("{}.cmd.{shard}", self.cluster)
    }
    /// The event stream of a shard: `<CLUSTER>_EVT_<shard>`.
    pub fn evt_stream(&self, shard: u32) -> String {
        format!("{}_EVT_{shard}", self.cluster.to_uppercase())
    }
    /// The subject of a shard's events: `<cluster>.evt.<shard>`.
    pub fn evt_subject(&self, shard: u32) -> String {
        format!("{}.evt.{shard}", self.cluster)
    }
    /// The stream of the leases: `<CLUSTER>_LEASES`.
    pub fn lease_stream(&self) -> String {
        format!("{}_LEASES", self.cluster.to_uppercase())
    }
    /// The lease subject of a shard: `<cluster>.lease.<shard>`.
    pub fn lease_subject(&self, shard: u32) -> String {
        format!("{}.lease.{shard}", self.cluster)
    }
}
