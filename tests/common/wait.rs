//! Waiting for something to happen, within seconds: every helper has an
//! overall deadline and, when it passes, panics with what it waited for
//! and the last thing it saw, so a stuck test fails fast and says why.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::http::{Answer, HttpClient};

/// The overall deadline of every wait helper.
pub const WAIT_WITHIN: Duration = Duration::from_secs(20);
/// The `?wait=` of one long poll, well within [`WAIT_WITHIN`].
pub const LONG_POLL_SECS: u64 = 2;
/// The pause between two looks of a polling helper.
const PAUSE: Duration = Duration::from_millis(20);

/// Looks with `look` (every 20 ms) until it returns `Some`, for at most
/// [`WAIT_WITHIN`]; then panics naming `what` and the last value seen
/// (`describe` of what `look` last reported).
pub async fn until_some<T, S: Debug, F: Future<Output = Result<T, S>>>(what: &str, mut look: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + WAIT_WITHIN;
    loop {
        // A look that hangs is bounded by the same deadline.
        match tokio::time::timeout_at(deadline, look()).await {
            Ok(Ok(found)) => return found,
            Ok(Err(last)) if Instant::now() >= deadline => {
                panic!("{what}: not within {WAIT_WITHIN:?}; last seen: {last:?}")
            }
            Ok(Err(_)) => tokio::time::sleep(PAUSE).await,
            Err(_) => panic!("{what}: not within {WAIT_WITHIN:?} (a look did not answer)"),
        }
    }
}

/// Checks `check` (every 20 ms) until it holds, for at most
/// [`WAIT_WITHIN`].
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    until_some(what, || {
        let held = check();
        async move { if held { Ok(()) } else { Err("not yet") } }
    })
    .await
}

/// Polls the monitor at `monitor` (every 20 ms) until `done` holds for its
/// status document; returns that answer.
pub async fn poll_until(
    client: &HttpClient,
    monitor: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Answer {
    until_some(&format!("{monitor}: {what}"), || async {
        let answer = client.get(monitor).await;
        if done(&answer.json()) {
            Ok(answer)
        } else {
            Err(format!("{} {}", answer.status, String::from_utf8_lossy(&answer.body)))
        }
    })
    .await
}

impl HttpClient {
    /// Long-polls the monitor at `path` (each poll `?wait=2`) until it
    /// answers for a job that has ended; returns that answer. At most
    /// [`WAIT_WITHIN`] in all.
    pub async fn until_done(&self, path: &str) -> Answer {
        let separator = if path.contains('?') { '&' } else { '?' };
        let poll = format!("{path}{separator}wait={LONG_POLL_SECS}");
        until_some(&format!("the job at {path} to end"), || async {
            let answer = self.get(&poll).await;
            match answer.status_word().as_str() {
                "pending" | "running" => Err(format!("{} {}", answer.status, answer.status_word())),
                // The store out of reach for a moment (a fault test's
                // pause): the job is still there, ask again.
                _ if answer.status == 503 => Err(format!("{} (store unavailable)", answer.status)),
                _ => Ok(answer),
            }
        })
        .await
    }
}
