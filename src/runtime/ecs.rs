//! ECS task scale-in protection for `reelay work`: while a GPU task runs, the
//! worker asks the ECS agent not to stop it on scale-in, and clears the
//! protection when it is idle again, so the fleet can shrink without killing
//! work in progress.
//!
//! The agent's endpoint is plain HTTP on the task's link-local address
//! (`$ECS_AGENT_URI/task-protection/v1/state`), so a minimal HTTP/1.1 PUT over
//! a tokio socket does; no HTTP client crate is needed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::ports::queue::Received;
use crate::runtime::consumer::{Disposition, MessageHandler};
use crate::runtime::lease::{self, Lease, LeaseGuard, RenewError};

/// The variable ECS sets in every task with the agent's URI.
pub const ECS_AGENT_URI: &str = "ECS_AGENT_URI";

/// How long one request to the agent may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of the ECS agent's task-protection endpoint.
#[derive(Debug, Clone)]
pub struct TaskProtection {
    host: String,
    port: u16,
    path: String,
    /// Protection lapses this long after it was set unless set again; the
    /// lease keeper renews it every third of that while work runs. The
    /// agent counts in whole minutes (at least one).
    pub expires_in: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtectionError {
    #[error("{ECS_AGENT_URI} `{0}` is not an http:// URL")]
    BadUri(String),
    #[error("task protection request to {0}: {1}")]
    Request(String, String),
}

impl TaskProtection {
    /// From `ECS_AGENT_URI`, when set (outside ECS it is not, and `reelay
    /// work` runs without protection).
    pub fn from_env() -> Option<Result<TaskProtection, ProtectionError>> {
        let uri = std::env::var(ECS_AGENT_URI).ok()?;
        (!uri.trim().is_empty()).then(|| TaskProtection::new(uri.trim()))
    }

    /// `agent_uri` like `http://169.254.170.2/api/TASK-ID`.
    pub fn new(agent_uri: &str) -> Result<TaskProtection, ProtectionError> {
        let bad = || ProtectionError::BadUri(agent_uri.to_string());
        let rest = agent_uri.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let path = format!("/{}", path.trim_end_matches('/'));
        Ok(TaskProtection {
            host: host.to_string(),
            port,
            path: format!("{}/task-protection/v1/state", path.trim_end_matches('/')),
            expires_in: Duration::from_secs(60 * 60),
        })
    }

    /// The request path on the agent.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `expires_in` in the agent's whole minutes, rounded up.
    pub fn expires_in_minutes(&self) -> u64 {
        self.expires_in.as_secs().div_ceil(60).max(1)
    }

    /// Sets (`true`) or clears (`false`) scale-in protection.
    pub async fn set(&self, enabled: bool) -> Result<(), ProtectionError> {
        let body = if enabled {
            serde_json::json!({"ProtectionEnabled": true, "ExpiresInMinutes": self.expires_in_minutes()})
        } else {
            serde_json::json!({"ProtectionEnabled": false})
        }
        .to_string();
        let request = format!(
            "PUT {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.path,
            self.host,
            self.port,
            body.len(),
            body
        );
        let target = format!("{}:{}{}", self.host, self.port, self.path);
        let fail = |e: String| ProtectionError::Request(target.clone(), e);
        let exchange = async {
            let mut socket = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| e.to_string())?;
            socket
                .write_all(request.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut response = Vec::new();
            socket
                .read_to_end(&mut response)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(response)
        };
        let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {REQUEST_TIMEOUT:?}")))?
            .map_err(fail)?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| fail("not an HTTP response".into()))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            Err(fail(format!("HTTP {status}: {}", body.trim())))
        }
    }
}

/// Scale-in protection as a lease: renewed by the lease keeper before it
/// expires. Not critical: losing it does not stop the step, since the
/// queue's redelivery is the guarantee and protection only saves the work.
struct ProtectionLease(TaskProtection);

#[async_trait]
impl Lease for ProtectionLease {
    fn name(&self) -> &str {
        "ECS task protection"
    }
    fn period(&self) -> Duration {
        self.0.expires_in
    }
    fn critical(&self) -> bool {
        false
    }
    async fn renew(&self) -> Result<(), RenewError> {
        self.0
            .set(true)
            .await
            .map_err(|e| RenewError::Failed(e.to_string()))
    }
}

/// Wraps a handler: protection is set while at least one message is being
/// handled (renewed by the lease keeper while it is), and cleared when none
/// is. A failed request is logged, never fatal: protection is an
/// optimisation, the queue's redelivery is the guarantee.
pub struct ProtectedHandler {
    pub inner: Arc<dyn MessageHandler>,
    pub protection: TaskProtection,
    /// Messages in flight, and the keeper renewing protection while any are.
    state: Mutex<(usize, Option<LeaseGuard>)>,
}

impl ProtectedHandler {
    pub fn new(inner: Arc<dyn MessageHandler>, protection: TaskProtection) -> ProtectedHandler {
        ProtectedHandler {
            inner,
            protection,
            state: Mutex::new((0, None)),
        }
    }
}

