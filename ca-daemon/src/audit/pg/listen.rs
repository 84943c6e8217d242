//! `LISTEN breakglass_audit` on a connection of its own: every batch a writer commits sends
//! a notification (`pg_notify` in the batch's transaction, delivered at its commit), and
//! each one asks this daemon's writer to catch up at once. The writer's polling (every
//! `FOLLOW_EVERY`) is the fallback when a notification is lost (a broken connection, a
//! failover).

use std::time::Duration;

use super::connect::connect_notified;
use crate::config::postgres::PostgresSettings;

/// The channel every batch notifies.
pub const CHANNEL: &str = "breakglass_audit";
/// Wait before a lost listening connection is made again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// How often the listener checks that its writer still runs.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Listens while `alive` says the writer runs, calling `nudge` (ask the writer to catch
/// up) once per notification, with the log's size it carries, and after each
/// (re)connection, with none. Blocking: run it on a thread of its own.
pub(crate) fn listen(
    settings: &PostgresSettings,
    alive: impl Fn() -> bool,
    nudge: impl Fn(Option<u64>),
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(error = %e, "no runtime to LISTEN for other daemons' batches; \
                following the audit database by polling only");
            return;
        }
    };
    rt.block_on(async {
        loop {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let listening = async {
                let c = connect_notified(settings, Some(tx)).await?;
                c.batch_execute(&format!("LISTEN {CHANNEL}"))
                    .await
                    .map_err(|e| super::error::PgError::statement("LISTEN", &e))?;
                Ok::<_, super::error::PgError>(c)
            }
            .await;
            let _client = match listening {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot LISTEN on the audit database yet");
                    tokio::time::sleep(RECONNECT_AFTER).await;
                    if !alive() {
                        return;
                    }
                    continue;
                }
            };
            // Catch up on what was committed while not listening.
            nudge(None);
            loop {
                match tokio::time::timeout(CHECK_EVERY, rx.recv()).await {
                    Ok(Some(payload)) => nudge(payload.parse().ok()),
                    // The connection ended: make it again.
                    Ok(None) => break,
                    Err(_) if !alive() => return,
                    Err(_) => {}
                }
            }
            tokio::time::sleep(RECONNECT_AFTER).await;
            if !alive() {
                return;
            }
        }
    });
}
