//! HAProxy (Debian's package) on a loopback port, balancing HTTP and WebSocket
//! connections over several servers: the load balancer of the failover tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::TempDir;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running HAProxy, killed when dropped.
pub struct Haproxy {
    child: Child,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Haproxy {
    /// Balances connections over `servers`, each to the one with the fewest open (so
    /// long-lived WebSockets spread evenly), checking each every 200 ms (one failed check
    /// takes it out, one good one puts it back) and sending a connection whose server
    /// refuses it to another one. Returns once it accepts connections.
    pub fn start(servers: &[SocketAddr]) -> Self {
        let addr = super::free_addr();
        let dir = TempDir::new("haproxy");
        let mut conf = format!(
            "global\n  maxconn 1000\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n  \
             timeout tunnel 60s\n  option redispatch\n  retries 3\n\
             frontend chat\n  bind {addr}\n  default_backend nodes\n\
             backend nodes\n  balance leastconn\n  option httpchk GET /\n"
        );
        for (n, server) in servers.iter().enumerate() {
            conf.push_str(&format!("  server node{n} {server} check inter 200ms fall 1 rise 1\n"));
        }
        let path = dir.0.join("haproxy.cfg");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy not found: run interop/install.sh (Debian package haproxy)");
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "haproxy did not start on {addr}");
            std::thread::sleep(Duration::from_millis(20)); // polling for the port, bounded
        }
        Self { child, addr, _dir: dir }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
