//! The one lock across daemons for the decisions that must see every daemon's entries
//! (approve, deny, cancel, expire, the emergency count, reviews: what `Service::transitions`
//! serialises within one daemon). `docs/several-daemons.md`, "Linearizable decisions".
//!
//! A transaction-level advisory lock on a connection of its own: taken, then the log's size
//! read, so the caller can wait until its state holds that much before it decides; released
//! by ending the transaction when the guard is dropped. A daemon that dies while holding
//! it releases it with its connection.

use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_postgres::Client;

use super::connect::connect;
use super::error::PgError;
use crate::config::postgres::PostgresSettings;

/// Key of the advisory lock ("bgdecide" in ASCII).
const DECISION_LOCK: i64 = 0x6267_6465_6369_6465;

/// The connection the lock is taken on (made when first needed, again after it broke).
#[derive(Clone)]
pub(crate) struct DecisionLock {
    settings: PostgresSettings,
    client: Arc<Mutex<Option<Client>>>,
}

impl std::fmt::Debug for DecisionLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLock").finish_non_exhaustive()
    }
}

/// The lock, held until dropped.
pub struct DecisionGuard {
    client: Option<OwnedMutexGuard<Option<Client>>>,
}

impl std::fmt::Debug for DecisionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionGuard").finish_non_exhaustive()
    }
}

impl Drop for DecisionGuard {
    fn drop(&mut self) {
        let Some(mut guard) = self.client.take() else {
            return;
        };
        // Ending the transaction releases the lock; the next taker waits for the
        // connection, so it never runs before this.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(c) = guard.as_ref()
                    && c.batch_execute("ROLLBACK").await.is_err()
                {
                    *guard = None;
                }
            });
        } else {
            *guard = None;
        }
    }
}

impl DecisionLock {
    pub(crate) fn new(settings: PostgresSettings) -> Self {
        Self {
            settings,
            client: Arc::new(Mutex::new(None)),
        }
    }

    /// Takes the lock (waiting for other daemons' decisions), and returns it with the
    /// log's size then: every entry the decision must see is below it.
    pub(crate) async fn lock(&self) -> Result<(DecisionGuard, u64), PgError> {
        let mut guard = Arc::clone(&self.client).lock_owned().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.settings).await?);
        }
        let Some(c) = guard.as_ref() else {
            return Err(PgError::Statement {
                what: "taking the decision lock".into(),
                reason: "no connection".into(),
            });
        };
        let taken = async {
            c.batch_execute("BEGIN").await?;
            c.execute("SELECT pg_advisory_xact_lock($1)", &[&DECISION_LOCK])
                .await?;
            let size: i64 = c
                .query_one("SELECT size FROM audit_head", &[])
                .await?
                .get(0);
            Ok::<_, tokio_postgres::Error>(u64::try_from(size).unwrap_or(0))
        }
        .await;
        match taken {
            Ok(size) => Ok((
                DecisionGuard {
                    client: Some(guard),
                },
                size,
            )),
            Err(e) => {
                let err = PgError::statement("taking the decision lock", &e);
                // A broken connection, or a transaction left open: start afresh next time.
                *guard = None;
                Err(err)
            }
        }
    }
}
