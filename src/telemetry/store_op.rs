//! Calls to the job store, as the layer makes them: each one timed (feature
//! `metrics`) and, when it fails, counted and logged.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use pin_project_lite::pin_project;

use super::limit::Limited;
use super::meters::{self, Meters};
use crate::store::StoreError;

/// A kind of call to the job store: the `op` label of its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOp {
    Create,
    CreateOnce,
    CreateDurable,
    FindKey,
    Get,
    List,
    Start,
    SetProgress,
    Finish,
    Cancel,
    Delete,
    Response,
    ClaimNext,
    Renew,
    Release,
    Sweep,
    Health,
    ClaimDeliveries,
    RecordDelivery,
}

impl StoreOp {
    pub(crate) const ALL: [Self; 19] = [
        Self::Create,
        Self::CreateOnce,
        Self::CreateDurable,
        Self::FindKey,
        Self::Get,
        Self::List,
        Self::Start,
        Self::SetProgress,
        Self::Finish,
        Self::Cancel,
        Self::Delete,
        Self::Response,
        Self::ClaimNext,
        Self::Renew,
        Self::Release,
        Self::Sweep,
        Self::Health,
        Self::ClaimDeliveries,
        Self::RecordDelivery,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::CreateOnce => "create_once",
            Self::CreateDurable => "create_durable",
            Self::FindKey => "find_key",
            Self::Get => "get",
            Self::List => "list",
            Self::Start => "start",
            Self::SetProgress => "set_progress",
            Self::Finish => "finish",
            Self::Cancel => "cancel",
            Self::Delete => "delete",
            Self::Response => "response",
            Self::ClaimNext => "claim_next",
            Self::Renew => "renew",
            Self::Release => "release",
            Self::Sweep => "sweep",
            Self::Health => "health",
            Self::ClaimDeliveries => "claim_deliveries",
            Self::RecordDelivery => "record_delivery",
        }
    }
}

/// `call`, a call to the store of kind `op`, timed (into `meters`) and
/// watched.
pub(crate) fn store<F, T>(meters: &Meters, op: StoreOp, call: F) -> Timed<'_, F>
where
    F: Future<Output = Result<T, StoreError>>,
{
    Timed {
        meters,
        op,
        started: None,
        call,
    }
}

pin_project! {
    /// A call to the store, timed from its first poll (see [`store`]).
    pub(crate) struct Timed<'a, F> {
        meters: &'a Meters,
        op: StoreOp,
        started: Option<Instant>,
        #[pin]
        call: F,
    }
}

impl<F, T> Future for Timed<'_, F>
where
    F: Future<Output = Result<T, StoreError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if meters::TIMES_STORE && this.started.is_none() {
            *this.started = Some(Instant::now());
        }
        let result = ready!(this.call.poll(cx));
        let took = this.started.map(|at| at.elapsed()).unwrap_or_default();
        this.meters.store_op(*this.op, took, result.is_err());
        if let Err(error) = &result {
            failed(*this.op, error);
        }
        Poll::Ready(result)
    }
}

/// A warning for a failed call to the store, at most one per kind of call
/// per second.
fn failed(op: StoreOp, error: &StoreError) {
    static LIMITS: [Limited; StoreOp::ALL.len()] = [const { Limited::new() }; StoreOp::ALL.len()];
    if let Some(held_back) = LIMITS[op as usize].allow() {
        tracing::warn!(
            store.op = op.as_str(),
            error = %error,
            held_back,
            "job store call failed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_its_own_label_and_index() {
        for (index, op) in StoreOp::ALL.iter().enumerate() {
            assert_eq!(*op as usize, index);
        }
        let labels: std::collections::HashSet<_> = StoreOp::ALL.iter().map(|op| op.as_str()).collect();
        assert_eq!(labels.len(), StoreOp::ALL.len());
    }
}