#[async_trait]
impl MessageHandler for ProtectedHandler {
    async fn handle(&self, message: &Received, cancel: CancellationToken) -> Disposition {
        {
            let mut state = self.state.lock().await;
            state.0 += 1;
            if state.0 == 1 {
                if let Err(e) = self.protection.set(true).await {
                    tracing::warn!(error = %e, "could not set ECS task protection");
                }
                let lease = Arc::new(ProtectionLease(self.protection.clone()));
                state.1 = Some(lease::keep(lease, CancellationToken::new()));
            }
        }
        let disposition = self.inner.handle(message, cancel).await;
        let mut state = self.state.lock().await;
        state.0 -= 1;
        if state.0 == 0 {
            if let Some(keeper) = state.1.take() {
                keeper.stop().await;
            }
            if let Err(e) = self.protection.set(false).await {
                tracing::warn!(error = %e, "could not clear ECS task protection");
            }
        }
        disposition
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn agent_uris_parse() {
        let p = TaskProtection::new("http://169.254.170.2/api/abc-123").unwrap();
        assert_eq!(p.host, "169.254.170.2");
        assert_eq!(p.port, 80);
        assert_eq!(p.path(), "/api/abc-123/task-protection/v1/state");
        let p = TaskProtection::new("http://127.0.0.1:5150/api/t/").unwrap();
        assert_eq!(p.port, 5150);
        assert_eq!(p.path(), "/api/t/task-protection/v1/state");
        assert!(TaskProtection::new("https://x/api").is_err());
        assert!(TaskProtection::new("http://:80/api").is_err());
    }

    /// A one-request-per-connection agent that records what it was sent.
    async fn agent(status: u16) -> (String, Arc<Mutex<Vec<(std::time::Instant, String)>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/api/task-1", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                // Read until the body announced by Content-Length is in.
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                log.lock().await.push((
                    std::time::Instant::now(),
                    String::from_utf8_lossy(&got).to_string(),
                ));
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                );
                s.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (uri, seen)
    }

    #[tokio::test]
    async fn set_and_clear_send_the_documented_requests() {
        let (uri, seen) = agent(200).await;
        let p = TaskProtection::new(&uri).unwrap();
        p.set(true).await.unwrap();
        p.set(false).await.unwrap();
        let seen: Vec<String> = seen.lock().await.iter().map(|(_, r)| r.clone()).collect();
        assert!(
            seen[0].starts_with("PUT /api/task-1/task-protection/v1/state HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0].ends_with(r#"{"ExpiresInMinutes":60,"ProtectionEnabled":true}"#),
            "{}",
            seen[0]
        );
        assert!(
            seen[1].ends_with(r#"{"ProtectionEnabled":false}"#),
            "{}",
            seen[1]
        );
    }

    #[tokio::test]
    async fn an_agent_error_is_reported() {
        let (uri, _) = agent(400).await;
        let e = TaskProtection::new(&uri)
            .unwrap()
            .set(true)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("HTTP 400"), "{e}");
    }

    struct Sleepy;
    #[async_trait]
    impl MessageHandler for Sleepy {
        async fn handle(&self, _: &Received, _: CancellationToken) -> Disposition {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Disposition::Ack
        }
    }

    #[tokio::test]
    async fn protection_spans_the_work_and_is_cleared_when_idle() {
        let (uri, seen) = agent(200).await;
        let h = Arc::new(ProtectedHandler::new(
            Arc::new(Sleepy),
            TaskProtection::new(&uri).unwrap(),
        ));
        let msg = Received {
            message_id: "m".into(),
            handle: crate::ports::ReceiptHandle("h".into()),
            body: "{}".into(),
            receive_count: 1,
        };
        let (a, b) = tokio::join!(
            h.handle(&msg, CancellationToken::new()),
            h.handle(&msg, CancellationToken::new())
        );
        assert_eq!((a, b), (Disposition::Ack, Disposition::Ack));
        let seen = seen.lock().await;
        let enabled: Vec<bool> = seen
            .iter()
            .map(|(_, r)| r.contains("\"ProtectionEnabled\":true"))
            .collect();
        // One set for both (the second came while the first held it), one
        // clear once both are done.
        assert_eq!(enabled, vec![true, false]);
    }

    /// Issue 16's "task protection lapses": a step longer than the
    /// protection period keeps its protection, renewed before it expires.
    #[tokio::test]
    async fn protection_is_renewed_before_it_expires_during_a_long_step() {
        const STEP: Duration = Duration::from_millis(1300);
        struct Long;
        #[async_trait]
        impl MessageHandler for Long {
            async fn handle(&self, _: &Received, _: CancellationToken) -> Disposition {
                tokio::time::sleep(STEP).await;
                Disposition::Ack
            }
        }
        let (uri, seen) = agent(200).await;
        let mut protection = TaskProtection::new(&uri).unwrap();
        let period = Duration::from_millis(300);
        protection.expires_in = period;
        let h = ProtectedHandler::new(Arc::new(Long), protection);
        let msg = Received {
            message_id: "m".into(),
            handle: crate::ports::ReceiptHandle("h".into()),
            body: "{}".into(),
            receive_count: 1,
        };
        let started = std::time::Instant::now();
        assert_eq!(
            h.handle(&msg, CancellationToken::new()).await,
            Disposition::Ack
        );
        let seen = seen.lock().await;
        let (sets, clears): (Vec<_>, Vec<_>) = seen
            .iter()
            .partition(|(_, r)| r.contains("\"ProtectionEnabled\":true"));
        assert_eq!(clears.len(), 1, "{seen:?}");
        assert!(clears[0].0 - started >= STEP, "cleared only at the end");
        // Set at the start, then renewed every third of the period: no gap
        // between two sets (or the last set and the end) reaches the period.
        let mut at: Vec<Duration> = sets.iter().map(|(t, _)| *t - started).collect();
        assert!(at.len() >= 4, "renewed during the step: {at:?}");
        assert!(at[0] < Duration::from_millis(100), "{at:?}");
        at.push(STEP);
        for gap in at.windows(2).map(|w| w[1] - w[0]) {
            assert!(gap < period, "protection would have lapsed: {at:?}");
        }
    }
}
