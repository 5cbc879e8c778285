//! The load generator: closed-loop HTTP/1.1 connections driven by hyper's
//! client, latency samples and CPU time of the server's threads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::apps::{REQUEST_BODY, WORKED};

/// What one connection does, again and again.
#[derive(Clone)]
pub enum Script {
    /// `POST path`, expecting `202`.
    Submit(&'static str),
    /// `GET` one of the paths in turn, expecting `200`.
    Poll(Arc<[String]>),
    /// `POST path` → `GET {Location}?wait=10` → `GET` the result: one
    /// sample per flow.
    Flow(&'static str),
}

/// When to start counting and when to stop.
#[derive(Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
    /// How far apart the first and the last connection start.
    pub stagger: Duration,
    pub connections: usize,
}

/// What a run measured.
#[derive(Default)]
pub struct Measured {
    /// Samples (requests, or flows) completed inside the window.
    pub count: u64,
    /// Their latencies, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// Unexpected answers and broken connections.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Length of the window.
    pub seconds: f64,
    /// CPU time of the server's threads inside the window, in ns.
    pub server_cpu_ns: u64,
    /// CPU time of the load generator's threads inside the window, in ns.
    pub client_cpu_ns: u64,
    /// Flows: each flow's latency less the time its handler worked, in
    /// microseconds, sorted.
    pub overhead_us: Vec<u32>,
    /// Flows: the mean time a handler worked, in microseconds.
    pub worked_us: f64,
}

impl Measured {
    pub fn rps(&self) -> f64 {
        self.count as f64 / self.seconds
    }

    /// The latency at quantile `q` (0..1), in µs.
    pub fn quantile(&self, q: f64) -> u32 {
        quantile(&self.latencies_us, q)
    }

