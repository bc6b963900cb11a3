//! The standalone server's accept loop out of file descriptors: it neither spins nor
//! stops, and serves again once descriptors are free.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{bounded, connect, free_addr};
use std::process::{Command, Stdio};
use std::time::Duration;
use wsdriver::{Config, Message};

/// CPU time (user + system) the process `pid` used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn out_of_descriptors_the_accept_loop_waits_instead_of_spinning() {
    let addr = free_addr();
    // The echo example with room for 32 descriptors: the runtime takes a few, the
    // connections below the rest.
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -n 32 && exec \"$0\" \"$1\"", common::example("echo").to_str().unwrap(), &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut held = Vec::new();
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).map(|s| held.push(s)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25)); // polling for the port, bounded
    }
    // More connections than descriptors: the kernel queues them, accept(2) says EMFILE.
    for _ in 0..60 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap().into_std().unwrap());
    }
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await; // the window the CPU time is measured over
    let used = cpu_ticks(pid) - before;
    // Spinning on EMFILE would take the whole second (100 ticks); waiting takes ~nothing.
    assert!(used < 20, "the accept loop used {used} of 100 ticks while out of descriptors");
    // Descriptors free again: the server accepts and serves.
    held.clear();
    let mut ws = connect(addr, "/", &Config::default()).await;
    ws.send(Message::text("still serving")).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("still serving"));
    child.kill().unwrap();
    child.wait().unwrap();
}
