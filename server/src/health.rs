//! Readiness: whether this relay can serve, for a load balancer's health
//! check (`/healthz`) and for `/metrics`.
//!
//! A relay can serve unless it is draining (it was told to shut down), its
//! store has failed (PostgreSQL's takes no more writes until it recovers;
//! a sled relay whose store fails exits instead), or the link to
//! the other relays of its cluster is down. [`Health`] holds what others
//! set (the drain, the cluster link); the store is asked at each check.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the relay can serve and, if not, the first reason why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// It can: `200 ok`.
    Ready,
    /// It was told to shut down and serves only the connections it has.
    Draining,
    /// Its store takes no more writes.
    StoreUnavailable,
    /// It cannot reach the other relays of its cluster.
    ClusterUnavailable,
}

impl Readiness {
    /// Every state, in the order `/metrics` lists them.
    const ALL: [Readiness; 4] = [
        Readiness::Ready,
        Readiness::Draining,
        Readiness::StoreUnavailable,
        Readiness::ClusterUnavailable,
    ];

    /// The line `/healthz` answers.
    pub(crate) fn says(self) -> &'static str {
        match self {
            Readiness::Ready => "ok",
            Readiness::Draining => "draining",
            Readiness::StoreUnavailable => "store unavailable",
            Readiness::ClusterUnavailable => "cluster unavailable",
        }
    }

    /// Its name as a Prometheus label value.
    fn label(self) -> &'static str {
        match self {
            Readiness::Ready => "ok",
            Readiness::Draining => "draining",
            Readiness::StoreUnavailable => "store_unavailable",
            Readiness::ClusterUnavailable => "cluster_unavailable",
        }
    }

    /// `caucus_health`, one gauge per state, 1 for the one in force.
    pub(crate) fn render(self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP caucus_health What /healthz says: 1 for the state in force.\n# TYPE caucus_health gauge"
        );
        for state in Self::ALL {
            let _ = writeln!(
                out,
                "caucus_health{{state=\"{}\"}} {}",
                state.label(),
                u8::from(state == self)
            );
        }
    }
}

/// The link between this relay and the other relays of its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Up, or no cluster at all.
    Up,
    /// Down: the relay cannot serve.
    Down,
}

/// What a relay's `/healthz` reports besides its store, shared with
/// whatever sets it: the drain, set when the relay is told to shut down,
/// and the cluster link (a relay alone has none, and it stays [`Link::Up`]).
#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
    cluster_down: AtomicBool,
}

impl Health {
    /// Say that the link to the other relays is up or down.
    pub fn set_cluster(&self, link: Link) {
        self.cluster_down
            .store(link == Link::Down, Ordering::Release);
    }

    /// The relay was told to shut down: it stays so until it stops.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the relay can serve, given whether its store still takes
    /// writes: draining first (a load balancer must stop sending anyone
    /// here whatever else is wrong), then the store, then the cluster.
    pub(crate) fn readiness(&self, store_healthy: bool) -> Readiness {
        if self.draining.load(Ordering::Acquire) {
            Readiness::Draining
        } else if !store_healthy {
            Readiness::StoreUnavailable
        } else if self.cluster_down.load(Ordering::Acquire) {
            Readiness::ClusterUnavailable
        } else {
            Readiness::Ready
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_is_ready_until_its_store_or_cluster_fails_and_draining_outranks_both() {
        let health = Health::default();
        assert_eq!(health.readiness(true), Readiness::Ready);
        assert_eq!(health.readiness(false), Readiness::StoreUnavailable);
        health.set_cluster(Link::Down);
        assert_eq!(health.readiness(true), Readiness::ClusterUnavailable);
        assert_eq!(health.readiness(false), Readiness::StoreUnavailable);
        health.set_cluster(Link::Up);
        assert_eq!(health.readiness(true), Readiness::Ready);
        health.set_cluster(Link::Down);
        health.drain();
        assert_eq!(health.readiness(false), Readiness::Draining);
        health.set_cluster(Link::Up);
        assert_eq!(health.readiness(true), Readiness::Draining);
    }

    #[test]
    fn healthz_says_one_plain_line_per_state() {
        let said: Vec<_> = Readiness::ALL.iter().map(|r| r.says()).collect();
        assert_eq!(
            said,
            ["ok", "draining", "store unavailable", "cluster unavailable"]
        );
    }

    #[test]
    fn metrics_show_a_one_for_the_state_in_force_and_zeros_for_the_others() {
        let mut out = String::new();
        Readiness::StoreUnavailable.render(&mut out);
        let lines: Vec<_> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "caucus_health{state=\"ok\"} 0",
                "caucus_health{state=\"draining\"} 0",
                "caucus_health{state=\"store_unavailable\"} 1",
                "caucus_health{state=\"cluster_unavailable\"} 0",
            ]
        );
    }
}
