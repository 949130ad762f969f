//! `deltaguard serve` as a process: it prints its address, refuses a public
//! bind without keys, and on SIGTERM drains an in-flight stream, refuses new
//! requests with 503, and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/hf-reference")
        .join(name)
}

fn request(addr: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

#[test]
fn refuses_a_public_bind_without_keys() {
    let out = Command::new(env!("CARGO_BIN_EXE_deltaguard"))
        .args(["serve", "--base"])
        .arg(fixture("pair/base"))
        .args(["--host", "0.0.0.0", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-unauthenticated"));
}

#[cfg(unix)]
#[test]
fn sigterm_drains_in_flight_requests_then_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let delta = tmp.path().join("a.safetensors");
    let out = Command::new(env!("CARGO_BIN_EXE_deltaguard"))
        .args(["compress", "--base"])
        .arg(fixture("pair/base"))
        .arg("--finetuned")
        .arg(fixture("pair/finetuned"))
        .args(["--method", "bitdelta", "-q", "--out"])
        .arg(&delta)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_deltaguard"))
        .args(["serve", "--base-name", "base", "--port", "0", "--base"])
        .arg(fixture("pair/base"))
        .arg(format!("--delta=a={}", delta.display()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited early"
        );
        if let Some(a) = line
            .trim()
            .strip_prefix("deltaguard serve: listening on http://")
        {
            break a.to_string();
        }
    };
    let mut stream = request(
        &addr,
        r#"{"model":"a","prompt":[1,5],"max_tokens":240,"temperature":0,"stream":true}"#,
    );
    // Wait until the stream has started.
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains("data: ") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(100));
    // A new request while draining: 503, or the listener already closed.
    if let Ok(mut s) = TcpStream::connect(&addr) {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = r#"{"model":"a","prompt":"x"}"#;
        let _ = write!(
            s,
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut r = String::new();
        let _ = s.read_to_string(&mut r);
        if !r.is_empty() {
            assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        }
    }
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    got.extend(rest);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("data: [DONE]"),
        "the in-flight stream was cut: {text}"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
