//! HTTP load benchmark: `cargo bench --bench http` (add `--features redis`
//! for the Redis scenarios, `--features postgres` for the PostgreSQL ones).
//!
//! One process serves axum apps on 127.0.0.1 from a server runtime and drives
//! them with a hyper client load generator on a runtime of its own. Every
//! scenario is measured in every round, in turn, and every figure is also
//! given as a ratio to `floor` measured in the same round, since the machine
//! is shared and noisy; the table shows the median of the rounds.
//!
//! Scenarios:
//! - `floor`: a static `202` + `Location` + `Retry-After` + small JSON body,
//!   no layer: what no middleware can beat;
//! - `handwritten`: `tokio::spawn` + a sharded map + a `202` handler, as a
//!   user would write it instead of the layer;
//! - `submit`: `POST` through `AcceptedLayer` (the handler works 50 ms),
//!   `MemoryStore`, limits high enough that nothing is refused;
//! - `poll`: `GET /jobs/{id}` of pending jobs;
//! - `flow`: submit → long poll (`?wait=10`) → fetch the result, in flows/s;
//! - `redis_submit`, `redis_poll`, `redis_flow` (feature `redis`): the same
//!   on `RedisStore` at `REDIS_URL` (default `redis://127.0.0.1:6379`), in a
//!   fresh namespace;
//! - `pg_submit`, `pg_poll`, `pg_flow` (feature `postgres`): the same on
//!   `PostgresStore` at `DATABASE_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/test`), in a fresh schema
//!   `bench_<pid>_<nanos>_<scenario>` per scenario and round, dropped once
//!   the scenario is measured. `BENCH_PG_POOL` (a size) or `BENCH_PG_PING`
//!   (`0`: no ping before a connection is handed out) give the store a
//!   pool the bench opens itself, for profiling; by default it opens its own.
//!
//! Settings (environment): `BENCH_THREADS` server worker threads (1),
//! `BENCH_CLIENT_THREADS` load generator threads (1), `BENCH_CONNECTIONS`
//! (64), `BENCH_SECONDS` counted per scenario and round (2.5),
//! `BENCH_WARMUP` seconds (0.5), `BENCH_ROUNDS` (3), `BENCH_JOB_MS` the
//! handler's work (50), `BENCH_SCENARIOS` (a
//! comma-separated subset), `BENCH_JSON` (where the JSON goes; default
//! `target/bench-http.json`).
//!
//! Besides the latencies the table shows the CPU time the server's threads
//! spent per request (`srv µs/req`), which the load generator sharing the
//! cores does not blur as much as the rates.

#[path = "http/apps.rs"]
mod apps;
#[path = "http/load.rs"]
mod load;
#[path = "common/telemetry.rs"]
mod telemetry;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tower_accepted::{
    AcceptedLayer,
    store::{JobStore, MemoryStore},
};

use load::{Measured, Script};

/// How many stuck jobs the `poll` scenarios poll, in turn.
const POLLED_JOBS: usize = 1000;

struct Settings {
    threads: usize,
    client_threads: usize,
    connections: usize,
    seconds: f64,
    warmup: f64,
    rounds: usize,
    only: Option<Vec<String>>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    redis_url: String,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    database_url: String,
    /// The PostgreSQL scenarios' own pool, when either knob is set: its
    /// size, and whether it pings a connection before handing it out.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pg_pool: Option<(u32, bool)>,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Settings {
    fn from_env() -> Self {
        Self {
            threads: env("BENCH_THREADS", 1usize).max(1),
            client_threads: env("BENCH_CLIENT_THREADS", 1usize).max(1),
            connections: env("BENCH_CONNECTIONS", 64usize).max(1),
            seconds: env("BENCH_SECONDS", 2.5f64).max(0.1),
            warmup: env("BENCH_WARMUP", 0.5f64).max(0.0),
            rounds: env("BENCH_ROUNDS", 3usize).max(1),
            only: std::env::var("BENCH_SCENARIOS")
                .ok()
                .map(|s| s.split(',').map(|n| n.trim().to_owned()).collect()),
            redis_url: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            database_url: std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            pg_pool: (std::env::var_os("BENCH_PG_POOL").is_some() || std::env::var_os("BENCH_PG_PING").is_some())
                .then(|| (env("BENCH_PG_POOL", 16u32).max(2), env("BENCH_PG_PING", 1u8) != 0)),
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.iter().any(|n| n == name))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Store {
    Memory,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Redis,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Floor,
    Handwritten,
    Submit(Store),
    Poll(Store),
    Flow(Store),
}

const SCENARIOS: &[(&str, Kind)] = &[
    ("floor", Kind::Floor),
    ("handwritten", Kind::Handwritten),
    ("submit", Kind::Submit(Store::Memory)),
    ("poll", Kind::Poll(Store::Memory)),
    ("flow", Kind::Flow(Store::Memory)),
    #[cfg(feature = "redis")]
    ("redis_submit", Kind::Submit(Store::Redis)),
    #[cfg(feature = "redis")]
    ("redis_poll", Kind::Poll(Store::Redis)),
    #[cfg(feature = "redis")]
    ("redis_flow", Kind::Flow(Store::Redis)),
    #[cfg(feature = "postgres")]
    ("pg_submit", Kind::Submit(Store::Postgres)),
    #[cfg(feature = "postgres")]
    ("pg_poll", Kind::Poll(Store::Postgres)),
    #[cfg(feature = "postgres")]
    ("pg_flow", Kind::Flow(Store::Postgres)),
];

/// A server running on the server runtime.
struct Served {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn serve(rt: &Runtime, app: Router) -> std::io::Result<Served> {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Served { addr, stop, task })
    })
}

