//! The PostgreSQL engine (being written).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use caucus_protocol::ids::{RoomId, SessionId};
use tokio::sync::mpsc;

use super::{Commit, Key, Kind, StoreError};
use crate::metrics::Metrics;

/// Reads from PostgreSQL.
#[derive(Clone)]
pub(crate) struct Reader;

type Rows = Result<Vec<(Key, Vec<u8>)>, StoreError>;

fn unbuilt() -> StoreError {
    StoreError::Postgres("not built yet".into())
}

impl Reader {
    pub(super) async fn get(&self, _: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        Err(unbuilt())
    }
    pub(super) async fn records(&self, _: Kind, _: &SessionId) -> Rows {
        Err(unbuilt())
    }
    pub(super) async fn log(
        &self,
        _: &SessionId,
        _: &RoomId,
        _: u64,
        _: u64,
        _: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Err(unbuilt())
    }
    pub(super) async fn all(&self, _: Kind) -> Rows {
        Err(unbuilt())
    }
    pub(super) async fn session_records(
        &self,
        _: &SessionId,
    ) -> Result<Vec<(Key, u64)>, StoreError> {
        Err(unbuilt())
    }
}

pub(super) async fn open(
    _: &str,
    _: mpsc::Receiver<Commit>,
    _: Arc<Metrics>,
    _: Arc<AtomicBool>,
) -> Result<(Reader, tokio::task::JoinHandle<()>), StoreError> {
    Err(unbuilt())
}
