//! `PostgresStore` when PostgreSQL fails: its `LISTEN` connection killed
//! under waiting long polls, every backend of a store terminated
//! mid-traffic, the server frozen and stopped. The tests that kill
//! backends use the shared server (`DATABASE_URL`) and touch only the
//! backends of their own store, told apart by `application_name`; the ones
//! that freeze or stop the server run a private one ([`PrivatePostgres`]).
#![cfg(feature = "postgres")]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::StatusCode;
use tokio::sync::Notify;
use tower_accepted::sqlx::{self, PgPool};
use tower_accepted::store::{Claim, JobId, JobRecord, JobStore, Lookup, Outcome, PostgresStore};
use tower_accepted::{AcceptedLayer, store::JobStatus};

use common::postgres::{Schema, database_url, pool};
use common::private_postgres::PrivatePostgres;
use common::{HttpClient, serve};

/// The shared database's URL with `application_name` set to `application`.
fn url_named(application: &str) -> String {
    let url = database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={application}")
}

/// An `application_name` no other test uses (at most 63 bytes).
fn application_of(schema: &Schema) -> String {
    format!("pgf_{}", &schema.name[5..21])
}

/// The pid of `application`'s `LISTEN` backend: the one whose last
/// statement is the `LISTEN` itself or the listener's ping (`SELECT 1`,
/// which no other statement of the store is).
async fn listener_pids(admin: &PgPool, application: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
         AND (query LIKE 'LISTEN%' OR query = 'SELECT 1')",
    )
    .bind(application)
    .fetch_all(admin)
    .await
    .unwrap()
}

/// Terminates every backend of `application`; answers how many.
async fn terminate_all(admin: &PgPool, application: &str) -> usize {
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(application)
    .fetch_all(admin)
    .await
    .unwrap();
    killed.into_iter().filter(|k| *k).count()
}

/// A job created and started on `store`: its claim.
async fn running_job(store: &PostgresStore) -> Claim {
    let id = JobId::new();
    store.create(JobRecord::pending(id)).await.unwrap();
    let claim = Claim::first(id);
    assert!(store.start(claim).await.unwrap());
    claim
}

fn done(body: &'static str) -> Outcome {
    Outcome::Response(http::Response::new(Bytes::from_static(body.as_bytes())))
}

/// A waiter on `store` for `id`, in a task: answers when it returned.
fn waiter(store: &PostgresStore, id: JobId) -> tokio::task::JoinHandle<Instant> {
    let store = store.clone();
    tokio::spawn(async move {
        store.wait_terminal(id).await.unwrap();
        Instant::now()
    })
}

/// Waits for `handle` at most `within`.
async fn woke(handle: tokio::task::JoinHandle<Instant>, within: Duration, what: &str) -> Instant {
    tokio::time::timeout(within, handle)
        .await
        .unwrap_or_else(|_| panic!("{what}: the waiter did not wake within {within:?}"))
        .unwrap()
}

