//! A `tracing` subscriber that keeps what it sees, for tests of the
//! layer's spans and events. Installed for the test's thread only
//! (`tracing::subscriber::set_default`): a `#[tokio::test]` runs server,
//! client and jobs on that thread, and the other tests of the binary, on
//! theirs, are not seen.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as it was when an event or a link named it.
#[derive(Debug, Clone)]
pub struct SeenSpan {
    pub name: String,
    pub fields: BTreeMap<String, String>,
}

/// An event, with the spans it was in, outermost first.
#[derive(Debug, Clone)]
pub struct SeenEvent {
    pub level: Level,
    pub target: String,
    pub message: String,
    pub fields: BTreeMap<String, String>,
    pub scope: Vec<SeenSpan>,
}

impl SeenEvent {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The `job` span the event was in, if any.
    pub fn job_span(&self) -> Option<&SeenSpan> {
        self.scope.iter().find(|span| span.name == "job")
    }
}

/// Everything seen: events, and `follows_from` links (span, followed).
#[derive(Default)]
pub struct Seen {
    pub events: Vec<SeenEvent>,
    pub follows: Vec<(SeenSpan, SeenSpan)>,
}

/// The capture: clone it, install it with [`Traces::install`], read it with
/// [`Traces::events`].
#[derive(Clone, Default)]
pub struct Traces {
    seen: Arc<Mutex<Seen>>,
}

/// A span's fields, kept in its extensions as it was made and recorded.
struct Fields(BTreeMap<String, String>);

impl Traces {
    /// Installs the capture for this thread until the guard is dropped.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()));
        // A callsite that other tests' threads (with no subscriber) hit
        // first, while this one was being registered, may have cached
        // "never": asked again now that this subscriber is in the list.
        tracing::callsite::rebuild_interest_cache();
        guard
    }

    pub fn events(&self) -> Vec<SeenEvent> {
        self.seen.lock().unwrap().events.clone()
    }

    pub fn follows(&self) -> Vec<(SeenSpan, SeenSpan)> {
        self.seen.lock().unwrap().follows.clone()
    }

    /// The events whose message is `message`.
    pub fn with_message(&self, message: &str) -> Vec<SeenEvent> {
        self.events().into_iter().filter(|e| e.message == message).collect()
    }
}

fn seen_span<S: Subscriber + for<'a> LookupSpan<'a>>(ctx: &Context<'_, S>, id: &Id) -> Option<SeenSpan> {
    let span = ctx.span(id)?;
    let fields = span
        .extensions()
        .get::<Fields>()
        .map(|f| f.0.clone())
        .unwrap_or_default();
    Some(SeenSpan {
        name: span.name().to_owned(),
        fields,
    })
}

impl<S> Layer<S> for Traces
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        attrs.record(&mut Visitor(&mut fields.0));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(&mut Visitor(&mut fields.0));
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        if let (Some(span), Some(followed)) = (seen_span(&ctx, id), seen_span(&ctx, follows)) {
            self.seen.lock().unwrap().follows.push((span, followed));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Visitor(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let scope = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .filter_map(|span| seen_span(&ctx, &span.id()))
                    .collect()
            })
            .unwrap_or_default();
        self.seen.lock().unwrap().events.push(SeenEvent {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message,
            fields,
            scope,
        });
    }
}

struct Visitor<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}
