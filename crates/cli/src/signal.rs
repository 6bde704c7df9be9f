//! The shutdown signal of the long-running commands (`node`, `dev`): Ctrl-C (SIGINT) or SIGTERM.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGINT or SIGTERM. If SIGTERM cannot be watched (never expected), only SIGINT is.
pub async fn shutdown_signal() {
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => Some(terminate),
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; stop with Ctrl-C");
            None
        }
    };
    let sigterm = async {
        match terminate.as_mut() {
            Some(terminate) => {
                terminate.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot watch Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received: shutting down"),
        () = sigterm => tracing::info!("SIGTERM received: shutting down"),
    }
}
