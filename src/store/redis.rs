//! [`RedisStore`]: jobs shared by several replicas through Redis (feature
//! `redis`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{
    Cancel, JobError, JobId, JobRecord, JobStatus, JobStore, Lookup, Outcome, StoreError, StoredResponse, unix_ms,
};

/// Ends a job (finished, canceled or lost) atomically: its state, stored
/// response and error, its time to live, its tombstone, and the message that
/// wakes waiters on every replica. `lost` only ends a job whose lease lapsed.
const END: &str = r"
local st = redis.call('HGET', KEYS[1], 'st')
if not st then
  if redis.call('EXISTS', KEYS[2]) == 1 then return 'expired' end
  return 'unknown'
end
if st == 'succeeded' or st == 'failed' or st == 'canceled' then return 'terminal' end
if ARGV[1] == 'lost' and redis.call('EXISTS', KEYS[3]) == 1 then return 'alive' end
redis.call('HSET', KEYS[1], 'st', ARGV[7], 'u', ARGV[2])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'rs', ARGV[8], 'rh', ARGV[9], 'rb', ARGV[10]) end
if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], 'ec', ARGV[11], 'em', ARGV[12]) end
redis.call('DEL', KEYS[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 'ended'
";

/// Moves a pending job to running and takes its lease.
const START: &str = r"
if redis.call('HGET', KEYS[1], 'st') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'st', 'running', 'u', ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1
";

/// Records progress and message on a job that has not ended.
const PROGRESS: &str = r"
local st = redis.call('HGET', KEYS[1], 'st')
if not st or st == 'succeeded' or st == 'failed' or st == 'canceled' then return 0 end
redis.call('HSET', KEYS[1], 'u', ARGV[1])
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], 'p') else redis.call('HSET', KEYS[1], 'p', ARGV[2]) end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], 'm') else redis.call('HSET', KEYS[1], 'm', ARGV[4]) end
return 1
";

/// The fields of a record, in the order they are read.
const FIELDS: [&str; 8] = ["st", "c", "u", "p", "m", "rs", "ec", "em"];

/// Jobs kept in Redis, so that several replicas of an application behind a
/// load balancer share them: a job submitted on one replica can be polled,
/// waited for, fetched and canceled on any other.
///
/// - **Keys.** Each job has a hash `{ns:id}:job` (state, progress, stored
///   response), a lease `{ns:id}:lease` while it runs, and a tombstone
///   `{ns:id}:gone` once it ends; the hash tag keeps them in one slot of a
///   Redis Cluster. Every key has a time to live: a finished job lives `ttl`
///   (default one hour), its tombstone `ttl + tombstone_ttl` (default 24 h
///   more) so that an expired id answers `410 Gone`.
/// - **Waking.** Ending a job publishes its id on the channel `ns:ended`;
///   each store listens on one connection and wakes its local waiters within
///   milliseconds (long polls, and the runner that must drop a job canceled
///   elsewhere).
/// - **Lost jobs.** The replica running a job renews its lease (default 5 s,
///   renewed every third of it). When a replica dies, its leases lapse and
///   the next reader ends the job `failed` with `error.code = "lost"`.
/// - **Cost.** One round trip per operation (a pipeline, a transaction or a
///   script); no `KEYS` or `SCAN`.
/// - **Faults.** Every command has a timeout; while Redis is unreachable,
///   operations fail with [`StoreError::Unavailable`] (the layer answers
///   `503` + `Retry-After`) and the connection is re-made in the background.
///   A Redis that refuses writes for lack of memory (`maxmemory`) is
///   reported as [`StoreError::Full`]; bound the store with `maxmemory`.
///
/// ```no_run
/// use tower_accepted::{AcceptedLayer, RedisStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_accepted::StoreError> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .namespace("reports")
///     .build()
///     .await?;
/// let layer = AcceptedLayer::new().store(store);
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    namespace: String,
    channel: String,
    ttl: Duration,
    tombstone_ttl: Duration,
    lease: Duration,
    end: Script,
    start: Script,
    progress: Script,
    waiters: Arc<Waiters>,
    /// Jobs this replica created and has not seen end: it renews their
    /// leases.
    owned: Mutex<HashSet<JobId>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.inner.namespace)
            .field("ttl", &self.inner.ttl)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

