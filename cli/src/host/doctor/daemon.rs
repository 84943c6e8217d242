//! The daemon and the clock: reachable with this host's identity, the CA's keys and KRL
//! version (for the sshd and module checks), the clock within the daemon's backdating
//! window, and the CA's audit log as this host witnessed it.
#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::{GetCaPublicKeysRequest, GetRevocationListRequest, WhoAmIRequest};
use ssh_key::{HashAlg, PublicKey};

use super::report::{Report, bg_cmd};
use crate::connect;
use crate::error::CliError;
use crate::settings::Overrides;

/// What the daemon told us.
#[derive(Debug, Default)]
pub(super) struct DaemonView {
    /// The CA's current public keys (signing key first), with fingerprint and role.
    pub(super) keys: Option<Vec<(PublicKey, String, bool)>>,
    /// The version of the KRL the daemon serves.
    pub(super) krl_version: Option<u64>,
    /// The daemon has revocations it could not publish in a KRL yet.
    pub(super) krl_behind: bool,
}

pub(super) async fn check_daemon(report: &mut Report, overrides: &Overrides) -> DaemonView {
    const A: &str = "daemon";
    let mut view = DaemonView::default();
    let config_fix = "pass --config with this host's client config (the CA's address and \
                      certificate, this host's host://NAME certificate and key), e.g. \
                      --config /etc/breakglass/host.toml"
        .to_owned();
    let target = match overrides.resolve() {
        Ok(t) => t,
        Err(e) => {
            report.fail(
                A,
                format!("no connection settings for breakglass-ca: {e}"),
                config_fix,
            );
            return view;
        }
    };
    let shown = target.shown();
    let channel = match connect::channel(&target) {
        Ok(c) => c,
        Err(e) => {
            report.fail(
                A,
                format!("cannot set up the connection to {shown}: {e}"),
                config_fix,
            );
            return view;
        }
    };
    let sent = SystemTime::now();
    let who = BreakGlassClient::new(channel.clone())
        .who_am_i(WhoAmIRequest {})
        .await;
    let received = SystemTime::now();
    let who = match who {
        Ok(r) => r.into_inner(),
        Err(s) => {
            report.fail(
                A,
                format!(
                    "breakglass-ca not reachable with this host's identity: {}",
                    connect::failure(&target, s).to_string().replace('\n', " ")
                ),
                format!(
                    "start breakglass-ca or fix the settings, then check with `{} whoami`",
                    bg_cmd(overrides)
                ),
            );
            return view;
        }
    };
    if who.identity.starts_with("host://") {
        report.ok(
            A,
            format!(
                "breakglass-ca at {shown} reachable as {} (via {})",
                breakglass_proto::text::escaped(&who.identity),
                breakglass_proto::text::escaped(&who.transport)
            ),
        );
    } else {
        report.fail(
            A,
            format!(
                "breakglass-ca at {shown} sees this host as {:?}, a person's or admin identity, \
                 not a host identity (host://NAME): session records and KRL syncs need this host's own certificate",
                who.identity
            ),
            config_fix,
        );
    }
    check_clock(report, &who, sent, received);

    match BreakGlassClient::new(channel.clone())
        .get_ca_public_keys(GetCaPublicKeysRequest {})
        .await
    {
        Ok(r) => {
            let mut keys = Vec::new();
            for k in r.into_inner().keys {
                match PublicKey::from_openssh(&k.public_key) {
                    Ok(p) => {
                        let fp = p.fingerprint(HashAlg::Sha256).to_string();
                        keys.push((p, fp, k.signing));
                    }
                    Err(e) => report.fail(
                        A,
                        format!("breakglass-ca sent a CA key that does not parse: {e}"),
                        None,
                    ),
                }
            }
            view.keys = Some(keys);
        }
        Err(s) => report.fail(
            A,
            format!("cannot fetch the CA keys: {}", connect::failure(&target, s)),
            None,
        ),
    }
    match RevocationsClient::new(channel)
        .get_revocation_list(GetRevocationListRequest {})
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            view.krl_version = Some(r.version);
            if let Some(why) = crate::host::krl_sync::unpublished(&r) {
                view.krl_behind = true;
                report.warn(
                    A,
                    format!("no newer KRL is available: {why}"),
                    "nothing to fix on this host: the CA's operators free space on (or fix) the disk of its audit log ([audit] dir)".to_owned(),
                );
            }
        }
        Err(s) => report.fail(
            A,
            format!("cannot fetch the KRL: {}", connect::failure(&target, s)),
            None,
        ),
    }
    view
}

