//! A tiny HTTP/1.1 responder for `/metrics`, `/healthz`, `/readyz` and the drain library's `/status`.
//!
//! Both the agent and the drain library serve a handful of GET endpoints to Prometheus and kubelet probes. A full
//! web framework would be most of the drain library's dependency tree, so this answers one request per connection
//! (`Connection: close`), reads at most a few kilobytes of request head, and gives up on slow clients.

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
    #[cfg(feature = "agent")]
    pub fn unavailable(why: impl Into<String>) -> Response {
        Response { status: 503, content_type: "text/plain; charset=utf-8", body: why.into() }
    }

    fn not_found() -> Response {
        Response { status: 404, content_type: "text/plain; charset=utf-8", body: "not found\n".into() }
    }
}

/// Maps a request path to its response; `None` is a 404.
pub(crate) type Route = Arc<dyn Fn(&str) -> Option<Response> + Send + Sync>;

const MAX_HEAD: usize = 8 * 1024;
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

/// Serves `route(path)` for every GET on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, route: Route) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let route = route.clone();
        tokio::spawn(async move {
            // A slow or broken client only loses its own answer.
            let _ = tokio::time::timeout(CLIENT_DEADLINE, answer(stream, route.as_ref())).await;
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    route: &(dyn Fn(&str) -> Option<Response> + Send + Sync),
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
    let response = match method {
        "GET" | "HEAD" => route(path).unwrap_or_else(Response::not_found),
        _ => Response { status: 405, content_type: "text/plain; charset=utf-8", body: "only GET\n".into() },
    };
    let reason = match response.status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
}