/// Configures a [`RedisStore`]; made by [`RedisStore::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use tower_accepted::RedisStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_accepted::StoreError> {
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
    url: String,
    client: Option<Client>,
    conn: Option<ConnectionManager>,
    namespace: String,
    ttl: Duration,
    tombstone_ttl: Duration,
    lease: Duration,
    timeout: Duration,
}

impl RedisStoreBuilder {
    /// Uses an existing client (for its connection settings) instead of the
    /// URL.
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Uses an existing connection manager for commands (the store still
    /// opens one connection of its own for pub/sub).
    pub fn connection_manager(mut self, conn: ConnectionManager) -> Self {
        self.conn = Some(conn);
        self
    }

    /// The prefix of every key and channel, so that several applications can
    /// share one Redis (default `tower-accepted`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long a finished or canceled job is kept (default one hour).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long an expired id is remembered for `410 Gone` (default 24 h).
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl = ttl;
        self
    }

    /// How long a job survives its replica going silent before it is
    /// reported `lost` (default 5 s; renewed every third of it).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// The longest a command may take before it fails (default 2 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects, starts listening for ended jobs and renewing leases.
    /// Must be called within a tokio runtime.
    pub async fn build(self) -> Result<RedisStore, StoreError> {
        let client = match self.client {
            Some(client) => client,
            None => Client::open(self.url.as_str()).map_err(unavailable)?,
        };
        let conn = match self.conn {
            Some(conn) => conn,
            None => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map_err(unavailable)?
            }
        };
        let channel = format!("{}:ended", self.namespace);
        let waiters = Arc::new(Waiters::default());
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen(client, channel.clone(), Arc::clone(&waiters), subscribed_tx));
        let inner = Arc::new(Inner {
            conn,
            namespace: self.namespace,
            channel,
            ttl: self.ttl,
            tombstone_ttl: self.tombstone_ttl,
            lease: self.lease,
            end: Script::new(END),
            start: Script::new(START),
            progress: Script::new(PROGRESS),
            waiters,
            owned: Mutex::new(HashSet::new()),
            tasks: Mutex::new(vec![listener]),
        });
        let heartbeat = tokio::spawn(renew_leases(Arc::downgrade(&inner)));
        lock(&inner.tasks).push(heartbeat);
        // Wake-ups are only reliable once the listener is subscribed.
        match tokio::time::timeout(self.timeout, subscribed_rx).await {
            Ok(Ok(())) => Ok(RedisStore { inner }),
            _ => Err(StoreError::Unavailable("could not subscribe to the job channel".into())),
        }
    }
}

