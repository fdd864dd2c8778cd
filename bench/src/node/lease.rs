//! [`Lease`]: who of a shard's nodes is primary, as a message in a stream that keeps one
//! message per subject and expires it.

use super::*;

/// A shard's lease: a message on the shard's lease subject that expires after the lease
/// time. Taking it publishes with `Nats-Expected-Last-Subject-Sequence: 0` (only when no
/// live message is there); renewing publishes with the revision the holder last wrote
/// (compare-and-set); releasing deletes the holder's own message only (a lease that
/// another node holds by then is left alone).
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

    /// Gives back the lease held at `revision`, at once. If it is no longer this holder's
    /// (expired, taken by another node), nothing is touched: the message at `revision` is
    /// gone then, and deleting it does nothing to the new holder's.
    pub async fn release(&self, revision: u64) -> Result<(), NodeError> {
        let s = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(nats("lease stream"))?;
        // Ours only if the subject's current message is the one we wrote.
        match s.get_last_raw_message_by_subject(&self.subject).await {
            Ok(m) if m.sequence == revision => {
                let _ = s.delete_message(revision).await;
            }
            _ => {}
        }
        Ok(())
    }
}
