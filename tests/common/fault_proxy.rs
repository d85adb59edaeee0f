//! A fault-injecting HTTP/1.1 proxy for loopback tests: it stands in front of
//! moto and fails a fraction of the S3 and SQS calls the way a real store
//! does: a 500 or 503 answer, a stall longer than the client's read timeout,
//! a connection reset before the call reaches the server, or a reset after
//! the server applied the call (the effect happened, the answer is lost).
//!
//! Each client connection carries exactly one request: the proxy forwards it
//! with `Connection: close` and answers with `Connection: close`, so every
//! call is a fresh connection and a fault hits one call, not a pooled
//! connection's future. Bodies are streamed, never parsed.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The kinds of fault, each counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500 InternalError`, before the call reaches the server.
    Status500,
    /// `503 SlowDown`, before the call reaches the server.
    Status503,
    /// Nothing is answered for `stall`, then the connection closes.
    Stall,
    /// The connection is reset before the call reaches the server.
    ResetBefore,
    /// The server applies the call; the client's connection is then reset.
    ResetAfter,
}

pub const ALL_FAULTS: [Fault; 5] = [
    Fault::Status500,
    Fault::Status503,
    Fault::Stall,
    Fault::ResetBefore,
    Fault::ResetAfter,
];

/// Counters the test reads at the end.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub requests: AtomicU64,
    pub status500: AtomicU64,
    pub status503: AtomicU64,
    pub stalls: AtomicU64,
    pub resets_before: AtomicU64,
    pub resets_after: AtomicU64,
}

impl FaultCounts {
    /// Every fault injected so far.
    pub fn faults(&self) -> u64 {
        self.status500.load(Ordering::Relaxed)
            + self.status503.load(Ordering::Relaxed)
            + self.stalls.load(Ordering::Relaxed)
            + self.resets_before.load(Ordering::Relaxed)
            + self.resets_after.load(Ordering::Relaxed)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} requests: {} x 500, {} x 503, {} stalls, {} resets before, {} resets after",
            self.requests.load(Ordering::Relaxed),
            self.status500.load(Ordering::Relaxed),
            self.status503.load(Ordering::Relaxed),
            self.stalls.load(Ordering::Relaxed),
            self.resets_before.load(Ordering::Relaxed),
            self.resets_after.load(Ordering::Relaxed),
        )
    }
}

/// A fault for the next `times` requests whose head contains `needle`.
#[derive(Debug, Clone)]
struct Targeted {
    needle: String,
    fault: Fault,
    times: u64,
}

/// A running proxy; dropping it stops accepting.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub counts: Arc<FaultCounts>,
    targets: Arc<std::sync::Mutex<Vec<Targeted>>>,
    stop: CancellationToken,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`127.0.0.1:PORT`); a fraction `rate` of requests get one of `faults`,
    /// chosen at random. A stall lasts `stall`.
    pub async fn start(upstream: SocketAddr, rate: f64, faults: &[Fault], stall: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(FaultCounts::default());
        let stop = CancellationToken::new();
        let faults: Arc<Vec<Fault>> = Arc::new(faults.to_vec());
        let targets: Arc<std::sync::Mutex<Vec<Targeted>>> = Arc::default();
        tokio::spawn({
            let (counts, stop, targets) = (counts.clone(), stop.clone(), targets.clone());
            async move {
                loop {
                    let accepted = tokio::select! {
                        _ = stop.cancelled() => return,
                        a = listener.accept() => a,
                    };
                    let Ok((client, _)) = accepted else { continue };
                    let fault = {
                        let mut rng = rand::rng();
                        if !faults.is_empty() && rng.random_bool(rate.clamp(0.0, 1.0)) {
                            Some(faults[rng.random_range(0..faults.len())])
                        } else {
                            None
                        }
                    };
                    let (counts, targets) = (counts.clone(), targets.clone());
                    tokio::spawn(async move {
                        let _ = serve(client, upstream, fault, &targets, stall, &counts).await;
                    });
                }
            }
        });
        FaultProxy {
            addr,
            counts,
            targets,
            stop,
        }
    }

    /// Gives the next `times` requests whose head (request line and headers)
    /// contains `needle` the fault `fault`, whatever the random rate says.
    pub fn target(&self, needle: &str, fault: Fault, times: u64) {
        self.targets.lock().unwrap().push(Targeted {
            needle: needle.into(),
            fault,
            times,
        });
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Reads up to the end of the head (`\r\n\r\n`); returns the head and any
/// body bytes read past it.
async fn read_head(s: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 1 << 20 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

/// The head with any `Connection`/`Keep-Alive` header replaced by
/// `Connection: close`.
fn close_head(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(text.len() + 20);
    for line in text.split("\r\n") {
        if line.is_empty() {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("connection:") || lower.starts_with("keep-alive:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn reset(s: TcpStream) {
    // SO_LINGER 0: close sends RST instead of FIN.
    #[allow(deprecated)]
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

async fn status(
    mut client: TcpStream,
    code: u16,
    reason: &str,
    error: &str,
) -> std::io::Result<()> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{error}</Code><Message>injected by the test proxy</Message></Error>"
    );
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amzn-query-error: {error};Receiver\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body.as_bytes()).await?;
    client.shutdown().await
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    random: Option<Fault>,
    targets: &std::sync::Mutex<Vec<Targeted>>,
    stall: Duration,
    counts: &FaultCounts,
) -> std::io::Result<()> {
    let (head, early_body) = read_head(&mut client).await?;
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let targeted = {
        let text = String::from_utf8_lossy(&head);
        let mut t = targets.lock().unwrap();
        t.iter_mut()
            .find(|t| t.times > 0 && text.contains(&t.needle))
            .map(|t| {
                t.times -= 1;
                t.fault
            })
    };
    let fault = targeted.or(random);
    match fault {
        Some(Fault::Status500) => {
            counts.status500.fetch_add(1, Ordering::Relaxed);
            return status(client, 500, "Internal Server Error", "InternalError").await;
        }
        Some(Fault::Status503) => {
            counts.status503.fetch_add(1, Ordering::Relaxed);
            return status(client, 503, "Service Unavailable", "SlowDown").await;
        }
        Some(Fault::Stall) => {
            counts.stalls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(stall).await;
            drop(client);
            return Ok(());
        }
        Some(Fault::ResetBefore) => {
            counts.resets_before.fetch_add(1, Ordering::Relaxed);
            reset(client);
            return Ok(());
        }
        _ => {}
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&close_head(&head)).await?;
    server.write_all(&early_body).await?;
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    // Request body: client → server, until the client stops sending (it
    // keeps the connection open for the answer, so this ends when the
    // answer has been relayed and the connection closes).
    let upload = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    };
    // Answer: server → client, with its head rewritten to close.
    let download = async {
        let (head, rest) = read_head_split(&mut server_read).await?;
        if fault == Some(Fault::ResetAfter) {
            return Ok::<bool, std::io::Error>(true);
        }
        client_write.write_all(&close_head(&head)).await?;
        client_write.write_all(&rest).await?;
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        client_write.shutdown().await?;
        Ok(false)
    };
    let reset_now = tokio::select! {
        r = download => r?,
        _ = async { upload.await; std::future::pending::<()>().await } => unreachable!(),
    };
    if reset_now {
        counts.resets_after.fetch_add(1, Ordering::Relaxed);
        drop(server);
        reset(client);
    }
    Ok(())
}

async fn read_head_split(
    s: &mut tokio::net::tcp::ReadHalf<'_>,
) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
