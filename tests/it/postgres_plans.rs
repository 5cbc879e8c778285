//! Every statement `PostgresStore` runs finds its rows through an index:
//! `EXPLAIN` of each, with sequential scans disabled, shows none (the
//! planner still picks one when no index can serve), on a table of 20 000
//! jobs. The sweeps do too, and take a batch.
#![cfg(feature = "postgres")]

use tower_accepted::sqlx::{self, PgPool, Postgres, Row, postgres::PgArguments, query::Query};
use uuid::Uuid;

use crate::common;
use common::postgres::{Schema, pool, store};

/// `sql` with sample values of its parameters' types bound.
fn with_samples<'q>(name: &str, sql: &'q str) -> Query<'q, Postgres, PgArguments> {
    let id = Uuid::new_v4();
    let q = sqlx::query(sql);
    match name {
        "create" => q
            .bind(id)
            .bind("pending")
            .bind(1_i64)
            .bind(1_i64)
            .bind(None::<i64>)
            .bind(None::<f32>)
            .bind(None::<String>)
            .bind(Some("alice"))
            .bind(0_i32)
            .bind(Some("alice order-1"))
            .bind(Some("fp"))
            .bind(Some("default"))
            .bind(Some(3_i32))
            .bind(true)
            .bind(Some("POST"))
            .bind(Some("/reports".to_owned()))
            .bind(Some(Vec::<u8>::new()))
            .bind(Some(Vec::<u8>::new()))
            .bind(false)
            .bind(false)
            .bind(100_000_i64)
            .bind(Some("https://hooks.example.com/done"))
            .bind(Some("pending"))
            .bind(0_i32),
        "key_holder" => q.bind("alice order-1"),
        "free_key" | "get" | "tombstone" | "delete" | "response" => q.bind(id),
        "list_first" => q.bind("alice").bind(11_i64),
        "list_after" => q.bind("alice").bind(11_i64).bind(5_000_i64).bind(id),
        "start" | "release" => q.bind(id).bind(1_i32).bind(1_i64),
        "progress" => q
            .bind(id)
            .bind(1_i32)
            .bind(Some(0.5_f32))
            .bind(None::<String>)
            .bind(1_i64),
        "finish" => q
            .bind(id)
            .bind(1_i32)
            .bind("succeeded")
            .bind(1_i64)
            .bind(Some(200_i32))
            .bind(Some(Vec::<u8>::new()))
            .bind(Some(b"done".to_vec()))
            .bind(None::<String>)
            .bind(None::<String>),
        "cancel" => q.bind(id).bind(1_i64),
        "claim" => q.bind("default").bind(1_i64),
        "renew" => q.bind(vec![id, Uuid::new_v4()]).bind(vec![1_i32, 2]),
        "sweep" => q.bind(256_i64).bind("lost").bind("gone"),
        "expire" | "forget" => q.bind(500_i64),
        "claim_deliveries" => q.bind(16_i64).bind(30_000_i64),
        "record_delivery" => q.bind(id).bind(0_i32).bind("pending").bind(Some(1_i64)),
        other => panic!("no sample values for statement {other}: add them here"),
    }
}

/// The plan of `sql`, with sequential scans disabled.
async fn plan(pool: &PgPool, name: &str, sql: &str) -> String {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    let explain = format!("EXPLAIN {sql}");
    let rows = with_samples(name, &explain)
        .fetch_all(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {name}: {e}"));
    tx.rollback().await.unwrap();
    rows.iter()
        .map(|row| row.get::<String, _>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn every_statement_finds_its_rows_through_an_index() {
    let schema = Schema::new();
    let store = store(&schema).await;
    // Jobs of every kind: ended (some expired), durable waiting, owned.
    sqlx::raw_sql(&format!(
        "INSERT INTO \"{s}\".jobs (id, status, created_at_ms, updated_at_ms, attempt, owner, queue, waiting, \
         expires_at, lease_until, idempotency_scope) \
         SELECT gen_random_uuid(), CASE WHEN i % 3 = 0 THEN 'pending' ELSE 'succeeded' END, i, i, 1, \
         'owner' || (i % 50), CASE WHEN i % 3 = 0 THEN 'default' END, i % 3 = 0, \
         CASE WHEN i % 3 <> 0 THEN now() + (i % 7 - 3) * interval '1 hour' END, \
         CASE WHEN i % 3 = 0 THEN now() END, 'owner' || i \
         FROM generate_series(1, 20000) AS i; \
         INSERT INTO \"{s}\".tombstones SELECT gen_random_uuid(), now() FROM generate_series(1, 2000); \
         ANALYZE \"{s}\".jobs; ANALYZE \"{s}\".tombstones",
        s = schema.name
    ))
    // Not the store's pool, whose statements the server ends after its
    // timeout.
    .execute(&pool().await)
    .await
    .unwrap();
    let statements = store.statements();
    assert!(statements.len() >= 21, "every statement is checked");
    for (name, sql) in statements {
        let plan = plan(store.pool(), name, sql).await;
        assert!(
            !plan.contains("Seq Scan"),
            "{name} scans a table without an index:\n{plan}"
        );
        assert!(
            plan.contains("Index") || plan.contains("Bitmap"),
            "{name} uses no index:\n{plan}"
        );
    }
}
