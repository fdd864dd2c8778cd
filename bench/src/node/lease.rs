//! [`Lease`]: who of a shard's nodes is primary, as a message in a stream that keeps one
//! message per subject and expires it.

use super::*;

/// A shard's lease: a message on the shard's lease subject that expires after the lease
/// time. Taking it publishes with `Nats-Expected-Last-Subject-Sequence: 0` (only when no
/// live message is there); renewing publishes with the revision the holder last wrote
/// (compare-and-set); releasing purges the subject.
///
/// The lease stream keeps one message per subject and expires it after the lease time:
/// JetStream's key-value buckets are built the same way (the client's bucket API does not
/// talk to Debian's nats-server 2.9; the stream does).
pub struct Lease {
    js: jetstream::Context,
    stream: String,
    subject: String,
}

impl Lease {
    /// The lease of `shard`.
    pub fn new(js: jetstream::Context, names: &Names, shard: u32) -> Self {
        Lease {
            js,
            stream: names.lease_stream(),
            subject: names.lease_subject(shard),
        }
    }

    async fn put(&self, holder: &str, expect: u64) -> Result<u64, NodeError> {
        let mut h = async_nats::HeaderMap::new();
        h.insert(
            "Nats-Expected-Last-Subject-Sequence",
            expect.to_string().as_str(),
        );
        let ack = self
            .js
            .send_publish(
                self.subject.clone(),
                Publish::build()
                    .payload(Bytes::from(holder.to_string()))
                    .headers(h),
            )
            .await
            .map_err(nats("lease"))?
            .await
            .map_err(nats("lease"))?;
        Ok(ack.sequence)
    }

    /// Takes the lease if nobody holds it; the revision to renew with.
    pub async fn acquire(&self, holder: &str) -> Result<u64, NodeError> {
        self.put(holder, 0).await
    }

    /// Renews a lease held at `revision`; the new revision.
    pub async fn renew(&self, holder: &str, revision: u64) -> Result<u64, NodeError> {
        self.put(holder, revision).await
    }

    /// Gives the lease back at once.
    pub async fn release(&self) -> Result<(), NodeError> {
        let s = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(nats("lease stream"))?;
        s.purge()
            .filter(self.subject.clone())
            .await
            .map_err(nats("lease release"))?;
        Ok(())
    }
}
