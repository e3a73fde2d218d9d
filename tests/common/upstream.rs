//! A loopback stand-in for the OpenAI API, for the adapter tests and the library examples: it
//! answers `POST /v1/chat/completions` with the recorded `chat_plain` response, or with the
//! recorded `chat_stream_include_usage` server-sent events when the request asks for a stream,
//! and any other request with a short plain-text body. Every request it receives is kept.
//!
//! A stream can be answered whole, cut (the connection closes after some events, in the middle
//! of the chunked body), or held open after some events until the client goes away.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// How the stand-in ends a streamed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Every event, then the end of the body.
    Whole,
    /// This many events, then the connection closes without ending the body.
    Cut { after: usize },
    /// This many events, then nothing until the client closes the connection (at most 10 s).
    Hang { after: usize },
}

/// A request the stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Seen {
    /// The value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The stand-in, serving until its runtime ends.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// The body of answers to requests that are not chat completions.
pub const PLAIN_ANSWER: &str = "not a GenAI call";

/// A file of a recorded OpenAI case.
pub fn fixture(case: &str, file: &str) -> std::io::Result<Vec<u8>> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "openai",
        case,
        file,
    ]
    .iter()
    .collect();
    std::fs::read(path)
}

impl Upstream {
    /// Starts the stand-in on 127.0.0.1 (a port of the system's choosing).
    pub async fn start(end: StreamEnd) -> std::io::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let upstream = Upstream {
            addr: listener.local_addr()?,
            seen: Arc::default(),
        };
        let seen = upstream.seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, end, &seen).await;
                });
            }
        });
        Ok(upstream)
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Most bytes of a request head.
const MAX_HEAD: usize = 64 << 10;

/// Most bytes of a request body.
const MAX_BODY: usize = 1 << 20;

/// Serves one request on a connection, then closes it.
async fn serve(
    mut socket: TcpStream,
    end: StreamEnd,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let request = read_request(&mut socket).await?;
    let is_chat = request.method == "POST" && request.path.starts_with("/v1/chat/completions");
    let wants_stream = serde_json::from_slice::<serde_json::Value>(&request.body)
        .ok()
        .and_then(|v| v.get("stream").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    if let Ok(mut seen) = seen.lock() {
        seen.push(request);
    }
    match (is_chat, wants_stream) {
        (true, true) => {
            let events = fixture("chat_stream_include_usage", "response.sse")?;
            write_stream(&mut socket, &events, end).await
        }
        (true, false) => {
            let body = fixture("chat_plain", "response.json")?;
            write_whole(&mut socket, "application/json", &body).await
        }
        _ => write_whole(&mut socket, "text/plain", PLAIN_ANSWER.as_bytes()).await,
    }
}

async fn read_request(socket: &mut TcpStream) -> std::io::Result<Seen> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let head = String::from_utf8_lossy(buffer.get(..head_end).unwrap_or_default()).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut body = buffer.get(head_end + 4..).unwrap_or_default().to_vec();
    while (chunked && !body.ends_with(b"0\r\n\r\n")) || (!chunked && body.len() < length) {
        if body.len() > MAX_BODY {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    if chunked {
        body = dechunk(&body);
    }
    Ok(Seen {
        method,
        path,
        headers,
        body,
    })
}

/// The data of a chunked body (`SIZE\r\nDATA\r\n` ..., `0\r\n\r\n`).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    while let Some(line_end) = find(raw, b"\r\n") {
        let size_line = String::from_utf8_lossy(raw.get(..line_end).unwrap_or_default());
        let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        data.extend_from_slice(raw.get(start..start + size).unwrap_or_default());
        raw = raw.get(start + size + 2..).unwrap_or_default();
    }
    data
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn write_whole(
    socket: &mut TcpStream,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body).await?;
    socket.shutdown().await
}

/// Writes the events as a chunked body, one chunk per event, ending as `end` says.
async fn write_stream(
    socket: &mut TcpStream,
    events: &[u8],
    end: StreamEnd,
) -> std::io::Result<()> {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    socket.write_all(head.as_bytes()).await?;
    let text = String::from_utf8_lossy(events);
    let events: Vec<String> = text.split_inclusive("\n\n").map(str::to_string).collect();
    let count = match end {
        StreamEnd::Whole => events.len(),
        StreamEnd::Cut { after } | StreamEnd::Hang { after } => after.min(events.len()),
    };
    for event in events.iter().take(count) {
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        socket.write_all(chunk.as_bytes()).await?;
        socket.flush().await?;
    }
    match end {
        StreamEnd::Whole => {
            socket.write_all(b"0\r\n\r\n").await?;
            socket.shutdown().await
        }
        // Dropping the socket closes the connection in the middle of the body.
        StreamEnd::Cut { .. } => Ok(()),
        StreamEnd::Hang { .. } => {
            let mut rest = [0u8; 1024];
            let wait = async {
                while socket.read(&mut rest).await? > 0 {}
                Ok::<_, std::io::Error>(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
            Ok(())
        }
    }
}
