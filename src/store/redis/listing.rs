//! [`RedisStore`]'s listing of an owner's jobs: a page of its owner index,
//! newest first, and the records of the page in one pipeline.

use redis::RedisError;

use super::RedisStore;
use super::codec::{FIELDS, parse_record};
use super::commands::store_error;
use crate::store::{ListCursor, Page, StoreError};

impl RedisStore {
    /// The answer of [`list`](crate::store::JobStore::list).
    pub(super) async fn list_page(
        &self,
        owner: &str,
        limit: usize,
        after: Option<ListCursor>,
    ) -> Result<Page, StoreError> {
        let index = self.owner_index(owner);
        let start = after.map_or_else(|| "+".to_owned(), |c| format!("({c}"));
        let members: Vec<String> = redis::cmd("ZREVRANGEBYLEX")
            .arg(&index)
            .arg(start)
            .arg("-")
            .arg("LIMIT")
            .arg(0)
            .arg(limit.saturating_add(1))
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let cursors: Vec<ListCursor> = members.iter().filter_map(|m| m.parse().ok()).collect();
        let more = cursors.len() > limit;
        let shown = &cursors[..cursors.len().min(limit)];
        let mut pipe = redis::pipe();
        for cursor in shown {
            pipe.cmd("HMGET").arg(self.key(cursor.id, "job")).arg(&FIELDS[..]);
        }
        let rows: Vec<Vec<Option<Vec<u8>>>> = if shown.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn()).await.map_err(store_error)?
        };
        let mut jobs = Vec::with_capacity(shown.len());
        let mut gone = Vec::new();
        for (cursor, fields) in shown.iter().zip(rows) {
            match parse_record(cursor.id, &fields) {
                Some(record) => jobs.push(record),
                None => gone.push(cursor.to_string()),
            }
        }
        if !gone.is_empty() {
            // Expired jobs leave their entry; clear it now.
            let _: Result<i64, RedisError> = redis::cmd("ZREM")
                .arg(&index)
                .arg(gone)
                .query_async(&mut self.conn())
                .await;
        }
        let next = if more { shown.last().copied() } else { None };
        Ok(Page::new(jobs, next))
    }
}
