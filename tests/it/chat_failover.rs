//! The test that matters for the hub: chat pages in headless Chromium behind HAProxy, on
//! two chat processes (axum and actix-web) sharing one Redis. While the pages talk, one
//! process is killed, or Redis restarts; the pages reconnect (through HAProxy, to whoever
//! is there), recover what they missed and send again what was not acknowledged. Every
//! page must end with the same messages in the same order: none lost, none twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::haproxy::Haproxy;
use common::redis_server::RedisServer;
use common::{EchoProcess, TempDir, free_addr};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const PAGES: usize = 4;
const MESSAGES: usize = 60;
const INTERVAL_MS: u64 = 40;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Disruption {
    KillNode,
    RestartRedis,
}

#[test]
#[ignore = "needs Chromium, redis-server and haproxy (interop/install.sh)"]
fn pages_lose_nothing_when_a_chat_process_is_killed() {
    failover(Disruption::KillNode);
}

#[test]
#[ignore = "needs Chromium, redis-server and haproxy (interop/install.sh)"]
fn pages_lose_nothing_when_redis_restarts() {
    failover(Disruption::RestartRedis);
}

fn failover(disruption: Disruption) {
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop");
    assert!(
        interop.join("node_modules/playwright-core").exists() && Path::new("/usr/bin/chromium").exists(),
        "playwright-core or chromium missing: run interop/install.sh (scripts/test-all does)"
    );
    let data = TempDir::new("failover-redis");
    let redis_port = free_addr().port();
    let mut redis = RedisServer::start_persistent(redis_port, &data.0);
    let url = redis.url();
    let (a, b) = (free_addr(), free_addr());
    // The members of a process that dies leave the rooms' counts within about a second.
    let args = ["--redis", &url, "--presence-ttl", "1"];
    let mut axum = EchoProcess::start_example_with("chat", a, &args);
    let _actix = EchoProcess::start_example_with("chat_actix", b, &args);
    let proxy = Haproxy::start(&[a, b]);

    let mut node = Command::new("node")
        .arg(interop.join("chat_failover.js"))
        .args([format!("http://{}/", proxy.addr), PAGES.to_string(), MESSAGES.to_string(), INTERVAL_MS.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines().map_while(Result::ok);
    let mut next = |prefix: &str| -> String {
        let line = lines.find(|line| line.starts_with(prefix)).unwrap_or_else(|| panic!("the pages never said {prefix}"));
        line[prefix.len()..].trim().to_owned()
    };

    let joined: Vec<String> = serde_json::from_str(&next("JOINED")).unwrap();
    let (on_a, on_b) = (joined.iter().filter(|s| **s == a.to_string()).count(), joined.iter().filter(|s| **s == b.to_string()).count());
    assert!(on_a > 0 && on_b > 0, "pages on both processes: {joined:?}");

    next("HALF");
    match disruption {
        Disruption::KillNode => axum.kill(),
        Disruption::RestartRedis => {
            redis.stop();
            // Down until the pages noticed: a server could not send one of their messages.
            next("REFUSED");
            redis = RedisServer::start_persistent(redis_port, &data.0);
        }
    }
    let result: Vec<serde_json::Value> = serde_json::from_str(&next("RESULT")).unwrap();
    assert!(node.wait().unwrap().success());
    drop(redis);

    // What each page showed, in order, as (sender, message number).
    let shown: Vec<Vec<(String, u64)>> = result
        .iter()
        .map(|page| {
            page["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| {
                    let (client, n) = id.as_str().expect("every message has an id").rsplit_once('-').unwrap();
                    (client.to_owned(), n.parse().unwrap())
                })
                .collect()
        })
        .collect();
    let summary = |page: &serde_json::Value| {
        let shown = page["ids"].as_array().map_or(0, Vec::len);
        let (client, said, pending, refused, here) = (&page["client"], &page["said"], &page["pending"], &page["refused"], &page["here"]);
        format!(
            "{client} said {said}, {pending} pending, {refused} refused, {here} here, servers {}, notices {}, shown {shown}",
            page["servers"], page["notices"]
        )
    };
    let report = result.iter().map(summary).collect::<Vec<_>>().join("\n");
    for page in &result {
        assert_eq!(page["said"], MESSAGES, "every page said everything:\n{report}");
        assert_eq!(page["pending"], 0, "every message acknowledged:\n{report}");
        assert_eq!(page["notices"].as_array().map(Vec::len), Some(0), "every page recovered every time:\n{report}");
        assert_eq!(page["here"], PAGES, "every page counts everyone in the room, and no one else:\n{report}");
    }
    let first = &shown[0];
    assert_eq!(first.len(), PAGES * MESSAGES, "none lost, none twice:\n{report}");
    let distinct: HashSet<&(String, u64)> = first.iter().collect();
    assert_eq!(distinct.len(), first.len(), "nothing shown twice:\n{report}");
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (client, n) in first {
        let before = last.insert(client, *n).unwrap_or(0);
        assert_eq!(*n, before + 1, "{client}'s messages in the order they were said");
    }
    for (page, other) in shown.iter().enumerate().skip(1) {
        assert!(other == first, "page {page} shows another sequence than page 0:\n{report}");
    }
    if disruption == Disruption::KillNode {
        let moved = result
            .iter()
            .filter(|p| p["servers"].as_array().unwrap().iter().any(|s| *s == b.to_string()) && p["servers"][0] == a.to_string())
            .count();
        assert_eq!(moved, on_a, "every page on the killed process went on through the other:\n{report}");
    }
    println!("{report}");
}
