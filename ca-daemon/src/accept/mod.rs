//! The TCP front door: accepts connections, runs their TLS handshakes, and keeps what
//! unauthenticated peers can hold bounded, so that idle or slow connections can neither
//! lock real clients out nor starve the admin socket (which shares the process's file
//! descriptor table). In depth:
//! - [`raise_fd_limit`]: the soft `RLIMIT_NOFILE` is raised to the hard limit at start-up;
//! - [`Limits`]: TCP connections, handshaking or established, hold at most
//!   [`tcp_budget`] descriptors; the rest stay free for the admin socket, the audit log,
//!   syslog and webhooks;
//! - [`handshakes`]: unauthenticated handshakes are capped in all and per source; a new
//!   one sheds the oldest of its source, or of the busiest source;
//! - a handshake that does not finish within `handshake_timeout` is dropped;
//! - accept errors that mean "out of descriptors" back off up to 1 s instead of spinning
//!   (on the admin socket too);
//! - every shed, timeout, refusal and accept error is counted ([`Stats`]); a summary is
//!   logged every 10 s while any of them happens, single lines are rate-limited.

pub mod handshakes;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::config::ServerConfig;
pub use handshakes::{Handshakes, Shed, ShedReason, Source};

/// Descriptors always kept out of TCP's reach, at the least: the admin socket's
/// connections, audit segments, syslog, webhooks, the runtime's own.
pub const FD_RESERVE_MIN: u64 = 64;
/// The most TCP connections any descriptor limit yields.
const TCP_BUDGET_MAX: u64 = 1 << 20;
/// How often the counters are summarised in the log (while anything happens).
pub const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Single warning lines of one kind per [`REPORT_EVERY`]; the rest are only counted.
const LINES_PER_WINDOW: u32 = 10;
/// How long a new connection may wait for the slot of a shed handshake.
const SLOT_WAIT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// The descriptor limit.

/// The process's `RLIMIT_NOFILE` after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit (the most the soft limit can be raised to without privilege).
    pub hard: u64,
}

/// Raises the soft descriptor limit to the hard limit (a no-op when they are equal).
pub fn raise_fd_limit() -> Result<FdLimit, String> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| format!("cannot read the file descriptor limit: {e}"))?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| {
            format!("cannot raise the file descriptor limit from {soft} to {hard}: {e}")
        })?;
    }
    Ok(FdLimit {
        before: soft,
        soft: soft.max(hard),
        hard,
    })
}

/// The process's soft descriptor limit now (1024, the usual default, if unreadable).
pub fn fd_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
}

/// How many TCP connections a descriptor limit leaves room for: everything but a
/// reserve of a quarter of the limit, at least [`FD_RESERVE_MIN`] (half of a tiny limit).
pub fn tcp_budget(fd_limit: u64) -> usize {
    let reserve = (fd_limit / 4).max(FD_RESERVE_MIN).min(fd_limit / 2);
    let budget = fd_limit.saturating_sub(reserve).clamp(2, TCP_BUDGET_MAX);
    usize::try_from(budget).unwrap_or(TCP_BUDGET_MAX as usize)
}

// ---------------------------------------------------------------------------------------
// The limits in force.

/// The TCP limits in force: the configuration, within what the descriptor limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The soft descriptor limit they were derived from.
    pub fd_limit: u64,
    /// TCP connections, handshaking or established.
    pub max_connections: usize,
    /// Unauthenticated handshakes in flight, in all.
    pub max_handshakes: usize,
    /// Unauthenticated handshakes in flight from one source.
    pub max_handshakes_per_source: usize,
    /// Longest a handshake may take.
    pub handshake_timeout: Duration,
}

impl Limits {
    /// The limits for `server` under the descriptor limit `fd_limit`, and a note for
    /// each value that was lowered to fit it.
    pub fn resolve(server: &ServerConfig, fd_limit: u64) -> (Self, Vec<String>) {
        let mut notes = Vec::new();
        let budget = tcp_budget(fd_limit);
        let max_connections = match server.max_connections {
            Some(n) if n > budget => {
                notes.push(format!(
                    "server.max_connections = {n} does not fit the file descriptor limit \
                     {fd_limit} (TCP may use {budget} of it); using {budget}: raise the \
                     limit (LimitNOFILE= in the unit) or lower max_connections"
                ));
                budget
            }
            Some(n) => n,
            None => budget,
        };
        // Handshakes may hold at most half of the slots: the rest is for clients
        // that got through.
        let half = (max_connections / 2).max(1);
        let max_handshakes = if server.max_handshakes > half {
            notes.push(format!(
                "server.max_handshakes = {} lowered to {half}, half of the {max_connections} \
                 TCP connections the file descriptor limit {fd_limit} allows",
                server.max_handshakes
            ));
            half
        } else {
            server.max_handshakes
        };
        let limits = Self {
            fd_limit,
            max_connections,
            max_handshakes,
            max_handshakes_per_source: server.max_handshakes_per_source.min(max_handshakes),
            handshake_timeout: server.handshake_timeout,
        };
        (limits, notes)
    }
}

