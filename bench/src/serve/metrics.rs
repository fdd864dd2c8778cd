//! Prometheus metrics through the `metrics` facade and `metrics-exporter-prometheus`.
//!
//! - `ringex_commands_total{kind}`: commands taken from the network, by kind.
//! - `ringex_events_total{kind}`: events routed (durable), by kind.
//! - `ringex_rejects_total{code}`: rejections by reject code.
//! - `ringex_ring_occupancy{ring}`: slots in use in the input and output rings.
//! - `ringex_consumer_lag_events{consumer}`: events published but not yet processed, per
//!   consumer; `ringex_consumer_sequence{consumer}`.
//! - `ringex_order_roundtrip_seconds`: from the gateway's submit to the last execution report
//!   of the command handed to the session's socket (histogram).
//! - `ringex_messages_refused_total{reason}`, `ringex_md_updates_total`.
//! - `ringex_sessions{kind}`: open order-entry and market-data sessions;
//!   `ringex_sessions_dropped_total{reason}`.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ringex_engine::pipeline::PipelineStatus;
use ringex_engine::{Event, EventKind};
use std::sync::OnceLock;

/// The process's recorder (installed once; every server in the process reports into it).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3,
                100e-3, 1.0,
            ];
            let b = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("ringex_order_roundtrip_seconds".into()),
                    &buckets,
                )
                .expect("non-empty bucket list");
            let recorder = b.build_recorder();
            let h = recorder.handle();
            // Fails only when another recorder is already installed (then its metrics win).
            let _ = metrics::set_global_recorder(recorder);
            h
        })
        .clone()
}

/// The kind of an event as a label.
pub fn event_kind(e: &Event) -> &'static str {
    match e.kind {
        EventKind::Accepted { .. } => "accepted",
        EventKind::Rejected { .. } => "rejected",
        EventKind::Fill { .. } => "fill",
        EventKind::Cancelled { .. } => "cancelled",
        EventKind::Modified { .. } => "modified",
        EventKind::Expired { .. } => "expired",
        EventKind::InstrumentStatus { .. } => "instrument_status",
        EventKind::AccountStatus { .. } => "account_status",
        EventKind::InstrumentAdded(_) => "instrument_added",
        EventKind::AssetAdded { .. } => "asset_added",
        EventKind::Deposited { .. } => "deposited",
        EventKind::Withdrawn { .. } => "withdrawn",
        EventKind::FillFees { .. } => "fill_fees",
        EventKind::SnapshotRequested { .. } => "snapshot_requested",
        EventKind::OrderTerms { .. } => "order_terms",
        EventKind::Triggered { .. } => "triggered",
        EventKind::MatchPolicySet { .. } => "match_policy_set",
    }
}

/// Counts one routed event.
pub fn event(e: &Event) {
    counter!("ringex_events_total", "kind" => event_kind(e)).increment(1);
    if let EventKind::Rejected { code, .. } = e.kind {
        counter!("ringex_rejects_total", "code" => code.as_str()).increment(1);
    }
}

/// Counts one command taken from the network.
pub fn command(kind: &'static str) {
    counter!("ringex_commands_total", "kind" => kind).increment(1);
}

/// Records one command's round trip inside the server.
pub fn roundtrip(secs: f64) {
    histogram!("ringex_order_roundtrip_seconds").record(secs);
}

/// Requests sent by sessions whose last report has not reached them yet (all sessions).
pub fn pending_requests(delta: f64) {
    gauge!("ringex_session_pending_requests").increment(delta);
}

/// Sessions open now, by kind (`order_entry`, `market_data`).
pub fn sessions(kind: &'static str, delta: f64) {
    gauge!("ringex_sessions", "kind" => kind).increment(delta);
}

/// A session dropped, by reason.
pub fn dropped(reason: &'static str) {
    counter!("ringex_sessions_dropped_total", "reason" => reason).increment(1);
}

/// Ring occupancy and consumer lag from a status read (`submitted`: commands put into the
/// input ring so far).
pub fn pipeline(s: &PipelineStatus, submitted: u64) {
    gauge!("ringex_ring_occupancy", "ring" => "input")
        .set(submitted.saturating_sub(s.commands_processed) as f64);
    let slowest = s.consumers.iter().map(|c| c.sequence).min().unwrap_or(0);
    gauge!("ringex_ring_occupancy", "ring" => "output")
        .set(s.events_published.saturating_sub(slowest) as f64);
    gauge!("ringex_commands_processed").set(s.commands_processed as f64);
    gauge!("ringex_events_published").set(s.events_published as f64);
    for c in &s.consumers {
        gauge!("ringex_consumer_lag_events", "consumer" => c.name.clone())
            .set(s.events_published.saturating_sub(c.sequence) as f64);
        gauge!("ringex_consumer_sequence", "consumer" => c.name.clone()).set(c.sequence as f64);
    }
}

/// A client message refused (rate limit), by reason.
pub fn dropped_message(reason: &'static str) {
    counter!("ringex_messages_refused_total", "reason" => reason).increment(1);
}

/// One market-data update fanned out.
pub fn md_update() {
    counter!("ringex_md_updates_total").increment(1);
}
