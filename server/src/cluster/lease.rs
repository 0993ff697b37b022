//! Which node decides for each session: PostgreSQL's `owners` table names
//! the node, and the node's row in `nodes` says until when it lives
//! (migration `V2__cluster.sql`). A node renews its one row, however many
//! sessions it holds; every time is PostgreSQL's clock, so that the nodes'
//! clocks need not agree.

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

    /// Take `session`'s lease if no live node holds it (or this node
    /// does); either way, who holds it now, and for how much longer at
    /// least.
    pub(crate) async fn claim(&self, session: &SessionId) -> Result<Owner, StoreError> {
        let client = self.client().await?;
        let take = client
            .prepare_cached(
                "INSERT INTO owners (session, node) VALUES ($1, $2) \
                 ON CONFLICT (session) DO UPDATE SET node = EXCLUDED.node \
                 WHERE owners.node = EXCLUDED.node OR NOT EXISTS ( \
                     SELECT 1 FROM nodes \
                     WHERE nodes.node = owners.node AND nodes.alive_until >= now()) \
                 RETURNING node",
            )
            .await
            .map_err(pg)?;
        let held = client
            .prepare_cached(
                "SELECT owners.node, \
                 COALESCE(GREATEST(EXTRACT(EPOCH FROM nodes.alive_until - now()), 0), 0)::float8 \
                 FROM owners LEFT JOIN nodes ON nodes.node = owners.node \
                 WHERE owners.session = $1",
            )
            .await
            .map_err(pg)?;
        let id: &[u8] = &session.0;
        // A lease given up between the two statements is taken again.
        for _ in 0..3 {
            if client
                .query_opt(&take, &[&id, &self.node])
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

    /// Say this node lives for another lease, and give up `released`: one
    /// row written, however many sessions the node holds.
    pub(crate) async fn renew(&self, released: &[SessionId]) -> Result<(), StoreError> {
        let client = self.client().await?;
        let alive = client
            .prepare_cached(
                "INSERT INTO nodes (node, alive_until) \
                 VALUES ($1, now() + make_interval(secs => $2)) \
                 ON CONFLICT (node) DO UPDATE SET alive_until = EXCLUDED.alive_until",
            )
            .await
            .map_err(pg)?;
        client
            .execute(&alive, &[&self.node, &self.lease.as_secs_f64()])
            .await
            .map_err(pg)?;
        if !released.is_empty() {
            let ids: Vec<&[u8]> = released.iter().map(|s| &s.0[..]).collect();
            client
                .execute(
                    "DELETE FROM owners WHERE node = $1 AND session = ANY($2)",
                    &[&self.node, &ids],
                )
                .await
                .map_err(pg)?;
        }
        Ok(())
    }

    /// Give up every lease this node holds (a node that drains), so that
    /// other nodes take its sessions at once.
    pub(crate) async fn release(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM owners WHERE node = $1", &[&self.node])
            .await
            .map_err(pg)?;
        client
            .execute("DELETE FROM nodes WHERE node = $1", &[&self.node])
            .await
            .map_err(pg)?;
        Ok(())
    }

    /// Forget the leases of nodes dead for over an hour, and those nodes.
    pub(crate) async fn forget_the_dead(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .batch_execute(
                "DELETE FROM owners WHERE NOT EXISTS ( \
                     SELECT 1 FROM nodes WHERE nodes.node = owners.node \
                     AND nodes.alive_until >= now() - interval '1 hour'); \
                 DELETE FROM nodes WHERE alive_until < now() - interval '1 hour';",
            )
            .await
            .map_err(pg)
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
