//! A local `nats-server` with JetStream on disk, for the tests and `lara bench cluster`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The `nats-server` binary: `$LARA_NATS_SERVER`, else the first of `nats-server`,
/// `/usr/sbin/nats-server`, `/usr/bin/nats-server` that exists.
pub fn find_nats_server() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("LARA_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/sbin", "/usr/bin", "/usr/local/bin"]) {
        let p = Path::new(dir).join("nats-server");
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

/// A free loopback port (bound and released).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running `nats-server -js` on 127.0.0.1; killed when dropped.
pub struct NatsServer {
    pub bin: PathBuf,
    pub store_dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with its JetStream store in `store_dir` on a free port.
    pub fn start(bin: &Path, store_dir: &Path) -> Result<NatsServer> {
        let mut s =
            NatsServer { bin: bin.to_path_buf(), store_dir: store_dir.to_path_buf(), port: free_port()?, child: None };
        s.spawn()?;
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.store_dir)?;
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if t.elapsed() > Duration::from_secs(10) {
                bail!("nats-server did not listen on port {} within 10 s", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILL (nothing flushed by the server beyond what it wrote to its files).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
