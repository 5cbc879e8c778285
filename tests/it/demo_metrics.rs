//! The demo binary's log and `GET /metrics`, as an operator sees them: the
//! `demo` example runs as a process of its own (its `tracing-subscriber`
//! log and its Prometheus recorder are process-wide, so they cannot be
//! installed in this test binary), jobs end in each way the demo offers,
//! and the scrape is read by the official Python client's parser
//! (`prometheus_client.parser`, `tests/prometheus/parse.py`) in a virtual
//! environment in `target/prometheus-venv` (made once, like the Azure
//! test's). Nothing is skipped: without Python, venv or pip (or PyPI), the
//! test fails.

use crate::common::{self, HttpClient, submit};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tower_accepted::metrics as names;

/// The requirement installed in the virtual environment.
const PROMETHEUS_CLIENT: &str = "prometheus-client>=0.17,<1";

/// The overall bound of each wait of this test.
const WITHIN: Duration = Duration::from_secs(30);

/// The demo process, and every line it wrote (stdout and stderr).
struct Demo {
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
    _child: Child,
}

impl Demo {
    /// Starts the demo on a free port of 127.0.0.1 and waits until it
    /// listens.
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut child = Command::new(common::examples::example("demo"))
            .env("ADDR", &addr)
            .env("RUST_LOG", "info,tower_accepted=debug")
            // The planned panic's message, without a backtrace in the log.
            .env("RUST_BACKTRACE", "0")
            .env_remove("COMPLETION")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the demo example starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), log.clone());
        collect(child.stderr.take().unwrap(), log.clone());
        let demo = Self {
            addr,
            log,
            _child: child,
        };
        demo.until_logged("the demo listening", |line| line.contains("demo listening on"))
            .await;
        demo
    }

    fn client(&self) -> HttpClient {
        HttpClient::at(self.addr.parse().unwrap())
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most [`WITHIN`]) for a line of the log that `matches`.
    async fn until_logged(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(WITHIN, async {
            loop {
                if let Some(line) = self.lines().into_iter().find(|line| matches(line)) {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "{what}: not logged within {WITHIN:?}; log:\n{}",
                self.lines().join("\n")
            )
        })
    }
}

/// Appends each line `from` writes to `log`.
fn collect(from: impl AsyncRead + Unpin + Send + 'static, log: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().unwrap().push(line);
        }
    });
}

/// The virtual environment's Python, with `prometheus-client` installed.
async fn python() -> PathBuf {
    static SETUP: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    SETUP
        .get_or_init(|| common::python::venv("prometheus-venv", "prometheus_client.parser", PROMETHEUS_CLIENT))
        .await
        .clone()
}

/// A scrape as the Python parser read it: each family's type, and each
/// sample's value by its name and sorted labels.
#[derive(Debug)]
struct Scrape {
    types: HashMap<String, String>,
    samples: HashMap<(String, Vec<(String, String)>), f64>,
}

impl Scrape {
    /// The value of sample `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Vec<(String, String)> = labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        labels.sort();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    /// The sum of every sample named `name`, whatever its labels.
    fn total(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|((sample, _), _)| sample == name)
            .map(|(_, value)| value)
            .sum()
    }
}

/// `GET /metrics`, parsed by `tests/prometheus/parse.py`.
async fn scrape(client: &HttpClient) -> Scrape {
    let answer = client.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let python = python().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/prometheus/parse.py");
    let script = script.to_string_lossy().into_owned();
    let output = common::python::run(&python, &[&script], &answer.body, Duration::from_secs(60)).await;
    let families: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "parse.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let mut scrape = Scrape {
        types: HashMap::new(),
        samples: HashMap::new(),
    };
    for family in families.as_array().unwrap() {
        let name = family["name"].as_str().unwrap().to_owned();
        scrape.types.insert(name, family["type"].as_str().unwrap().to_owned());
        for sample in family["samples"].as_array().unwrap() {
            let mut labels: Vec<(String, String)> = sample["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            labels.sort();
            let value = sample["value"]
                .as_f64()
                .unwrap_or_else(|| panic!("a sample without a finite value: {sample}"));
            scrape
                .samples
                .insert((sample["name"].as_str().unwrap().to_owned(), labels), value);
        }
    }
    scrape
}

/// Each metric's family name as the parser gives it (a counter's without
/// `_total`) and its type. Histograms are real histograms: the demo sets
/// buckets (a recorder without them renders summaries).
fn expected_family(name: &str) -> (&str, &'static str) {
    match name {
        names::JOBS_ACCEPTED_TOTAL
        | names::JOBS_REFUSED_TOTAL
        | names::JOBS_FINISHED_TOTAL
        | names::STORE_ERRORS_TOTAL => (name.strip_suffix("_total").unwrap(), "counter"),
        names::JOBS_RUNNING | names::JOBS_QUEUED | names::LONG_POLLS_WAITING => (name, "gauge"),
        names::JOB_QUEUE_WAIT_SECONDS
        | names::JOB_RUN_SECONDS
        | names::STORE_OPERATION_SECONDS
        | names::LEASE_RENEWAL_LAG_SECONDS => (name, "histogram"),
        other => panic!("{other}: a metric this test does not know; add it here"),
    }
}

