//! The counters of a served port, for `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Connection counters of one port. Shared (`Arc`) between the accept loop and whoever renders `/metrics`.
#[derive(Debug, Default)]
pub struct ServeMetrics {
    /// Connections open now.
    open: AtomicU64,
    /// Connections accepted (admitted under the caps).
    accepted: AtomicU64,
    /// Connections closed at once because the connection cap was reached.
    refused_cap: AtomicU64,
    /// Connections closed at once because their address reached the per-IP cap.
    refused_per_ip: AtomicU64,
    /// Failed `accept` calls (e.g. out of file descriptors).
    accept_errors: AtomicU64,
    /// TLS handshakes that failed (bad or missing client certificate, not TLS at all, ...).
    tls_failures: AtomicU64,
    /// Connections cut off because the TLS handshake took longer than its deadline.
    timeout_handshake: AtomicU64,
    /// Connections cut off because a request head took longer than the header timeout.
    timeout_header: AtomicU64,
    /// Requests answered `408` because their body took longer than the body timeout.
    timeout_body: AtomicU64,
    /// Connections closed after the idle timeout.
    timeout_idle: AtomicU64,
}

/// One counter read.
fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Adds one.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl ServeMetrics {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        load(&self.open)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        load(&self.accepted)
    }

    /// Connections refused by the connection cap, and by the per-IP cap.
    pub fn refused(&self) -> (u64, u64) {
        (load(&self.refused_cap), load(&self.refused_per_ip))
    }

    /// Timeouts: TLS handshake, header, body, idle.
    pub fn timed_out(&self) -> [u64; 4] {
        [load(&self.timeout_handshake), load(&self.timeout_header), load(&self.timeout_body), load(&self.timeout_idle)]
    }

    /// Failed TLS handshakes (not counting those that timed out).
    pub fn tls_failures(&self) -> u64 {
        load(&self.tls_failures)
    }

    pub(crate) fn count_opened(&self) {
        bump(&self.open);
        bump(&self.accepted);
    }

    pub(crate) fn count_closed(&self) {
        let previous = self.open.fetch_sub(1, Ordering::Relaxed);
        assert!(previous > 0, "a connection closed that was never counted open");
    }

    pub(crate) fn count_refused_cap(&self) {
        bump(&self.refused_cap);
    }

    pub(crate) fn count_refused_per_ip(&self) {
        bump(&self.refused_per_ip);
    }

    pub(crate) fn count_accept_error(&self) {
        bump(&self.accept_errors);
    }

    pub(crate) fn count_tls_failure(&self) {
        bump(&self.tls_failures);
    }

    pub(crate) fn count_timeout_handshake(&self) {
        bump(&self.timeout_handshake);
    }

    pub(crate) fn count_timeout_header(&self) {
        bump(&self.timeout_header);
    }

    pub(crate) fn count_timeout_body(&self) {
        bump(&self.timeout_body);
    }

    pub(crate) fn count_timeout_idle(&self) {
        bump(&self.timeout_idle);
    }

    /// The counters in the Prometheus text format, each metric name starting with `prefix` (e.g.
    /// `tally_http`): `PREFIX_connections_open` (gauge), `PREFIX_connections_accepted_total`,
    /// `PREFIX_connections_refused_total{reason="cap"|"per_ip"}`,
    /// `PREFIX_connections_timed_out_total{phase="handshake"|"header"|"body"|"idle"}`,
    /// `PREFIX_tls_handshake_failures_total`, `PREFIX_accept_errors_total`.
    pub fn render_prometheus(&self, prefix: &str) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{prefix}_{name}{labels} {value}");
            }
        };
        metric("connections_open", "gauge", "Connections open now.", &[("", self.open())]);
        metric("connections_accepted_total", "counter", "Connections accepted.", &[("", self.accepted())]);
        let (cap, per_ip) = self.refused();
        metric(
            "connections_refused_total",
            "counter",
            "Connections closed at once by a connection cap.",
            &[("{reason=\"cap\"}", cap), ("{reason=\"per_ip\"}", per_ip)],
        );
        let [handshake, header, body, idle] = self.timed_out();
        metric(
            "connections_timed_out_total",
            "counter",
            "Connections or requests cut off by a timeout.",
            &[
                ("{phase=\"handshake\"}", handshake),
                ("{phase=\"header\"}", header),
                ("{phase=\"body\"}", body),
                ("{phase=\"idle\"}", idle),
            ],
        );
        metric("tls_handshake_failures_total", "counter", "Failed TLS handshakes.", &[("", self.tls_failures())]);
        metric("accept_errors_total", "counter", "Failed accept calls.", &[("", load(&self.accept_errors))]);
        out
    }
}
