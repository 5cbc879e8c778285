//! `PostgresStore` against the real PostgreSQL (`DATABASE_URL`): the store
//! suite, the expiry suite, and what only a database store has (schema
//! migrations, the expiry sweeper, keyset pages).
#![cfg(feature = "postgres")]

use std::sync::Arc;

use tower_accepted::store::suite;

use crate::common;
use common::postgres::{EXPIRY_TOMBSTONE_TTL, EXPIRY_TTL, Schema, builder, renew_every_claim, store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_suite() {
    let schema = Schema::new();
    suite::run_all_on(Arc::new(store(&schema).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_expiry_suite() {
    let schema = Schema::new();
    let store = builder(&schema)
        .ttl(EXPIRY_TTL)
        .tombstone_ttl(EXPIRY_TOMBSTONE_TTL)
        .build()
        .await
        .unwrap();
    // The suite keeps jobs pending and running for several leases: their
    // claims are renewed meanwhile, as the layer renews the claims it holds.
    let renewer = renew_every_claim(store.clone());
    suite::expiry(&store, EXPIRY_TTL, EXPIRY_TOMBSTONE_TTL).await;
    renewer.abort();
}
