//! The websocket to the relay: only opening it. Authentication, requests
//! and replies are the machine's (`caucus-client-core`); the driver in
//! [`crate::client`] moves the frames.

use std::time::Duration;

use caucus_client_core::ClientError;
use caucus_protocol::wire::SUBPROTOCOL;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open a websocket to `url` speaking Caucus's subprotocol.
pub(crate) async fn connect(url: &str) -> Result<Socket, ClientError> {
    let conn = |e: &dyn std::fmt::Display| ClientError::Connection(e.to_string());
    let mut request = url.into_client_request().map_err(|e| conn(&e))?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        SUBPROTOCOL.parse().map_err(|e| conn(&e))?,
    );
    let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .map_err(|_| ClientError::Connection("the relay did not answer".into()))?
        .map_err(|e| conn(&e))?;
    Ok(ws)
}
