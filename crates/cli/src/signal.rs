//! The shutdown signal of the long-running commands (`node`, `dev`): Ctrl-C (SIGINT), SIGTERM, or SIGHUP
//! (the terminal closed: `tally dev` must then stop its nodes rather than leave them running).

use tokio::signal::unix::{SignalKind, signal};

/// Resolves once `kind` arrives; never if it cannot be watched (logged, never expected).
async fn received(kind: SignalKind, name: &str) {
    match signal(kind) {
        Ok(mut stream) => {
            stream.recv().await;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot watch {name}");
            std::future::pending::<()>().await;
        }
    }
}

/// Resolves on the first SIGINT, SIGTERM or SIGHUP.
pub async fn shutdown_signal() {
    tokio::select! {
        () = received(SignalKind::interrupt(), "SIGINT") => tracing::info!("SIGINT received: shutting down"),
        () = received(SignalKind::terminate(), "SIGTERM") => tracing::info!("SIGTERM received: shutting down"),
        () = received(SignalKind::hangup(), "SIGHUP") => tracing::info!("SIGHUP received: shutting down"),
    }
}
