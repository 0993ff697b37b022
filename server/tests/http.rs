//! HTTP on the relay's port: health, the websocket upgrade as a route of its
//! own, the web client with its headers, caching and compression, and the
//! web client from a folder or none.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use support::Relay;
use support::http::{Http, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The built web client, as the relay embeds it.
fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist")
}

/// Some file under `web/dist/assets/`, as `assets/NAME`.
fn some_asset() -> String {
    let entry = std::fs::read_dir(dist().join("assets"))
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().is_file())
        .unwrap();
    format!("assets/{}", entry.file_name().to_str().unwrap())
}

/// The security headers every response carries.
fn assert_security_headers(parts: &hyper::http::response::Parts) {
    assert_eq!(header(parts, "content-security-policy"), CSP);
    assert_eq!(header(parts, "x-content-type-options"), "nosniff");
    assert_eq!(header(parts, "referrer-policy"), "no-referrer");
    assert_eq!(header(parts, "cross-origin-opener-policy"), "same-origin");
    assert_eq!(header(parts, "cross-origin-resource-policy"), "same-origin");
}

/// One request on its own connection, which the relay closes after it; the
/// raw bytes of the answer.
async fn raw(relay: &Relay, request: &str) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(support::WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn head_healthz_answers_200_with_no_body_and_get_healthz_says_ok() {
    let relay = Relay::start().await;
    let out = raw(
        &relay,
        "HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "", "{text}");

    let mut http = Http::connect(relay.addr).await;
    let (parts, body) = http.get("/healthz", &[]).await;
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], b"ok\n");
    assert!(header(&parts, "content-type").starts_with("text/plain"));
    assert_security_headers(&parts);
    // A query changes nothing; the same connection serves the next
    // request (keep-alive).
    let (parts, body) = http.get("/healthz?x=1", &[]).await;
    assert_eq!((parts.status.as_u16(), &body[..]), (200, &b"ok\n"[..]));
    let (parts, body) = http.get("/metrics", &[]).await;
    assert_eq!(parts.status, 200);
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("caucus_connections 0")
    );
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("caucus_health{state=\"ok\"} 1\n")
    );
}

#[tokio::test]
async fn a_websocket_upgrade_without_the_subprotocol_is_refused_and_never_served_a_page() {
    let relay = Relay::start().await;
    let upgrade = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    for (path, protocol) in [
        ("/", None),
        ("/", Some("chat")),
        ("/index.html", Some("caucus.v2")),
    ] {
        let mut headers = upgrade.to_vec();
        headers.extend(protocol.map(|p| ("sec-websocket-protocol", p)));
        let (parts, body) = Http::connect(relay.addr).await.get(path, &headers).await;
        assert_eq!(parts.status, 400, "{path} {protocol:?}");
        assert_eq!(&body[..], b"subprotocol caucus.v1 required\n");
        assert!(header(&parts, "content-type").starts_with("text/plain"));
        assert_security_headers(&parts);
    }
    // What is missing is said.
    let (parts, body) = Http::connect(relay.addr)
        .await
        .get(
            "/",
            &[
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "caucus.v1"),
            ],
        )
        .await;
    assert_eq!(parts.status, 400);
    assert_eq!(
        &body[..],
        b"a websocket handshake needs Connection: upgrade\n"
    );
}

