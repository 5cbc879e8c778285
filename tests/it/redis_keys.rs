//! What `RedisStore` keeps in the real Redis server (`REDIS_URL`) and for
//! how long: leases renewed by Redis's clock, on a connection of their
//! own, that leave ended jobs alone; the lease's floor of three command
//! timeouts; owner indexes trimmed by age; namespaces kept apart.
#![cfg(feature = "redis")]

use std::time::{Duration, Instant};

use tower_accepted::store::{Cancel, Claim, JobId, JobRecord, JobStatus, JobStore, Lookup, RedisStore, suite};

use crate::common;
use common::redis::{assert_every_key_expires, connection, leases, namespace, redis_url, store};

/// A renewal leaves an ended job alone: a job canceled on another replica
/// while this one holds its claim keeps the time to live its end gave it.
/// (Once, a renewal set the job's time to live back to TTL + lease, so a
/// canceled job outlived its TTL.) The renewal of both claims answers
/// `false` for the canceled job and `true` for the running one, whose
/// lease it pushes back (by Redis's clock); the canceled job's time to live
/// must still be at most the TTL, and its lease gone from the set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_renewal_leaves_an_ended_job_alone() {
    const TTL: Duration = Duration::from_secs(60);
    const LEASE: Duration = Duration::from_secs(3);
    let ns = namespace();
    let store = RedisStore::builder(redis_url())
        .namespace(ns.as_str())
        .ttl(TTL)
        .lease(LEASE)
        .build()
        .await
        .unwrap();
    let canceled = suite::running(&store).await;
    let running = suite::running(&store).await;
    let other = RedisStore::builder(redis_url())
        .namespace(ns.as_str())
        .ttl(TTL)
        .lease(LEASE)
        .build()
        .await
        .unwrap();
    assert_eq!(other.cancel(canceled).await.unwrap(), Cancel::Canceled);

    let lease_of = |members: &[(String, u64)], id: JobId| {
        members
            .iter()
            .find(|(m, _)| *m == id.to_string())
            .map(|(_, score)| *score)
    };
    let (before, _) = leases(&ns).await;
    assert_eq!(lease_of(&before, canceled), None, "the cancel took the lease");
    let last = lease_of(&before, running).expect("the running job's lease");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let held = store
        .renew(vec![Claim::first(canceled), Claim::first(running)])
        .await
        .unwrap();
    assert_eq!(held, [false, true]);
    let (after, now) = leases(&ns).await;
    let renewed = lease_of(&after, running).expect("the running job's lease");
    assert!(renewed > last, "the lease grew back: {last} then {renewed}");
    assert!(
        renewed > now + LEASE.as_millis() as u64 - 1000,
        "{renewed} vs now {now}"
    );
    assert_eq!(
        lease_of(&after, canceled),
        None,
        "the renewal gave no lease to an ended job"
    );

    let mut conn = connection().await;
    let job_ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{{{ns}}}:job:{canceled}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (1..=TTL.as_millis() as i64).contains(&job_ttl),
        "the canceled job's time to live is {job_ttl} ms, its TTL {TTL:?}"
    );
    assert_eq!(suite::found(&store, canceled).await.status, JobStatus::Canceled);
    assert_eq!(suite::found(&store, running).await.status, JobStatus::Running);
    assert!(store.delete(running).await.unwrap());
    assert_every_key_expires(&ns).await;
}

/// Many creates at once under the shortest lease (300 ms): each takes its
/// lease in the set, by Redis's clock, and a renewal of all their claims
/// every 100 ms (in one script) keeps every one of them ahead of Redis's
/// clock over a second (ten renewals, three leases), every claim held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_all_keep_their_leases() {
    const LEASE: Duration = Duration::from_millis(300);
    let ns = namespace();
    let store = RedisStore::builder(redis_url())
        .namespace(ns.as_str())
        .lease(LEASE)
        .build()
        .await
        .unwrap();
    let creates = (0..300).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let id = JobId::new();
            store.create(JobRecord::pending(id)).await.map(|()| id)
        })
    });
    let mut ids = Vec::new();
    for create in creates {
        ids.push(create.await.unwrap().unwrap());
    }
    let claims: Vec<Claim> = ids.iter().copied().map(Claim::first).collect();
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let held = store.renew(claims.clone()).await.unwrap();
        assert!(held.iter().all(|h| *h), "a claim was not held: {held:?}");
        let (members, now) = leases(&ns).await;
        assert_eq!(members.len(), ids.len(), "a lease is missing");
        let lapsed = members.iter().filter(|(_, expiry)| *expiry <= now).count();
        assert_eq!(lapsed, 0, "{lapsed} of {} leases lapsed", ids.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.sweep().await.unwrap(), tower_accepted::store::Swept::new(0, 0));
    for id in ids {
        assert!(store.delete(id).await.unwrap());
    }
    assert!(leases(&ns).await.0.is_empty(), "a delete left its lease");
}

