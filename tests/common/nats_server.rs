//! A real `nats-server` (Debian's package) on a loopback port, for the NATS backplane
//! tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `nats-server`, stopped when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
}

impl NatsServer {
    /// Starts one on a free loopback port.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_on(port)
    }

    /// Starts one on `port`, returning once it accepts connections.
    pub fn start_on(port: u16) -> Self {
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server not found: run interop/install.sh (Debian package nats-server)");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("Server is ready") => break,
                Some(Ok(_)) => {}
                _ => panic!("nats-server on port {port} exited before it was ready"),
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child: Some(child), port }
    }

    /// `nats://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