/// The `LISTEN` connection of the store that holds the waiters is killed
/// while they wait, then their jobs end on another store: every waiter
/// wakes, within seconds, with a 30 s lease (so the lease-long re-read of
/// a waiter cannot be what wakes it). The jobs that end before the
/// listener is back wake through its reconnection (which wakes every
/// waiter to read again); those that end after, through the new `LISTEN`.
/// A store at `url` in `schema` with `lease`.
async fn store_on(url: String, schema: &Schema, lease: Duration) -> PostgresStore {
    PostgresStore::builder(url)
        .schema(&schema.name)
        .lease(lease)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_wake_when_the_listen_connection_is_killed() {
    const LEASE: Duration = Duration::from_secs(30);
    let schema = Schema::new();
    let application = application_of(&schema);
    let waiting = store_on(url_named(&application), &schema, LEASE).await;
    let ending = store_on(database_url(), &schema, LEASE).await;
    let admin = pool().await;

    let mut early = Vec::new();
    let mut late = Vec::new();
    for i in 0..8 {
        let claim = running_job(&ending).await;
        let handle = waiter(&waiting, claim.id());
        if i % 2 == 0 { &mut early } else { &mut late }.push((claim, handle));
    }
    // Every waiter has read its job (running) and waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(early.iter().chain(&late).all(|(_, h)| !h.is_finished()));

    let before = listener_pids(&admin, &application).await;
    assert_eq!(before.len(), 1, "one LISTEN backend: {before:?}");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(before[0])
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(terminated);

    // Ended at once, while the listener is (most likely) still away.
    let killed = Instant::now();
    for (claim, _) in &early {
        assert!(ending.finish(*claim, done("early")).await.unwrap());
    }
    for (claim, handle) in early {
        let at = woke(handle, Duration::from_secs(10), "early").await;
        assert!(
            at.duration_since(killed) < Duration::from_secs(5),
            "{}: woke {:?} after the kill",
            claim.id(),
            at.duration_since(killed)
        );
    }

    // A new LISTEN backend, not the killed one.
    let after = common::until_some("a new LISTEN backend", || async {
        let pids = listener_pids(&admin, &application).await;
        if pids.len() == 1 && pids != before {
            Ok(pids)
        } else {
            Err(pids)
        }
    })
    .await;
    assert_ne!(after, before);
    // The waiters the reconnection woke read their jobs again and wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        late.iter().all(|(_, h)| !h.is_finished()),
        "a waiter woke for a job still running"
    );
    for (claim, handle) in late {
        let finished = Instant::now();
        assert!(ending.finish(claim, done("late")).await.unwrap());
        let at = woke(handle, Duration::from_secs(10), "late").await;
        assert!(
            at.saturating_duration_since(finished) < Duration::from_secs(1),
            "{}: woke {:?} after its end, through the new LISTEN",
            claim.id(),
            at.saturating_duration_since(finished)
        );
    }
    admin.close().await;
}

/// How soon a waiter on one store wakes once another store's `finish`
/// returned, over 50 jobs, one at a time (printed; the claim of "within
/// 10 ms" goes to the report, and the test asserts only a generous bound,
/// so that a loaded machine does not fail it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_within_milliseconds_of_the_end() {
    const LEASE: Duration = Duration::from_secs(30);
    let schema = Schema::new();
    let waiting = store_on(database_url(), &schema, LEASE).await;
    let ending = store_on(database_url(), &schema, LEASE).await;
    let mut latencies = Vec::new();
    for _ in 0..50 {
        let claim = running_job(&ending).await;
        let handle = waiter(&waiting, claim.id());
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!handle.is_finished());
        assert!(ending.finish(claim, done("fast")).await.unwrap());
        let finished = Instant::now();
        let at = woke(handle, Duration::from_secs(5), "timed").await;
        // The notification may even arrive before `finish` has its answer.
        latencies.push(at.saturating_duration_since(finished));
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    let max = latencies[latencies.len() - 1];
    println!(
        "wake after finish over {} jobs: min {:?}, p50 {p50:?}, p99 {p99:?}, max {max:?}",
        latencies.len(),
        latencies[0]
    );
    assert!(p50 < Duration::from_millis(50), "p50 {p50:?}: {latencies:?}");
    assert!(max < Duration::from_secs(1), "max {max:?}: {latencies:?}");
}

