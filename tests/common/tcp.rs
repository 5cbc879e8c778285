//! Raw TCP exchanges, for what an HTTP client would not send or would
//! hide: malformed requests, bodies cut short, pauses between parts.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a raw exchange may take before the test fails.
const WITHIN: Duration = Duration::from_secs(10);

/// Sends `request` on a fresh connection, reads until the server closes it
/// (or [`WITHIN`] passes) and returns the status line (empty if none).
pub async fn status_line(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WITHIN, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_owned()
}

/// Reads from `stream` until the end of a response head (`\r\n\r\n`);
/// returns what was read (the head, and whatever came with it), within
/// [`WITHIN`].
pub async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let read = async {
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the connection closed: {:?}", String::from_utf8_lossy(&head));
            head.extend_from_slice(&buffer[..n]);
        }
        head
    };
    tokio::time::timeout(WITHIN, read)
        .await
        .unwrap_or_else(|_| panic!("no response head within {WITHIN:?}"))
}

/// Sends `parts` on a new connection, `pause` apart, and reads one HTTP/1.1
/// response: its status, its head (lowercase) and its `Content-Length`
/// body.
pub async fn raw_exchange(addr: SocketAddr, parts: &[&[u8]], pause: Duration) -> (StatusCode, String, Bytes) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        // The server may answer, and stop reading, before all is sent.
        if stream.write_all(part).await.is_err() {
            break;
        }
    }
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "the connection closed before a response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .expect("a Content-Length");
        while buf.len() < head_end + length {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed mid-body");
            buf.extend_from_slice(&chunk[..n]);
        }
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (
            StatusCode::from_u16(status).unwrap(),
            head.to_ascii_lowercase(),
            Bytes::copy_from_slice(&buf[head_end..head_end + length]),
        )
    };
    tokio::time::timeout(WITHIN, read)
        .await
        .unwrap_or_else(|_| panic!("no whole response within {WITHIN:?}"))
}
