//! A real `lara serve` for end-to-end tests, and a small HTTP client.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A running `lara serve`; killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--addr", "127.0.0.1:0", "--data-dir", data_dir.to_str().unwrap()];
        args.extend(extra);
        Server::spawn(&args)
    }
    /// `lara serve --addr 127.0.0.1:0 --config FILE` (the store where the config says).
    pub fn start_with_config(config: &Path) -> Server {
        Server::spawn(&["--addr", "127.0.0.1:0", "--config", config.to_str().unwrap()])
    }
    fn spawn(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lara"))
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lara serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line}")).to_string();
        Server { child, base }
    }
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that returns every status and gives up on a request after 90 s (a hung
/// server fails the test by name instead of stalling it).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(90)))
        .build()
        .into()
}

pub fn call(method: &str, url: &str, ct: &str, body: &[u8], token: Option<&str>) -> (u16, Vec<u8>) {
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match method {
        "GET" | "DELETE" => {
            let mut r = if method == "GET" { a.get(url) } else { a.delete(url) };
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            r.call()
        }
        _ => {
            let mut r = if method == "PUT" { a.put(url) } else { a.post(url) };
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            r.header("Content-Type", ct).send(body)
        }
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.into_body().read_to_vec().unwrap_or_default();
    (status, body)
}

pub fn js(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}


/// A tiny HTTP server that records the bodies POSTed to it; its first `fail_first` requests
/// get a 500 (to exercise retries).
pub struct Receiver {
    pub url: String,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Receiver {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                n += 1;
                let status = if n <= fail_first { "500 Internal Server Error" } else { "200 OK" };
                if n > fail_first {
                    seen.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                }
                let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Receiver { url, bodies }
    }
}

/// Follows `GET /v1/alarms/stream` on a raw socket; the `data:` of every `alarm` event arrives
/// on the returned channel.
pub fn follow_alarms(base: &str, token: Option<&str>) -> std::sync::mpsc::Receiver<Value> {
    use std::io::Write;
    let addr = base.strip_prefix("http://").unwrap().to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET /v1/alarms/stream HTTP/1.1\r\nHost: {addr}\r\n{auth}Accept: text/event-stream\r\n\r\n").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = BufReader::new(s);
        let mut event = String::new();
        for line in r.lines() {
            let Ok(line) = line else { break };
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                if event == "alarm" && tx.send(serde_json::from_str(d).unwrap()).is_err() {
                    break;
                }
            }
        }
    });
    rx
}
