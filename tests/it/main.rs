//! The integration tests, one binary: each module is one behaviour, run against the
//! servers and clients it concerns. The stress tests that load the machine (`hostile`,
//! `soak`) and the accept loop run out of descriptors (`accept_loop`) are binaries of
//! their own, so they never run beside these.

#[path = "../battery/mod.rs"]
mod battery;
#[path = "../common/mod.rs"]
mod common;

mod axum_extractor;
mod backpressure;
mod bad_frames;
mod browser_http2;
mod chat;
mod chat_failover;
mod client;
mod client_http2;
mod client_interop;
mod close_handshake;
mod echo_battery;
mod events;
mod events_every_server;
mod examples;
mod handshake_rejections;
mod http2;
mod hub_nats;
mod hub_redis;
mod hub_slow_subscriber;
mod interop;
mod invalid_config;
mod keepalive;
mod pool;
mod proxies;
mod reconnect;
mod shutdown;
mod tls_handshake;
mod wss;
