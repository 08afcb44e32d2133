//! A tiny HTTP/1.1 responder for `/metrics`, `/healthz`, `/readyz` and the drain library's `/status`, `/quiet` and
//! `/resume`.
//!
//! Both the agent and the drain library serve a handful of endpoints to Prometheus, kubelet probes and the agent. A
//! full web framework would be most of the drain library's dependency tree, so this answers one request per
//! connection (`Connection: close`), reads at most a few kilobytes of request head (no body), and gives up on slow
//! clients.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One response.
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    /// 200 with a plain-text body.
    pub fn text(body: impl Into<String>) -> Response {
        Response { status: 200, content_type: "text/plain; charset=utf-8", body: body.into() }
    }

    /// 200 with a Prometheus text exposition.
    pub fn metrics(body: String) -> Response {
        Response { status: 200, content_type: "text/plain; version=0.0.4; charset=utf-8", body }
    }

    /// 200 with a JSON body.
    pub fn json(body: String) -> Response {
        Response { status: 200, content_type: "application/json", body }
    }

    /// 503 with a reason.
    pub fn unavailable(why: impl Into<String>) -> Response {
        Response::plain(503, why)
    }

    /// Any status with a plain-text reason.
    pub fn plain(status: u16, why: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: why.into() }
    }
}

/// What a handler sees of a request.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// Without the query string.
    pub path: &'a str,
    /// The token of an `Authorization: Bearer …` header.
    pub bearer: Option<&'a str>,
}

/// Maps a GET request's path to its response; `None` is a 404.
#[cfg(feature = "kube")]
pub(crate) type Route = Arc<dyn Fn(&str) -> Option<Response> + Send + Sync>;

/// Maps any request to its response; `None` is a 404.
pub(crate) type Handler = Arc<dyn Fn(&Request<'_>) -> Option<Response> + Send + Sync>;

const MAX_HEAD: usize = 8 * 1024;
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (out of file descriptors, say): the error would come straight back, and a loop
/// that retries at once takes a core while the worker needs it most.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `route(path)` for every GET (and HEAD) on `listener` until the task is dropped; other methods get a 405.
#[cfg(feature = "kube")]
pub(crate) async fn serve(listener: TcpListener, route: Route) {
    serve_requests(
        listener,
        Arc::new(move |request: &Request<'_>| match request.method {
            "GET" | "HEAD" => route(request.path),
            _ => Some(Response::plain(405, "only GET\n")),
        }),
    )
    .await;
}

/// Serves `handler(request)` for every request on `listener` until the task is dropped.
pub(crate) async fn serve_requests(listener: TcpListener, handler: Handler) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            // A slow or broken client only loses its own answer.
            let _ = tokio::time::timeout(CLIENT_DEADLINE, answer(stream, handler.as_ref())).await;
        });
    }
}

/// The token of the request head's `Authorization: Bearer` header, if any.
fn bearer(head: &str) -> Option<&str> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let (scheme, token) = value.trim().split_once(' ')?;
        (name.trim().eq_ignore_ascii_case("authorization") && scheme.eq_ignore_ascii_case("bearer"))
            .then(|| token.trim())
    })
}

async fn answer(
    mut stream: TcpStream,
    handler: &(dyn Fn(&Request<'_>) -> Option<Response> + Send + Sync),
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let request = Request { method, path, bearer: bearer(&head) };
    let response = handler(&request).unwrap_or_else(|| Response::plain(404, "not found\n"));
    let reason = match response.status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "",
    };
    // RFC 9110: a 401 names the scheme it wants.
    let challenge = if response.status == 401 { "WWW-Authenticate: Bearer\r\n" } else { "" };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{challenge}Connection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(response.body.as_bytes());
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut out = String::new();
        stream.read_to_string(&mut out).await.expect("read");
        out
    }

    #[cfg(feature = "kube")]
    #[tokio::test]
    async fn routes_get_and_refuses_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server =
            tokio::spawn(serve(listener, Arc::new(|path: &str| (path == "/healthz").then(|| Response::text("ok\n")))));
        let ok = get(addr, "GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.ends_with("\r\n\r\nok\n"), "{ok}");
        assert!(ok.contains("Content-Length: 3\r\n"), "{ok}");
        assert!(get(addr, "GET /nope HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /healthz HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 405"));
        server.abort();
    }

    #[test]
    fn the_bearer_token_is_read_from_any_casing_of_the_header() {
        assert_eq!(bearer("POST /quiet HTTP/1.1\r\nauthorization: bearer  s3cret \r\n\r\n"), Some("s3cret"));
        assert_eq!(bearer("POST /quiet HTTP/1.1\r\nAuthorization: Basic abc\r\n\r\n"), None);
        assert_eq!(bearer("POST /quiet HTTP/1.1\r\nX-Authorization: Bearer abc\r\n\r\n"), None);
    }
}
