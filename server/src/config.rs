//! Configuration: command-line flags, each with an environment variable,
//! over an optional TOML file, over defaults.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use caucus_protocol::document::{CHUNK_SIZE, MAX_DOCUMENT_SIZE, TAG_LEN};
use caucus_protocol::identity::Fingerprint;
use clap::Parser;
use serde::Deserialize;

use crate::store::StoreLocation;

/// Command-line flags. Every flag is also read from the environment variable
/// named beside it, and from the TOML file's key of the same name with `_`
/// for `-`.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(name = "caucus-server", version, about = "The Caucus relay")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// A TOML file of settings (flags and environment override it).
    #[arg(long, env = "CAUCUS_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7300].
    #[arg(long, env = "CAUCUS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// A URL at which clients reach the relay (`ws://…` or `wss://…`), as
    /// they dial it: behind a proxy, the proxy's. Repeat the flag (or
    /// separate with commas) for several. A device's login names the URL it
    /// dialled, and the relay accepts only these and its listening address
    /// [default: none besides the listening address].
    #[arg(long = "public-url", env = "CAUCUS_PUBLIC_URL", value_delimiter = ',')]
    pub public_url: Option<Vec<String>>,
    /// Move the relay to a new identity key, with a statement signed by the
    /// old one that clients accept, and exit (the running relay, if any,
    /// takes it when it restarts).
    #[arg(long)]
    #[serde(skip)]
    pub rotate_key: bool,
    /// Directory of the sled store and of the relay's key [default: ./caucus-data].
    #[arg(long, env = "CAUCUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the records are kept: `sled` (in the data directory), or a
    /// PostgreSQL URL, `postgres://user@host/db`; keep a password off the
    /// command line: in this variable, the TOML file or `~/.pgpass`
    /// [default: sled].
    #[arg(long, env = "CAUCUS_STORE")]
    pub store: Option<String>,
    /// Join a cluster of relay nodes through the NATS server at this URL
    /// (`nats://host:4222`); needs `--store postgres://…`, the same for
    /// every node (docs/cluster.md) [default: none, a single relay].
    #[arg(long, env = "CAUCUS_NATS")]
    pub nats: Option<String>,
    /// The cluster's name: nodes with the same NATS server and name serve
    /// together [default: caucus].
    #[arg(long, env = "CAUCUS_CLUSTER")]
    pub cluster: Option<String>,
    /// Seconds a node's lease on a session lasts unrenewed: how long a
    /// session waits for another node when its node dies [default: 6].
    #[arg(long, env = "CAUCUS_LEASE_SECS")]
    pub lease_secs: Option<u64>,
    /// PEM certificate chain for TLS (wss); with --tls-key.
    #[arg(long, env = "CAUCUS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS; with --tls-cert.
    #[arg(long, env = "CAUCUS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Log as JSON lines instead of text (`--log-json`, or `--log-json false`).
    #[arg(long, env = "CAUCUS_LOG_JSON", num_args = 0..=1, default_missing_value = "true")]
    pub log_json: Option<bool>,
    /// Most simultaneous connections [default: 20000].
    #[arg(long, env = "CAUCUS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest websocket frame or message, in bytes [default: 1048576].
    #[arg(long, env = "CAUCUS_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Frames a connection may queue before it is cut off as too slow [default: 1024].
    #[arg(long, env = "CAUCUS_OUTBOUND_QUEUE")]
    pub outbound_queue: Option<usize>,
    /// Requests per second a connection may sustain [default: 200].
    #[arg(long, env = "CAUCUS_RATE_PER_SEC")]
    pub rate_per_sec: Option<u32>,
    /// Requests a connection may burst above its rate [default: 400]. The
    /// same rate and burst hold for all of one device's connections together.
    #[arg(long, env = "CAUCUS_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Requests per second all connections from one address may sustain
    /// together (IPv6: one /64) [default: 1000].
    #[arg(long, env = "CAUCUS_IP_RATE_PER_SEC")]
    pub ip_rate_per_sec: Option<u32>,
    /// Requests all connections from one address may burst [default: 2000].
    #[arg(long, env = "CAUCUS_IP_RATE_BURST")]
    pub ip_rate_burst: Option<u32>,
    /// Most simultaneous connections from one address (IPv6: one /64), at
    /// any stage [default: 256].
    #[arg(long, env = "CAUCUS_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Most connections from one address not yet authenticated (TLS, HTTP
    /// head, websocket before `auth`) [default: 64].
    #[arg(long, env = "CAUCUS_MAX_HANDSHAKES_PER_IP")]
    pub max_handshakes_per_ip: Option<usize>,
    /// Seconds a connection has to send a whole HTTP request head [default: 5].
    #[arg(long, env = "CAUCUS_HEADER_SECS")]
    pub header_secs: Option<u64>,
    /// Seconds one frame (or a ping, or a close) may take to be written to a
    /// client before it is closed as too slow [default: 20].
    #[arg(long, env = "CAUCUS_WRITE_TIMEOUT_SECS")]
    pub write_timeout_secs: Option<u64>,
    /// The largest padded size of one document, in bytes, 65536 to
    /// 52428800 [default: 52428800, 50 MiB].
    #[arg(long, env = "CAUCUS_MAX_DOCUMENT_BYTES")]
    pub max_document_bytes: Option<u64>,
    /// The padded size of all of one session's documents together, in
    /// bytes [default: 1073741824, 1 GiB].
    #[arg(long, env = "CAUCUS_SESSION_DOCUMENT_BYTES")]
    pub session_document_bytes: Option<u64>,
    /// Uploads one device may have under way (not yet complete) [default: 8].
    #[arg(long, env = "CAUCUS_MAX_UPLOADS_PER_DEVICE")]
    pub max_uploads_per_device: Option<usize>,
    /// Bytes of chunks one device may upload a second, at least 65552;
    /// faster uploads are slowed down, not refused [default: 16777216].
    #[arg(long, env = "CAUCUS_UPLOAD_BYTES_PER_SEC")]
    pub upload_bytes_per_sec: Option<u32>,
    /// Seconds an upload may stay incomplete before the sweep deletes it
    /// [default: 86400, a day].
    #[arg(long, env = "CAUCUS_UPLOAD_TTL_SECS")]
    pub upload_ttl_secs: Option<u64>,
    /// A file of the fingerprints allowed to create sessions, one per line
    /// (`#` starts a comment) [default: none, anyone may].
    #[arg(long, env = "CAUCUS_MEDIATORS")]
    pub mediators: Option<PathBuf>,
    /// Sessions one device may hold on the relay at once, from
    /// `create_session` until erased [default: 64].
    #[arg(long, env = "CAUCUS_MAX_SESSIONS_PER_DEVICE")]
    pub max_sessions_per_device: Option<usize>,
    /// Invites one session may hold [default: 256].
    #[arg(long, env = "CAUCUS_MAX_INVITES_PER_SESSION")]
    pub max_invites_per_session: Option<usize>,
    /// Seconds between pings to each connection [default: 20].
    #[arg(long, env = "CAUCUS_PING_SECS")]
    pub ping_secs: Option<u64>,
    /// Seconds without any frame from a client before it is closed [default: 60].
    #[arg(long, env = "CAUCUS_IDLE_SECS")]
    pub idle_secs: Option<u64>,
    /// Seconds a new connection has to authenticate [default: 10].
    #[arg(long, env = "CAUCUS_AUTH_SECS")]
    pub auth_secs: Option<u64>,
    /// Seconds a closed session's data is kept before deletion [default: 0, at close].
    #[arg(long, env = "CAUCUS_RETENTION_SECS")]
    pub retention_secs: Option<u64>,
    /// Seconds a signed deletion statement is kept for the mediator to
    /// collect [default: 2592000, 30 days].
    #[arg(long, env = "CAUCUS_STATEMENT_RETENTION_SECS")]
    pub statement_retention_secs: Option<u64>,
    /// Seconds to go on serving after SIGTERM, with `/healthz` answering
    /// `503 draining` so that a load balancer sends no one new, before every
    /// connection is closed with 1001; 0 closes them at once [default: 5].
    #[arg(long, env = "CAUCUS_DRAIN_SECS")]
    pub drain_secs: Option<u64>,
    /// BENCHMARKING AID, UNSAFE: acknowledge and deliver writes once applied
    /// in memory, before the flush; a crash or `kill -9` can lose what was
    /// acknowledged [default: false].
    #[arg(long, env = "CAUCUS_UNSAFE_ACK_BEFORE_COMMIT", num_args = 0..=1, default_missing_value = "true")]
    pub unsafe_ack_before_commit: Option<bool>,
    /// Serve the web client from this folder instead of the one built into
    /// the binary [default: the built-in client].
    #[arg(long, env = "CAUCUS_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Serve no web client: `/` and its files answer 404 (`--no-web`, or
    /// `--no-web false`) [default: false].
    #[arg(long, env = "CAUCUS_NO_WEB", num_args = 0..=1, default_missing_value = "true")]
    pub no_web: Option<bool>,
}

