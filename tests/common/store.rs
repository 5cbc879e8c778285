//! A `MemoryStore` with hooks: a test's store that does one thing
//! differently (waits in `create` or `set_progress`, deletes before
//! `response`, fails a `wait_terminal`, counts calls) and delegates the rest.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::Response;
use tower_accepted::store::{
    Cancel, Claim, Claimed, CreatedOnce, DeliveryAttempt, DueDelivery, DurableJob, IdempotencyKey, JobId, JobRecord,
    JobStore, KeyLookup, ListCursor, Lookup, MemoryStore, Outcome, Page, StoreError, Swept,
};

/// What a [`Hooked`] store does before it delegates; nothing by default.
pub trait Hooks: Send + Sync + 'static {
    /// Before `create`.
    fn before_create(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Before `wait_terminal` of `id` (a long poll's wait, or a running
    /// job's watch for its end elsewhere).
    fn before_wait_terminal(&self, id: JobId) -> impl Future<Output = ()> + Send {
        let _ = id;
        async {}
    }

    /// Before `finish` of `id`: an error here is `finish`'s answer, and the
    /// inner store is not called.
    fn before_finish(&self, id: JobId) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = id;
        async { Ok(()) }
    }

    /// Whether `before_finish` may fail (the store's `finish_can_fail`).
    fn finish_can_fail(&self) -> bool {
        false
    }

    /// Whether `wait_terminal` of `id` fails at once (the store
    /// unavailable) instead of delegating; asked after
    /// [`before_wait_terminal`](Self::before_wait_terminal).
    fn fail_wait_terminal(&self, id: JobId) -> bool {
        let _ = id;
        false
    }

    /// Before `set_progress` writes `progress` (a write held back here is
    /// a slow store).
    fn before_set_progress(&self, progress: Option<f32>) -> impl Future<Output = ()> + Send {
        let _ = progress;
        async {}
    }

    /// After `set_progress` of `progress` returned.
    fn after_set_progress(&self, progress: Option<f32>) {
        let _ = progress;
    }

    /// Before `response` of `id`, with the inner store at hand.
    fn before_response(&self, store: &MemoryStore, id: JobId) -> impl Future<Output = ()> + Send {
        let _ = (store, id);
        async {}
    }
}

/// A [`MemoryStore`] that runs `hooks` and otherwise delegates every call;
/// a clone shares the store.
#[derive(Clone)]
pub struct Hooked<H> {
    pub inner: MemoryStore,
    pub hooks: H,
}

impl<H: Hooks> Hooked<H> {
    pub fn new(hooks: H) -> Self {
        Self {
            inner: MemoryStore::new(),
            hooks,
        }
    }
}

impl<H: Hooks> JobStore for Hooked<H> {
    async fn create(&self, record: JobRecord) -> Result<(), StoreError> {
        self.hooks.before_create().await;
        self.inner.create(record).await
    }
    async fn create_once(&self, record: JobRecord, key: IdempotencyKey) -> Result<CreatedOnce, StoreError> {
        self.inner.create_once(record, key).await
    }
    async fn find_key(&self, key: &IdempotencyKey) -> Result<KeyLookup, StoreError> {
        self.inner.find_key(key).await
    }
    async fn list(&self, owner: &str, limit: usize, after: Option<ListCursor>) -> Result<Page, StoreError> {
        self.inner.list(owner, limit, after).await
    }
    async fn get(&self, id: JobId) -> Result<Lookup, StoreError> {
        self.inner.get(id).await
    }
    async fn start(&self, claim: Claim) -> Result<bool, StoreError> {
        self.inner.start(claim).await
    }
    async fn set_progress(
        &self,
        claim: Claim,
        progress: Option<f32>,
        message: Option<String>,
    ) -> Result<bool, StoreError> {
        self.hooks.before_set_progress(progress).await;
        let result = self.inner.set_progress(claim, progress, message).await;
        self.hooks.after_set_progress(progress);
        result
    }
    async fn finish(&self, claim: Claim, outcome: Outcome) -> Result<bool, StoreError> {
        self.hooks.before_finish(claim.id()).await?;
        self.inner.finish(claim, outcome).await
    }
    fn finish_can_fail(&self) -> bool {
        self.hooks.finish_can_fail() || self.inner.finish_can_fail()
    }
    async fn cancel(&self, id: JobId) -> Result<Cancel, StoreError> {
        self.inner.cancel(id).await
    }
    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
    async fn response(&self, id: JobId) -> Result<Option<Response<Bytes>>, StoreError> {
        self.hooks.before_response(&self.inner, id).await;
        self.inner.response(id).await
    }
    async fn wait_terminal(&self, id: JobId) -> Result<(), StoreError> {
        self.hooks.before_wait_terminal(id).await;
        if self.hooks.fail_wait_terminal(id) {
            return Err(StoreError::Unavailable("a planned failure of wait_terminal".into()));
        }
        self.inner.wait_terminal(id).await
    }
    async fn create_durable(
        &self,
        record: JobRecord,
        durable: DurableJob,
        key: Option<IdempotencyKey>,
    ) -> Result<CreatedOnce, StoreError> {
        self.hooks.before_create().await;
        self.inner.create_durable(record, durable, key).await
    }
    async fn claim_next(&self, queue: &str) -> Result<Option<Claimed>, StoreError> {
        self.inner.claim_next(queue).await
    }
    async fn renew(&self, claims: Vec<Claim>) -> Result<Vec<bool>, StoreError> {
        self.inner.renew(claims).await
    }
    async fn release(&self, claim: Claim) -> Result<bool, StoreError> {
        self.inner.release(claim).await
    }
    async fn sweep(&self) -> Result<Swept, StoreError> {
        self.inner.sweep().await
    }
    async fn claim_deliveries(&self, limit: usize, hold: std::time::Duration) -> Result<Vec<DueDelivery>, StoreError> {
        self.inner.claim_deliveries(limit, hold).await
    }
    async fn record_delivery(&self, id: JobId, token: u32, attempt: DeliveryAttempt) -> Result<bool, StoreError> {
        self.inner.record_delivery(id, token, attempt).await
    }
}

/// Hooks that count the calls of `create` and of `wait_terminal`: a test
/// can wait until a long poll waits, or check that nothing was created.
#[derive(Clone, Default)]
pub struct Counts {
    creates: Arc<AtomicUsize>,
    waits: Arc<std::sync::Mutex<Vec<JobId>>>,
}

impl Counts {
    /// How many times `create` was called.
    pub fn creates(&self) -> usize {
        self.creates.load(Ordering::SeqCst)
    }

    /// How many times `wait_terminal` was called for the job `id`.
    pub fn waits_for(&self, id: &str) -> usize {
        self.waits
            .lock()
            .unwrap()
            .iter()
            .filter(|w| w.to_string() == id)
            .count()
    }
}

impl Hooks for Counts {
    async fn before_create(&self) {
        self.creates.fetch_add(1, Ordering::SeqCst);
    }

    async fn before_wait_terminal(&self, id: JobId) {
        self.waits.lock().unwrap().push(id);
    }
}
