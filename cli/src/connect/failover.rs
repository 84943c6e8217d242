//! Several daemons of one log (`--server A --server B`, `servers = [...]`): a call goes to
//! the daemon that answered last, and to the next one when that one cannot take it.
//!
//! "Cannot take it" is decided so that no call is ever carried out twice:
//! - the connection could not be made (refused, unreachable, timed out, no such socket):
//!   the call was never sent;
//! - the daemon answered `UNAVAILABLE` at once, in the response headers (it fails closed:
//!   its audit log or database could not record anything, or it is stopping), so it did
//!   nothing.
//!
//! Anything else, a failure after the call went out included, is the answer. A call whose
//! request is a stream (a recording upload) is not buffered and goes to one daemon only; a
//! wait that loses its daemon resumes on the next one by request id
//! ([`crate::approvals`]).

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http_body_util::{BodyExt as _, Full, Limited};
use tonic::body::Body;
use tonic::codegen::{Bytes, http};
use tower::{Service, ServiceExt as _};

/// Calls whose request is a stream: never buffered, never sent to a second daemon.
const STREAMED_REQUESTS: &[&str] = &["/breakglass.v1.HostAgent/UploadRecording"];
/// The largest request kept to be sent again (unary requests are a few KiB).
const MAX_REPLAYED: usize = 4 << 20;

/// The error of a call.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A channel to one daemon, or to the first of several that takes the call. Cheap to
/// clone; clones share which daemon answered last.
#[derive(Clone, Debug)]
pub struct Channel {
    servers: Arc<[(String, tonic::transport::Channel)]>,
    /// The daemon that answered last: calls start there.
    current: Arc<AtomicUsize>,
}

impl Channel {
    /// A channel over `servers` (address, connection), tried in this order. At least one.
    #[must_use]
    pub fn new(servers: Vec<(String, tonic::transport::Channel)>) -> Self {
        assert!(!servers.is_empty(), "a channel needs a server");
        Self {
            servers: servers.into(),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The address of the daemon calls go to first.
    #[must_use]
    pub fn current(&self) -> &str {
        &self.servers[self.current.load(Ordering::Relaxed) % self.servers.len()].0
    }
}

impl Service<http::Request<Body>> for Channel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each call readies the daemon's own channel it goes to.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.send(req).await })
    }
}

impl Channel {
    async fn send(self, req: http::Request<Body>) -> Result<http::Response<Body>, BoxError> {
        let n = self.servers.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        if n == 1 || STREAMED_REQUESTS.contains(&req.uri().path()) {
            return one(&self.servers[first].1, req).await;
        }
        let (parts, body) = req.into_parts();
        let bytes = Limited::new(body, MAX_REPLAYED).collect().await?.to_bytes();
        let mut last = None;
        for k in 0..n {
            let i = (first + k) % n;
            let answer = one(&self.servers[i].1, rebuild(&parts, bytes.clone())).await;
            let next = match &answer {
                Err(e) => never_sent(e.as_ref()),
                Ok(r) => unavailable_at_once(r),
            };
            if !next {
                self.current.store(i, Ordering::Relaxed);
                return answer;
            }
            last = Some(answer);
        }
        last.expect("at least one server was tried")
    }
}

/// `req` sent on `channel`.
async fn one(
    channel: &tonic::transport::Channel,
    req: http::Request<Body>,
) -> Result<http::Response<Body>, BoxError> {
    let mut ch = channel.clone();
    Ok(ch.ready().await?.call(req).await?)
}

/// The request of `parts` with `body`, again.
fn rebuild(parts: &http::request::Parts, body: Bytes) -> http::Request<Body> {
    let mut req = http::Request::new(Body::new(Full::new(body)));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req
}

/// A failure to connect: the call never left this machine.
fn never_sent(e: &(dyn StdError + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut cur = Some(e);
    // Bounded: a chain of causes is a few links long.
    for _ in 0..32 {
        let Some(e) = cur else { return false };
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::NotFound
                    | K::TimedOut
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::AddrNotAvailable
            );
        }
        // The connect timeout.
        if e.downcast_ref::<tokio::time::error::Elapsed>().is_some() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The daemon refused the call as `UNAVAILABLE` before doing anything: a trailers-only
/// response (the status in the headers).
fn unavailable_at_once(r: &http::Response<Body>) -> bool {
    r.headers()
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"14")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connection_never_made_moves_a_call_to_the_next_daemon() {
        use std::io::{Error, ErrorKind};
        let wrapped = |k: ErrorKind| -> BoxError {
            #[derive(Debug)]
            struct Outer(Error);
            impl std::fmt::Display for Outer {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("transport error")
                }
            }
            impl StdError for Outer {
                fn source(&self) -> Option<&(dyn StdError + 'static)> {
                    Some(&self.0)
                }
            }
            Box::new(Outer(Error::from(k)))
        };
        for k in [
            ErrorKind::ConnectionRefused,
            ErrorKind::NotFound,
            ErrorKind::TimedOut,
        ] {
            assert!(never_sent(wrapped(k).as_ref()), "{k:?}");
        }
        for k in [
            ErrorKind::ConnectionReset,
            ErrorKind::BrokenPipe,
            ErrorKind::Other,
        ] {
            assert!(
                !never_sent(wrapped(k).as_ref()),
                "{k:?}: the call may have gone out"
            );
        }
    }

    #[test]
    fn only_an_unavailable_answer_in_the_headers_moves_a_call_on() {
        let answer = |status: Option<&str>| {
            let mut r = http::Response::new(Body::empty());
            if let Some(s) = status {
                r.headers_mut().insert("grpc-status", s.parse().unwrap());
            }
            r
        };
        assert!(unavailable_at_once(&answer(Some("14"))));
        assert!(!unavailable_at_once(&answer(Some("7"))));
        // A normal answer: its status comes in the trailers, after the message.
        assert!(!unavailable_at_once(&answer(None)));
    }
}