/// Issue 12: the lease is at least three times the command timeout, so
/// that a renewal that times out is tried again before the lease lapses.
/// An explicit timeout of 1 s raises a 300 ms lease to 3 s (seen on the
/// lease a create takes, against Redis's clock); without a timeout, the
/// 300 ms lease stands (the timeout shrinks to a third of it instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_at_least_three_command_timeouts() {
    let ns = namespace();
    for (timeout, lowest, highest) in [(Some(Duration::from_secs(1)), 2_000, 3_000), (None, 1, 300)] {
        let mut builder = RedisStore::builder(redis_url())
            .namespace(ns.as_str())
            .lease(Duration::from_millis(300));
        if let Some(timeout) = timeout {
            builder = builder.command_timeout(timeout);
        }
        let store = builder.build().await.unwrap();
        let id = JobId::new();
        store.create(JobRecord::pending(id)).await.unwrap();
        let (members, now) = leases(&ns).await;
        let expiry = members
            .iter()
            .find(|(m, _)| *m == id.to_string())
            .map(|(_, expiry)| *expiry)
            .expect("the create took a lease");
        let lease = expiry.saturating_sub(now);
        assert!(
            (lowest..=highest).contains(&lease),
            "timeout {timeout:?}: the lease lasts {lease} ms"
        );
        assert_eq!(store.lease(), Some(Duration::from_millis(highest)));
        assert!(store.delete(id).await.unwrap());
    }
}

/// Issue 12: renewals have a connection of their own. Here the store's
/// shared connection is held for 2 s by a blocking command (as a 16 MiB
/// result would hold it), six times the 300 ms lease of a running job;
/// renewals every 100 ms still answer at once, and the job's lease stays
/// ahead of Redis's clock all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_shared_connection_does_not_hold_renewals_back() {
    let ns = namespace();
    let shared = redis::aio::ConnectionManager::new(redis::Client::open(redis_url()).unwrap())
        .await
        .unwrap();
    let store = RedisStore::builder(redis_url())
        .namespace(ns.as_str())
        .lease(Duration::from_millis(300))
        .connection_manager(shared.clone())
        .build()
        .await
        .unwrap();
    let id = JobId::new();
    store.create(JobRecord::pending(id)).await.unwrap();
    assert!(store.start(Claim::first(id)).await.unwrap());

    // `BLPOP` on a list nobody fills: the connection answers nothing else
    // for 2 s.
    let mut blocked = shared.clone();
    let list = format!("{{{ns}}}:never");
    let blocking = tokio::spawn(async move {
        let _: redis::RedisResult<redis::Value> = redis::cmd("BLPOP").arg(list).arg(2).query_async(&mut blocked).await;
    });
    let until = Instant::now() + Duration::from_millis(1800);
    tokio::time::sleep(Duration::from_millis(100)).await;
    while Instant::now() < until {
        let renewed = tokio::time::timeout(Duration::from_millis(250), store.renew(vec![Claim::first(id)])).await;
        assert!(
            matches!(&renewed, Ok(Ok(held)) if held == &[true]),
            "a renewal waited for the busy shared connection: {renewed:?}"
        );
        let (members, now) = leases(&ns).await;
        assert!(
            members.iter().any(|(m, expiry)| *m == id.to_string() && *expiry > now),
            "the lease lapsed while the shared connection was busy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    blocking.await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), store.delete(id)).await;
}

/// Issue 12: an owner that keeps submitting must not grow its index without
/// bound. Each create refreshes the index's time to live, and listing only
/// clears the entries it shows, so before the create script trimmed the
/// index by age, the jobs below were all still in it after they expired.
#[tokio::test]
async fn the_owner_index_is_trimmed_of_entries_older_than_their_jobs() {
    const TTL: Duration = Duration::from_millis(300);
    const TOMBSTONE_TTL: Duration = Duration::from_millis(300);
    let ns = namespace();
    let store = RedisStore::builder(redis_url())
        .namespace(ns.as_str())
        .ttl(TTL)
        .tombstone_ttl(TOMBSTONE_TTL)
        .lease(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let index = format!("{{{ns}}}:owner:alice");
    let mut conn = connection().await;
    let submit = || async {
        let record = JobRecord::pending(JobId::new()).with_owner(Some("alice".into()));
        store.create(record).await.unwrap();
    };
    for _ in 0..5 {
        submit().await;
    }
    let before: u64 = redis::cmd("ZCARD").arg(&index).query_async(&mut conn).await.unwrap();
    assert_eq!(before, 5, "fresh entries are kept");

    // Past `ttl + tombstone_ttl`, no job of those can be left.
    tokio::time::sleep(TTL + TOMBSTONE_TTL + Duration::from_millis(200)).await;
    submit().await;
    let after: u64 = redis::cmd("ZCARD").arg(&index).query_async(&mut conn).await.unwrap();
    assert_eq!(after, 1, "the create trimmed the five old entries");
}

#[tokio::test]
async fn namespaces_are_isolated() {
    let (a, b) = (store(&namespace()).await, store(&namespace()).await);
    let id = JobId::new();
    a.create(JobRecord::pending(id)).await.unwrap();
    assert!(matches!(a.get(id).await.unwrap(), Lookup::Found(_)));
    assert_eq!(b.get(id).await.unwrap(), Lookup::Unknown);
    assert!(!b.start(Claim::first(id)).await.unwrap());
    assert_eq!(b.cancel(id).await.unwrap(), tower_accepted::store::Cancel::Unknown);
    assert!(
        matches!(a.get(id).await.unwrap(), Lookup::Found(r) if r.status == tower_accepted::store::JobStatus::Pending)
    );
}
