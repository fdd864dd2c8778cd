//! Drop copy: `ws://HOST/v1/dropcopy` (docs/server.md, "Drop copy").
//!
//! A trader key's back office gets every execution report of its account — whichever
//! WebSocket session or REST call caused it — as the order session writes them, each after
//! the journal has made its event durable. `{"type":"auth","key":K}` binds the connection to
//! the key's account; `{"type":"resume","after":SEQ}` starts the stream with every report of
//! an event after `SEQ`, read back from the journal, then goes on live with no gap and no
//! duplicate; `{"type":"resume"}` starts it live. Nothing is sent before a `resume`.
//!
//! No gap: the connection registers with the report router before it reads the journal, so
//! every event the router routes after the registration reaches its queue, and every event
//! routed before it is in the journal already (the router is gated after the journal). No
//! duplicate: live reports at or below the last event replayed are skipped.

use crate::serve::protocol::ProtocolError;
use crate::serve::router::Report;
use crate::serve::session::{close, DropCopySession, CLOSE_AWAY, CLOSE_POLICY};
use crate::serve::App;
use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

fn error(code: &'static str, message: impl Into<String>) -> String {
    ProtocolError::new(code, message, None).to_json()
}

/// Sends `msgs` in one flush; false when the client is gone or too slow.
async fn send(socket: &mut WebSocket, msgs: Vec<String>, app: &App) -> bool {
    let write = async {
        for m in msgs {
            if socket.feed(Message::Text(m.into())).await.is_err() {
                return false;
            }
        }
        socket.flush().await.is_ok()
    };
    matches!(
        tokio::time::timeout(app.limits.write_timeout, write).await,
        Ok(true)
    )
}

/// Runs one drop-copy connection to its end.
pub async fn run(mut socket: WebSocket, app: Arc<App>) {
    crate::serve::metrics::sessions("drop_copy", 1.0);
    serve(&mut socket, &app).await;
    crate::serve::metrics::sessions("drop_copy", -1.0);
}

async fn serve(socket: &mut WebSocket, app: &Arc<App>) {
    let deadline = tokio::time::Instant::now() + app.limits.auth_timeout;
    let mut account = None;
    let mut dc: Option<DropCopySession> = None;
    let mut last = 0u64;
    let mut halted = app.halted_watch();
    let mut stopping = app.stopping_watch();
    let mut heard = Instant::now();
    let mut ping = tokio::time::interval(app.limits.idle_timeout / 3);
    ping.tick().await;
    loop {
        let live = async {
            match dc.as_mut().and_then(|d| d.live()) {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = socket.recv() => {
                heard = Instant::now();
                let text = match msg {
                    None | Some(Ok(Message::Close(_))) | Some(Err(_)) => return,
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(_)) => continue,
                };
                let v: Value = match serde_json::from_str(&text) {
                    Ok(v) => v,
                    Err(e) => {
                        if !send(socket, vec![error("bad_json", format!("not JSON: {e}"))], app).await {
                            return;
                        }
                        continue;
                    }
                };
                let reply = match (v["type"].as_str(), account) {
                    (Some("auth"), None) => {
                        let key = v["key"].as_str().unwrap_or("");
                        match app.keys.get(key) {
                            Some(&a) => {
                                account = Some(a);
                                vec![json!({"type": "authenticated", "account": a.0}).to_string()]
                            }
                            None if app.admin_keys.contains(key) => {
                                vec![error("forbidden", "a drop copy is an account's: use its trader key")]
                            }
                            None => vec![error("bad_key", "unknown API key")],
                        }
                    }
                    (Some("auth"), Some(_)) => vec![error("invalid_message", "already authenticated")],
                    (Some("resume"), Some(a)) if dc.is_none() => {
                        // Registered first: nothing routed from now on is missed.
                        let mut d = DropCopySession::new(Arc::clone(app), a);
                        let published = app.pipeline.status().events_published;
                        match v.get("after") {
                            None => {
                                // Live only: from the events routed after the registration.
                                last = 0;
                                dc = Some(d);
                                vec![json!({"type": "resumed", "after": null}).to_string()]
                            }
                            Some(x) => match x.as_u64() {
                                None => vec![error("invalid_message", "\"after\": an event sequence (a whole number)")],
                                Some(after) if after > published => vec![error(
                                    "invalid_message",
                                    format!("after {after} is past the journal's end (event {published})"),
                                )],
                                Some(after) => {
                                    let dir = app.journal.clone();
                                    let read = tokio::task::spawn_blocking(move || {
                                        ringex_consumers::recovery::journal_events_after(&dir, after)
                                    })
                                    .await;
                                    match read {
                                        Ok(Ok(events)) if events.first().is_none_or(|(s, _)| *s == after + 1) => {
                                            let mut out = vec![json!({"type": "resumed", "after": after}).to_string()];
                                            last = after;
                                            for (seq, event) in events {
                                                last = seq;
                                                d.on_event(Report { seq, event }, &mut out);
                                            }
                                            dc = Some(d);
                                            out
                                        }
                                        Ok(Ok(events)) => vec![error(
                                            "invalid_message",
                                            format!(
                                                "the journal no longer holds the events after {after} (pruned after a snapshot): it starts at event {}",
                                                events.first().map_or(0, |(s, _)| *s)
                                            ),
                                        )],
                                        Ok(Err(e)) => vec![error("unavailable", format!("journal: {e}"))],
                                        Err(e) => vec![error("unavailable", format!("journal: {e}"))],
                                    }
                                }
                            },
                        }
                    }
                    (Some("resume"), Some(_)) => vec![error("invalid_message", "the stream has started already")],
                    (Some(_), None) => vec![error("not_authenticated", "send {\"type\":\"auth\",\"key\":\"...\"} first")],
                    _ => vec![error("unknown_type", "a drop copy takes auth and resume")],
                };
                if !send(socket, reply, app).await {
                    return;
                }
            }
            r = live => {
                let Some(r) = r else {
                    if dc.as_ref().is_some_and(|d| d.overflowed()) {
                        close(socket, CLOSE_POLICY, "slow client: the drop copy's queue overflowed".into()).await;
                    }
                    return;
                };
                let mut out = Vec::new();
                let d = dc.as_mut().expect("live reports come with a session");
                // What the journal replay sent already.
                if r.seq > last {
                    d.on_event(r, &mut out);
                }
                while out.len() < 256 {
                    match d.live().map(|rx| rx.try_recv()) {
                        Some(Ok(r)) if r.seq > last => d.on_event(r, &mut out),
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
                if !out.is_empty() && !send(socket, out, app).await {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline), if account.is_none() => {
                close(socket, CLOSE_POLICY, "not authenticated in time".into()).await;
                return;
            }
            _ = ping.tick() => {
                if heard.elapsed() >= app.limits.idle_timeout {
                    close(socket, CLOSE_POLICY, "idle".into()).await;
                    return;
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            _ = halted.changed() => {
                close(socket, CLOSE_AWAY, "the engine stopped".into()).await;
                return;
            }
            _ = stopping.changed() => {
                close(socket, CLOSE_AWAY, "the server is stopping".into()).await;
                return;
            }
        }
    }
}
