//! moto server: a second implementation of DynamoDB and Secrets Manager, so that what only the
//! embedded emulator accepts is caught. It comes from PyPI into a virtualenv made on first use
//! and runs on a free loopback port for as long as its handle lives.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MOTO: &str = "moto[server]==5.2.5";

/// Test threads of one process install once; processes race safely through the rename below.
static INSTALL: Mutex<()> = Mutex::new(());

/// The virtualenv's Python with moto installed, made when missing. It is filled under a name
/// of this process's and renamed into place, so test binaries starting at once never share a
/// half-made one (a virtualenv's Python finds its packages relative to itself, so the move is
/// harmless; only its console scripts, unused here, would name the old path).
pub fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = root.join(".venv-moto");
    let python = venv.join("bin/python");
    let _installing = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if python.exists() {
        return python;
    }
    let partial = root.join(format!(".venv-moto.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&partial)
        .status()
        .expect("python3 runs");
    assert!(made.success(), "python3 -m venv failed");
    let installed = Command::new(partial.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", MOTO])
        .status()
        .expect("pip runs");
    assert!(installed.success(), "pip install {MOTO} failed");
    if std::fs::rename(&partial, &venv).is_err() {
        // Another process finished first; its virtualenv serves as well.
        let _ = std::fs::remove_dir_all(&partial);
    }
    python
}

/// A running moto server, killed when dropped (also when a test panics).
pub struct MotoServer {
    pub endpoint: String,
    process: Child,
}

impl MotoServer {
    pub fn start() -> Self {
        let python = python();
        let port = free_port();
        let process = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto server starts");
        let server = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            process,
        };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = self.endpoint.trim_start_matches("http://");
        while std::net::TcpStream::connect(address).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto server did not listen on {address} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}
