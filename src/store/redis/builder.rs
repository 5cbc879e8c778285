//! [`RedisStoreBuilder`]: how a [`RedisStore`] connects and what it keeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Client, Script};

use super::connection::Target;

use super::tasks::{Liveness, listen};
use super::{Inner, MAX_DURATION, RedisStore, scripts};
use crate::store::StoreError;
use crate::store::waiters::Waiters;

/// The command timeout when none is set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Configures a [`RedisStore`]; made by [`RedisStore::builder`] (one
/// Redis) or [`RedisStore::cluster_builder`] (a Redis Cluster).
///
/// Every duration is capped at 100 years: `Duration::MAX` is a valid
/// setting that means "as good as forever".
///
/// The lease is at least three times the command timeout: a renewal (the
/// layer renews every third of the lease) that times out is tried again
/// before the lease lapses, and a create retried after a lost reply finds
/// its lease alive.
/// An explicit [`command_timeout`](Self::command_timeout) raises a shorter
/// lease to three times it; without one, the timeout is 2 s or a third of
/// the lease, whichever is shorter.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_accepted::store::RedisStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_accepted::store::StoreError> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .namespace("app")
///     .ttl(Duration::from_secs(600))
///     .lease(Duration::from_secs(3))
///     .build()
///     .await?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedisStoreBuilder {
    /// One Redis (its URL, or a client or connection given), or a
    /// cluster's nodes.
    target: Target,
    /// The prefix of every key and channel.
    namespace: String,
    /// How long an ended job is kept.
    ttl: Duration,
    /// How long an expired id is remembered past `ttl`.
    tombstone_ttl: Duration,
    /// How long a claim lasts without renewal.
    lease: Duration,
    /// How many jobs a queue holds at most.
    max_queued: usize,
    /// The command, connection and subscription timeout, when set; else
    /// [`DEFAULT_TIMEOUT`], at most a third of the lease.
    timeout: Option<Duration>,
    /// How often the listener pings its subscription, and how long it
    /// waits for the answer (`None`: every second, within the timeout).
    liveness: Option<Liveness>,
}

impl RedisStoreBuilder {
    /// The default settings, on the Redis at `url`.
    pub(super) fn new(target: Target) -> Self {
        Self {
            target,
            namespace: "tower-accepted".into(),
            ttl: Duration::from_secs(3600),
            tombstone_ttl: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(5),
            max_queued: 100_000,
            timeout: None,
            liveness: None,
        }
    }

    /// Uses an existing client (for its connection settings) instead of the
    /// URL. Not for a cluster (a store made by
    /// [`RedisStore::cluster_builder`]), which keeps its nodes.
    pub fn client(mut self, client: Client) -> Self {
        if let Target::Single { client: slot, .. } = &mut self.target {
            *slot = Some(client);
        }
        self
    }

    /// Uses an existing connection manager for commands (the store still
    /// opens connections of its own: one for pub/sub, one for renewals and
    /// sweeps). Not for a cluster, which keeps its nodes.
    pub fn connection_manager(mut self, conn: ConnectionManager) -> Self {
        if let Target::Single { conn: slot, .. } = &mut self.target {
            *slot = Some(conn);
        }
        self
    }

