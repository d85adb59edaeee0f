//! The Lambda bootstrap when it cannot start (issue 16): the error reaches the
//! Runtime API's init-error endpoint and every line it writes, the last one
//! too, is JSON with a single `message`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A stand-in for the Runtime API that takes one request and answers 202.
fn runtime_api() -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.read(&mut buf).unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map(|v| v.parse().unwrap())
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        conn.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        String::from_utf8(request).unwrap()
    });
    (addr, server)
}

#[test]
fn a_missing_bucket_is_an_init_error_on_the_runtime_api_and_the_last_line_is_json() {
    let (api, server) = runtime_api();
    let out = Command::new(env!("CARGO_BIN_EXE_reelay-lambda"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("REELAY_EVENTS_QUEUE_URL", "http://127.0.0.1:9/events")
        .env("REELAY_GPU_QUEUE_URL", "http://127.0.0.1:9/gpu")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let request = server.join().unwrap();
    assert!(
        request.starts_with("POST /2018-06-01/runtime/init/error HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("Lambda-Runtime-Function-Error-Type: Reelay.InitError\r\n"));
    let body: serde_json::Value =
        serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap();
    let message = body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("REELAY_BUCKET"),
        "the error names the variable: {message}"
    );

    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "nothing logged");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        assert!(line.matches("\"message\":").count() <= 1, "{line}");
    }
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(
        last["level"], "INFO",
        "the report of the report is last: {stderr}"
    );
    assert!(
        stderr.contains("reelay-lambda could not start") && stderr.contains("REELAY_BUCKET"),
        "{stderr}"
    );
    assert!(String::from_utf8(out.stdout).unwrap().trim().is_empty());
}