// ---------------------------------------------------------------------------------------
// Counters.

/// What the front door has done since start-up, and what it holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// TLS handshakes completed (the connection was handed to the gRPC server).
    pub handshakes_completed: u64,
    /// Handshakes shed because their source opened one more than its cap.
    pub shed_per_source: u64,
    /// Handshakes shed because all were in use (the busiest source's oldest).
    pub shed_all_full: u64,
    /// Handshakes shed because the daemon needed their descriptor or connection slot.
    pub shed_reclaimed: u64,
    /// Handshakes that did not finish within the handshake timeout.
    pub timed_out: u64,
    /// Handshakes that failed (no or bad client certificate, not TLS, reset).
    pub refused: u64,
    /// Connections closed at once: every slot held an established connection.
    pub turned_away: u64,
    /// `accept` errors (out of descriptors, or the connection was gone).
    pub accept_errors: u64,
    /// Warning lines not written (rate limit); counted here instead.
    pub lines_suppressed: u64,
    /// Handshakes in flight now.
    pub handshakes_in_flight: u64,
    /// TCP connections open now (handshaking or established).
    pub connections_open: u64,
}

impl Stats {
    /// Everything shed, for any reason.
    pub fn shed(&self) -> u64 {
        self.shed_per_source + self.shed_all_full + self.shed_reclaimed
    }

    /// True if anything in this (delta of) stats deserves a warning: something was shed,
    /// turned away, or an accept failed.
    fn under_pressure(&self) -> bool {
        self.shed() + self.turned_away + self.accept_errors > 0
    }

    /// True if anything went wrong at all (also timeouts and refused handshakes).
    fn eventful(&self) -> bool {
        self.under_pressure() || self.timed_out + self.refused > 0
    }

    /// The counters of `self` since `earlier` (gauges as in `self`).
    fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            accepted: self.accepted - earlier.accepted,
            handshakes_completed: self.handshakes_completed - earlier.handshakes_completed,
            shed_per_source: self.shed_per_source - earlier.shed_per_source,
            shed_all_full: self.shed_all_full - earlier.shed_all_full,
            shed_reclaimed: self.shed_reclaimed - earlier.shed_reclaimed,
            timed_out: self.timed_out - earlier.timed_out,
            refused: self.refused - earlier.refused,
            turned_away: self.turned_away - earlier.turned_away,
            accept_errors: self.accept_errors - earlier.accept_errors,
            lines_suppressed: self.lines_suppressed - earlier.lines_suppressed,
            handshakes_in_flight: self.handshakes_in_flight,
            connections_open: self.connections_open,
        }
    }
}

/// The counters of [`Stats`], updated from the accept loop and the handshake tasks.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    handshakes_completed: AtomicU64,
    shed_per_source: AtomicU64,
    shed_all_full: AtomicU64,
    shed_reclaimed: AtomicU64,
    timed_out: AtomicU64,
    refused: AtomicU64,
    turned_away: AtomicU64,
    accept_errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Rate limit of one kind of warning line: [`LINES_PER_WINDOW`] per [`REPORT_EVERY`].
#[derive(Debug)]
struct LineBudget {
    window: Mutex<(Instant, u32)>,
    suppressed: AtomicU64,
}

impl LineBudget {
    fn new() -> Self {
        Self {
            window: Mutex::new((Instant::now(), 0)),
            suppressed: AtomicU64::new(0),
        }
    }