/// How a node joins its cluster (`--nats`, `--cluster`, `--lease-secs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The NATS server's URL.
    pub nats: String,
    /// The cluster's name.
    pub name: String,
    /// How long a session's lease lasts unrenewed.
    pub lease: Duration,
}

/// Which web client the relay serves on `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebClient {
    /// The client built into the binary (`web/dist` when it was compiled).
    Embedded,
    /// The files of this folder, read at each request (`--web-dir`).
    Dir(PathBuf),
    /// None (`--no-web`).
    Off,
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// URLs at which clients reach the relay, besides its listening address.
    pub public_urls: Vec<String>,
    /// Directory of the sled store and of the relay's key.
    pub data_dir: PathBuf,
    /// Where the records are kept.
    pub store: StoreLocation,
    /// The cluster this node joins, if any.
    pub cluster: Option<ClusterSettings>,
    /// TLS certificate chain and key (PEM), when serving wss.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Log as JSON lines.
    pub log_json: bool,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Largest frame or message in bytes.
    pub max_frame_bytes: usize,
    /// Outbound frames queued per connection before it is cut off.
    pub outbound_queue: usize,
    /// Sustained requests per second per connection.
    pub rate_per_sec: u32,
    /// Burst of requests per connection (and per device).
    pub rate_burst: u32,
    /// Sustained requests per second per address.
    pub ip_rate_per_sec: u32,
    /// Burst of requests per address.
    pub ip_rate_burst: u32,
    /// Most simultaneous connections per address.
    pub max_connections_per_ip: usize,
    /// Most connections per address not yet authenticated.
    pub max_handshakes_per_ip: usize,
    /// Close a connection whose HTTP request head takes longer.
    pub header: Duration,
    /// Close a connection that takes longer to accept one frame.
    pub write_timeout: Duration,
    /// Who may create sessions: these fingerprints, or anyone (`None`).
    pub mediators: Option<HashSet<Fingerprint>>,
    /// The largest padded size of one document.
    pub max_document_bytes: u64,
    /// The padded size of one session's documents together.
    pub session_document_bytes: u64,
    /// Uploads under way per device.
    pub max_uploads_per_device: usize,
    /// Each device's upload budget, in bytes a second.
    pub upload_bytes_per_sec: u32,
    /// How long an upload may stay incomplete.
    pub upload_ttl: Duration,
    /// Sessions one device may hold at once.
    pub max_sessions_per_device: usize,
    /// Invites one session may hold.
    pub max_invites_per_session: usize,
    /// Interval between pings.
    pub ping: Duration,
    /// Close a connection silent for this long.
    pub idle: Duration,
    /// Close a connection not authenticated within this.
    pub auth: Duration,
    /// Keep a closed session's data this long.
    pub retention: Duration,
    /// Keep a deletion statement this long after the erasure.
    pub statement_retention: Duration,
    /// Go on serving this long after the signal to shut down, `/healthz`
    /// saying `draining`.
    pub drain: Duration,
    /// Benchmarking aid, unsafe: acknowledge writes before their flush
    /// (`--unsafe-ack-before-commit`; see `docs/operations.md`).
    pub unsafe_ack_before_commit: bool,
    /// The web client served on `/` (`--web-dir`, `--no-web`).
    pub web: WebClient,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The TOML file did not parse.
    #[error("parsing {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(&'static str),
    /// A line of the `--mediators` file is not a fingerprint.
    #[error("{0} line {1}: not a fingerprint")]
    Mediator(PathBuf, usize),
}

