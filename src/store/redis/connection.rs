//! The connection of a [`RedisStore`](super::RedisStore): to one Redis
//! (a `ConnectionManager`, re-made in the background when lost) or to a
//! Redis Cluster (a cluster connection, which follows slots as they move).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::unavailable;
use crate::store::StoreError;

/// A connection to one Redis or to a Redis Cluster; cheap to clone (both
/// kinds multiplex one set of sockets).
#[derive(Clone)]
pub(super) enum Connection {
    /// One Redis (or a replicated one behind one address).
    Single(ConnectionManager),
    /// A Redis Cluster: each command goes to the master of its keys' slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

impl Connection {
    /// `PING`, answered `PONG`, within the connection's response timeout
    /// (the store's command timeout), as every command is.
    ///
    /// On a Redis Cluster, the cluster connection would send a bare `PING`
    /// to every master and fail if any failed; the store needs only the
    /// master of its namespace's slot (every key of the namespace is there,
    /// see [Redis Cluster](super::RedisStore#redis-cluster)), so it asks
    /// that one, the slot of `slot_key`, and no other.
    pub(super) async fn ping(&mut self, slot_key: &str) -> Result<(), RedisError> {
        let ping = redis::cmd("PING");
        let answer = match self {
            Self::Single(conn) => conn.send_packed_command(&ping).await?,
            Self::Cluster(conn) => {
                let route = Route::with_key(slot_key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                conn.route_command(ping, routing).await?
            }
        };
        match answer {
            Value::SimpleString(pong) if pong == "PONG" => Ok(()),
            other => Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "PING was not answered PONG",
                format!("{other:?}"),
            ))),
        }
    }
}

/// The store's two connections (commands, and renewals and sweeps apart)
/// and the clients its pub/sub listener may use, one per node it knows.
pub(super) struct Connections {
    pub(super) commands: Connection,
    pub(super) renewals: Connection,
    pub(super) pubsub: Vec<Client>,
}

/// Where a store connects: one Redis (with the client or connection the
/// application gave, if any), or the nodes of a Redis Cluster.
#[derive(Debug)]
pub(super) enum Target {
    Single {
        url: String,
        client: Option<Client>,
        conn: Option<ConnectionManager>,
    },
    Cluster {
        nodes: Vec<String>,
    },
}

impl Target {
    /// Connects, every step bounded by `timeout`.
    pub(super) async fn connect(self, timeout: Duration) -> Result<Connections, StoreError> {
        match self {
            Self::Single { url, client, conn } => {
                let client = match client {
                    Some(client) => client,
                    None => Client::open(url.as_str()).map_err(unavailable)?,
                };
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let commands = match conn {
                    Some(conn) => conn,
                    None => ConnectionManager::new_with_config(client.clone(), config.clone())
                        .await
                        .map_err(unavailable)?,
                };
                // The connection of renewals and sweeps: on the shared one, a
                // large result (or a blocking command of the application's)
                // would hold renewals back, and leases would lapse under a
                // busy but healthy replica.
                let renewals = ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map_err(unavailable)?;
                Ok(Connections {
                    commands: Connection::Single(commands),
                    renewals: Connection::Single(renewals),
                    pubsub: vec![client],
                })
            }
            Self::Cluster { nodes } => {
                let cluster = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .build()
                    .map_err(unavailable)?;
                let commands = cluster.get_async_connection().await.map_err(unavailable)?;
                let renewals = cluster.get_async_connection().await.map_err(unavailable)?;
                // A message published on any node of a cluster reaches
                // every node: the listener subscribes on one, and moves to
                // the next when it loses it.
                let pubsub = nodes
                    .iter()
                    .map(|node| Client::open(node.as_str()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(unavailable)?;
                Ok(Connections {
                    commands: Connection::Cluster(commands),
                    renewals: Connection::Cluster(renewals),
                    pubsub,
                })
            }
        }
    }
}
