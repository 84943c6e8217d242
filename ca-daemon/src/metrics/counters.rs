//! The counters, histograms and gauges updated where things happen: cheap to update,
//! shared (the handles are reference-counted) with the [`super::Exporter`]'s registry.
//! A leaf: the service and the other choke points use it, it uses none of them.

use std::time::Duration;

use breakglass_proto::audit::{Event, EventKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// What became of a certificate request (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A certificate was issued (at once, or after its approvals).
    Issued,
    /// The request was recorded and waits for approval.
    Pending,
    /// Policy refused it.
    Refused,
    /// The audit log did not take its event: nothing was issued or recorded.
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Issued => "issued",
            Outcome::Pending => "pending",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }
}

/// The labels of `breakglass_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    tier: String,
    outcome: &'static str,
}

/// A `result` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabel {
    pub(super) result: &'static str,
}

/// The tier label of a refusal that no tier concerns.
const NO_TIER: &str = "none";

/// Counters and histograms updated where things happen. Cheap to update; the handles are
/// shared with the [`Exporter`]'s registry.
#[derive(Debug)]
pub struct Metrics {
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) issuance_seconds: Histogram,
    pub(super) append_seconds: Histogram,
    pub(super) host_records: Family<ResultLabel, Counter>,
    pub(super) revocation_streams: Gauge,
    /// Configuration reloads by result ([`crate::reload`]).
    pub(super) config_reloads: Family<ResultLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            // 1 ms .. ~16 s: a signature and one fdatasync, up to a struggling disk.
            issuance_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            // 100 µs .. ~3.3 s: the commit the caller waits for, and the queue before it.
            append_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            host_records: Family::default(),
            revocation_streams: Gauge::default(),
            config_reloads: Family::default(),
        }
    }
}

impl Metrics {
    /// Counts one request of `tier` (`None`: refused before any tier applied) ending so.
    pub fn request(&self, tier: Option<&str>, outcome: Outcome) {
        self.requests
            .get_or_create(&RequestLabels {
                tier: tier.unwrap_or(NO_TIER).to_owned(),
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Counts what `events` say of requests once the log took them (`recorded`) or refused
    /// them: a `RequestCreated` that waits for approvals is pending, a `GrantIssued` issued;
    /// either one refused by the log is an error (once per request: the `RequestCreated`
    /// of a request issued at once is only counted through its grant).
    /// `took` is how long the caller waited for the log's answer.
    pub fn recorded(&self, events: &[Event], recorded: bool, took: Duration) {
        self.append_seconds.observe(took.as_secs_f64());
        for event in events {
            let (tier, outcome) = match &event.kind {
                EventKind::RequestCreated(c) if c.approvals_required > 0 => {
                    (&c.tier, Outcome::Pending)
                }
                EventKind::GrantIssued(g) => (&g.tier, Outcome::Issued),
                _ => continue,
            };
            let outcome = if recorded { outcome } else { Outcome::Error };
            self.request(Some(tier), outcome);
        }
    }

    /// Records how long issuing one certificate took (signing and its durable record).
    pub fn issued_in(&self, took: Duration) {
        self.issuance_seconds.observe(took.as_secs_f64());
    }

    /// Counts host records received in one call, by what became of them
    /// (`appended`, `duplicate`, `rejected`).
    pub fn host_record(&self, result: &'static str) {
        self.host_records
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts one configuration reload (SIGHUP) by its result: `reloaded`, `invalid`,
    /// `needs_restart` or `error` (the log did not take its event).
    pub fn config_reload(&self, result: &'static str) {
        self.config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts a revocation stream as connected until the returned guard is dropped.
    #[must_use]
    pub fn stream_connected(&self) -> StreamGuard {
        self.revocation_streams.inc();
        StreamGuard(self.revocation_streams.clone())
    }
}

/// A connected revocation stream; dropping it counts the stream as gone.
#[derive(Debug)]
pub struct StreamGuard(Gauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
