//! Which node decides for each session: leases in PostgreSQL's `owners`
//! table (migration `V2__cluster.sql`), judged by PostgreSQL's clock alone,
//! so that the nodes' clocks need not agree.

use std::collections::HashSet;
use std::time::Duration;

use caucus_protocol::identity::Fingerprint;
use caucus_protocol::ids::SessionId;
use deadpool_postgres::Pool;

use crate::store::StoreError;

fn pg(e: impl std::fmt::Display) -> StoreError {
    StoreError::Postgres(e.to_string())
}

/// A small pool of connections to the database at `url`, for leases.
pub(crate) fn pool(url: &str) -> Result<Pool, StoreError> {
    let config: tokio_postgres::Config = url.parse().map_err(pg)?;
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager).max_size(4).build().map_err(pg)
}

/// Who holds a session's lease, and for how much longer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Owner {
    pub(crate) node: String,
    pub(crate) remaining: Duration,
}

/// One node's view of the leases.
pub(crate) struct Leases {
    pool: Pool,
    node: String,
    lease: Duration,
}

impl Leases {
    pub(crate) fn new(pool: Pool, node: String, lease: Duration) -> Self {
        Self { pool, node, lease }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pg)
    }

    /// Take `session`'s lease if no one holds it (or it ran out, or this
    /// node holds it); either way, who holds it now.
    pub(crate) async fn claim(&self, session: &SessionId) -> Result<Owner, StoreError> {
        let client = self.client().await?;
        let take = client
            .prepare_cached(
                "INSERT INTO owners (session, node, lease_until) \
                 VALUES ($1, $2, now() + make_interval(secs => $3)) \
                 ON CONFLICT (session) DO UPDATE \
                 SET node = EXCLUDED.node, lease_until = EXCLUDED.lease_until \
                 WHERE owners.lease_until < now() OR owners.node = EXCLUDED.node \
                 RETURNING node",
            )
            .await
            .map_err(pg)?;
        let held = client
            .prepare_cached(
                "SELECT node, GREATEST(EXTRACT(EPOCH FROM lease_until - now()), 0)::float8 \
                 FROM owners WHERE session = $1",
            )
            .await
            .map_err(pg)?;
        let id: &[u8] = &session.0;
        // A lease given up between the two statements is taken again.
        for _ in 0..3 {
            let secs = self.lease.as_secs_f64();
            if client
                .query_opt(&take, &[&id, &self.node, &secs])
                .await
                .map_err(pg)?
                .is_some()
            {
                return Ok(Owner {
                    node: self.node.clone(),
                    remaining: self.lease,
                });
            }
            if let Some(row) = client.query_opt(&held, &[&id]).await.map_err(pg)? {
                let remaining: f64 = row.try_get(1).map_err(pg)?;
                return Ok(Owner {
                    node: row.try_get(0).map_err(pg)?,
                    remaining: Duration::try_from_secs_f64(remaining).unwrap_or_default(),
                });
            }
        }
        Err(StoreError::Postgres(
            "a session's lease kept changing hands".into(),
        ))
    }

    /// Renew this node's leases on `held`, and give up its others: the
    /// sessions of `held` it still holds.
    pub(crate) async fn renew(&self, held: &[SessionId]) -> Result<HashSet<SessionId>, StoreError> {
        let client = self.client().await?;
        let renew = client
            .prepare_cached(
                "UPDATE owners SET lease_until = now() + make_interval(secs => $3) \
                 WHERE node = $1 AND session = ANY($2) RETURNING session",
            )
            .await
            .map_err(pg)?;
        let give_up = client
            .prepare_cached("DELETE FROM owners WHERE node = $1 AND NOT (session = ANY($2))")
            .await
            .map_err(pg)?;
        let ids: Vec<&[u8]> = held.iter().map(|s| &s.0[..]).collect();
        let secs = self.lease.as_secs_f64();
        client
            .execute(&give_up, &[&self.node, &ids])
            .await
            .map_err(pg)?;
        client
            .query(&renew, &[&self.node, &ids, &secs])
            .await
            .map_err(pg)?
            .iter()
            .map(|row| {
                let id: &[u8] = row.try_get(0).map_err(pg)?;
                id.try_into()
                    .map(SessionId)
                    .map_err(|_| StoreError::Corrupt("a lease's session id".into()))
            })
            .collect()
    }

    /// Give up every lease this node holds (a node that drains).
    pub(crate) async fn release(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM owners WHERE node = $1", &[&self.node])
            .await
            .map_err(pg)?;
        Ok(())
    }

    /// The cluster's relay identity: `relay` if this is the first node,
    /// else the one the first node wrote.
    pub(crate) async fn relay_identity(&self, relay: &Fingerprint) -> Result<Vec<u8>, StoreError> {
        let client = self.client().await?;
        let mine: &[u8] = &relay.0;
        client
            .execute(
                "INSERT INTO relay_identity (fingerprint) VALUES ($1) \
                 ON CONFLICT (only_row) DO NOTHING",
                &[&mine],
            )
            .await
            .map_err(pg)?;
        let row = client
            .query_one("SELECT fingerprint FROM relay_identity", &[])
            .await
            .map_err(pg)?;
        row.try_get(0).map_err(pg)
    }
}
