//! A reader of Server-Sent Events over a real connection: the events as
//! the `text/event-stream` format defines them (fields `id`, `event`,
//! `data`, `retry`; comment lines counted apart).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long a test waits for the next piece of a stream.
pub const NEXT_WITHIN: Duration = Duration::from_secs(10);

/// One event of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

impl Event {
    /// The event's id as a number.
    pub fn id(&self) -> u64 {
        self.id
            .as_deref()
            .expect("an event has an id")
            .parse()
            .expect("a numeric id")
    }

    /// The data as JSON (a status document).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {}", self.data))
    }
}

/// What a stream yields: an event, a comment line, or its end.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Event(Event),
    Comment(String),
    End,
}

/// An open response, read as an event stream.
pub struct Stream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    buffer: BytesMut,
    /// A `retry:` seen in a block without data, kept for the next event.
    retry: Option<u64>,
    /// The last `id:` the stream named, with an event or without, as a
    /// browser keeps it for `Last-Event-ID`.
    last_id: Option<String>,
}

/// `GET path` on `addr` with `headers` (an `Accept: text/event-stream` is
/// the caller's to add), answered within [`NEXT_WITHIN`].
pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Stream {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(NEXT_WITHIN, client.request(request.body(Empty::new()).unwrap()))
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no answer within {NEXT_WITHIN:?}"))
        .unwrap_or_else(|e| panic!("GET {path} failed: {e}"));
    let (parts, body) = response.into_parts();
    Stream {
        status: parts.status,
        headers: parts.headers,
        body,
        buffer: BytesMut::new(),
        retry: None,
        last_id: None,
    }
}

impl Stream {
    /// The last `id:` the stream named.
    pub fn last_id(&self) -> Option<String> {
        self.last_id.clone()
    }

    /// The next event or comment, or the end of the stream, within
    /// `within`; `None` when nothing came in time.
    pub async fn next_within(&mut self, within: Duration) -> Option<Piece> {
        tokio::time::timeout(within, self.next_piece()).await.ok()
    }

    /// The next event or comment, or the end, within [`NEXT_WITHIN`].
    pub async fn next(&mut self) -> Piece {
        self.next_within(NEXT_WITHIN)
            .await
            .unwrap_or_else(|| panic!("nothing on the stream within {NEXT_WITHIN:?}"))
    }

    /// The next event, passing comments by.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            match self.next().await {
                Piece::Event(event) => return Some(event),
                Piece::Comment(_) => {}
                Piece::End => return None,
            }
        }
    }

    /// Every event to the end of the stream.
    pub async fn rest(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event().await {
            events.push(event);
        }
        events
    }

    async fn next_piece(&mut self) -> Piece {
        loop {
            if let Some(piece) = self.parse_block() {
                return piece;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => panic!("the stream broke: {e}"),
                None => return Piece::End,
            }
        }
    }

    /// The first whole piece in the buffer: a comment line, or a block of
    /// fields ended by a blank line that dispatches an event.
    fn parse_block(&mut self) -> Option<Piece> {
        loop {
            let text = std::str::from_utf8(&self.buffer).expect("a stream is UTF-8");
            if let Some(comment) = text.strip_prefix(':') {
                let end = comment.find('\n')?;
                let line = comment[..end].trim().to_owned();
                let _ = self.buffer.split_to(end + 2);
                // The blank line that may follow a comment dispatches nothing.
                if self.buffer.first() == Some(&b'\n') {
                    let _ = self.buffer.split_to(1);
                }
                return Some(Piece::Comment(line));
            }
            let end = text.find("\n\n")?;
            let block = text[..end].to_owned();
            let _ = self.buffer.split_to(end + 2);
            let mut event = Event {
                id: None,
                event: None,
                data: String::new(),
                retry: self.retry.take(),
            };
            let mut has_data = false;
            for line in block.split('\n') {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => {
                        event.id = Some(value.to_owned());
                        self.last_id = Some(value.to_owned());
                    }
                    "event" => event.event = Some(value.to_owned()),
                    "retry" => event.retry = value.parse().ok(),
                    "data" => {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            if has_data {
                return Some(Piece::Event(event));
            }
            self.retry = event.retry;
        }
    }
}