#[tokio::test]
async fn a_websocket_is_accepted_on_any_path_even_a_pages_or_healthzs() {
    let relay = Relay::start().await;
    for path in ["", "/", "/healthz", "/index.html?x=1", "/anything/else"] {
        let mut ws = support::raw_connect(&format!("{}{path}", relay.url())).await;
        match tokio::time::timeout(support::WAIT, ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => assert!(t.contains("challenge"), "{t}"),
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_frame_sent_with_the_handshake_is_read_once_the_socket_is_upgraded() {
    let relay = Relay::start().await;
    let mut socket = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    // A request in the same write as the handshake: hyper reads it with the
    // head, and the websocket must start from it. A masked text frame (RFC
    // 6455 section 5.2), readable but unauthenticated.
    let payload = br#"{"v":1,"id":7}"#;
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut bytes = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: caucus.v1\r\n\r\n",
        relay.addr
    )
    .into_bytes();
    bytes.extend([0x81, 0x80 | payload.len() as u8]);
    bytes.extend(mask);
    bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    socket.write_all(&bytes).await.unwrap();
    // The `101` head, then the websocket (with whatever came behind it).
    let mut read = Vec::new();
    let head_end = loop {
        let mut chunk = [0; 1024];
        let n = tokio::time::timeout(support::WAIT, socket.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&read));
        read.extend(&chunk[..n]);
        if let Some(i) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    assert!(read.starts_with(b"HTTP/1.1 101"), "{read:?}");
    let mut ws = tokio_tungstenite::WebSocketStream::from_partially_read(
        socket,
        read[head_end..].to_vec(),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    let mut texts = Vec::new();
    while texts.len() < 2 {
        match tokio::time::timeout(support::WAIT, ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
            other => panic!("{other:?} after {texts:?}"),
        }
    }
    assert!(texts[0].contains(r#""type":"challenge""#), "{texts:?}");
    assert!(texts[1].contains(r#""type":"error""#), "{texts:?}");
    assert!(texts[1].contains(r#""id":7"#), "{texts:?}");
}

#[tokio::test]
async fn only_websockets_take_connection_slots() {
    let relay = Relay::start_with(&["--max-connections", "1"]).await;
    // An open HTTP connection does not hold a slot...
    let mut http = Http::connect(relay.addr).await;
    assert_eq!(http.get("/", &[]).await.0.status, 200);
    let _ws = support::raw_connect(&relay.url()).await;
    // ...a websocket does: the next one is refused, and counted.
    let headers = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "caucus.v1"),
    ];
    let (parts, body) = Http::connect(relay.addr).await.get("/", &headers).await;
    assert_eq!(parts.status, 503);
    assert_eq!(&body[..], b"too many connections\n");
    let (_, metrics) = http.get("/metrics", &[]).await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(
        metrics.contains("caucus_rejections_total{code=\"overloaded\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_index_is_served_on_slash_with_the_policy_and_revalidated_by_etag() {
    let relay = Relay::start().await;
    let index = std::fs::read(dist().join("index.html")).unwrap();
    let mut http = Http::connect(relay.addr).await;
    let (parts, body) = http.get("/", &[]).await;
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], &index[..]);
    assert_eq!(header(&parts, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&parts, "cache-control"), "no-cache");
    assert_security_headers(&parts);
    let etag = header(&parts, "etag").to_owned();
    assert!(etag.len() > 64, "{etag}");

    let (parts, body) = http.get("/index.html", &[("if-none-match", &etag)]).await;
    assert_eq!(parts.status, 304);
    assert!(body.is_empty());
    assert_eq!(header(&parts, "etag"), etag);
    assert_eq!(header(&parts, "cache-control"), "no-cache");
    assert_security_headers(&parts);

    let (parts, body) = http.get("/", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], &index[..]);

    let (parts, body) = http.get("/SHA256SUMS", &[]).await;
    assert_eq!(parts.status, 200);
    assert_eq!(
        &body[..],
        &std::fs::read(dist().join("SHA256SUMS")).unwrap()[..]
    );
    assert_eq!(header(&parts, "content-type"), "text/plain; charset=utf-8");
    assert_eq!(header(&parts, "cache-control"), "no-cache");
}

#[tokio::test]
async fn assets_are_immutable_and_unknown_paths_are_a_404_with_the_policy() {
    let relay = Relay::start().await;
    let asset = some_asset();
    let mut http = Http::connect(relay.addr).await;
    let (parts, body) = http.get(&format!("/{asset}"), &[]).await;
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], &std::fs::read(dist().join(&asset)).unwrap()[..]);
    assert_eq!(header(&parts, "cache-control"), IMMUTABLE);
    assert_security_headers(&parts);

    for path in [
        "/nope",
        "/assets/nope.js",
        "/assets",
        "/assets/",
        "/../Cargo.toml",
    ] {
        let (parts, body) = http.get(path, &[]).await;
        assert_eq!(parts.status, 404, "{path}");
        assert_eq!(&body[..], b"not found\n");
        assert_eq!(header(&parts, "cache-control"), "no-cache", "{path}");
        assert_security_headers(&parts);
    }
}

#[tokio::test]
async fn files_are_compressed_for_browsers_that_accept_it() {
    let relay = Relay::start().await;
    let index = std::fs::read(dist().join("index.html")).unwrap();
    let mut http = Http::connect(relay.addr).await;
    let (parts, body) = http.get("/", &[("accept-encoding", "gzip")]).await;
    assert_eq!(parts.status, 200);
    assert_eq!(header(&parts, "content-encoding"), "gzip");
    assert!(header(&parts, "vary").contains("accept-encoding"));
    assert_eq!(gunzip(&body), index);
    assert_security_headers(&parts);
    let (parts, _) = http.get("/", &[("accept-encoding", "br")]).await;
    assert_eq!(header(&parts, "content-encoding"), "br");
    let (parts, body) = http.get("/", &[]).await;
    assert_eq!(header(&parts, "content-encoding"), "");
    assert_eq!(&body[..], &index[..]);
}

/// A client build in a folder: an index, a script, a WebAssembly module and
/// the sums.
fn client_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>from disk</title><script type=module src=assets/app-1.js></script>",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("assets/app-1.js"),
        "console.log('from disk');\n".repeat(100),
    )
    .unwrap();
    std::fs::write(dir.path().join("assets/core-1.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("SHA256SUMS"), "sums\n").unwrap();
    dir
}

#[tokio::test]
async fn web_dir_serves_a_folder_with_the_same_headers() {
    let folder = client_folder();
    let relay = Relay::start_with(&["--web-dir", folder.path().to_str().unwrap()]).await;
    let mut http = Http::connect(relay.addr).await;

    let (parts, body) = http.get("/", &[]).await;
    assert_eq!(parts.status, 200);
    assert!(body.starts_with(b"<!doctype html><title>from disk"));
    assert_eq!(header(&parts, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&parts, "cache-control"), "no-cache");
    assert_security_headers(&parts);
    let etag = header(&parts, "etag").to_owned();
    assert!(!etag.is_empty());
    let (parts, _) = http.get("/", &[("if-none-match", &etag)]).await;
    assert_eq!(parts.status, 304);

    let (parts, body) = http
        .get("/assets/app-1.js", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(parts.status, 200);
    assert_eq!(
        header(&parts, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(header(&parts, "cache-control"), IMMUTABLE);
    assert_eq!(header(&parts, "content-encoding"), "gzip");
    assert_eq!(
        gunzip(&body),
        "console.log('from disk');\n".repeat(100).into_bytes()
    );

    let (parts, body) = http.get("/assets/core-1.wasm", &[]).await;
    assert_eq!(header(&parts, "content-type"), "application/wasm");
    assert_eq!(&body[..], b"\0asm\x01\0\0\0");

    for path in ["/nope", "/assets/nope.js", "/../Cargo.toml"] {
        let (parts, body) = http.get(path, &[]).await;
        assert_eq!(parts.status, 404, "{path}");
        assert_eq!(&body[..], b"not found\n");
        assert_eq!(header(&parts, "cache-control"), "no-cache");
        assert_security_headers(&parts);
    }
}

#[tokio::test]
async fn no_web_serves_no_client_and_a_missing_web_dir_stops_the_start() {
    let relay = Relay::start_with(&["--no-web"]).await;
    let mut http = Http::connect(relay.addr).await;
    let (parts, body) = http.get("/", &[]).await;
    assert_eq!(parts.status, 404);
    assert_eq!(&body[..], b"not found\n");
    assert_security_headers(&parts);
    assert_eq!(http.get("/healthz", &[]).await.0.status, 200);

    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    let flags = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--web-dir",
        "/nonexistent/web",
    ];
    let error = caucus_server::Server::spawn(&flags).await.err().unwrap();
    assert!(error.to_string().contains("/nonexistent/web"), "{error}");
}

#[tokio::test]
async fn an_idle_http_connection_does_not_hold_up_shutdown() {
    let relay = Relay::start().await;
    let mut http = Http::connect(relay.addr).await;
    assert_eq!(http.get("/", &[]).await.0.status, 200);
    // The relay closes the idle keep-alive connection at once, well within
    // its 10-second drain.
    tokio::time::timeout(Duration::from_secs(3), relay.stop())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_clients_hash_is_logged_and_no_query_or_header_ever_is() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("relay.log");
    let (mut child, url) = support::spawn_binary(
        &dir.path().join("data"),
        "trace",
        std::process::Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    let addr = url.trim_start_matches("ws://").parse().unwrap();
    let mut http = Http::connect(addr).await;
    for path in ["/?invite=SECRET-IN-QUERY", "/nope?token=SECRET-IN-QUERY"] {
        http.get(path, &[("authorization", "SECRET-IN-HEADER")])
            .await;
    }
    drop(http);
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
    let logs = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
    let sums = std::fs::read(dist().join("SHA256SUMS")).unwrap();
    let hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, &sums));
    let line = logs
        .lines()
        .find(|l| l.contains("web_client"))
        .unwrap_or_else(|| panic!("no web_client line in {logs}"));
    assert!(line.contains(&hash), "{line}");
    assert!(!logs.contains("SECRET-IN-QUERY"));
    assert!(!logs.contains("SECRET-IN-HEADER"));
}
