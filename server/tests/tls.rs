//! The relay over TLS (rustls, ring provider): websocket and health on the
//! same port, with a certificate the client pins.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use std::sync::Arc;

use caucus_protocol::auth::AuthTarget;
use caucus_protocol::identity::DeviceKeys;
use caucus_protocol::wire::{Encoded, Event, Reply, Request, RequestBody, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A self-signed certificate for `localhost`, written as PEM files.
fn certificate(dir: &std::path::Path) -> (CertificateDer<'static>, String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (
        cert.cert.der().clone(),
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

fn connector(root: CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn websocket_and_health_work_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (root, cert, key) = certificate(certs.path());
    let relay = support::Relay::start_with(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let tls = connector(root);
    let localhost = ServerName::try_from("localhost").unwrap();

    // GET /healthz over TLS.
    let tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let mut stream = tls.connect(localhost.clone(), tcp).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"));

    // A websocket over TLS: challenge, auth, a request.
    let tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let stream = tls.connect(localhost, tcp).await.unwrap();
    // The URL dialled is the relay's own (the name checked by TLS is
    // `localhost`): a login names it, and the relay serves it.
    let url = format!("wss://{}", relay.addr);
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "caucus.v1".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let (nonce, relay_key) = match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => match serde_json::from_str::<ServerFrame>(t.as_str()).unwrap() {
            ServerFrame::Event(e) => match *e {
                Event::Challenge { nonce, relay, .. } => (nonce, relay.0.fingerprint()),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    let keys = DeviceKeys::generate().unwrap();
    let auth = Request {
        v: 1,
        id: 1,
        body: RequestBody::Auth {
            identity: Encoded(keys.public().clone()),
            signature: AuthTarget::new(nonce, relay_key, &url).sign(&keys),
            url,
        },
    };
    ws.send(Message::text(serde_json::to_string(&auth).unwrap()))
        .await
        .unwrap();
    let reply = match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => serde_json::from_str::<ServerFrame>(t.as_str()).unwrap(),
        other => panic!("{other:?}"),
    };
    assert!(matches!(reply, ServerFrame::Reply(Reply::Ok { id: 1, .. })));
}

#[tokio::test]
async fn the_web_client_and_health_are_served_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (root, cert, key) = certificate(certs.path());
    let relay = support::Relay::start_with(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let localhost = ServerName::try_from("localhost").unwrap();
    let stream = connector(root).connect(localhost, tcp).await.unwrap();
    let mut http = support::http::Http::over(stream).await;

    let (parts, body) = http.get("/", &[]).await;
    assert_eq!(parts.status, 200);
    let index = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../web/dist/index.html"
    ));
    assert_eq!(&body[..], &index.unwrap()[..]);
    assert!(
        support::http::header(&parts, "content-security-policy").contains("connect-src 'self'")
    );
    let (parts, body) = http.get("/healthz", &[]).await;
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], b"ok\n");
}

#[tokio::test]
async fn a_plain_client_cannot_talk_to_a_tls_relay() {
    let certs = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificate(certs.path());
    let relay = support::Relay::start_with(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let mut request = relay.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "caucus.v1".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
}

#[test]
fn a_certificate_without_a_key_or_an_unreadable_one_is_refused_at_start() {
    use clap::Parser;
    let parse = |args: &[&str]| {
        let mut all = vec!["caucus-server"];
        all.extend_from_slice(args);
        caucus_server::Config::from_args(caucus_server::Args::parse_from(all))
    };
    assert!(parse(&["--tls-cert", "cert.pem"]).is_err());
    let config = parse(&[
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
        "--listen",
        "127.0.0.1:0",
    ])
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config;
    config.data_dir = dir.path().to_path_buf();
    let err = rt
        .block_on(caucus_server::Server::bind(config))
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}
