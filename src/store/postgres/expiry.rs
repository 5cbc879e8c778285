//! The expiry sweeper: PostgreSQL has no time to live, so each store
//! deletes the ended jobs past theirs in small batches, keeping their ids
//! as tombstones, and forgets the tombstones past theirs.
//!
//! Reads never wait for it: they treat a row past its time as gone. It only
//! keeps the table small. A batch takes at most [`BATCH`] rows, found
//! through the expiry index, locking them with `SKIP LOCKED` (replicas
//! sweeping at once take different rows, and a request never waits for a
//! sweep longer than one small batch holds its rows); a pause between
//! batches leaves the database to requests.

use std::time::Duration;

use sqlx::PgPool;

/// How many rows one batch deletes at most.
pub(super) const BATCH: i64 = 500;

/// The pause between two batches of one round.
const BETWEEN_BATCHES: Duration = Duration::from_millis(5);

/// Sweeps every `every`, each round until a batch finds fewer rows than it
/// may take. Errors (the database away) wait for the next round.
pub(super) async fn sweep_forever(pool: PgPool, expire: String, forget: String, every: Duration, bound: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let _ = round(&pool, &expire, &forget, bound).await;
    }
}

/// One round: expired jobs, then forgotten tombstones, batch by batch.
/// Answers how many jobs and tombstones it removed.
pub(super) async fn round(
    pool: &PgPool,
    expire: &str,
    forget: &str,
    bound: Duration,
) -> Result<(u64, u64), sqlx::Error> {
    let mut expired = 0;
    loop {
        let (gone, _kept): (i64, i64) = bounded(bound, sqlx::query_as(expire).bind(BATCH).fetch_one(pool)).await?;
        expired += u64::try_from(gone).unwrap_or(0);
        if gone < BATCH {
            break;
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
    let mut forgotten = 0;
    loop {
        let done = bounded(bound, sqlx::query(forget).bind(BATCH).execute(pool)).await?;
        forgotten += done.rows_affected();
        if done.rows_affected() < u64::try_from(BATCH).unwrap_or(0) {
            break;
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
    Ok((expired, forgotten))
}

/// `query`, failing as a timed-out connection would past `bound`.
async fn bounded<T>(bound: Duration, query: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
    tokio::time::timeout(bound, query)
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
}
