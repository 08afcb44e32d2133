//! The HTTP side of the fake: serves plain HTTP/1.1 connections on 127.0.0.1, records every
//! request, applies injected faults, and hands the rest to the API handlers. It runs hyper's
//! connection loop itself (rather than a web framework's) so an injected fault can drop a
//! connection without answering.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::api::{self, Call, Reply};
use super::faults::FaultKind;
use super::routes::{self, Query};
use super::shared::{RecordedRequest, Shared};
use super::status::ApiError;
use super::watch;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Returned by the service to make hyper close the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
struct InjectedReset;

/// Accepts connections until the task is aborted.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((connection, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(shared.clone(), request));
            // A connection ends in an error when the client hangs up or a fault drops it; neither
            // concerns the fake.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(connection), service).await;
        });
    }
}

async fn answer(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Body>, InjectedReset> {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    // A body that cannot be read whole is treated as empty; the handlers then reject what needs
    // one.
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let header = |name| parts.headers.get(name).and_then(|value: &HeaderValue| value.to_str().ok());
    let path = parts.uri.path();
    let raw_query = parts.uri.query().unwrap_or("");
    let mut record = RecordedRequest {
        at,
        method: parts.method.clone(),
        path: path.to_string(),
        query: raw_query.to_string(),
        content_type: header(CONTENT_TYPE).map(str::to_string),
        body: readable(&body),
        status: None,
        response: None,
    };
    let target = if raw_query.is_empty() { path.to_string() } else { format!("{path}?{raw_query}") };
    let handle = || {
        let route = routes::route(path).ok_or_else(ApiError::path_not_found)?;
        api::handle(
            &shared,
            Call {
                method: parts.method.as_str(),
                route,
                query: Query::parse(raw_query),
                body: &body,
                content_type: header(CONTENT_TYPE),
                accept: header(ACCEPT),
                user_agent: header(USER_AGENT),
            },
        )
    };
    let outcome = match shared.take_fault(&parts.method, &target) {
        Some(FaultKind::Reset) => {
            shared.record(record);
            return Err(InjectedReset);
        }
        Some(FaultKind::Status(code)) => Err(ApiError::for_code(code, format!("injected fault: HTTP {code}"))),
        Some(FaultKind::Stall(delay)) => {
            tokio::time::sleep(delay).await;
            handle()
        }
        Some(FaultKind::Hold(gate)) => {
            gate.passed().await;
            handle()
        }
        None => handle(),
    };
    let response = match outcome {
        Ok(Reply::Json { code, body }) => {
            record.status = Some(code);
            let response = json_response(code, &body);
            record.response = Some(body);
            response
        }
        Ok(Reply::Watch(request)) => {
            record.status = Some(200);
            stream_response(watch::open(shared.clone(), request))
        }
        Err(error) => {
            let status = error.to_status();
            record.status = Some(error.code);
            let response = json_response(error.code, &status);
            record.response = Some(status);
            response
        }
    };
    shared.record(record);
    Ok(response)
}

/// A request body as JSON, or YAML for apply patches.
fn readable(body: &[u8]) -> Option<Value> {
    if body.is_empty() {
        return None;
    }
    serde_json::from_slice(body).ok().or_else(|| serde_norway::from_slice(body).ok())
}

fn json_response(code: u16, body: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A chunked answer that sends each line as soon as the watch produces it.
fn stream_response(lines: mpsc::Receiver<Bytes>) -> Response<Body> {
    let frames = futures::stream::unfold(lines, |mut lines| async move {
        let line = lines.recv().await?;
        Some((Ok(Frame::data(line)), lines))
    });
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
