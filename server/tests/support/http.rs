//! A small HTTP/1.1 client (hyper's) over any stream, plain or TLS.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::http::response::Parts;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// One HTTP/1.1 connection; it sends requests one after another.
pub struct Http(SendRequest<Empty<Bytes>>);

impl Http {
    /// Open a connection over `io`.
    pub async fn over<S>(io: S) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(connection);
        Self(sender)
    }

    /// Open a plain connection to `addr`.
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        Self::over(tokio::net::TcpStream::connect(addr).await.unwrap()).await
    }

    /// Send `request` and read the whole response.
    pub async fn send(&mut self, request: Request<Empty<Bytes>>) -> (Parts, Bytes) {
        self.0.ready().await.unwrap();
        let response: Response<_> = self.0.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        (parts, body.collect().await.unwrap().to_bytes())
    }

    /// `GET path` with `headers`.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (Parts, Bytes) {
        let mut request = Request::get(path).header("host", "localhost");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Empty::new()).unwrap()).await
    }
}

/// A response header as text ("" if absent).
pub fn header<'a>(parts: &'a Parts, name: &str) -> &'a str {
    parts
        .headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}
