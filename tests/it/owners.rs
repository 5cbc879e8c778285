//! Owner scoping, `GET /jobs` listing and `Idempotency-Key`, over real HTTP,
//! against both stores.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use http::header::HeaderName;
use http::{HeaderMap, Method, StatusCode};
use tokio::sync::Semaphore;
use tower_accepted::{
    AcceptedLayer,
    store::{JobStore, MemoryStore},
};

use common::{Answer, HttpClient, Server, serve};

struct App {
    _server: Server,
    client: HttpClient,
    /// How many times a handler started.
    calls: Arc<AtomicUsize>,
}

/// Any bearer token stands for a user, as in the demo.
fn bearer(parts: &http::request::Parts) -> Option<String> {
    let value = parts.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

async fn app<St: JobStore>(store: St) -> App {
    let calls = Arc::new(AtomicUsize::new(0));
    let (work_calls, block_calls) = (calls.clone(), calls.clone());
    let layer = AcceptedLayer::new().store(store).owner(bearer).max_list_limit(5);
    let app = Router::new()
        .route(
            "/work",
            post(move |body: String| {
                work_calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    body
                }
            }),
        )
        .route(
            "/block",
            post(move || {
                block_calls.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<String>()
            }),
        )
        .layer(layer);
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    App {
        _server: server,
        client,
        calls,
    }
}

fn auth(user: &str) -> String {
    format!("Bearer {user}")
}

async fn submit(app: &App, path: &str, user: Option<&str>, key: Option<&str>, body: &str) -> Answer {
    let mut headers = Vec::new();
    let authorization = user.map(auth);
    if let Some(a) = &authorization {
        headers.push(("authorization", a.as_str()));
    }
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    app.client.send(Method::POST, path, &headers, body.to_owned()).await
}

async fn as_user(app: &App, method: Method, path: &str, user: Option<&str>) -> Answer {
    let authorization = user.map(auth);
    let headers: Vec<(&str, &str)> = authorization.iter().map(|a| ("authorization", a.as_str())).collect();
    app.client.send(method, path, &headers, "").await
}

async fn cross_owner_access_is_an_unknown_id(app: &App) {
    let running = submit(app, "/block", Some("alice"), None, "").await.location();
    let finished = submit(app, "/work", Some("alice"), None, "alice's secret")
        .await
        .location();
    let done = as_user(app, Method::GET, &format!("{finished}?wait=10"), Some("alice")).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);

    let unknown = format!("/jobs/{}", tower_accepted::store::JobId::new());
    let reference = as_user(app, Method::GET, &unknown, Some("bob")).await;
    reference.assert_problem(StatusCode::NOT_FOUND);
    for monitor in [&running, &finished] {
        for user in [Some("bob"), None] {
            for (method, path) in [
                (Method::GET, monitor.clone()),
                (Method::GET, format!("{monitor}?wait=2")),
                (Method::HEAD, monitor.clone()),
                (Method::GET, format!("{monitor}/result")),
                (Method::HEAD, format!("{monitor}/result")),
                (Method::DELETE, monitor.clone()),
            ] {
                let answer = as_user(app, method.clone(), &path, user).await;
                assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path} as {user:?}");
                if method != Method::HEAD {
                    assert_eq!(
                        answer.body, reference.body,
                        "{method} {path}: same body as an unknown id"
                    );
                }
                assert_eq!(answer.header("content-type"), reference.header("content-type"));
            }
        }
    }
    // Nothing the others did touched alice's jobs.
    let mine = as_user(app, Method::GET, &running, Some("alice")).await;
    assert_eq!(mine.json()["status"], "running");
    let result = as_user(app, Method::GET, &format!("{finished}/result"), Some("alice")).await;
    assert_eq!(result.body, "alice's secret");
    assert_eq!(
        as_user(app, Method::DELETE, &running, Some("alice")).await.status,
        StatusCode::NO_CONTENT
    );

    // An anonymous job is a capability: whoever holds the id may use it.
    let anonymous = submit(app, "/work", None, None, "for anyone").await.location();
    let seen = as_user(app, Method::GET, &format!("{anonymous}?wait=10"), Some("bob")).await;
    assert_eq!(seen.status, StatusCode::SEE_OTHER);
}