/// Long-polls `monitor` until its job ends; the final answer.
async fn until_ended(client: &HttpClient, monitor: &str) -> crate::common::Answer {
    tokio::time::timeout(WITHIN, async {
        loop {
            let answer = client.get(&format!("{monitor}?wait=5")).await;
            // A job that succeeded answers 303 (the demo's completion
            // style); any other ending, a status document.
            if answer.status == StatusCode::SEE_OTHER
                || matches!(answer.json()["status"].as_str(), Some("failed" | "canceled"))
            {
                return answer;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{monitor}: did not end within {WITHIN:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_logs_each_job_and_serves_metrics_prometheus_parses() {
    let demo = Demo::start().await;
    let client = demo.client();
    let id_of = |monitor: &str| monitor.rsplit('/').next().unwrap().to_owned();

    // One of each ending the demo offers.
    let succeeded = submit(&client, "/reports", r#"{"pages": 1}"#).await;
    let panicked = submit(&client, "/fail?mode=panic&delay_ms=10", "").await;
    let answered_500 = submit(&client, "/fail?delay_ms=10", "").await;
    let canceled = submit(&client, "/reports", r#"{"pages": 100}"#).await;

    // Canceled while it runs (not while it waits for a runner).
    let canceled_id = id_of(&canceled);
    demo.until_logged("the long report started", |line| {
        line.contains(&format!("job{{job.id={canceled_id} ")) && line.contains("job started")
    })
    .await;
    let delete = client.delete(&canceled).await;
    assert!(delete.status.is_success(), "DELETE of a running job: {delete:?}");

    assert_eq!(until_ended(&client, &succeeded).await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        until_ended(&client, &panicked).await.json()["error"]["code"],
        "panicked"
    );
    assert_eq!(
        until_ended(&client, &answered_500).await.json()["error"]["code"],
        "http_status"
    );
    demo.until_logged("the cancellation", |line| {
        line.contains("job canceled") && line.contains(&canceled_id)
    })
    .await;

    // Every job has ended; the gauges come down as their tasks end, which
    // may be a moment after the end is visible.
    let scrape = tokio::time::timeout(WITHIN, async {
        loop {
            let scrape = scrape(&client).await;
            let settled = [names::JOBS_RUNNING, names::JOBS_QUEUED, names::LONG_POLLS_WAITING]
                .iter()
                .all(|gauge| scrape.value(gauge, &[]) == Some(0.0));
            if settled && scrape.total(names::JOBS_FINISHED_TOTAL) == 4.0 {
                return scrape;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the gauges back at 0 and 4 jobs finished, within the bound");

    for name in names::ALL {
        let (family, kind) = expected_family(name);
        assert_eq!(
            scrape.types.get(family).map(String::as_str),
            Some(kind),
            "{name}: family {family} of type {kind}; parsed: {:?}",
            scrape.types
        );
    }
    assert_eq!(scrape.value(names::JOBS_ACCEPTED_TOTAL, &[]), Some(4.0));
    let finished = |status, code| scrape.value(names::JOBS_FINISHED_TOTAL, &[("status", status), ("code", code)]);
    assert_eq!(finished("succeeded", "none"), Some(1.0));
    assert_eq!(finished("failed", "panicked"), Some(1.0));
    assert_eq!(finished("failed", "http_status"), Some(1.0));
    assert_eq!(finished("canceled", "none"), Some(1.0));
    assert_eq!(scrape.total(names::JOBS_REFUSED_TOTAL), 0.0);
    assert_eq!(scrape.total(names::STORE_ERRORS_TOTAL), 0.0);
    // Real histograms: bucketed, and every job that started waited once.
    assert_eq!(
        scrape.value(&format!("{}_bucket", names::JOB_QUEUE_WAIT_SECONDS), &[("le", "+Inf")]),
        Some(4.0)
    );
    assert_eq!(
        scrape.value(&format!("{}_count", names::JOB_QUEUE_WAIT_SECONDS), &[]),
        Some(4.0)
    );
    assert!(
        scrape
            .value(
                &format!("{}_count", names::STORE_OPERATION_SECONDS),
                &[("op", "create")]
            )
            .is_some_and(|calls| calls >= 4.0),
        "every job was created in the store"
    );

    // The log: the succeeded job's end at INFO names it, and its start is
    // inside its `job` span (at DEBUG, enabled by `tower_accepted=debug`),
    // as is the handler's own event.
    let id = id_of(&succeeded);
    let span = format!("job{{job.id={id} ");
    let lines = demo.lines();
    let has = |what: &str, matches: &dyn Fn(&str) -> bool| {
        assert!(
            lines.iter().any(|line| matches(line)),
            "{what}: no such line in the log:\n{}",
            lines.join("\n")
        );
    };
    has("job succeeded, with its id", &|line| {
        line.contains("job succeeded") && line.contains(&format!("job.id={id}"))
    });
    has("job started, in its span", &|line| {
        line.contains(&span) && line.contains("job started")
    });
    has("the handler's own event, in the job's span", &|line| {
        line.contains(&span) && line.contains("page rendered")
    });
}
