//! Owner scoping, `GET /jobs` listing and `Idempotency-Key`, over real HTTP,
//! against both stores.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use http::{Method, StatusCode};
use tower_accepted::{AcceptedLayer, JobStore, MemoryStore};

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

    let unknown = format!("/jobs/{}", tower_accepted::JobId::new());
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
    let mut alice = HashSet::new();
    for i in 0..7 {
        let accepted = submit(app, "/work", Some("carol"), None, &format!("job {i}")).await;
        alice.insert(accepted.json()["id"].as_str().unwrap().to_owned());
    }
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