fn stop(rt: &Runtime, served: Served) {
    let _ = served.stop.send(());
    rt.block_on(async {
        let mut task = served.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
            task.abort();
        }
    });
}

/// A layer whose limits never refuse a job in a benchmark.
fn unbounded<St: JobStore>(layer: AcceptedLayer<St>, running: usize) -> AcceptedLayer<St> {
    layer.max_running(running).max_queued(1 << 24)
}

fn memory_layer() -> AcceptedLayer<MemoryStore> {
    AcceptedLayer::new().store(MemoryStore::builder().capacity(1 << 26).build())
}

#[cfg(feature = "redis")]
fn redis_layer(
    rt: &Runtime,
    url: &str,
    scenario: &str,
) -> Result<AcceptedLayer<tower_accepted::store::RedisStore>, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let namespace = format!("bench-{}-{nanos}-{scenario}", std::process::id());
    let store = rt
        .block_on(
            tower_accepted::store::RedisStore::builder(url)
                .namespace(namespace)
                .ttl(Duration::from_secs(120))
                .tombstone_ttl(Duration::from_secs(60))
                .build(),
        )
        .map_err(|e| e.to_string())?;
    Ok(AcceptedLayer::new().store(store))
}

/// A store in a schema of its own, `bench_<pid>_<nanos>_<scenario>`; its
/// pool, to drop the schema with once the scenario is measured.
#[cfg(feature = "postgres")]
type PgLayer = AcceptedLayer<tower_accepted::store::PostgresStore>;

#[cfg(feature = "postgres")]
fn pg_layer(
    rt: &Runtime,
    settings: &Settings,
    scenario: &str,
) -> Result<(PgLayer, tower_accepted::sqlx::PgPool), String> {
    use tower_accepted::store::PostgresStore;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let schema = format!("bench_{}_{nanos}_{scenario}", std::process::id());
    let url = &settings.database_url;
    let store = rt.block_on(async {
        let builder = match settings.pg_pool {
            // The store's own pool (16 connections).
            None => PostgresStore::builder(url),
            Some((size, ping)) => PostgresStore::builder_with_pool(
                tower_accepted::sqlx::postgres::PgPoolOptions::new()
                    .max_connections(size)
                    .test_before_acquire(ping)
                    .acquire_timeout(Duration::from_secs(2))
                    .connect(url)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        };
        builder
            .schema(schema)
            .ttl(Duration::from_secs(120))
            .tombstone_ttl(Duration::from_secs(60))
            .build()
            .await
            .map_err(|e| e.to_string())
    })?;
    let pool = store.pool().clone();
    Ok((AcceptedLayer::new().store(store), pool))
}

/// Drops the bench's schema (its jobs with it) and closes the pool.
#[cfg(feature = "postgres")]
fn pg_drop(rt: &Runtime, pool: &tower_accepted::sqlx::PgPool, schema: &str) {
    rt.block_on(async {
        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let drop = tower_accepted::sqlx::raw_sql(&sql).execute(pool);
        match tokio::time::timeout(Duration::from_secs(30), drop).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("cannot drop schema {schema}: {e}"),
            Err(_) => eprintln!("cannot drop schema {schema}: timed out"),
        }
        pool.close().await;
    });
}

struct Context<'a> {
    settings: &'a Settings,
    server: &'a Runtime,
    client: &'a Runtime,
}

