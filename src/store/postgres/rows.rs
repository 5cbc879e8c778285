//! Rows as the crate's types: records, stored responses and requests.

use bytes::Bytes;
use http::{Request, Response};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::store::stored_http;
use crate::store::{DeliveryState, JobCallback, JobError, JobId, JobRecord, JobStatus, Lookup};

/// How many columns [`record`] reads.
pub(super) const RECORD_COLUMNS: usize = 14;

/// The value of column `index`, `None` when it is NULL or of another type.
fn column<'r, T>(row: &'r PgRow, index: usize) -> Option<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get::<Option<T>, _>(index).ok().flatten()
}

/// A millisecond time of the database (`bigint`) as the record keeps it.
fn ms(row: &PgRow, index: usize) -> Option<u64> {
    column::<i64>(row, index).and_then(|v| u64::try_from(v).ok())
}

/// The record of job `id` from the [`RECORD`](super::sql::RECORD) columns
/// that start at `at`; `None` when there is no job (a lookup's empty side)
/// or its status is not one of ours.
pub(super) fn record(id: JobId, row: &PgRow, at: usize) -> Option<JobRecord> {
    let status: JobStatus = column::<String>(row, at)?.parse().ok()?;
    // A callback whose state this version cannot read is kept as given up
    // rather than sent again.
    let callback = column::<String>(row, at + 11).map(|url| {
        JobCallback::new(url)
            .with_state(
                column::<String>(row, at + 12)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(DeliveryState::Failed),
            )
            .with_attempts(
                column::<i32>(row, at + 13)
                    .and_then(|a| u32::try_from(a).ok())
                    .unwrap_or(0),
            )
    });
    let error = match (column::<String>(row, at + 7), column::<String>(row, at + 8)) {
        (Some(code), message) => Some(JobError::new(code, message.unwrap_or_default())),
        (None, _) => None,
    };
    Some(
        JobRecord::new(id, status, ms(row, at + 1)?, ms(row, at + 2)?)
            .with_started_at_ms(ms(row, at + 3))
            .with_progress(column::<f32>(row, at + 4))
            .with_message(column::<String>(row, at + 5))
            .with_result_status(column::<i32>(row, at + 6).and_then(|s| u16::try_from(s).ok()))
            .with_error(error)
            .with_owner(column::<String>(row, at + 9))
            .with_attempt(
                column::<i32>(row, at + 10)
                    .and_then(|a| u32::try_from(a).ok())
                    .unwrap_or(1),
            )
            .with_callback(callback),
    )
}

/// A job's id from column `index`.
pub(super) fn id(row: &PgRow, index: usize) -> Option<JobId> {
    column::<Uuid>(row, index).map(JobId::from)
}

/// What a lookup row (the record, then `expired` and `remembered`) says of
/// job `id`.
pub(super) fn lookup(id: JobId, row: &PgRow, at: usize) -> Lookup {
    let expired = column::<bool>(row, at + RECORD_COLUMNS).unwrap_or(false);
    let remembered = column::<bool>(row, at + RECORD_COLUMNS + 1).unwrap_or(false);
    match record(id, row, at) {
        Some(record) if !expired => Lookup::Found(record),
        _ if remembered => Lookup::Expired,
        _ => Lookup::Unknown,
    }
}

/// The stored response from the `result_status`, `result_headers` and
/// `result_body` columns that start at `at`.
pub(super) fn response(row: &PgRow, at: usize) -> Option<Response<Bytes>> {
    stored_http::response(
        u16::try_from(column::<i32>(row, at)?).ok()?,
        &column::<Vec<u8>>(row, at + 1).unwrap_or_default(),
        column::<Vec<u8>>(row, at + 2).unwrap_or_default(),
    )
}

/// The durable request from the method, URI, headers and body columns that
/// start at `at`.
pub(super) fn request(row: &PgRow, at: usize) -> Option<Request<Bytes>> {
    stored_http::request(
        column::<String>(row, at)?.as_bytes(),
        &column::<String>(row, at + 1)?,
        &column::<Vec<u8>>(row, at + 2).unwrap_or_default(),
        column::<Vec<u8>>(row, at + 3).unwrap_or_default(),
    )
}
