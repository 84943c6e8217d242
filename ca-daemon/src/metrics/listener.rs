//! The plain-HTTP listener of `[server] metrics_listen`: `GET /metrics` (the
//! [`Exporter`]'s text), `/healthz` (the process answers: 200) and `/readyz` (200 when
//! [`readiness`] holds, else 503 with the reasons in plain text). No TLS and no client
//! identity: it serves nothing secret, and belongs on loopback or a private network.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::{Exporter, readiness};
use crate::service::Service;

/// Most connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 32;
/// Longest a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The content type of the OpenMetrics text format that [`Exporter::encode`] writes.
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";

/// Serves the endpoints on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, service: Arc<Service>, mut stop: watch::Receiver<bool>) {
    let exporter = Arc::new(Exporter::new(service.clone()));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok(permit) = permit else {
            return;
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                // Out of descriptors, most likely: let some close first.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (service, exporter) = (service.clone(), exporter.clone());
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |req| {
                let (service, exporter) = (service.clone(), exporter.clone());
                async move { Ok::<_, Infallible>(answer(&req, &service, &exporter).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), handler);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

async fn answer(
    req: &Request<Incoming>,
    service: &Arc<Service>,
    exporter: &Exporter,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT_TYPE,
            "only GET is served here\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => match exporter.encode() {
            Ok(text) => reply(StatusCode::OK, METRICS_TYPE, text),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT_TYPE,
                format!("cannot encode the metrics: {e}\n"),
            ),
        },
        "/healthz" => reply(StatusCode::OK, TEXT_TYPE, "ok\n".into()),
        "/readyz" => {
            let svc = service.clone();
            match tokio::task::spawn_blocking(move || readiness(&svc)).await {
                Ok(Ok(())) => reply(StatusCode::OK, TEXT_TYPE, "ready\n".into()),
                Ok(Err(why)) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT_TYPE,
                    format!("not ready:\n{}\n", why.join("\n")),
                ),
                Err(e) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT_TYPE,
                    format!("not ready: the readiness check failed: {e}\n"),
                ),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT_TYPE,
            "not found; try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}