/// An app on `store` whose `/work` answers its body after 100 ms; a body
/// `gated-N` first tells `started` and then waits for `gates[N]`.
fn app(store: PostgresStore, started: Arc<Notify>, gates: Arc<[Notify; 2]>) -> Router {
    Router::new()
        .route(
            "/work",
            post(move |body: String| {
                let started = Arc::clone(&started);
                let gates = Arc::clone(&gates);
                async move {
                    if let Some(n) = body.strip_prefix("gated-") {
                        started.notify_one();
                        gates[n.parse::<usize>().unwrap()].notified().await;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    body
                }
            }),
        )
        .layer(AcceptedLayer::new().store(store))
}

/// Submits until a `202` comes back, each `503` with `Retry-After`;
/// returns the monitor path.
async fn submit(client: &HttpClient, body: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = client.post("/work", body.to_owned()).await;
        match answer.status {
            StatusCode::ACCEPTED => return answer.location(),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(answer.header("retry-after").is_some());
                assert!(Instant::now() < deadline, "no 202 within 15 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("unexpected {other}: {:?}", answer.body),
        }
    }
}

/// Long-polls `monitor` until its job ended (`503`s waited through, for
/// at most 20 s); returns its status document and, if it succeeded, its
/// result's body.
async fn ended(client: &HttpClient, monitor: &str) -> (serde_json::Value, Option<Bytes>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = client.get(&format!("{monitor}?wait=5")).await;
        if answer.status == StatusCode::SEE_OTHER {
            let doc = client.get(monitor).await.json();
            let result = client.get(&answer.location()).await;
            assert_eq!(result.status, StatusCode::OK);
            return (doc, Some(result.body));
        }
        if answer.status == StatusCode::OK {
            let doc = answer.json();
            if doc["status"] != "pending" && doc["status"] != "running" {
                return (doc, None);
            }
        }
        assert!(
            Instant::now() < deadline,
            "{monitor}: not ended within 20 s: {} {:?}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `client` answers a new submission and a poll of `monitor`
/// with `503` and `Retry-After`, each within `within`.
async fn refused_quickly(client: &HttpClient, monitor: &str, within: Duration) {
    for (what, path, post) in [
        ("POST", "/work".to_owned(), true),
        ("GET", monitor.to_owned(), false),
        ("long poll", format!("{monitor}?wait=30"), false),
    ] {
        let started = Instant::now();
        let answer = if post {
            client.post(&path, "refused?").await
        } else {
            client.get(&path).await
        };
        let problem = answer.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
        assert!(answer.header("retry-after").is_some(), "{what}: {problem}");
        assert!(
            started.elapsed() < within,
            "{what}: answered after {:?}",
            started.elapsed()
        );
    }
}

/// Long polls (`?wait=30`) of `monitor`, in tasks, each answering its
/// status and how long it took.
fn long_polls(client: &HttpClient, monitor: &str) -> Vec<tokio::task::JoinHandle<(StatusCode, Duration)>> {
    (0..3)
        .map(|_| {
            let client = client.clone();
            let path = format!("{monitor}?wait=30");
            tokio::spawn(async move {
                let sent = Instant::now();
                let answer = client.get(&path).await;
                if answer.status == StatusCode::SERVICE_UNAVAILABLE {
                    assert!(answer.header("retry-after").is_some());
                }
                (answer.status, sent.elapsed())
            })
        })
        .collect()
}

/// Asserts that every long poll of `polls` answered, `503` (or the job's
/// status), well before its 30 s: none hangs through an outage.
async fn none_hangs(polls: Vec<tokio::task::JoinHandle<(StatusCode, Duration)>>, what: &str) {
    for poll in polls {
        let (status, took) = tokio::time::timeout(Duration::from_secs(10), poll)
            .await
            .unwrap_or_else(|_| panic!("{what}: a long poll hangs"))
            .unwrap();
        assert!(
            matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::OK),
            "{what}: {status}"
        );
        assert!(
            took < Duration::from_secs(6),
            "{what}: a long poll answered after {took:?}"
        );
    }
}

/// PostgreSQL frozen (it hangs: connections open, nothing answers), then
/// stopped (connections cut, new ones refused), each for less than the
/// lease: submissions and polls get `503` + `Retry-After` within a second
/// or two, never a hang; a job whose handler returns during each outage
/// ends `succeeded` with its result once the server is back (its `finish`
/// is tried again while its claim is renewed); the result committed before
/// the outages is still there; new submissions run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frozen_or_down_means_503_and_back_means_nothing_lost() {
    const LEASE: Duration = Duration::from_secs(10);
    const TIMEOUT: Duration = Duration::from_millis(500);
    let mut pg = PrivatePostgres::start().await;
    let store = PostgresStore::builder(pg.url("outage"))
        .lease(LEASE)
        .statement_timeout(TIMEOUT)
        .build()
        .await
        .unwrap();
    let started = Arc::new(Notify::new());
    let gates = Arc::new([Notify::new(), Notify::new()]);
    let server = serve(app(store, Arc::clone(&started), Arc::clone(&gates))).await;
    let client = HttpClient::new(&server);

    let kept = submit(&client, "kept").await;
    assert_eq!(ended(&client, &kept).await.1.as_deref(), Some(&b"kept"[..]));
    let mut gated = Vec::new();
    for n in 0..2 {
        gated.push(submit(&client, &format!("gated-{n}")).await);
        tokio::time::timeout(Duration::from_secs(10), started.notified())
            .await
            .expect("the gated handler runs");
    }

    // Frozen: every answer is bounded by the statement timeout.
    // Long polls in flight when it hangs: the listener's ping finds the
    // silence, wakes them, and their reads fail within the bound.
    let polls = long_polls(&client, &gated[1]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    pg.freeze();
    let frozen = Instant::now();
    refused_quickly(&client, &kept, 4 * TIMEOUT).await;
    gates[0].notify_one();
    tokio::time::sleep(Duration::from_millis(800)).await;
    refused_quickly(&client, &kept, 4 * TIMEOUT).await;
    none_hangs(polls, "frozen").await;
    assert!(frozen.elapsed() < LEASE / 2, "frozen for {:?}", frozen.elapsed());
    pg.thaw();
    let (doc, body) = ended(&client, &gated[0]).await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(body.as_deref(), Some(&b"gated-0"[..]));
    // A lease's third for the renewals to catch up.
    tokio::time::sleep(LEASE / 3).await;

    // Down: connections cut, new ones refused.
    let polls = long_polls(&client, &gated[1]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    pg.stop().await;
    let down = Instant::now();
    refused_quickly(&client, &kept, 4 * TIMEOUT).await;
    gates[1].notify_one();
    tokio::time::sleep(Duration::from_millis(800)).await;
    refused_quickly(&client, &kept, 4 * TIMEOUT).await;
    none_hangs(polls, "down").await;
    pg.spawn().await;
    assert!(down.elapsed() < LEASE / 2, "down for {:?}", down.elapsed());

    let (doc, body) = ended(&client, &gated[1]).await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(body.as_deref(), Some(&b"gated-1"[..]));
    let (doc, body) = ended(&client, &kept).await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(body.as_deref(), Some(&b"kept"[..]), "committed before the outages");
    let next = submit(&client, "back").await;
    assert_eq!(ended(&client, &next).await.1.as_deref(), Some(&b"back"[..]));
    drop(server);
    pg.stop().await;
}

/// Every backend of one store (its pool's connections and its `LISTEN`
/// connection, told apart by `application_name`) terminated twice while
/// clients submit and long-poll: every answer comes within seconds, a
/// `503` with `Retry-After` at worst; every accepted job ends `succeeded`
/// with its result; afterwards the store has its listener back and a long
/// poll wakes as soon as its job ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_mid_traffic_fail_fast_and_recover() {
    const LEASE: Duration = Duration::from_secs(3);
    let schema = Schema::new();
    let application = application_of(&schema);
    let store = PostgresStore::builder(url_named(&application))
        .schema(&schema.name)
        .lease(LEASE)
        .statement_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let admin = pool().await;
    let server = serve(app(
        store,
        Arc::new(Notify::new()),
        Arc::new([Notify::new(), Notify::new()]),
    ))
    .await;
    let client = HttpClient::new(&server);

    let traffic_ends = Instant::now() + Duration::from_secs(4);
    let mut clients = Vec::new();
    for c in 0..4 {
        let client = client.clone();
        clients.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut refused = 0;
            let mut i = 0;
            while Instant::now() < traffic_ends {
                i += 1;
                let body = format!("c{c}-{i}");
                let sent = Instant::now();
                let answer = client.post("/work", body.clone()).await;
                assert!(
                    sent.elapsed() < Duration::from_secs(3),
                    "POST took {:?}",
                    sent.elapsed()
                );
                match answer.status {
                    StatusCode::ACCEPTED => accepted.push((answer.location(), body)),
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert!(answer.header("retry-after").is_some());
                        refused += 1;
                        continue;
                    }
                    other => panic!("POST: {other} {:?}", answer.body),
                }
                let (monitor, _) = accepted.last().unwrap();
                let sent = Instant::now();
                let answer = client.get(&format!("{monitor}?wait=2")).await;
                assert!(
                    sent.elapsed() < Duration::from_secs(4),
                    "long poll took {:?}",
                    sent.elapsed()
                );
                match answer.status {
                    StatusCode::SEE_OTHER | StatusCode::OK => {}
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert!(answer.header("retry-after").is_some());
                        refused += 1;
                    }
                    other => panic!("long poll: {other} {:?}", answer.body),
                }
            }
            (accepted, refused)
        }));
    }
    let mut terminated = Vec::new();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        terminated.push(terminate_all(&admin, &application).await);
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    for handle in clients {
        let (mine, no) = tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("the clients finish")
            .unwrap();
        accepted.extend(mine);
        refused += no;
    }
    println!(
        "terminated {terminated:?} backends; {} jobs accepted, {refused} answers 503",
        accepted.len()
    );
    assert!(
        terminated.iter().all(|n| *n >= 2),
        "the pool's and the listener's: {terminated:?}"
    );
    assert!(accepted.len() >= 8, "traffic went on: {} accepted", accepted.len());
    for (monitor, body) in &accepted {
        let (doc, result) = ended(&client, monitor).await;
        assert_eq!(doc["status"], "succeeded", "{monitor}: {doc}");
        assert_eq!(result.as_deref(), Some(body.as_bytes()));
    }

    // Recovered by itself: listening again, and a long poll wakes at the
    // end of its job, not at the lease-long re-read.
    common::until_some("the store's LISTEN backend back", || async {
        let pids = listener_pids(&admin, &application).await;
        if pids.len() == 1 { Ok(()) } else { Err(pids) }
    })
    .await;
    for _ in 0..3 {
        let monitor = submit(&client, "after").await;
        let sent = Instant::now();
        let answer = client.get(&format!("{monitor}?wait=20")).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{:?}", answer.body);
        assert!(
            sent.elapsed() < LEASE / 2,
            "the long poll woke after {:?}",
            sent.elapsed()
        );
    }
    admin.close().await;
}

