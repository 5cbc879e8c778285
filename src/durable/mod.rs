//! Durable jobs: kept with their request, claimed from a shared queue by
//! any replica with room, run again when the replica running them stops.
//!
//! A durable job (chosen with [`AcceptedLayer::durable`] or
//! [`durable_if`](crate::AcceptedLayer::durable_if)) is created with its request
//! (method, URI, headers but hop-by-hop ones and those
//! [`stored_headers`](crate::AcceptedLayer::stored_headers) leaves out, the body)
//! in one atomic write. The replica that accepted it runs it at once when
//! it has a runner free; otherwise it waits in the store's queue, oldest
//! first, and every replica that was given the application with
//! [`run_jobs_with`](crate::AcceptedLayer::run_jobs_with) claims from it as
//! runners free up.
//!
//! **What is guaranteed.** A durable job runs *at least once* and its
//! result is recorded *exactly once*: a runner holds a lease on the job and
//! renews it; when the lease lapses (the replica was killed, frozen or cut
//! off), any replica's sweep puts the job back in its queue and it runs
//! again, as attempt 2, 3, … up to [`max_attempts`](crate::AcceptedLayer::max_attempts),
//! after which it ends `failed` with `error.code = "lost"`. Every write of
//! an attempt carries its number, and the store refuses those of an
//! attempt that was replaced, so a late runner never overwrites the result.
//! A graceful [`shutdown`](crate::AcceptedLayer::shutdown) hands its unfinished
//! durable jobs back at the deadline rather than failing them (on a store
//! of one process, a `MemoryStore`, nobody could take them: they end
//! `shutdown`). Every claim spends an attempt, a claim handed back or one
//! whose request reached no layer of its queue included, so a job that no
//! replica can run ends `lost` rather than circle for good. A handler
//! may therefore run more than once: one with effects outside the job
//! checks [`Job::attempt`](crate::Job::attempt) and what an earlier attempt
//! did. Jobs that are not durable run at most once; a replica that stops
//! with them ends them `failed` (`shutdown`), or `lost` within about one
//! lease when it dies.
//!
//! **What rests in the store.** The request as the layer received it,
//! credentials included (`Authorization`, `Cookie`, API keys), until the
//! job expires. Leave out what must not be kept with `stored_headers`;
//! the stored request runs through the application's middleware again on
//! every attempt, so credentials that expire meanwhile stop it there (a
//! middleware in front of the layer answers `401`): the job goes back to
//! its queue and, its attempts spent, ends `lost`.
//!
//! [`AcceptedLayer`]: crate::AcceptedLayer
//! [`AcceptedLayer::durable`]: crate::AcceptedLayer::durable

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Request};

use crate::config::Config;
use crate::headers::strip_hop_by_hop;
use crate::store::DurableJob;

mod claimer;
mod leases;
mod mark;
mod settings;

pub(crate) use claimer::{fail_queued_after_shutdown, start_claiming};
pub(crate) use leases::ensure_upkeep;
pub(crate) use mark::{Handoff, JobMark};

/// The durable side of a job accepted from `parts` and `body`, if the
/// layer makes it durable: its stored request.
pub(crate) fn durable_job(config: &Config, parts: &Parts, body: &Bytes) -> Option<DurableJob> {
    let durable = config.durable.as_ref()?;
    if !durable(parts) {
        return None;
    }
    let mut headers: HeaderMap = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    if let Some(keep) = &config.stored_headers {
        // `retain` is not on `HeaderMap`: rebuild it with what is kept.
        headers = headers
            .into_iter()
            .scan(None, |name, (next, value)| {
                if next.is_some() {
                    *name = next;
                }
                Some((name.clone(), value))
            })
            .filter_map(|(name, value)| name.filter(|n| keep(n)).map(|n| (n, value)))
            .fold(HeaderMap::new(), |mut map, (name, value)| {
                map.append(name, value);
                map
            });
    }
    let mut request = Request::new(body.clone());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.headers_mut() = headers;
    Some(DurableJob::new(request, &*config.queue).with_max_attempts(config.max_attempts))
}