async fn list(app: &App, user: Option<&str>, query: &str) -> Answer {
    as_user(app, Method::GET, &format!("/jobs{query}"), user).await
}

async fn listing_shows_the_callers_jobs_newest_first(app: &App) {
    // Submitted a few milliseconds apart, so that creation times (kept to
    // the millisecond) follow submission order and the listing's order can
    // be checked against it.
    let mut submitted = Vec::new();
    for i in 0..7 {
        let accepted = submit(app, "/work", Some("carol"), None, &format!("job {i}")).await;
        submitted.push(accepted.json()["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let alice: HashSet<String> = submitted.iter().cloned().collect();
    submit(app, "/work", Some("dave"), None, "not carol's").await;

    // Pages of 3; jobs added while paging do not disturb the pages.
    let mut seen = Vec::new();
    let mut query = "?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let page = list(app, Some("carol"), &query).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        assert_eq!(page.header("content-type"), Some("application/json"));
        let doc = page.json();
        let jobs = doc["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 3);
        let times: Vec<&str> = jobs.iter().map(|j| j["created_at"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
        seen.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        pages += 1;
        if pages == 1 {
            submit(app, "/work", Some("carol"), None, "added while paging").await;
        }
        match doc["next"].as_str() {
            Some(next) => query = format!("?limit=3&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3, "7 jobs in pages of 3");
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no job twice: {seen:?}");
    assert_eq!(unique, alice, "exactly carol's jobs from before the listing");
    let newest_first: Vec<String> = submitted.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first, "newest first, in submission order");

    // The default and largest page is the configured maximum (5).
    let page = list(app, Some("carol"), "?limit=1000").await.json();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 5);
    assert!(page["next"].is_string());
    let page = list(app, Some("dave"), "").await.json();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], serde_json::Value::Null);
    assert_eq!(
        list(app, Some("nobody"), "").await.json()["jobs"],
        serde_json::json!([])
    );

    for bad in [
        "?limit=0",
        "?limit=-1",
        "?limit=abc",
        "?limit=",
        "?cursor=nope",
        "?cursor=00",
    ] {
        list(app, Some("carol"), bad)
            .await
            .assert_problem(StatusCode::BAD_REQUEST);
    }
    // Without an owner there is no listing.
    list(app, None, "").await.assert_problem(StatusCode::NOT_FOUND);
}

async fn one_key_starts_one_job(app: &App) {
    let before = app.calls.load(Ordering::SeqCst);
    let requests = (0..100).map(|_| {
        let client = app.client.clone();
        async move {
            let headers = [("authorization", "Bearer erin"), ("idempotency-key", "\"order-42\"")];
            client.send(Method::POST, "/work", &headers, "the order").await
        }
    });
    let answers = futures_join_all(requests).await;
    let locations: HashSet<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
            a.location()
        })
        .collect();
    assert_eq!(locations.len(), 1, "every retry names the original job");
    let monitor = locations.into_iter().next().unwrap();
    let done = as_user(app, Method::GET, &format!("{monitor}?wait=10"), Some("erin")).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(app.calls.load(Ordering::SeqCst) - before, 1, "exactly one job started");

    // The bare token form is the same key; a finished job still replays its 202.
    let again = submit(app, "/work", Some("erin"), Some("order-42"), "the order").await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.location(), monitor);
    assert_eq!(app.calls.load(Ordering::SeqCst) - before, 1);

    // The same key for another request is refused; for another owner it is another key.
    submit(app, "/work", Some("erin"), Some("order-42"), "another order")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    submit(app, "/other", Some("erin"), Some("order-42"), "the order")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    let franks = submit(app, "/work", Some("frank"), Some("order-42"), "the order").await;
    assert_eq!(franks.status, StatusCode::ACCEPTED);
    assert_ne!(franks.location(), monitor);

    // Forgetting the job frees its key.
    assert_eq!(
        as_user(app, Method::DELETE, &monitor, Some("erin")).await.status,
        StatusCode::NO_CONTENT
    );
    let fresh = submit(app, "/work", Some("erin"), Some("order-42"), "another order").await;
    assert_eq!(fresh.status, StatusCode::ACCEPTED);
    assert_ne!(fresh.location(), monitor);

    // Let the two jobs just started run, so that the count below is settled.
    for (monitor, user) in [(franks.location(), "frank"), (fresh.location(), "erin")] {
        let done = as_user(app, Method::GET, &format!("{monitor}?wait=10"), Some(user)).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER);
    }
    let calls = app.calls.load(Ordering::SeqCst);
    let long = "k".repeat(256);
    for bad in ["\"\"", long.as_str(), "\"a b\"", "\"unterminated", "\"bad\\escape\""] {
        let answer = submit(app, "/work", Some("erin"), Some(bad), "x").await;
        answer.assert_problem(StatusCode::BAD_REQUEST);
    }
    let twice = app
        .client
        .send(
            Method::POST,
            "/work",
            &[("idempotency-key", "a"), ("idempotency-key", "b")],
            "x",
        )
        .await;
    twice.assert_problem(StatusCode::BAD_REQUEST);
    assert_eq!(app.calls.load(Ordering::SeqCst), calls, "no job for a malformed key");
}

