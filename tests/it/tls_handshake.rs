//! TLS on the servers: a client that stalls in the TLS handshake, or sends no request once
//! it is done, is cut within `Config::handshake_timeout`, on the standalone server, hyper,
//! tower and axum.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::browser_http2::{Pages, start, tls};
use crate::common::bounded;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsdriver::Config;

const TIMEOUT: Duration = Duration::from_millis(500);

/// Waits for the server to end the connection (EOF, or a reset), and says how long it took.
async fn cut(mut stream: impl AsyncRead + Unpin) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match bounded(stream.read(&mut buf)).await {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {} // an alert, or TLS's close_notify, before the end
        }
    }
}

async fn stalled_handshakes_are_cut(kind: &str) {
    let (config, pem) = tls();
    let addr = start(kind, config, Pages::default(), Config::default().handshake_timeout(TIMEOUT)).await;
    // The default timeout is far longer: an end within 4 timeouts is this one's.
    assert!(Config::default().handshake_timeout > TIMEOUT * 8);

    // Nothing at all.
    let silent = TcpStream::connect(addr).await.unwrap();
    let waited = cut(silent).await;
    assert!(waited < TIMEOUT * 4, "{kind}: a silent client held {waited:?}");

    // The start of a ClientHello: a handshake record announcing 512 bytes, then nothing.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
    let waited = cut(partial).await;
    assert!(waited < TIMEOUT * 4, "{kind}: a stalled TLS handshake held {waited:?}");

    // A complete TLS handshake, then no request.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tls = bounded(connector.connect(ServerName::try_from("localhost").unwrap(), tcp)).await.unwrap();
    let waited = cut(tls).await;
    assert!(waited < TIMEOUT * 4, "{kind}: a TLS client without a request held {waited:?}");
}

macro_rules! on_every_tls_server {
    ($($name:ident: $kind:literal),*) => {$(
        #[tokio::test]
        async fn $name() {
            stalled_handshakes_are_cut($kind).await;
        }
    )*};
}

on_every_tls_server!(on_standalone: "standalone", on_hyper: "hyper", on_tower: "tower", on_axum: "axum");