/// The jobs of the outage test are read back as the store has them: a
/// sanity check of [`Lookup`] on a store built on a private server, so
/// that a broken helper fails here rather than in the fault tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_private_server_serves_a_store_and_restarts_with_its_jobs() {
    let mut pg = PrivatePostgres::start().await;
    let store = PostgresStore::builder(pg.url("helper")).build().await.unwrap();
    let claim = running_job(&store).await;
    assert!(store.finish(claim, done("durable")).await.unwrap());
    drop(store);
    pg.stop().await;
    pg.spawn().await;
    let store = PostgresStore::builder(pg.url("helper")).build().await.unwrap();
    match store.get(claim.id()).await.unwrap() {
        Lookup::Found(record) => assert_eq!(record.status, JobStatus::Succeeded),
        other => panic!("{other:?}"),
    }
}

/// The listener finds a `LISTEN` connection that stopped answering
/// without closing: a frozen server keeps its connections open and
/// answers nothing (and, thawed, answers again on them), so a listener
/// that only waited for notifications would stay blind through the freeze
/// and its waiters would sleep for their lease (30 s here). Its ping takes
/// the silence for a lost connection within about a second: it wakes
/// every waiter to read its job again (a read that fails while the server
/// is frozen, so the waiter returns with the error, as a long poll answers
/// `503`), listens again once the server is back, and the waiters of
/// jobs that end then wake within a second. (The new `LISTEN` may be on
/// the same backend: the old connection, unlistened, goes back to the pool
/// and the listener may take it again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_notices_a_connection_that_stops_answering() {
    const LEASE: Duration = Duration::from_secs(30);
    let pg = PrivatePostgres::start().await;
    let waiting = PostgresStore::builder(pg.url("waiting"))
        .lease(LEASE)
        .statement_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let ending = PostgresStore::builder(pg.url("ending"))
        .lease(LEASE)
        .build()
        .await
        .unwrap();
    let admin = PgPool::connect(&pg.url("admin")).await.unwrap();
    assert_eq!(listener_pids(&admin, "waiting").await.len(), 1, "one LISTEN backend");

    let claim = running_job(&ending).await;
    let store = waiting.clone();
    let id = claim.id();
    let blind = tokio::spawn(async move { store.wait_terminal(id).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!blind.is_finished());

    pg.freeze();
    let frozen = Instant::now();
    // A ping every second, bounded by the statement timeout: within two
    // seconds or so, well before the lease.
    let returned = tokio::time::timeout(Duration::from_secs(5), blind).await;
    let took = frozen.elapsed();
    pg.thaw();
    let returned = returned
        .expect("the waiter is woken while the server is frozen")
        .unwrap();
    println!("a waiter returned {took:?} into the freeze: {returned:?}");
    assert!(took < Duration::from_secs(3), "woken {took:?} into the freeze");

    common::until_some("a LISTEN backend after the thaw", || async {
        let pids = listener_pids(&admin, "waiting").await;
        if pids.len() == 1 { Ok(()) } else { Err(pids) }
    })
    .await;
    let mut claims = vec![claim];
    for _ in 0..5 {
        claims.push(running_job(&ending).await);
    }
    for claim in claims {
        let handle = waiter(&waiting, claim.id());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!handle.is_finished());
        assert!(ending.finish(claim, done("thawed")).await.unwrap());
        let finished = Instant::now();
        let at = woke(handle, Duration::from_secs(10), "after the thaw").await;
        assert!(
            at.saturating_duration_since(finished) < Duration::from_secs(1),
            "woke {:?} after the end",
            at.saturating_duration_since(finished)
        );
    }
    admin.close().await;
}