/// Runs futures concurrently without a futures crate: one task each.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

async fn every_property<St: JobStore>(make: impl Fn() -> St) {
    cross_owner_access_is_an_unknown_id(&app(make()).await).await;
    listing_shows_the_callers_jobs_newest_first(&app(make()).await).await;
    one_key_starts_one_job(&app(make()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store() {
    every_property(MemoryStore::new).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store() {
    let namespace = common::redis::namespace();
    let store = common::redis::store(&namespace).await;
    every_property(|| store.clone()).await;
    common::redis::assert_every_key_expires(&namespace).await;
}

// Hardening: an `Idempotency-Key` is scoped by the owner, or else by the
// caller's credentials; a keyed retry gets its original `202` however full
// the server is.

/// Runs the scenario `$scenario(store)` as two tests, `$scenario::memory_store`
/// and `$scenario::redis_store` (in a namespace of its own, whose keys must
/// all expire and never name a credential).
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {$(
        #[doc = concat!("[`", stringify!($scenario), "`](fn@", stringify!($scenario), "), on each store.")]
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory_store() {
                super::$scenario(tower_accepted::store::MemoryStore::new()).await;
            }

            #[cfg(feature = "redis")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_store() {
                let namespace = crate::common::redis::namespace();
                super::$scenario(crate::common::redis::store(&namespace).await).await;
                crate::common::redis::assert_every_key_expires(&namespace).await;
                super::assert_no_credential_in_key_names(&namespace).await;
            }
        }
    )*};
}

on_both_stores!(
    cookies_keep_idempotency_keys_apart,
    authorization_keeps_idempotency_keys_apart,
    credential_headers_keep_idempotency_keys_apart,
    other_headers_do_not_tell_callers_apart_by_default,
    the_owner_scopes_keys_whatever_the_credentials,
    callers_without_owner_or_credentials_share_keys,
    keyed_retry_gets_its_202_when_runners_and_queue_are_full,
    keyed_retry_gets_its_202_during_shutdown,
);

/// Every credential these tests send contains this; no Redis key name may.
#[cfg(feature = "redis")]
const SECRET: &str = "secret";

/// A server whose handlers answer with the caller's credentials and body,
/// so that a caller reading another caller's result would see it.
struct Echo {
    _server: Server,
    client: HttpClient,
    /// How many times a handler started.
    calls: Arc<AtomicUsize>,
    /// One permit for each `/gated` handler that may finish.
    gate: Arc<Semaphore>,
}

/// What the handlers answer: the credentials of the request, then its body.
fn echo(headers: &HeaderMap, body: &str) -> String {
    let mut out = String::new();
    for name in ["authorization", "cookie", "x-api-key"] {
        let value = headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-");
        out.push_str(&format!("{name}={value};"));
    }
    out.push_str(&format!("body={body}"));
    out
}

/// Serves `/order` (answers at once) and `/gated` (answers once given a
/// permit), both echoing, behind `layer`.
async fn echo_app<St: JobStore>(layer: AcceptedLayer<St>) -> Echo {
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (order_calls, gated_calls, gated) = (calls.clone(), calls.clone(), gate.clone());
    let app = Router::new()
        .route(
            "/order",
            post(move |headers: HeaderMap, body: String| {
                order_calls.fetch_add(1, Ordering::SeqCst);
                async move { echo(&headers, &body) }
            }),
        )
        .route(
            "/gated",
            post(move |headers: HeaderMap, body: String| {
                gated_calls.fetch_add(1, Ordering::SeqCst);
                let gate = gated.clone();
                async move {
                    gate.acquire().await.expect("the gate is never closed").forget();
                    echo(&headers, &body)
                }
            }),
        )
        .layer(layer);
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    Echo {
        _server: server,
        client,
        calls,
        gate,
    }
}

/// `POST path` with `headers`, and `Idempotency-Key: key` when there is one.
async fn post_as(app: &Echo, path: &str, headers: &[(&str, &str)], key: Option<&str>, body: &str) -> Answer {
    let mut headers = headers.to_vec();
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    app.client.send(Method::POST, path, &headers, body.to_owned()).await
}

/// Asserts a `202 Accepted`; returns its `Location`.
fn accepted(answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let location = answer.location();
    assert_eq!(
        answer.json()["id"].as_str().map(|id| format!("/jobs/{id}")),
        Some(location.clone())
    );
    location
}

/// Asserts a `503` problem with a `Retry-After`.
fn refused(answer: &Answer) {
    answer.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.header("retry-after").is_some(), "{:?}", answer.headers);
}

