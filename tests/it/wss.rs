//! wss://: the client over rustls, against a local TLS server with a certificate made in
//! the test; custom roots, the default roots refusing an unknown issuer, and client
//! certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use common::{Echo, bounded};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use wsdriver::client::ClientBuilder;
use wsdriver::{Config, Error, Message, serve};

struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn identity(names: &[&str]) -> Identity {
    let generated = rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    Identity {
        cert: generated.cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der())),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(cert: &CertificateDer<'static>) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    roots
}

/// A TLS echo server; with `client_ca`, it requires a client certificate issued by it.
async fn tls_server(server: &Identity, client_ca: Option<&CertificateDer<'static>>) -> SocketAddr {
    let builder = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap();
    let builder = match client_ca {
        Some(ca) => {
            builder.with_client_cert_verifier(WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)), provider()).build().unwrap())
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(vec![server.cert.clone()], server.key.clone_key()).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                if let Ok((socket, _)) = wsdriver::accept(tls, &Config::default()).await {
                    serve(socket, Echo).await;
                }
            });
        }
    });
    addr
}

async fn echo_over(builder: ClientBuilder) -> Result<(), Error> {
    let (mut ws, _) = bounded(builder.connect()).await?;
    ws.send(Message::text("over tls")).await?;
    assert_eq!(bounded(ws.recv()).await.unwrap()?, Message::text("over tls"));
    let big = Message::binary(vec![7u8; 1 << 20]);
    ws.send(big.clone()).await?;
    assert_eq!(bounded(ws.recv()).await.unwrap()?, big);
    Ok(())
}

#[tokio::test]
async fn wss_with_custom_roots_by_name_and_by_ip() {
    let server = identity(&["localhost", "127.0.0.1"]);
    let addr = tls_server(&server, None).await;
    let port = addr.port();
    echo_over(ClientBuilder::new(format!("wss://localhost:{port}/")).root_certificates(roots(&server.cert))).await.unwrap();
    echo_over(ClientBuilder::new(format!("wss://127.0.0.1:{port}/")).root_certificates(roots(&server.cert))).await.unwrap();
}

#[tokio::test]
async fn the_default_roots_refuse_an_unknown_issuer() {
    let server = identity(&["localhost"]);
    let addr = tls_server(&server, None).await;
    let error = ClientBuilder::new(format!("wss://localhost:{}/", addr.port())).connect().await.unwrap_err();
    assert!(matches!(&error, Error::Io(e) if e.to_string().contains("UnknownIssuer")), "{error}");
}

#[tokio::test]
async fn client_certificates() {
    let server = identity(&["localhost"]);
    let client = identity(&["client.example"]);
    let addr = tls_server(&server, Some(&client.cert)).await;
    let url = format!("wss://localhost:{}/", addr.port());
    echo_over(
        ClientBuilder::new(&url)
            .root_certificates(roots(&server.cert))
            .client_certificate(vec![client.cert.clone()], client.key.clone_key()),
    )
    .await
    .unwrap();
    // Without one, the server refuses the connection.
    assert!(echo_over(ClientBuilder::new(&url).root_certificates(roots(&server.cert))).await.is_err());
}