    /// The prefix of every key and channel, so that several applications can
    /// share one Redis (default `tower-accepted`); not empty (it is every
    /// key's hash tag: [`build`](Self::build) refuses an empty one).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long a finished or canceled job is kept (default one hour; at
    /// most 100 years).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.min(MAX_DURATION);
        self
    }

    /// How long an expired id is remembered for `410 Gone` (default 24 h; at
    /// most 100 years).
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl = ttl.min(MAX_DURATION);
        self
    }

    /// How long a claim lasts without renewal: once it lapsed (by Redis's
    /// clock), a sweep puts a durable job with attempts left back in its
    /// queue and ends any other `lost` (default 5 s; the layer renews every
    /// third of it and sweeps every half; at least 300 ms, at most 100
    /// years). At least three times an explicit
    /// [`command_timeout`](Self::command_timeout): a shorter lease is
    /// raised to that.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.clamp(Duration::from_millis(300), MAX_DURATION);
        self
    }

    /// How many durable jobs one queue holds at most (default 100 000; at
    /// least 1): a queued create into a full queue fails with
    /// [`StoreError::Full`] (the layer answers `503`), so that a backlog
    /// nobody claims cannot grow Redis without bound.
    pub fn max_queued(mut self, max_queued: usize) -> Self {
        self.max_queued = max_queued.max(1);
        self
    }

    /// The longest a command may take before it fails (default 2 s, or a
    /// third of the lease when that is shorter; at most 100 years). It also
    /// bounds connecting and subscribing in [`build`](Self::build). The
    /// lease is raised to at least three times a timeout set here.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout.min(MAX_DURATION));
        self
    }

    /// How often the pub/sub listener sends `PING` (default every second)
    /// and how long it waits for the answer before it takes its connection
    /// for dead and reconnects (default: the command timeout). Hidden: a
    /// knob for tests, which shorten both to see a dead connection found.
    #[doc(hidden)]
    pub fn pubsub_liveness(mut self, interval: Duration, bound: Duration) -> Self {
        self.liveness = Some(Liveness {
            interval: interval.clamp(Duration::from_millis(1), MAX_DURATION),
            bound: bound.min(MAX_DURATION),
        });
        self
    }

    /// Connects and starts listening for ended jobs.
    /// Must be called within a tokio runtime.
    pub async fn build(self) -> Result<RedisStore, StoreError> {
        if self.namespace.is_empty() {
            // `{}` is no hash tag: keys would spread over a cluster's slots.
            return Err(StoreError::Unavailable(
                "the namespace must not be empty: it is the hash tag of every key".into(),
            ));
        }
        let (timeout, lease) = match self.timeout {
            Some(timeout) => (timeout, self.lease.max(timeout.saturating_mul(3)).min(MAX_DURATION)),
            None => (DEFAULT_TIMEOUT.min(self.lease / 3), self.lease),
        };
        let connections = self.target.connect(timeout).await?;
        let channel = format!("{}:ended", self.namespace);
        let waiters = Arc::new(Waiters::default());
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let liveness = self.liveness.unwrap_or(Liveness {
            interval: Duration::from_secs(1),
            bound: timeout,
        });
        let listener = tokio::spawn(listen(
            connections.pubsub,
            channel.clone(),
            Arc::clone(&waiters),
            subscribed_tx,
            liveness,
        ));
        let inner = Arc::new(Inner {
            conn: connections.commands,
            renew_conn: connections.renewals,
            namespace: self.namespace,
            channel,
            ttl: self.ttl,
            tombstone_ttl: self.tombstone_ttl,
            lease,
            max_queued: self.max_queued,
            create: Script::new(scripts::CREATE),
            end: Script::new(scripts::END),
            delete: Script::new(scripts::DELETE),
            start: Script::new(scripts::START),
            progress: Script::new(scripts::PROGRESS),
            claim: Script::new(scripts::CLAIM),
            renew: Script::new(scripts::RENEW),
            release: Script::new(scripts::RELEASE),
            sweep: Script::new(scripts::SWEEP),
            claim_deliveries: Script::new(scripts::CLAIM_DELIVERIES),
            record_delivery: Script::new(scripts::RECORD_DELIVERY),
            waiters,
            tasks: Mutex::new(vec![listener]),
        });
        // Wake-ups are only reliable once the listener is subscribed.
        match tokio::time::timeout(timeout, subscribed_rx).await {
            Ok(Ok(())) => Ok(RedisStore { inner }),
            _ => Err(StoreError::Unavailable("could not subscribe to the job channel".into())),
        }
    }
}