/// Waits, as the caller with `headers`, for the job at `monitor` to finish;
/// returns its result.
async fn result_of(app: &Echo, monitor: &str, headers: &[(&str, &str)]) -> String {
    let done = app
        .client
        .send(Method::GET, &format!("{monitor}?wait=10"), headers, "")
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{monitor}: {:?}", done.body);
    let result = app.client.send(Method::GET, &done.location(), headers, "").await;
    assert_eq!(result.status, StatusCode::OK, "{monitor}: {:?}", result.body);
    String::from_utf8(result.body.to_vec()).unwrap()
}

/// Two callers told apart only by `header` (values `a` and `b`, nothing else
/// differs) send the same `Idempotency-Key` for the same request: each gets a
/// job of their own and reads only their own result; each one's retry names
/// their own job, and one's use of a key never blocks the other (no `422`).
async fn keys_are_kept_apart_by(app: &Echo, header: &str, a: &str, b: &str) {
    let before = app.calls.load(Ordering::SeqCst);
    let (as_a, as_b) = ([(header, a)], [(header, b)]);
    let key = Some("\"order-42\"");
    let first = accepted(&post_as(app, "/order", &as_a, key, "the order").await);
    let second = accepted(&post_as(app, "/order", &as_b, key, "the order").await);
    assert_ne!(second, first, "{header}: another caller's key is another key");
    let retry = accepted(&post_as(app, "/order", &as_a, key, "the order").await);
    assert_eq!(retry, first, "{header}: a caller's retry names their own job");

    let mine = result_of(app, &first, &as_a).await;
    let theirs = result_of(app, &second, &as_b).await;
    assert!(mine.contains(&format!("{header}={a};")), "{mine}");
    assert!(
        !mine.contains(b),
        "{header}: the first caller's result is their own: {mine}"
    );
    assert!(theirs.contains(&format!("{header}={b};")), "{theirs}");
    assert!(
        !theirs.contains(a),
        "{header}: the second caller's result is their own: {theirs}"
    );
    assert_eq!(app.calls.load(Ordering::SeqCst) - before, 2, "one job for each caller");

    // Once finished, each retry still names its own job and starts nothing.
    for (headers, original) in [(&as_a, &first), (&as_b, &second)] {
        let again = accepted(&post_as(app, "/order", headers, key, "the order").await);
        assert_eq!(&again, original);
    }
    assert_eq!(app.calls.load(Ordering::SeqCst) - before, 2);

    // The key is bound to each caller's own request: reusing it for another
    // one is refused, but only for the caller who used it.
    post_as(app, "/order", &as_b, key, "another order")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    let other_key = Some("order-43");
    let a_43 = accepted(&post_as(app, "/order", &as_a, other_key, "a's order").await);
    let b_43 = accepted(&post_as(app, "/order", &as_b, other_key, "b's order").await);
    assert_ne!(a_43, b_43);
    assert!(result_of(app, &a_43, &as_a).await.ends_with("body=a's order"));
    assert!(result_of(app, &b_43, &as_b).await.ends_with("body=b's order"));
    assert_eq!(app.calls.load(Ordering::SeqCst) - before, 4);
}

