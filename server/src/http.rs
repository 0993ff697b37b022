//! The plain-HTTP side of the relay's port: `GET /healthz` and
//! `GET /metrics`. Anything else that is not a websocket upgrade gets 404.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// What a connection's first request asks for.
pub(crate) enum Route {
    /// A websocket upgrade (left unread for the handshake).
    Websocket,
    /// `GET /healthz`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// Anything else.
    NotFound,
}

/// Look at the request head without consuming it, waiting up to `limit`
/// for it to arrive.
pub(crate) async fn route(stream: &TcpStream, limit: Duration) -> std::io::Result<Route> {
    const MAX_HEAD: usize = 8192;
    let mut buf = vec![0u8; MAX_HEAD];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let head = &buf[..n];
        let complete = head.windows(4).any(|w| w == b"\r\n\r\n");
        if complete || n == MAX_HEAD || tokio::time::Instant::now() >= deadline {
            let text = String::from_utf8_lossy(head).to_ascii_lowercase();
            if text.contains("\r\nupgrade: websocket") {
                return Ok(Route::Websocket);
            }
            let path = text.split_whitespace().nth(1).unwrap_or("");
            return Ok(match (text.starts_with("get "), path) {
                (true, "/healthz") => Route::Health,
                (true, "/metrics") => Route::Metrics,
                _ => Route::NotFound,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Answer a plain HTTP request and close.
pub(crate) async fn respond(
    mut stream: TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
