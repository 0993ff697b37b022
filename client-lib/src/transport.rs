//! The websocket to the relay: only opening it, over TLS for `wss://`.
//! Authentication, requests and replies are the machine's
//! (`caucus-client-core`); the driver in [`crate::client`] moves the frames.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use caucus_client_core::ClientError;
use caucus_protocol::wire::SUBPROTOCOL;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::client::{IntoClientRequest, uri_mode};
use tokio_tungstenite::tungstenite::error::TlsError;
use tokio_tungstenite::tungstenite::stream::Mode;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Which certificates a `wss://` relay may present: TLS is rustls with the
/// ring provider, TLS 1.2 and 1.3, as the relay's. A `ws://` relay ignores
/// these settings.
///
/// The certificate must chain to one of this computer's trusted root
/// certificates — read with `rustls-native-certs` each time a connection
/// opens, from the operating system's store (the OpenSSL bundle on Linux,
/// the keychain on macOS, the system store on Windows), or from
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` instead when either is set — or to the
/// extra certificate authorities added with [`Tls::with_ca_file`].
///
/// The system's store rather than `webpki-roots` (Mozilla's list compiled
/// in): it is what the person's other programs trust, it holds an
/// organisation's own authority installed there, and it follows the
/// system's updates and removals without a new build. A system without
/// any (a bare container) trusts only the extra authorities.
///
/// The default trusts the system's roots only.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// Certificate authorities trusted besides the system's.
    extra: Vec<CertificateDer<'static>>,
}

impl Tls {
    /// The system's roots and every certificate in the PEM file at `path`,
    /// as certificate authorities: for a relay whose certificate a private
    /// authority issued.
    pub fn with_ca_file(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref();
        let refused = |reason: String| ClientError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let extra = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| refused(e.to_string()))?;
        if extra.is_empty() {
            return Err(refused("no certificate in the file".into()));
        }
        let mut check = RootCertStore::empty();
        for ca in &extra {
            check.add(ca.clone()).map_err(|e| refused(e.to_string()))?;
        }
        Ok(Self { extra })
    }

    /// A client configuration trusting the system's roots and the extra
    /// authorities.
    fn config(&self) -> Result<Arc<ClientConfig>, ClientError> {
        let mut roots = RootCertStore::empty();
        let system = rustls_native_certs::load_native_certs();
        for e in &system.errors {
            tracing::warn!(error = %e, "reading this computer's trusted certificates");
        }
        roots.add_parsable_certificates(system.certs);
        // Each was checked by `with_ca_file`.
        roots.add_parsable_certificates(self.extra.iter().cloned());
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| ClientError::Tls(format!("TLS could not be set up: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// Open a websocket to `url` speaking Caucus's subprotocol; over TLS with
/// `tls`'s roots for `wss://`. A refusal by TLS is [`ClientError::Tls`]: it
/// says why, and trying again will not help.
pub(crate) async fn connect(url: &str, tls: &Tls) -> Result<Socket, ClientError> {
    let conn = |e: &dyn std::fmt::Display| ClientError::Connection(e.to_string());
    let mut request = url.into_client_request().map_err(|e| conn(&e))?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        SUBPROTOCOL.parse().map_err(|e| conn(&e))?,
    );
    let connector = match uri_mode(request.uri()).map_err(|e| conn(&e))? {
        Mode::Tls => Connector::Rustls(tls.config()?),
        Mode::Plain => Connector::Plain,
    };
    let host = request.uri().host().unwrap_or_default().to_owned();
    let opening =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector));
    let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, opening)
        .await
        .map_err(|_| ClientError::Connection("the relay did not answer".into()))?
        .map_err(|e| refusal(&e, &host).unwrap_or_else(|| conn(&e)))?;
    Ok(ws)
}

/// What a person should read when TLS refused the relay at `host`; `None`
/// for any other failure (the relay unreachable, the connection broken).
fn refusal(e: &tokio_tungstenite::tungstenite::Error, host: &str) -> Option<ClientError> {
    use tokio_tungstenite::tungstenite::Error;
    let tls = match e {
        // How tokio-tungstenite reports the handshake: rustls's error
        // inside tokio-rustls's I/O error.
        Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
        Error::Tls(TlsError::Rustls(tls)) => tls,
        Error::Tls(TlsError::InvalidDnsName) => {
            return Some(ClientError::Tls(format!(
                "{host} is not a host name a certificate can be checked against"
            )));
        }
        _ => return None,
    };
    let why = match tls {
        rustls::Error::InvalidCertificate(e) => match e {
            CertificateError::UnknownIssuer => "unknown issuer: if the relay uses a private \
                 certificate authority, pass --ca-cert FILE"
                .to_owned(),
            CertificateError::NotValidForName => {
                format!("the host name does not match: it is not for {host}")
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => format!(
                "the host name does not match: it is for {}, not {}",
                match presented.as_slice() {
                    [] => "no host name".to_owned(),
                    names => names
                        .iter()
                        .map(|n| plain_name(n))
                        .collect::<Vec<_>>()
                        .join(", "),
                },
                expected.to_str()
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "it has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "it is not valid yet: check this computer's clock".to_owned()
            }
            other => other.to_string(),
        },
        other => {
            return Some(ClientError::Tls(format!(
                "the TLS handshake with the relay failed: {other}"
            )));
        }
    };
    Some(ClientError::Tls(format!(
        "the relay's certificate was refused ({why})"
    )))
}

/// A certificate's name as webpki reports it (`DnsName("relay.example")`,
/// `IpAddress(192.0.2.1)`), as a person writes it; any other kind as given.
fn plain_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|name| name.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|ip| ip.strip_suffix(')'))
        })
        .unwrap_or(presented)
}