/// Without an owner function, `Cookie` scopes an idempotency key: two
/// browsers with other session cookies sending `Idempotency-Key: "order-42"`
/// for the same request get a job each, and neither reads the other's result.
async fn cookies_keep_idempotency_keys_apart<St: JobStore>(store: St) {
    let app = echo_app(AcceptedLayer::new().store(store)).await;
    keys_are_kept_apart_by(&app, "cookie", "session=secret-alice", "session=secret-bob").await;
}

/// Without an owner function, `Authorization` scopes an idempotency key.
async fn authorization_keeps_idempotency_keys_apart<St: JobStore>(store: St) {
    let app = echo_app(AcceptedLayer::new().store(store)).await;
    keys_are_kept_apart_by(&app, "authorization", "Bearer secret-x", "Bearer secret-y").await;
}

/// `credential_headers([x-api-key])` makes `X-Api-Key` scope idempotency keys
/// too (besides `Authorization` and `Cookie`).
async fn credential_headers_keep_idempotency_keys_apart<St: JobStore>(store: St) {
    let layer = AcceptedLayer::new()
        .store(store)
        .credential_headers([HeaderName::from_static("x-api-key")]);
    let app = echo_app(layer).await;
    keys_are_kept_apart_by(&app, "x-api-key", "secret-key-1", "secret-key-2").await;
    // Authorization and Cookie still count once a header is added.
    keys_are_kept_apart_by(&app, "cookie", "session=secret-carol", "session=secret-dave").await;
}

/// By default only `Authorization` and `Cookie` tell callers apart: an
/// `X-Api-Key` alone does not (the same key names the same job, whose result
/// is the first caller's), which is why an application authenticating with
/// such a header must name it with `credential_headers` or use an owner
/// function.
async fn other_headers_do_not_tell_callers_apart_by_default<St: JobStore>(store: St) {
    let app = echo_app(AcceptedLayer::new().store(store)).await;
    let key = Some("\"order-42\"");
    let first = accepted(&post_as(&app, "/order", &[("x-api-key", "secret-key-1")], key, "the order").await);
    let second = accepted(&post_as(&app, "/order", &[("x-api-key", "secret-key-2")], key, "the order").await);
    assert_eq!(second, first, "X-Api-Key is not a credential unless configured");
    let result = result_of(&app, &first, &[]).await;
    assert!(result.contains("x-api-key=secret-key-1;"), "{result}");
    assert_eq!(app.calls.load(Ordering::SeqCst), 1);
}

/// With an owner function the owner is the scope: the same user sending the
/// same key from two sessions (other cookies) gets the same job; requests
/// for which the function names no owner fall back on their credentials.
async fn the_owner_scopes_keys_whatever_the_credentials<St: JobStore>(store: St) {
    let app = echo_app(AcceptedLayer::new().store(store).owner(bearer)).await;
    let key = Some("\"order-42\"");
    let laptop = [("authorization", "Bearer alice"), ("cookie", "session=secret-laptop")];
    let phone = [("authorization", "Bearer alice"), ("cookie", "session=secret-phone")];
    let first = accepted(&post_as(&app, "/order", &laptop, key, "the order").await);
    let second = accepted(&post_as(&app, "/order", &phone, key, "the order").await);
    assert_eq!(second, first, "one owner, one key, whatever the session");
    let result = result_of(&app, &first, &phone).await;
    assert!(result.contains("cookie=session=secret-laptop;"), "{result}");
    assert_eq!(app.calls.load(Ordering::SeqCst), 1);

    // Another owner with the very same cookie has another key.
    let bob = [("authorization", "Bearer bob"), ("cookie", "session=secret-laptop")];
    let bobs = accepted(&post_as(&app, "/order", &bob, key, "the order").await);
    assert_ne!(bobs, first);
    result_of(&app, &bobs, &bob).await;

    // Anonymous requests (no owner) are told apart by their credentials.
    let anonymous_a = [("cookie", "session=secret-anon-a")];
    let anonymous_b = [("cookie", "session=secret-anon-b")];
    let a = accepted(&post_as(&app, "/order", &anonymous_a, key, "the order").await);
    let b = accepted(&post_as(&app, "/order", &anonymous_b, key, "the order").await);
    assert_ne!(a, b, "no owner: the credentials are the scope");
    assert_ne!(a, first);
    assert_ne!(a, bobs);
    assert!(result_of(&app, &a, &[]).await.contains("session=secret-anon-a;"));
    assert!(result_of(&app, &b, &[]).await.contains("session=secret-anon-b;"));
    assert_eq!(app.calls.load(Ordering::SeqCst), 4);
}

