//! Real proxies on loopback ports (Debian's packages), for the client's proxy tests:
//! tinyproxy (HTTP `CONNECT`) and microsocks (SOCKS5), each with or without a username
//! and password, and a log of what they did.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::TempDir;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running proxy, killed when dropped.
pub struct Proxy {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    _dir: Option<TempDir>,
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Keeps every line `from` prints in `log`; sends `ready` the first line containing it.
fn collect(
    from: impl std::io::Read + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
    ready: Option<(&'static str, std::sync::mpsc::Sender<()>)>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if let Some((marker, tx)) = &ready {
                if line.contains(marker) {
                    let _ = tx.send(());
                }
            }
            log.lock().unwrap().push(line);
        }
    });
}

impl Proxy {
    /// tinyproxy, answering `CONNECT` to any port, with Basic authentication if `auth`.
    pub fn tinyproxy(auth: Option<(&str, &str)>) -> Self {
        let addr = free_addr();
        let dir = std::env::temp_dir().join(format!("wsdriver-tinyproxy-{}-{}", std::process::id(), addr.port()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut conf = format!("Port {}\nListen 127.0.0.1\nTimeout 30\nMaxClients 64\nAllow 127.0.0.1\nLogLevel Info\n", addr.port());
        if let Some((user, password)) = auth {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let path = dir.join("tinyproxy.conf");
        std::fs::write(&path, conf).unwrap();
        let mut child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tinyproxy not found: run interop/install.sh (Debian package tinyproxy)");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        collect(child.stdout.take().unwrap(), log.clone(), Some(("Accepting connections", tx)));
        collect(child.stderr.take().unwrap(), log.clone(), None);
        rx.recv_timeout(Duration::from_secs(10)).expect("tinyproxy did not start");
        Self { child: Some(child), addr, log, _dir: Some(TempDir(dir)) }
    }

    /// microsocks, with username and password authentication if `auth`.
    pub fn microsocks(auth: Option<(&str, &str)>) -> Self {
        let addr = free_addr();
        let mut command = Command::new("stdbuf");
        // Line-buffered, so its log of each connection arrives as it happens.
        command.args(["-oL", "-eL", "microsocks", "-i", "127.0.0.1", "-p", &addr.port().to_string()]);
        if let Some((user, password)) = auth {
            command.args(["-u", user, "-P", password]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("microsocks not found: run interop/install.sh (Debian package microsocks)");
        let log = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), log.clone(), None);
        collect(child.stderr.take().unwrap(), log.clone(), None);
        // microsocks says nothing when it starts: wait until it accepts.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "microsocks did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { child: Some(child), addr, log, _dir: None }
    }

    /// `scheme://[user:password@]127.0.0.1:port`.
    pub fn url(&self, scheme: &str, auth: Option<(&str, &str)>) -> String {
        match auth {
            Some((user, password)) => format!("{scheme}://{user}:{password}@{}", self.addr),
            None => format!("{scheme}://{}", self.addr),
        }
    }

    /// Whether the proxy's log mentions `needle` (a connection it opened, a CONNECT).
    pub fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|line| line.contains(needle))
    }

    /// The whole log, for failure messages.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Kills the proxy, and every connection through it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}
