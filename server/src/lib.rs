//! # caucus-server
//!
//! The Caucus relay. It authenticates devices, enforces the mediator-signed
//! roster, orders, stores and delivers end-to-end encrypted envelopes, and
//! says who is present. It never holds a content key and never sees
//! plaintext: every signed object it accepts is checked with
//! `caucus-protocol`, and it stores what it relays byte for byte.
//!
//! | module | holds |
//! | --- | --- |
//! | `cluster` | several relay nodes on one PostgreSQL: session leases, and NATS between the nodes |
//! | `config` | flags, environment and TOML settings |
//! | `store` | the durable store (sled or PostgreSQL) and its group committer |
//! | `hub` | sessions in memory and each request's rules |
//! | `conn` | one websocket connection, once upgraded: auth, limits, timers |
//! | `outbox` | a connection's bounded outbound queue |
//! | `limits` | request rates per connection, device and address; connections and handshakes per address |
//! | `health` | readiness for `/healthz`: draining, the store, the cluster link |
//! | `http` | HTTP (hyper, axum): `/healthz`, `/metrics`, security headers, the websocket upgrade |
//! | `web` | the web client on `/`: built in, from `--web-dir`, or none |
//! | `tls` | rustls (ring provider) from a PEM certificate and key |
//! | `metrics` | Prometheus counters |
//! | `relay_key` | the relay's identity key, its rotations and its URLs |
//!
//! Run it with `cargo run --release -p caucus-server`; embed it with
//! [`Server`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use caucus_server::{Args, Config, Server};
//! use clap::Parser;
//!
//! let config = Config::from_args(Args::parse_from(["caucus-server", "--listen", "127.0.0.1:0"]))?;
//! let server = Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod cluster;
mod config;
mod conn;
mod health;
mod http;
mod hub;
mod limits;
mod metrics;
mod outbox;
mod relay_key;
mod server;
mod store;
mod tls;
mod web;

pub use cluster::{CLOSE_MOVED, ClusterError};
pub use config::{Args, ClusterSettings, Config, ConfigError, WebClient};
pub use conn::{CLOSE_AUTH_TIMEOUT, CLOSE_IDLE, CLOSE_TOO_SLOW};
pub use health::{Health, Link};
pub use relay_key::rotate as rotate_key;
pub use server::{Running, Server, ServerError};
pub use store::StoreLocation;
pub use tls::TlsError;