/// Requests with neither an owner nor credentials share one scope: such
/// callers cannot be told apart, so the same key for the same request names
/// the same job (and for another request is refused with `422`). Clients
/// without credentials should send unguessable keys (UUIDs).
async fn callers_without_owner_or_credentials_share_keys<St: JobStore>(store: St) {
    let app = echo_app(AcceptedLayer::new().store(store)).await;
    let key = Some("\"order-42\"");
    let first = accepted(&post_as(&app, "/order", &[], key, "the order").await);
    let second = accepted(&post_as(&app, "/order", &[], key, "the order").await);
    assert_eq!(second, first);
    post_as(&app, "/order", &[], key, "another order")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    result_of(&app, &first, &[]).await;
    assert_eq!(app.calls.load(Ordering::SeqCst), 1);

    // Credentials make a caller stand apart from the anonymous crowd.
    let with_cookie = [("cookie", "session=secret-alice")];
    let own = accepted(&post_as(&app, "/order", &with_cookie, key, "the order").await);
    assert_ne!(own, first);
    result_of(&app, &own, &with_cookie).await;
}

/// A keyed retry is answered before admission: with every runner and queue
/// place taken (`max_running(1).max_queued(0)`), a new submission gets `503`
/// with `Retry-After`, but the retry of the job holding the runner gets its
/// original `202` (same `Location`) and starts nothing; the same key for
/// another request gets `422`, and a new key `503`.
async fn keyed_retry_gets_its_202_when_runners_and_queue_are_full<St: JobStore>(store: St) {
    let app = echo_app(AcceptedLayer::new().store(store).max_running(1).max_queued(0)).await;
    let caller = [("cookie", "session=secret-alice")];
    let key = Some("\"order-42\"");
    let original = post_as(&app, "/gated", &caller, key, "the order").await;
    let monitor = accepted(&original);

    refused(&post_as(&app, "/order", &caller, None, "unkeyed").await);
    let retry = post_as(&app, "/gated", &caller, key, "the order").await;
    assert_eq!(accepted(&retry), monitor, "the retry names the original job");
    assert_eq!(
        retry.header("operation-location"),
        original.header("operation-location")
    );
    assert_eq!(retry.json()["created_at"], original.json()["created_at"]);
    post_as(&app, "/gated", &caller, key, "another order")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    refused(&post_as(&app, "/gated", &caller, Some("order-43"), "the order").await);
    // Another caller's same key is another key: refused, not the job above.
    refused(&post_as(&app, "/gated", &[("cookie", "session=secret-bob")], key, "the order").await);

    app.gate.add_permits(1);
    let result = result_of(&app, &monitor, &caller).await;
    assert_eq!(
        result,
        "authorization=-;cookie=session=secret-alice;x-api-key=-;body=the order"
    );
    assert_eq!(app.calls.load(Ordering::SeqCst), 1, "only the original job ran");

    // With the runner free again, new work is taken and the key still replays.
    let next = accepted(&post_as(&app, "/order", &caller, None, "unkeyed").await);
    result_of(&app, &next, &caller).await;
    let again = accepted(&post_as(&app, "/gated", &caller, key, "the order").await);
    assert_eq!(again, monitor);
    assert_eq!(app.calls.load(Ordering::SeqCst), 2);
}

