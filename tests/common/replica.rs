//! The `replicas` example run as a process of its own, one per replica, so
//! that a test can kill it (SIGKILL), stop it gracefully (SIGTERM) and
//! start it again on the same address; what its handlers finished is read
//! from its output (`done <id> attempt <n>`).
//!
//! A replica shares its jobs through Redis (`REDIS_URL` or
//! `REDIS_CLUSTER_URLS`, and `NAMESPACE`) or, when its environment names a
//! `DATABASE_URL`, through PostgreSQL (and `SCHEMA`): the example is built
//! with every store of the test build (`redis`, `postgres`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tower_accepted::store::{JobId, JobRecord, JobStatus, JobStore, Lookup};

use super::examples::example;
use super::http::{HttpClient, assert_accepted};

/// The path of the `replicas` example (see [`example`]).
pub fn replicas_example() -> PathBuf {
    example("replicas")
}

/// Handler completions, by job id: the attempts that finished, in order,
/// over every run of every replica that shares it.
#[derive(Clone, Default)]
pub struct Completions(Arc<Mutex<HashMap<String, Vec<u32>>>>);

impl Completions {
    /// The attempts of job `id` whose handler finished.
    pub fn of(&self, id: &str) -> Vec<u32> {
        self.0.lock().unwrap().get(id).cloned().unwrap_or_default()
    }

    fn record(&self, line: &str) {
        let mut words = line.split(' ');
        if let (Some("done"), Some(id), Some("attempt"), Some(attempt)) =
            (words.next(), words.next(), words.next(), words.next())
            && let Ok(attempt) = attempt.parse()
        {
            self.0.lock().unwrap().entry(id.to_owned()).or_default().push(attempt);
        }
    }
}

/// One replica process on a fixed address.
pub struct Replica {
    pub addr: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    pub completions: Completions,
}

impl Replica {
    /// Starts a replica on a free port of 127.0.0.1 with `env` (besides
    /// `ADDR`), and waits until it listens. It uses PostgreSQL if `env` has
    /// a `DATABASE_URL`, Redis otherwise (a `DATABASE_URL` of the test's
    /// own environment is not passed on).
    pub async fn start(env: &[(&str, &str)], completions: Completions) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut replica = Self {
            addr: format!("127.0.0.1:{port}"),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            child: None,
            completions,
        };
        replica.restart().await;
        replica
    }

    /// The base URL.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the process (again), on the same address.
    pub async fn restart(&mut self) {
        let mut command = Command::new(replicas_example());
        if !self.env.iter().any(|(k, _)| k == "DATABASE_URL") {
            command.env_remove("DATABASE_URL");
        }
        let mut child = command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("ADDR", &self.addr)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the replicas example starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (listening, heard) = tokio::sync::oneshot::channel();
        let completions = self.completions.clone();
        tokio::spawn(async move {
            let mut listening = Some(listening);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("replica listening on ")
                    && let Some(tx) = listening.take()
                {
                    let _ = tx.send(());
                }
                completions.record(&line);
            }
        });
        self.child = Some(child);
        tokio::time::timeout(Duration::from_secs(60), heard)
            .await
            .expect("the replica listens within 60 s")
            .expect("the replica printed its address");
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// SIGTERM, then waits (up to `within`) for the process to exit.
    pub async fn terminate(&mut self, within: Duration) {
        let Some(mut child) = self.child.take() else { return };
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(within, child.wait())
            .await
            .expect("the replica stops after SIGTERM")
            .unwrap();
        assert!(status.success(), "a replica stopped by SIGTERM exits cleanly: {status}");
    }
}

/// Held by each run of several replica processes against faults (and by
/// the tests that measure latency or run on short timeouts), so that two never share the
/// machine's 2 cores: each such run sizes its leases for a machine it
/// shares with light tests only, and a job that a slow machine makes lose
/// its lease three times ends `lost`.
pub async fn one_heavy_test_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// A client of the replica at `replica`.
pub fn client(replica: &Replica) -> HttpClient {
    HttpClient::at(replica.addr.parse().unwrap())
}

/// Reads job `id` from the store until `done` holds, for at most `within`.
pub async fn until_record<St: JobStore>(
    store: &St,
    id: JobId,
    within: Duration,
    done: impl Fn(&JobRecord) -> bool,
) -> JobRecord {
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        if let Ok(Lookup::Found(record)) = store.get(id).await {
            if done(&record) {
                return record;
            }
            last = Some(record);
        }
        assert!(
            Instant::now() < deadline,
            "job {id} within {within:?}; last seen {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Submits the chaos runs' 300 durable `/echo` jobs, spread over
/// `replicas`, each 100 ms to 1.5 s long; their numbers and monitors.
pub async fn spread_echo_jobs(replicas: [&Replica; 3]) -> Vec<(u64, String)> {
    let mut jobs = Vec::new();
    for n in 0..300u64 {
        let replica = replicas[(n % 3) as usize];
        let delay = 100 + (n * 7919) % 1400;
        let answer = client(replica)
            .post(&format!("/echo?delay_ms={delay}&n={n}"), format!("job {n}"))
            .await;
        jobs.push((n, assert_accepted(&answer)));
    }
    jobs
}

/// What a chaos run checks of every job once the faults are over: it
/// succeeded, within its attempts; the result it keeps is its current
/// attempt's (a stale attempt never overwrote it) and that attempt's
/// handler finished exactly once; some jobs ran again (the kill cut them
/// short). Answers how many ran again and how many handler runs finished.
pub async fn check_every_job_recorded_once<St: JobStore>(
    store: &St,
    poller: &HttpClient,
    jobs: &[(u64, String)],
    completions: &Completions,
) -> (usize, usize) {
    let mut ran_again = 0;
    for (n, monitor) in jobs {
        let id: JobId = monitor.rsplit('/').next().unwrap().parse().unwrap();
        let record = until_record(store, id, Duration::from_secs(120), |r| r.status.is_terminal()).await;
        assert_eq!(record.status, JobStatus::Succeeded, "job {n}: {record:?}");
        let result = poller.get(&format!("{monitor}/result")).await;
        assert_eq!(result.status, StatusCode::OK, "job {n}");
        assert_eq!(String::from_utf8_lossy(&result.body), format!("job {n}"));
        let made_by: u32 = result.header("x-attempt").unwrap().parse().unwrap();
        assert_eq!(made_by, record.attempt, "job {n}: the result is the current attempt's");
        let done = completions.of(&id.to_string());
        assert_eq!(
            done.iter().filter(|a| **a == made_by).count(),
            1,
            "job {n}: its recorded attempt finished once ({done:?})"
        );
        assert!(
            record.attempt <= 3,
            "job {n} ran within its attempts: {}",
            record.attempt
        );
        if record.attempt > 1 {
            ran_again += 1;
        }
    }
    let finished: usize = jobs
        .iter()
        .map(|(_, m)| completions.of(m.rsplit('/').next().unwrap()).len())
        .sum();
    assert!(ran_again > 0, "the kill cut short running jobs, which ran again");
    (ran_again, finished)
}
