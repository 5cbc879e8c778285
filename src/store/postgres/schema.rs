//! The store's schema: its name, and the versioned migrations embedded in
//! the crate that create and upgrade it.

use sqlx::{Connection, Executor, PgConnection, PgPool};

use crate::store::StoreError;

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`. A new
/// version is a new file added at the end; a released one never changes.
const MIGRATIONS: [&str; 2] = [
    include_str!("migrations/0001_jobs.sql"),
    include_str!("migrations/0002_callbacks.sql"),
];

/// The longest schema name: PostgreSQL's identifiers hold 63 bytes, and the
/// store's channel is the name and `_ended`.
const MAX_NAME: usize = 57;

/// Whether `name` is a schema name the store accepts: lowercase ASCII
/// letters, digits and `_`, not starting with a digit nor `pg_`, at most
/// 57 bytes.
/// Such a name needs no quoting anywhere (it is also the prefix of the
/// `NOTIFY` channel), and it is still quoted where SQL names it.
pub(super) fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && name.len() <= MAX_NAME
        // PostgreSQL keeps `pg_` for its own schemas.
        && !name.starts_with("pg_")
}

/// Creates the schema, or upgrades it to the newest version, in one
/// transaction under an advisory lock of the schema's name: replicas that
/// start at once wait for each other, and the second finds nothing to do.
/// Only the store's own tables are created or changed.
///
/// Statements go as text (`Executor::execute` of a `&str`), not through
/// `sqlx::raw_sql`, whose future is `Send` only for some lifetimes: the
/// future of [`build`](super::PostgresStoreBuilder::build) must be
/// spawnable.
///
/// A migration that fails is rolled back before the error is returned,
/// so that no connection is left idle in a transaction that holds locks
/// on the schema.
pub(super) async fn migrate(pool: &PgPool, schema: &str) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(super::unavailable)?;
    let mut tx = conn.begin().await.map_err(super::unavailable)?;
    match apply(&mut tx, schema).await {
        Ok(()) => tx.commit().await.map_err(super::unavailable),
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// The migrations `schema` lacks, applied on `conn` (in a transaction).
async fn apply(conn: &mut PgConnection, schema: &str) -> Result<(), StoreError> {
    // The store's own connections end statements after its timeout; a
    // migration may wait longer for another replica's (the lock).
    (&mut *conn)
        .execute("SET LOCAL statement_timeout = '60s'")
        .await
        .map_err(super::unavailable)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("tower_accepted migrations {schema}"))
        .execute(&mut *conn)
        .await
        .map_err(super::unavailable)?;
    let quoted = format!("\"{schema}\"");
    for statement in [
        format!("CREATE SCHEMA IF NOT EXISTS {quoted}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {quoted}.migrations (version integer PRIMARY KEY, \
             applied_at timestamptz NOT NULL DEFAULT now())"
        ),
    ] {
        (&mut *conn)
            .execute(statement.as_str())
            .await
            .map_err(super::unavailable)?;
    }
    let current: Option<i32> = sqlx::query_scalar(&format!("SELECT max(version) FROM {quoted}.migrations"))
        .fetch_one(&mut *conn)
        .await
        .map_err(super::unavailable)?;
    let current = usize::try_from(current.unwrap_or(0)).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Unavailable(
            format!(
                "schema {schema} is at version {current}, newer than this tower-accepted knows ({})",
                MIGRATIONS.len()
            )
            .into(),
        ));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        let sql = migration.replace("{schema}", &quoted);
        (&mut *conn).execute(sql.as_str()).await.map_err(super::unavailable)?;
        sqlx::query(&format!("INSERT INTO {quoted}.migrations (version) VALUES ($1)"))
            .bind(i32::try_from(index + 1).unwrap_or(i32::MAX))
            .execute(&mut *conn)
            .await
            .map_err(super::unavailable)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_need_no_quoting() {
        assert!(valid_name("tower_accepted"));
        assert!(valid_name("_t1"));
        assert!(!valid_name(""));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("Upper"));
        assert!(!valid_name("a\"b"));
        assert!(!valid_name("a.b"));
        assert!(!valid_name(&"a".repeat(58)));
        assert!(valid_name(&"a".repeat(57)));
        assert!(!valid_name("pg_jobs"));
    }
}