/// The fingerprints of a `--mediators` file: one per line, in base64url as
/// the relay and clients print them; `#` starts a comment, blank lines are
/// skipped.
fn read_mediators(path: &Path) -> Result<HashSet<Fingerprint>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
    let mut mediators = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let fingerprint = Fingerprint::parse(line)
            .ok_or_else(|| ConfigError::Mediator(path.to_path_buf(), n + 1))?;
        mediators.insert(fingerprint);
    }
    Ok(mediators)
}

impl Config {
    /// Settle `args` over the TOML file they name, over the defaults.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let file: Args = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Read(path.clone(), e))?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse(path.clone(), e))?
            }
            None => Args::default(),
        };
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                args.$field.or(file.$field).unwrap_or($default)
            };
        }
        let config = Self {
            listen: pick!(listen, SocketAddr::from(([127, 0, 0, 1], 7300))),
            public_urls: pick!(public_url, Vec::new()),
            data_dir: pick!(data_dir, PathBuf::from("caucus-data")),
            cluster: args.nats.or(file.nats).map(|nats| ClusterSettings {
                nats,
                name: args
                    .cluster
                    .clone()
                    .or(file.cluster.clone())
                    .unwrap_or_else(|| "caucus".into()),
                lease: Duration::from_secs(args.lease_secs.or(file.lease_secs).unwrap_or(6)),
            }),
            store: match args.store.or(file.store).as_deref() {
                None | Some("sled") => StoreLocation::Sled,
                Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                    StoreLocation::Postgres(url.to_owned())
                }
                Some(_) => {
                    return Err(ConfigError::Invalid(
                        "--store is `sled` or a postgres:// URL",
                    ));
                }
            },
            tls: match (
                args.tls_cert.or(file.tls_cert),
                args.tls_key.or(file.tls_key),
            ) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => return Err(ConfigError::Invalid("--tls-cert and --tls-key go together")),
            },
            log_json: pick!(log_json, false),
            max_connections: pick!(max_connections, 20_000),
            max_frame_bytes: pick!(max_frame_bytes, 1 << 20),
            outbound_queue: pick!(outbound_queue, 1024),
            rate_per_sec: pick!(rate_per_sec, 200),
            rate_burst: pick!(rate_burst, 400),
            ip_rate_per_sec: pick!(ip_rate_per_sec, 1000),
            ip_rate_burst: pick!(ip_rate_burst, 2000),
            max_connections_per_ip: pick!(max_connections_per_ip, 256),
            max_handshakes_per_ip: pick!(max_handshakes_per_ip, 64),
            header: Duration::from_secs(pick!(header_secs, 5)),
            write_timeout: Duration::from_secs(pick!(write_timeout_secs, 20)),
            mediators: match args.mediators.or(file.mediators) {
                Some(path) => Some(read_mediators(&path)?),
                None => None,
            },
            max_document_bytes: pick!(max_document_bytes, MAX_DOCUMENT_SIZE),
            session_document_bytes: pick!(session_document_bytes, 1 << 30),
            max_uploads_per_device: pick!(max_uploads_per_device, 8),
            upload_bytes_per_sec: pick!(upload_bytes_per_sec, 16 << 20),
            upload_ttl: Duration::from_secs(pick!(upload_ttl_secs, 86_400)),
            max_sessions_per_device: pick!(max_sessions_per_device, 64),
            max_invites_per_session: pick!(max_invites_per_session, 256),
            ping: Duration::from_secs(pick!(ping_secs, 20)),
            idle: Duration::from_secs(pick!(idle_secs, 60)),
            auth: Duration::from_secs(pick!(auth_secs, 10)),
            retention: Duration::from_secs(pick!(retention_secs, 0)),
            statement_retention: Duration::from_secs(pick!(statement_retention_secs, 2_592_000)),
            drain: Duration::from_secs(pick!(drain_secs, 5)),
            unsafe_ack_before_commit: pick!(unsafe_ack_before_commit, false),
            web: match (args.web_dir.or(file.web_dir), pick!(no_web, false)) {
                (None, false) => WebClient::Embedded,
                (Some(dir), false) => WebClient::Dir(dir),
                (None, true) => WebClient::Off,
                (Some(_), true) => {
                    return Err(ConfigError::Invalid(
                        "--web-dir and --no-web exclude each other",
                    ));
                }
            },
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::Invalid;
        let checks = [
            (
                self.max_connections == 0,
                "max-connections must be at least 1",
            ),
            (
                self.max_frame_bytes < 4096,
                "max-frame-bytes must be at least 4096",
            ),
            (
                self.outbound_queue == 0,
                "outbound-queue must be at least 1",
            ),
            (self.rate_per_sec == 0, "rate-per-sec must be at least 1"),
            (self.rate_burst == 0, "rate-burst must be at least 1"),
            (
                self.ip_rate_per_sec == 0,
                "ip-rate-per-sec must be at least 1",
            ),
            (self.ip_rate_burst == 0, "ip-rate-burst must be at least 1"),
            (
                self.max_connections_per_ip == 0,
                "max-connections-per-ip must be at least 1",
            ),
            (
                self.max_handshakes_per_ip == 0,
                "max-handshakes-per-ip must be at least 1",
            ),
            (self.header.is_zero(), "header-secs must be at least 1"),
            (
                self.write_timeout.is_zero(),
                "write-timeout-secs must be at least 1",
            ),
            (
                !(CHUNK_SIZE as u64..=MAX_DOCUMENT_SIZE).contains(&self.max_document_bytes),
                "max-document-bytes must be from 65536 to 52428800",
            ),
            (
                self.session_document_bytes < CHUNK_SIZE as u64,
                "session-document-bytes must be at least 65536",
            ),
            (
                self.max_uploads_per_device == 0,
                "max-uploads-per-device must be at least 1",
            ),
            (
                (self.upload_bytes_per_sec as usize) < CHUNK_SIZE + TAG_LEN,
                "upload-bytes-per-sec must be at least 65552",
            ),
            (
                self.upload_ttl.is_zero(),
                "upload-ttl-secs must be at least 1",
            ),
            (
                self.max_sessions_per_device == 0,
                "max-sessions-per-device must be at least 1",
            ),
            (
                self.max_invites_per_session == 0,
                "max-invites-per-session must be at least 1",
            ),
            (self.ping.is_zero(), "ping-secs must be at least 1"),
            (self.auth.is_zero(), "auth-secs must be at least 1"),
            (
                self.idle <= self.ping,
                "idle-secs must be longer than ping-secs",
            ),
            (
                self.unsafe_ack_before_commit && self.store != StoreLocation::Sled,
                "--unsafe-ack-before-commit is for the sled store only",
            ),
            (
                self.cluster.is_some() && self.store == StoreLocation::Sled,
                "--nats needs --store postgres://…: the nodes of a cluster share one database",
            ),
            (
                self.cluster.as_ref().is_some_and(|c| c.lease.as_secs() < 2),
                "lease-secs must be at least 2",
            ),
            (
                self.cluster.as_ref().is_some_and(|c| {
                    c.name.is_empty()
                        || !c
                            .name
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
                }),
                "cluster is a name of letters, digits, - and _",
            ),
        ];
        if !self
            .public_urls
            .iter()
            .all(|u| u.starts_with("ws://") || u.starts_with("wss://"))
        {
            return Err(Invalid("a public-url starts with ws:// or wss://"));
        }
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(Invalid(why)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(flags: &[&str]) -> Config {
        let args =
            Args::try_parse_from(std::iter::once("caucus-server").chain(flags.iter().copied()));
        Config::from_args(args.unwrap()).unwrap()
    }

    #[test]
    fn acknowledgements_wait_for_the_flush_unless_the_benchmarking_flag_says_otherwise() {
        assert!(!parse(&[]).unsafe_ack_before_commit);
        assert!(parse(&["--unsafe-ack-before-commit"]).unsafe_ack_before_commit);
        assert!(!parse(&["--unsafe-ack-before-commit", "false"]).unsafe_ack_before_commit);
    }

    #[test]
    fn the_mediators_file_holds_fingerprints_and_comments_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mediators");
        let keys = caucus_protocol::identity::DeviceKeys::generate().unwrap();
        let fingerprint = keys.fingerprint();
        std::fs::write(&path, format!("# who\n\n  {fingerprint}  # Ann\n")).unwrap();
        let config = parse(&["--mediators", path.to_str().unwrap()]);
        assert_eq!(config.mediators, Some(HashSet::from([fingerprint])));
        assert_eq!(parse(&[]).mediators, None);
        std::fs::write(&path, format!("{fingerprint}\nnot-a-fingerprint\n")).unwrap();
        let args = Args::try_parse_from(["caucus-server", "--mediators", path.to_str().unwrap()]);
        assert!(matches!(
            Config::from_args(args.unwrap()),
            Err(ConfigError::Mediator(_, 2))
        ));
    }

    #[test]
    fn the_web_client_is_the_built_in_one_unless_a_folder_or_none_is_asked_for() {
        assert_eq!(parse(&[]).web, WebClient::Embedded);
        assert_eq!(
            parse(&["--web-dir", "site"]).web,
            WebClient::Dir(PathBuf::from("site"))
        );
        assert_eq!(parse(&["--no-web"]).web, WebClient::Off);
        assert_eq!(parse(&["--no-web", "false"]).web, WebClient::Embedded);
        let both = Args::try_parse_from(["caucus-server", "--web-dir", "site", "--no-web"]);
        assert!(Config::from_args(both.unwrap()).is_err());
    }

    #[test]
    fn public_urls_are_listed_by_repeating_the_flag_or_with_commas_and_must_be_websocket_urls() {
        assert!(parse(&[]).public_urls.is_empty());
        assert_eq!(
            parse(&[
                "--public-url",
                "wss://a.example",
                "--public-url",
                "ws://b.example:8080"
            ])
            .public_urls,
            ["wss://a.example", "ws://b.example:8080"]
        );
        assert_eq!(
            parse(&["--public-url", "wss://a.example,wss://b.example"]).public_urls,
            ["wss://a.example", "wss://b.example"]
        );
        let https = Args::try_parse_from(["caucus-server", "--public-url", "https://a.example"]);
        assert!(Config::from_args(https.unwrap()).is_err());
    }

    #[test]
    fn the_drain_lasts_five_seconds_unless_told_otherwise_and_zero_means_none() {
        assert_eq!(parse(&[]).drain, Duration::from_secs(5));
        assert_eq!(parse(&["--drain-secs", "0"]).drain, Duration::ZERO);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "drain_secs = 30\n").unwrap();
        let from_file = parse(&["--config", path.to_str().unwrap()]);
        assert_eq!(from_file.drain, Duration::from_secs(30));
    }

    #[test]
    fn the_document_settings_have_their_defaults_and_allowed_ranges() {
        let config = parse(&[]);
        assert_eq!(config.max_document_bytes, 52_428_800);
        assert_eq!(config.session_document_bytes, 1 << 30);
        assert_eq!(config.max_uploads_per_device, 8);
        assert_eq!(config.upload_bytes_per_sec, 16 << 20);
        assert_eq!(config.upload_ttl, Duration::from_secs(86_400));
        for flags in [
            ["--max-document-bytes", "65535"],
            ["--max-document-bytes", "52428801"],
            ["--session-document-bytes", "65535"],
            ["--max-uploads-per-device", "0"],
            ["--upload-bytes-per-sec", "65551"],
            ["--upload-ttl-secs", "0"],
        ] {
            let args = Args::try_parse_from(std::iter::once("caucus-server").chain(flags));
            assert!(Config::from_args(args.unwrap()).is_err(), "{flags:?}");
        }
        let edge = parse(&[
            "--max-document-bytes",
            "65536",
            "--upload-bytes-per-sec",
            "65552",
        ]);
        assert_eq!(edge.max_document_bytes, 65536);
    }
}