    /// True if one more line may be written now; otherwise counts it as suppressed.
    fn allow(&self) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(w.0) >= REPORT_EVERY {
            *w = (now, 0);
        }
        if w.1 < LINES_PER_WINDOW {
            w.1 += 1;
            true
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// One rate limit per kind of line, so a flood of one kind does not hide another.
#[derive(Debug)]
struct Lines {
    shed: LineBudget,
    timed_out: LineBudget,
    refused: LineBudget,
    accept: LineBudget,
}

impl Lines {
    fn suppressed(&self) -> u64 {
        [&self.shed, &self.timed_out, &self.refused, &self.accept]
            .iter()
            .map(|b| b.suppressed.load(Ordering::Relaxed))
            .sum()
    }
}

// ---------------------------------------------------------------------------------------
// The accept loop.

/// A TLS connection handed to the gRPC server; it holds its connection slot until it
/// is dropped.
#[derive(Debug)]
pub struct Connection<S> {
    inner: S,
    _slot: OwnedSemaphorePermit,
}

/// What the gRPC server receives from [`FrontDoor::run`].
pub type Incoming = Result<Connection<TlsStream<TcpStream>>, io::Error>;

/// The TCP listener's limits, counters and accept loop.
#[derive(Debug)]
pub struct FrontDoor {
    limits: Limits,
    slots: Arc<Semaphore>,
    handshakes: Arc<Handshakes>,
    counters: Counters,
    lines: Lines,
}

impl FrontDoor {
    /// A front door enforcing `limits`.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            handshakes: Handshakes::new(limits.max_handshakes, limits.max_handshakes_per_source),
            counters: Counters::default(),
            lines: Lines {
                shed: LineBudget::new(),
                timed_out: LineBudget::new(),
                refused: LineBudget::new(),
                accept: LineBudget::new(),
            },
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The counters and gauges now.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            accepted: get(&c.accepted),
            handshakes_completed: get(&c.handshakes_completed),
            shed_per_source: get(&c.shed_per_source),
            shed_all_full: get(&c.shed_all_full),
            shed_reclaimed: get(&c.shed_reclaimed),
            timed_out: get(&c.timed_out),
            refused: get(&c.refused),
            turned_away: get(&c.turned_away),
            accept_errors: get(&c.accept_errors),
            lines_suppressed: self.lines.suppressed(),
            handshakes_in_flight: self.handshakes.in_flight() as u64,
            connections_open: self
                .limits
                .max_connections
                .saturating_sub(self.slots.available_permits())
                as u64,
        }
    }