impl Context<'_> {
    fn load(&self, addr: SocketAddr, script: Script) -> Measured {
        let s = self.settings;
        self.client.block_on(load::run(
            addr,
            script,
            s.connections,
            Duration::from_secs_f64(s.warmup),
            Duration::from_secs_f64(s.seconds),
        ))
    }

    /// Serves `app`, runs `script` (after `prepare` made it), stops.
    fn measure(
        &self,
        app: Router,
        script: impl FnOnce(SocketAddr) -> Result<Script, String>,
    ) -> Result<Measured, String> {
        let served = serve(self.server, app).map_err(|e| e.to_string())?;
        let measured = script(served.addr).map(|script| self.load(served.addr, script));
        stop(self.server, served);
        measured
    }

    fn layered<St: JobStore>(&self, kind: Kind, layer: AcceptedLayer<St>) -> Result<Measured, String> {
        let running = if matches!(kind, Kind::Poll(_)) { 1 } else { 1 << 24 };
        let layer = unbounded(layer, running);
        let client = self.client;
        let measured = self.measure(apps::accepted(layer.clone()), |addr| match kind {
            Kind::Poll(_) => {
                let monitors = client.block_on(load::submit_many(addr, "/stuck", POLLED_JOBS))?;
                Ok(Script::Poll(monitors.into()))
            }
            Kind::Flow(_) => Ok(Script::Flow("/reports")),
            _ => Ok(Script::Submit("/reports")),
        });
        // Ends the stuck jobs, lets the others finish.
        self.server.block_on(layer.shutdown(Duration::from_millis(200)));
        measured
    }

    fn scenario(&self, name: &str, kind: Kind) -> Result<Measured, String> {
        match kind {
            Kind::Floor => self.measure(apps::floor(), |_| Ok(Script::Submit("/reports"))),
            Kind::Handwritten => self.measure(apps::handwritten(), |_| Ok(Script::Submit("/reports"))),
            Kind::Submit(Store::Memory) | Kind::Poll(Store::Memory) | Kind::Flow(Store::Memory) => {
                let _ = name;
                self.layered(kind, memory_layer())
            }
            #[cfg(feature = "redis")]
            Kind::Submit(Store::Redis) | Kind::Poll(Store::Redis) | Kind::Flow(Store::Redis) => {
                let layer = redis_layer(self.server, &self.settings.redis_url, name)?;
                self.layered(kind, layer)
            }
            #[cfg(feature = "postgres")]
            Kind::Submit(Store::Postgres) | Kind::Poll(Store::Postgres) | Kind::Flow(Store::Postgres) => {
                let (layer, pool) = pg_layer(self.server, self.settings, name)?;
                let schema = layer.job_store().schema().to_owned();
                let measured = self.layered(kind, layer);
                pg_drop(self.server, &pool, &schema);
                measured
            }
            #[cfg(not(all(feature = "redis", feature = "postgres")))]
            _ => Err("built without the redis or postgres feature".into()),
        }
    }
}

/// One scenario's figures in one round.
#[derive(Clone, Copy, Default)]
struct Figures {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    ratio: f64,
    server_us: f64,
    errors: f64,
    /// Flows: how long the handler itself worked, on average, in µs.
    worked: f64,
    /// Flows: latency less the flow's own handler's work, p50 and p99, µs.
    overhead50: f64,
    overhead99: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn medians(rounds: &[Figures]) -> Figures {
    let m = |f: fn(&Figures) -> f64| median(rounds.iter().map(f).collect());
    Figures {
        rps: m(|f| f.rps),
        p50: m(|f| f.p50),
        p99: m(|f| f.p99),
        p999: m(|f| f.p999),
        ratio: m(|f| f.ratio),
        server_us: m(|f| f.server_us),
        errors: m(|f| f.errors),
        worked: m(|f| f.worked),
        overhead50: m(|f| f.overhead50),
        overhead99: m(|f| f.overhead99),
    }
}

fn runtime(threads: usize, name: &'static str) -> Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot start the {name} runtime: {e}"),
    }
}

fn json_path() -> PathBuf {
    if let Ok(path) = std::env::var("BENCH_JSON") {
        return path.into();
    }
    // target/release/deps/http-… → target/
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("bench-http.json")
}

/// The subscriber and recorder of an app in production, unless
/// `BENCH_TELEMETRY=0`.
fn install_telemetry() {
    if std::env::var("BENCH_TELEMETRY").as_deref() != Ok("0") {
        telemetry::install();
    }
}