impl RedisStore {
    /// A builder for a store on the Redis at `url`, such as
    /// `redis://127.0.0.1:6379`.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            client: None,
            conn: None,
            namespace: "tower-accepted".into(),
            ttl: Duration::from_secs(3600),
            tombstone_ttl: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
        }
    }

    /// A store with the default settings on the Redis at `url`.
    pub async fn connect(url: impl Into<String>) -> Result<Self, StoreError> {
        Self::builder(url).build().await
    }

    /// The namespace (key prefix) of this store.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    fn key(&self, id: JobId, what: &str) -> String {
        format!("{{{}:{}}}:{}", self.inner.namespace, id, what)
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    fn ms(duration: Duration) -> u64 {
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// The time to live of a job's hash while it runs: longer than a lease,
    /// so that a reader finds a lost job and ends it.
    fn running_ttl(&self) -> u64 {
        Self::ms(self.inner.ttl + self.inner.lease)
    }

    async fn end(
        &self,
        id: JobId,
        mode: &str,
        status: JobStatus,
        outcome: Option<&Outcome>,
    ) -> Result<String, StoreError> {
        let (rs, rh, rb, error) = match outcome {
            Some(Outcome::Response(response)) => (
                response.status.as_u16().to_string(),
                encode_headers(&response.headers),
                response.body.to_vec(),
                outcome.and_then(Outcome::error),
            ),
            Some(Outcome::Failed(error)) => (String::new(), Vec::new(), Vec::new(), Some(error.clone())),
            None => (String::new(), Vec::new(), Vec::new(), None),
        };
        let (ec, em) = error.map_or((String::new(), String::new()), |e| (e.code, e.message));
        let answer: String = self
            .inner
            .end
            .key(self.key(id, "job"))
            .key(self.key(id, "gone"))
            .key(self.key(id, "lease"))
            .arg(mode)
            .arg(unix_ms())
            .arg(Self::ms(self.inner.ttl))
            .arg(Self::ms(self.inner.ttl + self.inner.tombstone_ttl))
            .arg(&self.inner.channel)
            .arg(id.to_string())
            .arg(status.as_str())
            .arg(rs)
            .arg(rh)
            .arg(rb)
            .arg(ec)
            .arg(em)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        if answer == "ended" || answer == "terminal" || answer == "unknown" {
            lock(&self.inner.owned).remove(&id);
        }
        Ok(answer)
    }

    /// Reads a job: its record fields, whether its tombstone and its lease
    /// exist.
    async fn read(&self, id: JobId) -> Result<(Vec<Option<Vec<u8>>>, bool, bool), StoreError> {
        redis::pipe()
            .cmd("HMGET")
            .arg(self.key(id, "job"))
            .arg(&FIELDS[..])
            .cmd("EXISTS")
            .arg(self.key(id, "gone"))
            .cmd("EXISTS")
            .arg(self.key(id, "lease"))
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

fn store_error(e: RedisError) -> StoreError {
    if e.code() == Some("OOM") {
        StoreError::Full
    } else {
        unavailable(e)
    }
}

fn text(field: &Option<Vec<u8>>) -> Option<&str> {
    field.as_deref().and_then(|b| std::str::from_utf8(b).ok())
}

fn parse_status(word: &str) -> Option<JobStatus> {
    Some(match word {
        "pending" => JobStatus::Pending,
        "running" => JobStatus::Running,
        "succeeded" => JobStatus::Succeeded,
        "failed" => JobStatus::Failed,
        "canceled" => JobStatus::Canceled,
        _ => return None,
    })
}

/// A record from the fields of [`FIELDS`]; `None` when the job is not there.
fn parse_record(id: JobId, fields: &[Option<Vec<u8>>]) -> Option<JobRecord> {
    let field = |i: usize| fields.get(i).and_then(text);
    let status = parse_status(field(0)?)?;
    let number = |i: usize| field(i).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    let error = match (field(6), field(7)) {
        (Some(code), message) => Some(JobError::new(code, message.unwrap_or(""))),
        _ => None,
    };
    Some(JobRecord {
        id,
        status,
        created_at_ms: number(1),
        updated_at_ms: number(2),
        progress: field(3).and_then(|t| t.parse().ok()),
        message: field(4).map(str::to_owned),
        result_status: field(5).and_then(|t| t.parse().ok()),
        error,
    })
}

/// Headers as `name:value` lines. Header values cannot hold control
/// characters, so a newline always ends one; names cannot hold `:`.
fn encode_headers(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

fn decode_headers(bytes: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

impl JobStore for RedisStore {
    async fn create(&self, record: JobRecord) -> Result<(), StoreError> {
        let id = record.id;
        let job = self.key(id, "job");
        let mut fields: Vec<(&str, String)> = vec![
            ("st", record.status.as_str().to_owned()),
            ("c", record.created_at_ms.to_string()),
            ("u", record.updated_at_ms.to_string()),
        ];
        if let Some(p) = record.progress {
            fields.push(("p", p.to_string()));
        }
        if let Some(m) = &record.message {
            fields.push(("m", m.clone()));
        }
        lock(&self.inner.owned).insert(id);
        let result: Result<(), RedisError> = redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(&job)
            .ignore()
            .cmd("HSET")
            .arg(&job)
            .arg(fields)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&job)
            .arg(self.running_ttl())
            .ignore()
            .cmd("SET")
            .arg(self.key(id, "lease"))
            .arg(1)
            .arg("PX")
            .arg(Self::ms(self.inner.lease))
            .ignore()
            .cmd("DEL")
            .arg(self.key(id, "gone"))
            .ignore()
            .query_async(&mut self.conn())
            .await;
        if let Err(e) = result {
            lock(&self.inner.owned).remove(&id);
            return Err(store_error(e));
        }
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Lookup, StoreError> {
        let (fields, gone, leased) = self.read(id).await?;
        match parse_record(id, &fields) {
            Some(record) if !record.status.is_terminal() && !leased => {
                // The replica running it stopped renewing its lease.
                let message = "the replica running the job stopped before it finished";
                let lost = Outcome::Failed(JobError::new(JobError::LOST, message));
                self.end(id, "lost", JobStatus::Failed, Some(&lost)).await?;
                let (fields, gone, _) = self.read(id).await?;
                Ok(match parse_record(id, &fields) {
                    Some(record) => Lookup::Found(record),
                    None if gone => Lookup::Expired,
                    None => Lookup::Unknown,
                })
            }
            Some(record) => Ok(Lookup::Found(record)),
            None if gone => Ok(Lookup::Expired),
            None => Ok(Lookup::Unknown),
        }
    }

    async fn start(&self, id: JobId) -> Result<bool, StoreError> {
        let started: i64 = self
            .inner
            .start
            .key(self.key(id, "job"))
            .key(self.key(id, "lease"))
            .arg(unix_ms())
            .arg(Self::ms(self.inner.lease))
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(started == 1)
    }

    async fn set_progress(&self, id: JobId, progress: Option<f32>, message: Option<String>) -> Result<(), StoreError> {
        let _: i64 = self
            .inner
            .progress
            .key(self.key(id, "job"))
            .arg(unix_ms())
            .arg(progress.map(|p| p.to_string()).unwrap_or_default())
            .arg(if message.is_some() { "1" } else { "" })
            .arg(message.unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn finish(&self, id: JobId, outcome: Outcome) -> Result<bool, StoreError> {
        let answer = self.end(id, "finish", outcome.status(), Some(&outcome)).await?;
        Ok(answer == "ended")
    }

    async fn cancel(&self, id: JobId) -> Result<Cancel, StoreError> {
        let answer = self.end(id, "cancel", JobStatus::Canceled, None).await?;
        Ok(match answer.as_str() {
            "ended" => Cancel::Canceled,
            "terminal" => Cancel::AlreadyTerminal,
            "expired" => Cancel::Expired,
            _ => Cancel::Unknown,
        })
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        let (removed, _, _, _): (i64, i64, i64, i64) = redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(self.key(id, "job"))
            .cmd("DEL")
            .arg(self.key(id, "gone"))
            .cmd("DEL")
            .arg(self.key(id, "lease"))
            .cmd("PUBLISH")
            .arg(&self.inner.channel)
            .arg(id.to_string())
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        lock(&self.inner.owned).remove(&id);
        Ok(removed == 1)
    }

    async fn response(&self, id: JobId) -> Result<Option<StoredResponse>, StoreError> {
        let (status, headers, body): (Option<u16>, Option<Vec<u8>>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(self.key(id, "job"))
            .arg(&["rs", "rh", "rb"])
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let Some(status) = status.and_then(|s| StatusCode::from_u16(s).ok()) else {
            return Ok(None);
        };
        Ok(Some(StoredResponse::new(
            status,
            decode_headers(&headers.unwrap_or_default()),
            Bytes::from(body.unwrap_or_default()),
        )))
    }

    async fn wait_terminal(&self, id: JobId) -> Result<(), StoreError> {
        let waiter = self.inner.waiters.register(id);
        loop {
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            // Registered before the state is read: an end published after
            // the read wakes us.
            notified.as_mut().enable();
            match self.get(id).await? {
                Lookup::Found(record) if !record.status.is_terminal() => {}
                _ => return Ok(()),
            }
            // A lease lapses without a message: look again after one.
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(self.inner.lease) => {}
            }
        }
    }
}

/// Local waiters by job id, woken by the listener.
#[derive(Default)]
struct Waiters {
    map: Mutex<HashMap<JobId, Arc<Notify>>>,
}

/// One waiter's registration; removed from the map with the last waiter.
struct Waiter<'a> {
    waiters: &'a Waiters,
    id: JobId,
    notify: Arc<Notify>,
}

impl Waiters {
    fn register(&self, id: JobId) -> Waiter<'_> {
        let notify = Arc::clone(lock(&self.map).entry(id).or_default());
        Waiter {
            waiters: self,
            id,
            notify,
        }
    }

    fn wake(&self, id: JobId) {
        if let Some(notify) = lock(&self.map).get(&id) {
            notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        for notify in lock(&self.map).values() {
            notify.notify_waiters();
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.waiters.map);
        // The map's reference and ours: no other waiter is left.
        if map.get(&self.id).is_some_and(|n| Arc::strong_count(n) <= 2) {
            map.remove(&self.id);
        }
    }
}

/// Listens for ended jobs on the store's channel and wakes local waiters;
/// reconnects with backoff, and wakes everyone after a reconnection, since
/// messages sent meanwhile were missed.
async fn listen(client: Client, channel: String, waiters: Arc<Waiters>, subscribed: tokio::sync::oneshot::Sender<()>) {
    let mut subscribed = Some(subscribed);
    let mut delay = Duration::from_millis(50);
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await {
            if pubsub.subscribe(&channel).await.is_ok() {
                delay = Duration::from_millis(50);
                if let Some(tx) = subscribed.take() {
                    let _ = tx.send(());
                }
                waiters.wake_all();
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    if let Some(id) = message
                        .get_payload::<String>()
                        .ok()
                        .and_then(|p| p.parse::<JobId>().ok())
                    {
                        waiters.wake(id);
                    }
                }
            }
        }
        waiters.wake_all();
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Renews the leases of the jobs this replica runs, every third of a lease,
/// in one pipeline; forgets jobs that ended.
async fn renew_leases(store: Weak<Inner>) {
    let period = match store.upgrade() {
        Some(inner) => inner.lease / 3,
        None => return,
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = store.upgrade() else { return };
        let store = RedisStore { inner };
        let ids: Vec<JobId> = lock(&store.inner.owned).iter().copied().collect();
        if ids.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGET").arg(store.key(*id, "job")).arg("st");
            pipe.cmd("SET")
                .arg(store.key(*id, "lease"))
                .arg(1)
                .arg("PX")
                .arg(RedisStore::ms(store.inner.lease))
                .ignore();
            pipe.cmd("PEXPIRE")
                .arg(store.key(*id, "job"))
                .arg(store.running_ttl())
                .ignore();
        }
        let Ok(states) = pipe.query_async::<Vec<Option<String>>>(&mut store.conn()).await else {
            continue;
        };
        let ended: Vec<JobId> = ids
            .iter()
            .zip(states)
            .filter(|(_, st)| st.as_deref().and_then(parse_status).is_none_or(JobStatus::is_terminal))
            .map(|(id, _)| *id)
            .collect();
        if ended.is_empty() {
            continue;
        }
        let mut cleanup = redis::pipe();
        for id in &ended {
            lock(&store.inner.owned).remove(id);
            cleanup.cmd("DEL").arg(store.key(*id, "lease")).ignore();
        }
        let _: Result<(), RedisError> = cleanup.query_async(&mut store.conn()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2: with colon"));
        headers.insert("x-bytes", HeaderValue::from_bytes(&[0xe2, 0x82, 0xac]).unwrap());
        assert_eq!(decode_headers(&encode_headers(&headers)), headers);
    }

    #[test]
    fn records_parse() {
        let id = JobId::new();
        let fields: Vec<Option<Vec<u8>>> = ["failed", "1000", "2000", "0.5", "half", "500", "http_status", "oops"]
            .iter()
            .map(|s| Some(s.as_bytes().to_vec()))
            .collect();
        let record = parse_record(id, &fields).unwrap();
        assert_eq!(record.status, JobStatus::Failed);
        assert_eq!(record.progress, Some(0.5));
        assert_eq!(record.result_status, Some(500));
        assert_eq!(record.error.unwrap().code, "http_status");
        assert!(parse_record(id, &[None, None]).is_none());
    }
}
