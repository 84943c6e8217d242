//! Metrics and probes for operators: what the daemon counts where things happen
//! ([`Metrics`], updated at the few choke points: [`Service::record`], refusals, issuance,
//! the revocation stream, host records), what it reads from its state at each scrape
//! ([`Exporter`]), whether it can serve ([`readiness`]), and the plain-HTTP listener that
//! serves all three ([`listener`]: `/metrics`, `/healthz`, `/readyz`).
//!
//! Labels carry only bounded, configured values (tier names, fixed outcomes): never an
//! identity, a host or a reason (cardinality and privacy).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::service::Service;

pub mod counters;
pub mod listener;

use self::counters::ResultLabel;
pub use self::counters::{Metrics, Outcome, StreamGuard};

/// The metrics registry of one daemon, in the Prometheus/OpenMetrics text format.
#[derive(Debug)]
pub struct Exporter {
    registry: Registry,
}

impl Exporter {
    /// The registry over `service`: its counters, the audit log's commit measurements, and
    /// what is read from the state at each scrape.
    #[must_use]
    pub fn new(service: Arc<Service>) -> Self {
        let mut registry = Registry::with_prefix("breakglass");
        let m = service.metrics();
        registry.register(
            "requests",
            "Certificate requests by tier and outcome (issued, pending, refused, error)",
            m.requests.clone(),
        );
        registry.register(
            "issuance_duration_seconds",
            "Time to issue one certificate: signing and its durable audit record",
            m.issuance_seconds.clone(),
        );
        registry.register(
            "host_records",
            "Host session records received, by result (appended, duplicate, rejected)",
            m.host_records.clone(),
        );
        registry.register(
            "revocation_streams",
            "Revocation streams (watch-revocations) connected now",
            m.revocation_streams.clone(),
        );
        registry.register(
            "audit_append_duration_seconds",
            "Time a caller waits for its events to be durable: the queue and the commit",
            m.append_seconds.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP) by result (reloaded, invalid, needs_restart, error)",
            m.config_reloads.clone(),
        );
        let stats = service.audit.commit_stats();
        registry.register(
            "audit_commit_duration_seconds",
            "Time of one audit log commit: one write, one fdatasync, one signed checkpoint",
            stats.commit_seconds.clone(),
        );
        registry.register(
            "audit_batch_events",
            "Events per audit log commit (group commit size)",
            stats.batch_events.clone(),
        );
        registry.register_collector(Box::new(Live(service)));
        Self { registry }
    }

    /// The current values, as the `/metrics` body.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// What is read from the daemon's state at each scrape.
#[derive(Debug)]
struct Live(Arc<Service>);

fn gauge<T>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: T,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<T>: EncodeMetric,
{
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let svc = &self.0;
        let now = SystemTime::now();
        let unix = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (pending, live, krl_version) = {
            let st = svc.state();
            let live = st
                .grants
                .values()
                .filter(|g| g.revoked.is_none() && g.issued.valid_before > unix)
                .count();
            (st.pending.len(), live, st.krl_version)
        };
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauge(
            &mut encoder,
            "requests_pending",
            "Requests waiting for approval",
            count(pending),
        )?;
        gauge(
            &mut encoder,
            "grants_live",
            "Grants neither expired nor revoked",
            count(live),
        )?;
        gauge(
            &mut encoder,
            "krl_version",
            "Version of the latest published key revocation list",
            i64::try_from(krl_version).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "audit_log_entries",
            "Durable events in the audit log (its tree size)",
            i64::try_from(svc.audit.size()).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "audit_log_bytes",
            "Bytes of the audit log's segment files",
            i64::try_from(svc.audit.bytes()).unwrap_or(i64::MAX),
        )?;
        // An empty log has no checkpoint to age: the series is left out.
        if let Some(age) = svc.audit.commit_stats().last_checkpoint_age(now) {
            gauge(
                &mut encoder,
                "audit_last_checkpoint_age_seconds",
                "Seconds since the newest durable checkpoint was written",
                age.as_secs_f64(),
            )?;
        }
        let counters = svc.notifier().counters();
        let read = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let (delivered, given_up, dropped, failed_attempts) = (
            read(&counters.delivered),
            read(&counters.given_up),
            read(&counters.dropped),
            read(&counters.failed_attempts),
        );
        let deliveries = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "webhook_deliveries",
            "Webhook notices by result: delivered, failed (given up after the retries), \
             dropped (queue full)",
            None,
            deliveries.metric_type(),
        )?;
        for (result, n) in [
            ("delivered", delivered),
            ("failed", given_up),
            ("dropped", dropped),
        ] {
            ConstCounter::new(n).encode(family.encode_family(&ResultLabel { result })?)?;
        }
        let retries = ConstCounter::new(failed_attempts.saturating_sub(given_up));
        retries.encode(encoder.encode_descriptor(
            "webhook_retries",
            "Webhook POST attempts that failed and were tried again",
            None,
            retries.metric_type(),
        )?)
    }
}

/// Why the daemon cannot serve now (each reason one line), or `Ok` when it can: the audit
/// log takes writes (its writer runs and its directory takes a synced write) and issuance
/// is not halted by a log fork. The CA key is loaded before the daemon binds anything, so
/// a serving daemon always has its signer.
///
/// Blocking (the probe writes and syncs a small file): call it off the async workers.
pub fn readiness(service: &Service) -> Result<(), Vec<String>> {
    let mut why = Vec::new();
    if let Some(e) = service.audit.unwritable() {
        why.push(e);
    }
    if let Some(halt) = service.halted() {
        why.push(crate::error::Error::Halted(halt).to_string());
    }
    if why.is_empty() { Ok(()) } else { Err(why) }
}