    /// Accepts TCP connections and hands completed TLS streams to `tx` until `tx` is
    /// closed or `stop` fires; then logs the totals.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        tx: mpsc::Sender<Incoming>,
        mut stop: watch::Receiver<bool>,
    ) {
        let acceptor = TlsAcceptor::from(tls);
        let reporter = tokio::spawn(Arc::clone(&self).report(stop.clone()));
        let mut backoff = Backoff::default();
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = stop.changed() => break,
                _ = tx.closed() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    bump(&self.counters.accept_errors);
                    let pause = if is_out_of_descriptors(&e) {
                        // A handshake's descriptor is worth less than the daemon's own work.
                        if let Some(shed) = self.handshakes.reclaim() {
                            self.count_shed(shed, None);
                        }
                        backoff.after_failure()
                    } else {
                        Duration::ZERO
                    };
                    if self.lines.accept.allow() {
                        tracing::warn!(error = %e, retry_in = ?pause, "accept failed");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = stop.changed() => break,
                    }
                }
            };
            backoff.reset();
            bump(&self.counters.accepted);
            let Some(slot) = self.slot(peer).await else {
                continue; // `tcp` is dropped: closed at once
            };
            let _ = tcp.set_nodelay(true);
            let (ticket, shed) = self.handshakes.admit(Source::from(peer.ip()));
            if let Some(shed) = shed {
                self.count_shed(shed, Some(peer));
            }
            let door = Arc::clone(&self);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                door.handshake(tcp, peer, slot, ticket, acceptor, tx).await;
            });
        }
        reporter.abort();
        let s = self.stats();
        tracing::info!(
            accepted = s.accepted,
            handshakes_completed = s.handshakes_completed,
            shed = s.shed(),
            shed_per_source = s.shed_per_source,
            shed_all_full = s.shed_all_full,
            shed_reclaimed = s.shed_reclaimed,
            timed_out = s.timed_out,
            refused = s.refused,
            turned_away = s.turned_away,
            accept_errors = s.accept_errors,
            "TCP listener stopped; totals since start-up"
        );
    }

    /// A connection slot for a new connection from `peer`. When all are taken, a
    /// handshake in flight is shed for it; when only established connections hold
    /// them, the new connection is turned away (None).
    async fn slot(&self, peer: SocketAddr) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = Arc::clone(&self.slots).try_acquire_owned() {
            return Some(p);
        }
        if let Some(shed) = self.handshakes.reclaim() {
            self.count_shed(shed, Some(peer));
            // The shed task gives its slot back as soon as it runs; a handshake that
            // completed just before it was shed keeps it, hence the bound.
            if let Ok(Ok(p)) =
                tokio::time::timeout(SLOT_WAIT, Arc::clone(&self.slots).acquire_owned()).await
            {
                return Some(p);
            }
        }
        bump(&self.counters.turned_away);
        if self.lines.shed.allow() {
            tracing::warn!(
                %peer,
                max_connections = self.limits.max_connections,
                "every TCP connection slot is held by an authenticated client; closed the new connection"
            );
        }
        None
    }

    fn count_shed(&self, shed: Shed, newcomer: Option<SocketAddr>) {
        bump(match shed.reason {
            ShedReason::SourceFull => &self.counters.shed_per_source,
            ShedReason::AllFull => &self.counters.shed_all_full,
            ShedReason::Reclaimed => &self.counters.shed_reclaimed,
        });
        if self.lines.shed.allow() {
            match newcomer {
                Some(peer) => tracing::warn!(
                    source = %shed.source, reason = %shed.reason, for_peer = %peer,
                    "shed an unauthenticated TLS handshake"
                ),
                None => tracing::warn!(
                    source = %shed.source, reason = %shed.reason,
                    "shed an unauthenticated TLS handshake"
                ),
            }
        }
    }

    /// One connection's TLS handshake, under the timeout, until done or shed.
    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
        mut ticket: handshakes::Ticket,
        acceptor: TlsAcceptor,
        tx: mpsc::Sender<Incoming>,
    ) {
        let outcome = tokio::select! {
            r = tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(tcp)) => r,
            () = ticket.shed() => return, // counted by whoever shed it; the socket closes
        };
        // Authenticated (or failed): no longer an unauthenticated handshake.
        drop(ticket);
        match outcome {
            Ok(Ok(tls)) => {
                bump(&self.counters.handshakes_completed);
                let _ = tx
                    .send(Ok(Connection {
                        inner: tls,
                        _slot: slot,
                    }))
                    .await;
            }
            Ok(Err(e)) => {
                bump(&self.counters.refused);
                if self.lines.refused.allow() {
                    tracing::warn!(%peer, error = %crate::tls::handshake_error(&e), "TLS handshake refused");
                }
            }
            Err(_) => {
                bump(&self.counters.timed_out);
                if self.lines.timed_out.allow() {
                    tracing::warn!(%peer, timeout = ?self.limits.handshake_timeout, "TLS handshake timed out");
                }
            }
        }
    }

    /// Logs a summary every [`REPORT_EVERY`] in which anything went wrong.
    async fn report(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut last = self.stats();
        let mut tick = tokio::time::interval(REPORT_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let now = self.stats();
            let d = now.since(&last);
            last = now;
            if !d.eventful() {
                continue;
            }
            macro_rules! summary {
                ($level:ident) => {
                    tracing::$level!(
                        accepted = d.accepted,
                        handshakes_completed = d.handshakes_completed,
                        shed = d.shed(),
                        shed_per_source = d.shed_per_source,
                        shed_all_full = d.shed_all_full,
                        shed_reclaimed = d.shed_reclaimed,
                        timed_out = d.timed_out,
                        refused = d.refused,
                        turned_away = d.turned_away,
                        accept_errors = d.accept_errors,
                        lines_suppressed = d.lines_suppressed,
                        handshakes_in_flight = d.handshakes_in_flight,
                        connections_open = d.connections_open,
                        max_connections = self.limits.max_connections,
                        max_handshakes = self.limits.max_handshakes,
                        "TCP listener in the last 10s"
                    )
                };
            }
            if d.under_pressure() {
                summary!(warn);
            } else {
                summary!(info);
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Connection<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Connection<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The wrapped stream's connection info, so handlers still see the peer's certificates.
impl<S: Connected> Connected for Connection<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

// ---------------------------------------------------------------------------------------
// Accept errors.

/// True for the `accept` errors that mean the process (or system) is out of
/// descriptors or memory: retrying at once would spin, since the pending connection
/// keeps the listener readable.
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().is_some_and(|code| {
        matches!(
            Errno::from_raw(code),
            Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM
        )
    })
}

/// Pauses after `accept` failures for want of descriptors: 5 ms, doubling to 1 s.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    /// The pause after one more failure.
    pub fn after_failure(&mut self) -> Duration {
        let d = Self::FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        d
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Accepts admin-socket connections for the gRPC server, backing off when out of
/// descriptors (tonic's own loop retries at once, which spins), until `stop` fires or
/// the server stops taking connections.
pub fn unix_incoming(
    listener: UnixListener,
    mut stop: watch::Receiver<bool>,
) -> ReceiverStream<io::Result<UnixStream>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let lines = LineBudget::new();
        let mut backoff = Backoff::default();
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = stop.changed() => return,
                _ = tx.closed() => return,
            };
            match accepted {
                Ok((s, _)) => {
                    backoff.reset();
                    if tx.send(Ok(s)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let pause = if is_out_of_descriptors(&e) {
                        backoff.after_failure()
                    } else {
                        Duration::ZERO
                    };
                    if lines.allow() {
                        tracing::warn!(error = %e, retry_in = ?pause, "admin socket: accept failed");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests;
