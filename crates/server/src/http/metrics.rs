//! `GET /metrics`: the node's counters and gauges in the Prometheus text format (version 0.0.4).

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Answers counted by status class, updated by `Shared::finish`.
#[derive(Debug, Default)]
pub(crate) struct HttpMetrics {
    /// `2xx` answers.
    pub(crate) ok: AtomicU64,
    /// `4xx` answers.
    pub(crate) client_errors: AtomicU64,
    /// `5xx` answers.
    pub(crate) server_errors: AtomicU64,
    /// The client port's connections: open, refused by a cap, cut off by a timeout (kept by the accept loop).
    pub(crate) connections: Arc<tally_net::serve::ServeMetrics>,
}

impl HttpMetrics {
    /// Counts one answer.
    pub(crate) fn count(&self, status: StatusCode) {
        let counter = if status.is_server_error() {
            &self.server_errors
        } else if status.is_client_error() {
            &self.client_errors
        } else {
            &self.ok
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Appends one metric with its help and type lines.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// The watch gauges and counters, and the process's resident memory (what a watcher costs).
fn watch_metrics(out: &mut String, watch: &crate::driver::watch::WatchMetrics) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let help = "Watches and blocking reads open on this node.";
    metric(out, "tally_watchers", "gauge", help, &[("", load(&watch.watchers))]);
    let help = "Watchers cut off with slow_watcher because they fell behind by more than their buffer.";
    metric(out, "tally_watch_slow_total", "counter", help, &[("", load(&watch.slow_total))]);
    let help = "The oldest index the watch history covers (older starts answer 410 compacted).";
    metric(out, "tally_watch_history_oldest_index", "gauge", help, &[("", load(&watch.history_oldest_index))]);
    if let Some(bytes) = resident_bytes() {
        let help = "Resident memory of the process, in bytes.";
        metric(out, "process_resident_memory_bytes", "gauge", help, &[("", bytes)]);
    }
}

/// The process's resident set size, from `/proc/self/status` (`VmRSS`, in kB); `None` where there is none.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kilobytes * 1024)
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let published = &state.published;
    let m = &published.metrics;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(2048);
    metric(&mut out, "tally_raft_term", "gauge", "The current Raft term.", &[("", load(&m.term))]);
    metric(
        &mut out,
        "tally_raft_is_leader",
        "gauge",
        "1 if this node leads.",
        &[("", u64::from(published.is_leader()))],
    );
    metric(&mut out, "tally_raft_last_index", "gauge", "The last log index.", &[("", load(&m.last_index))]);
    metric(&mut out, "tally_raft_commit_index", "gauge", "The commit index.", &[("", published.commit_index())]);
    metric(&mut out, "tally_raft_applied_index", "gauge", "The applied index.", &[("", published.applied_index())]);
    let changes = load(&m.leader_changes);
    metric(&mut out, "tally_raft_leader_changes_total", "counter", "Leader changes seen.", &[("", changes)]);
    let batches = load(&m.batches);
    metric(
        &mut out,
        "tally_node_batches_total",
        "counter",
        "Node loop batches (at most one fsync each).",
        &[("", batches)],
    );
    metric(
        &mut out,
        "tally_node_events_total",
        "counter",
        "Requests and peer messages handled.",
        &[("", load(&m.events))],
    );
    metric(
        &mut out,
        "tally_node_requests_in_flight",
        "gauge",
        "Requests waiting for the node.",
        &[("", load(&m.in_flight))],
    );
    let flag = |a: &std::sync::atomic::AtomicBool| u64::from(a.load(Ordering::Relaxed));
    let alarms = [("{kind=\"no_space\"}", flag(&m.alarm_no_space)), ("{kind=\"quota\"}", flag(&m.alarm_quota))];
    let help = "1 while a storage alarm is raised: the disk is full, or the data passed the quota.";
    metric(&mut out, "tally_storage_alarm", "gauge", help, &alarms);
    let help = "Bytes of the data directory (log segments and snapshots).";
    metric(&mut out, "tally_storage_bytes", "gauge", help, &[("", load(&m.storage_bytes))]);
    let help = "The storage quota in bytes (0: none).";
    metric(&mut out, "tally_storage_quota_bytes", "gauge", help, &[("", load(&m.storage_quota_bytes))]);
    let dropped = state.peers.dropped_messages();
    metric(&mut out, "tally_peer_dropped_messages_total", "counter", "Peer messages dropped.", &[("", dropped)]);
    let peers = &state.peers;
    let refused = [("", peers.rejected_connections())];
    metric(&mut out, "tally_peer_refused_connections_total", "counter", "Peer connections refused.", &refused);
    let mismatches = [("", peers.identity_mismatches())];
    let help = "Peer connections closed for a frame from another node than the one they proved to be.";
    metric(&mut out, "tally_peer_identity_mismatches_total", "counter", help, &mismatches);
    let evicted = [("", peers.evicted_connections())];
    metric(&mut out, "tally_peer_evicted_connections_total", "counter", "Peer connections evicted.", &evicted);
    let http = &state.http_metrics;
    let answers = [
        ("{class=\"2xx\"}", load(&http.ok)),
        ("{class=\"4xx\"}", load(&http.client_errors)),
        ("{class=\"5xx\"}", load(&http.server_errors)),
    ];
    metric(&mut out, "tally_http_responses_total", "counter", "Client API answers by status class.", &answers);
    out.push_str(&http.connections.render_prometheus("tally_http"));
    watch_metrics(&mut out, &m.watch);
    let mut response = (StatusCode::OK, out).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}