/// PostgreSQL frozen 3 s with a 1 s lease: every lease has lapsed by the
/// database's clock when it answers again. The replica that runs the jobs
/// is alive and renews them: neither the durable job nor the plain one is
/// taken from it (the durable one keeps its first attempt rather than run
/// again, the plain one is not declared `lost`); both end `succeeded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frozen_longer_than_a_lease_takes_no_job_from_its_live_runner() {
    use axum::Extension;
    use tower_accepted::Job;
    let pg = PrivatePostgres::start().await;
    let store = PostgresStore::builder(pg.url("lapsed"))
        .lease(Duration::from_millis(1000))
        .build()
        .await
        .unwrap();
    let durable = AcceptedLayer::new().store(store.clone()).durable(true);
    let job = |Extension(job): Extension<Job>| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        format!("attempt {}", job.attempt())
    };
    let durable_app = Router::new().route("/job", post(job)).layer(durable.clone());
    durable.run_jobs_with(durable_app.clone());
    let plain_app = Router::new()
        .route("/job", post(job))
        .layer(AcceptedLayer::new().store(store));
    let durable_server = serve(durable_app).await;
    let plain_server = serve(plain_app).await;
    let mut monitors = Vec::new();
    for server in [&durable_server, &plain_server] {
        let client = HttpClient::new(server);
        let monitor = common::submit(&client, "/job", "").await;
        common::poll_until(&client, &monitor, "running", |doc| doc["status"] == "running").await;
        monitors.push((client, monitor));
    }
    pg.freeze();
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.thaw();
    for (client, monitor) in &monitors {
        let (doc, body) = ended(client, monitor).await;
        assert_eq!(doc["status"], "succeeded", "{monitor}: {doc}");
        assert_eq!(
            body.as_deref(),
            Some(&b"attempt 1"[..]),
            "{monitor}: the job kept its runner"
        );
    }
}