/// During a graceful shutdown (`layer.shutdown(deadline)` under way while a
/// keyed job runs), new submissions get `503` + `Retry-After` but the keyed
/// retry gets its original `202`; the same key for another request `422`.
async fn keyed_retry_gets_its_202_during_shutdown<St: JobStore>(store: St) {
    let layer = AcceptedLayer::new().store(store);
    let app = echo_app(layer.clone()).await;
    let caller = [("authorization", "Bearer secret-token")];
    let key = Some("\"order-42\"");
    let monitor = accepted(&post_as(&app, "/gated", &caller, key, "the order").await);

    let shutdown = common::shutdown::begin_shutdown(layer, Duration::from_secs(30)).await;

    refused(&post_as(&app, "/order", &caller, None, "unkeyed").await);
    refused(&post_as(&app, "/order", &caller, Some("order-43"), "a new key").await);
    let retry = post_as(&app, "/gated", &caller, key, "the order").await;
    assert_eq!(accepted(&retry), monitor, "the retry names the original job");
    post_as(&app, "/gated", &caller, key, "another order")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!shutdown.is_finished(), "the job is still running");
    assert_eq!(app.calls.load(Ordering::SeqCst), 1);

    // The job finishes within the deadline; its result is the caller's own.
    app.gate.add_permits(1);
    let ended = tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown resolves once the job is over")
        .unwrap();
    assert_eq!(ended, 0, "no job had to be ended");
    let result = result_of(&app, &monitor, &caller).await;
    assert_eq!(
        result,
        "authorization=Bearer secret-token;cookie=-;x-api-key=-;body=the order"
    );
    let again = post_as(&app, "/gated", &caller, key, "the order").await;
    assert_eq!(accepted(&again), monitor, "after the shutdown too");
    assert_eq!(app.calls.load(Ordering::SeqCst), 1);
}

/// A full memory store (`capacity(1)`, which bounds unfinished jobs only)
/// refuses new jobs with `503` + `Retry-After` but answers a keyed retry with
/// its original `202`, and the same key for another request with `422`
/// (not `503`); once the job ends it frees its place. (A Redis store is
/// bounded by `maxmemory` instead.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_retry_gets_its_202_when_the_memory_store_is_full() {
    let store = MemoryStore::builder().capacity(1).build();
    let app = echo_app(AcceptedLayer::new().store(store.clone())).await;
    let caller = [("cookie", "session=secret-alice")];
    let key = Some("\"order-42\"");
    let monitor = accepted(&post_as(&app, "/gated", &caller, key, "the order").await);

    refused(&post_as(&app, "/order", &caller, None, "unkeyed").await);
    let retry = post_as(&app, "/gated", &caller, key, "the order").await;
    assert_eq!(accepted(&retry), monitor, "the retry names the original job");
    post_as(&app, "/gated", &caller, key, "another order")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    refused(&post_as(&app, "/gated", &caller, Some("order-43"), "the order").await);
    assert_eq!(store.len(), 1, "nothing was added");
    assert_eq!(app.calls.load(Ordering::SeqCst), 1);

    app.gate.add_permits(1);
    let result = result_of(&app, &monitor, &caller).await;
    assert_eq!(
        result,
        "authorization=-;cookie=session=secret-alice;x-api-key=-;body=the order"
    );

    // A finished job is kept but no longer counts against the capacity.
    let next = accepted(&post_as(&app, "/order", &caller, Some("order-43"), "the order").await);
    result_of(&app, &next, &caller).await;
    let again = accepted(&post_as(&app, "/gated", &caller, key, "the order").await);
    assert_eq!(again, monitor);
    assert_eq!(store.len(), 2);
    assert_eq!(app.calls.load(Ordering::SeqCst), 2);
}

/// Redis key names carry the credentials' digest, never their text.
#[cfg(feature = "redis")]
async fn assert_no_credential_in_key_names(namespace: &str) {
    let keys = common::redis::keys_with_ttl(namespace).await;
    assert!(!keys.is_empty());
    let named: Vec<_> = keys.iter().filter(|(key, _)| key.contains(SECRET)).collect();
    assert!(named.is_empty(), "credentials in key names: {named:?}");
}