    /// The flows' overhead at quantile `q`, in µs.
    pub fn overhead(&self, q: f64) -> Option<u32> {
        (!self.overhead_us.is_empty()).then(|| quantile(&self.overhead_us, q))
    }
}

fn quantile(sorted: &[u32], q: f64) -> u32 {
    let n = sorted.len();
    if n == 0 {
        return 0;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

#[derive(Default)]
struct ConnectionResult {
    latencies_us: Vec<u32>,
    overhead_us: Vec<u32>,
    worked_us: u64,
    errors: u64,
    first_error: Option<String>,
}

fn request(method: Method, path: &str) -> Request<Full<Bytes>> {
    let body = if method == Method::POST {
        Bytes::from_static(REQUEST_BODY)
    } else {
        Bytes::new()
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1");
    if !body.is_empty() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    builder.body(Full::new(body)).unwrap_or_default()
}

/// Sends one request; the status, and the `Location` (or for a result, the
/// time its handler worked, in µs).
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
) -> Result<(StatusCode, Option<String>), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request(method, path))
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .or_else(|| response.headers().get(WORKED))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    response.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok((status, location))
}

fn expect(status: StatusCode, wanted: StatusCode) -> Result<(), String> {
    if status == wanted {
        Ok(())
    } else {
        Err(format!("expected {wanted}, got {status}"))
    }
}

/// One round of `script`; for a flow, how long its handler worked, in µs.
async fn once(sender: &mut SendRequest<Full<Bytes>>, script: &Script, turn: usize) -> Result<Option<u32>, String> {
    match script {
        Script::Submit(path) => {
            let (status, _) = exchange(sender, Method::POST, path).await?;
            expect(status, StatusCode::ACCEPTED).map(|()| None)
        }
        Script::Poll(paths) => {
            let (status, _) = exchange(sender, Method::GET, &paths[turn % paths.len()]).await?;
            expect(status, StatusCode::OK).map(|()| None)
        }
        Script::Flow(path) => {
            let (status, monitor) = exchange(sender, Method::POST, path).await?;
            expect(status, StatusCode::ACCEPTED)?;
            let monitor = monitor.ok_or("no Location on the 202")?;
            let (status, result) = exchange(sender, Method::GET, &format!("{monitor}?wait=10")).await?;
            expect(status, StatusCode::SEE_OTHER)?;
            let result = result.ok_or("no Location on the 303")?;
            let (status, worked) = exchange(sender, Method::GET, &result).await?;
            expect(status, StatusCode::OK)?;
            Ok(worked.and_then(|w| w.parse().ok()))
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn connection(addr: SocketAddr, script: Script, window: Window, index: usize) -> ConnectionResult {
    let mut out = ConnectionResult {
        latencies_us: Vec::with_capacity(1 << 16),
        ..ConnectionResult::default()
    };
    let mut sender = None;
    let mut turn = index.wrapping_mul(7919);
    // Independent clients do not start in lock step: connections begin
    // spread over one job's duration, so that flows (whose jobs all last as
    // long, to the timer's millisecond) do not arrive in bursts.
    tokio::time::sleep(window.stagger.mul_f64(index as f64 / window.connections as f64)).await;
    loop {
        let begin = Instant::now();
        if begin >= window.end {
            break;
        }
        let result = match &mut sender {
            Some(sender) => once(sender, &script, turn).await,
            None => match connect(addr).await {
                Ok(connected) => {
                    sender = Some(connected);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        turn = turn.wrapping_add(1);
        let done = Instant::now();
        if begin < window.start || done > window.end {
            continue;
        }
        match result {
            Ok(worked) => {
                let us = u32::try_from(done.duration_since(begin).as_micros()).unwrap_or(u32::MAX);
                out.latencies_us.push(us);
                if let Some(worked) = worked {
                    out.overhead_us.push(us.saturating_sub(worked));
                    out.worked_us += u64::from(worked);
                }
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
                // Start again on a new connection, after a breath.
                sender = None;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    out
}

/// Runs `connections` connections of `script` against `addr`: `warmup`
/// uncounted, then `seconds` counted. Call on the load generator's runtime.
pub async fn run(
    addr: SocketAddr,
    script: Script,
    connections: usize,
    warmup: Duration,
    seconds: Duration,
) -> Measured {
    let start = Instant::now() + warmup;
    let window = Window {
        start,
        end: start + seconds,
        stagger: super::apps::job().min(warmup),
        connections,
    };
    let tasks: Vec<_> = (0..connections)
        .map(|i| tokio::spawn(connection(addr, script.clone(), window, i)))
        .collect();
    tokio::time::sleep_until(window.start.into()).await;
    let (server0, client0) = (cpu_ns("bench-srv"), cpu_ns("bench-cli"));
    tokio::time::sleep_until(window.end.into()).await;
    let (server1, client1) = (cpu_ns("bench-srv"), cpu_ns("bench-cli"));
    let mut measured = Measured {
        seconds: seconds.as_secs_f64(),
        server_cpu_ns: server1.saturating_sub(server0),
        client_cpu_ns: client1.saturating_sub(client0),
        ..Measured::default()
    };
    for task in tasks {
        let Ok(result) = task.await else {
            measured.errors += 1;
            continue;
        };
        measured.latencies_us.extend(result.latencies_us);
        measured.overhead_us.extend(result.overhead_us);
        measured.worked_us += result.worked_us as f64;
        measured.errors += result.errors;
        if measured.first_error.is_none() {
            measured.first_error = result.first_error;
        }
    }
    measured.count = measured.latencies_us.len() as u64;
    measured.latencies_us.sort_unstable();
    measured.overhead_us.sort_unstable();
    measured.worked_us /= measured.overhead_us.len().max(1) as f64;
    measured
}

/// Sends `count` submissions of `path` and returns their monitors.
pub async fn submit_many(addr: SocketAddr, path: &'static str, count: usize) -> Result<Vec<String>, String> {
    let mut sender = connect(addr).await?;
    let mut monitors = Vec::with_capacity(count);
    for _ in 0..count {
        let (status, location) = exchange(&mut sender, Method::POST, path).await?;
        expect(status, StatusCode::ACCEPTED)?;
        monitors.push(location.ok_or("no Location on the 202")?);
    }
    Ok(monitors)
}

/// CPU time so far of this process's threads whose name starts with
/// `prefix`, in ns (0 where `/proc` cannot tell).
pub fn cpu_ns(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let path = task.path();
        let named = std::fs::read_to_string(path.join("comm")).is_ok_and(|name| name.starts_with(prefix));
        if !named {
            continue;
        }
        // schedstat: time on CPU (ns), time waiting, timeslices.
        if let Some(ns) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        {
            total += ns;
        }
    }
    total
}