fn main() {
    install_telemetry();
    let settings = Settings::from_env();
    let server = runtime(settings.threads, "bench-srv");
    let client = runtime(settings.client_threads, "bench-cli");
    let cx = Context {
        settings: &settings,
        server: &server,
        client: &client,
    };
    let chosen: Vec<(&str, Kind)> = SCENARIOS.iter().copied().filter(|(n, _)| settings.wants(n)).collect();
    println!(
        "tower-accepted HTTP benchmark: server {} thread(s), load generator {} thread(s), {} connections, \
         {} round(s) of {:.1} s per scenario (+{:.1} s warm-up), handler {} ms",
        settings.threads,
        settings.client_threads,
        settings.connections,
        settings.rounds,
        settings.seconds,
        settings.warmup,
        apps::job().as_millis()
    );
    let mut results: Vec<Vec<Figures>> = vec![Vec::new(); chosen.len()];
    let mut skipped: Vec<Option<String>> = vec![None; chosen.len()];
    for round in 1..=settings.rounds {
        let mut floor_rps = f64::NAN;
        for (i, (name, kind)) in chosen.iter().enumerate() {
            if skipped[i].is_some() {
                continue;
            }
            let measured = match cx.scenario(name, *kind) {
                Ok(measured) => measured,
                Err(e) => {
                    eprintln!("{name}: skipped: {e}");
                    skipped[i] = Some(e);
                    continue;
                }
            };
            if *kind == Kind::Floor {
                floor_rps = measured.rps();
            }
            if let Some(e) = &measured.first_error {
                eprintln!("{name}: {} error(s), the first: {e}", measured.errors);
            }
            let figures = Figures {
                rps: measured.rps(),
                p50: f64::from(measured.quantile(0.50)),
                p99: f64::from(measured.quantile(0.99)),
                p999: f64::from(measured.quantile(0.999)),
                ratio: measured.rps() / floor_rps,
                server_us: measured.server_cpu_ns as f64 / 1000.0 / measured.count.max(1) as f64,
                errors: measured.errors as f64,
                worked: if measured.overhead_us.is_empty() {
                    f64::NAN
                } else {
                    measured.worked_us
                },
                overhead50: measured.overhead(0.50).map_or(f64::NAN, f64::from),
                overhead99: measured.overhead(0.99).map_or(f64::NAN, f64::from),
            };
            eprintln!(
                "round {round} {name:<13} {:>9.0}/s  p50 {:>6.0} µs  p99 {:>6.0} µs  srv {:>5.1} µs/req  cli {:>5.1} µs/req",
                figures.rps,
                figures.p50,
                figures.p99,
                figures.server_us,
                measured.client_cpu_ns as f64 / 1000.0 / measured.count.max(1) as f64,
            );
            results[i].push(figures);
        }
    }

    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n{:<13} {:>10} {:>7} {:>8} {:>8} {:>8} {:>11} {:>7}",
        "scenario", "req/s", "ratio", "p50 µs", "p99 µs", "p999 µs", "srv µs/req", "errors"
    );
    let mut json = String::from("{\"scenarios\": {");
    let mut first = true;
    let mut flows = Vec::new();
    for (i, (name, _)) in chosen.iter().enumerate() {
        if results[i].is_empty() {
            continue;
        }
        let f = medians(&results[i]);
        let ratio = if f.ratio.is_nan() {
            "-".to_owned()
        } else {
            format!("{:.2}", f.ratio)
        };
        let _ = writeln!(
            table,
            "{name:<13} {:>10.0} {ratio:>7} {:>8.0} {:>8.0} {:>8.0} {:>11.1} {:>7.0}",
            f.rps, f.p50, f.p99, f.p999, f.server_us, f.errors
        );
        let _ = write!(
            json,
            "{}\"{name}\": {{\"rps\": {:.1}, \"p50_us\": {:.0}, \"p99_us\": {:.0}, \"p999_us\": {:.0}}}",
            if first { "" } else { ", " },
            f.rps,
            f.p50,
            f.p99,
            f.p999
        );
        first = false;
        if !f.worked.is_nan() {
            flows.push(format!(
                "{name}: its handler worked {:.2} ms on average (asked for {} ms); a flow took that plus \
                 {:.2} ms at p50, plus {:.2} ms at p99",
                f.worked / 1000.0,
                apps::job().as_millis(),
                f.overhead50 / 1000.0,
                f.overhead99 / 1000.0
            ));
        }
    }
    let _ = write!(
        json,
        "}}, \"threads\": {}, \"connections\": {}, \"seconds\": {}}}",
        settings.threads, settings.connections, settings.seconds
    );
    print!("{table}");
    println!(
        "(medians of {} round(s); ratio: req/s over floor's in the same round; flow: flows/s)",
        settings.rounds
    );
    for line in flows {
        println!("{line}");
    }
    let path = json_path();
    match std::fs::write(&path, json + "\n") {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}