/// The CA's audit log as this host witnessed it (`crate::host::witness`).
pub(super) async fn check_witness(
    report: &mut Report,
    args: &crate::host::witness::WitnessArgs,
    overrides: &Overrides,
    bg: &str,
) {
    use crate::host::witness::{FIX, Judgement, judge};
    const A: &str = "witness";
    let Ok(target) = overrides.resolve() else {
        return; // Already a FAIL of the daemon check.
    };
    let state = args.state_path();
    let fix = FIX.replace("breakglass host", &format!("{bg} host"));
    match judge(&target, args).await {
        Ok(Judgement::NotYet) => report.warn(
            A,
            format!(
                "this host has not witnessed the CA's audit log yet (no {})",
                state.display()
            ),
            format!(
                "{bg} host witness (breakglass-krl-sync.timer does it every minute with sync-krl); set audit_key in the client config to pin the log's key from a copy of log.pub"
            ),
        ),
        Ok(Judgement::Failed(f)) => report.fail(
            A,
            format!(
                "log_consistency_failed at {}: {} (recorded in {})",
                breakglass_proto::audit::fields::rfc3339(f.at),
                f.message,
                state.display()
            ),
            fix,
        ),
        Ok(Judgement::NotExtending(why)) => report.fail(
            A,
            format!(
                "the CA's audit log at {} does not extend the checkpoint this host saw \
                 ({}): {why}",
                target.shown(),
                state.display()
            ),
            fix,
        ),
        Ok(Judgement::Extends { saved, now, halted }) => {
            report.ok(
                A,
                format!(
                    "the CA's audit log extends the checkpoint this host saw ({saved} events, \
                     {}); now {now} events",
                    state.display()
                ),
            );
            if let Some(h) = halted {
                report.warn(
                    A,
                    format!("breakglass-ca says {h}"),
                    "see the CA's alerts: another host found the log rolled back or forked".to_owned(),
                );
            }
        }
        // Unreachable: the daemon check above already FAILs and says why.
        Err(e @ CliError::Unavailable(_)) => report.warn(
            A,
            format!(
                "cannot check the CA's audit log against {}: {}",
                state.display(),
                e.to_string().replace('\n', " ")
            ),
            None,
        ),
        Err(e) => report.fail(
            A,
            format!(
                "cannot check the CA's audit log against {}: {}",
                state.display(),
                e.to_string().replace('\n', " ")
            ),
            None,
        ),
    }
}

fn unix_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the clock check concludes from a skew (local minus daemon, seconds).
#[derive(Debug, PartialEq)]
enum Clock {
    Within,
    Outside,
}

/// The daemon reports whole seconds: allow one second for rounding and the round trip.
fn judge_skew(skew: f64, backdate: i64) -> Clock {
    if skew.abs() <= backdate as f64 + 1.0 {
        Clock::Within
    } else {
        Clock::Outside
    }
}

fn check_clock(
    report: &mut Report,
    who: &breakglass_proto::v1::WhoAmIResponse,
    sent: SystemTime,
    received: SystemTime,
) {
    const A: &str = "daemon";
    if who.server_time_unix == 0 {
        report.warn(
            A,
            "clock not checked: this breakglass-ca does not report its time (upgrade it)".into(),
            None,
        );
        return;
    }
    // The daemon read its clock somewhere between sending and receiving, and sent whole
    // seconds (rounded down: on average half a second early).
    let local = (unix_f64(sent) + unix_f64(received)) / 2.0;
    let skew = local - (who.server_time_unix as f64 + 0.5);
    let behind_ahead = if skew < 0.0 { "behind" } else { "ahead of" };
    match judge_skew(skew, who.backdate_seconds) {
        Clock::Within => report.ok(
            A,
            format!(
                "clock {:.0}s {behind_ahead} the CA's, within its {}s backdating window",
                skew.abs(),
                who.backdate_seconds
            ),
        ),
        Clock::Outside => report.fail(
            A,
            format!(
                "clock {:.0}s {behind_ahead} the CA's, more than its {}s backdating window: {}",
                skew.abs(),
                who.backdate_seconds,
                if skew < 0.0 {
                    "fresh certificates are not yet valid here"
                } else {
                    "certificates expire here before their time"
                }
            ),
            "synchronise the clock (e.g. `chronyc makestep` or `systemctl restart systemd-timesyncd`) and keep NTP running on this host and the CA".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_skew_is_judged_against_the_backdating_window() {
        assert_eq!(judge_skew(0.4, 120), Clock::Within);
        assert_eq!(judge_skew(-120.9, 120), Clock::Within);
        assert_eq!(judge_skew(-122.0, 120), Clock::Outside);
        assert_eq!(judge_skew(300.0, 120), Clock::Outside);
        assert_eq!(judge_skew(1.5, 0), Clock::Outside);
    }
}
