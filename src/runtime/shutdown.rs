//! Graceful stop for the long-running loops (`reelay route`, `reelay work`):
//! SIGTERM (what ECS and Kubernetes send) or Ctrl-C cancels a token; the
//! consumer then stops receiving, lets in-flight work finish within its grace
//! period and hands the rest back with visibility 0, and the process exits 0.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT. The handlers are
/// installed before this returns, so a signal sent right after is not lost.
pub fn on_signals() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let t = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "stopping: no more receives; finishing in-flight work"
        );
        t.cancel();
    });
    Ok(token)
}
