//! One connection to the database from `[postgres]`: the URL (several hosts, tried in
//! order; `target_session_attrs=read-write` picks the primary), the password file, TLS
//! through our rustls, the connect and statement timeouts.

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::UnboundedSender;
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client, Connection};

use super::error::{PgError, db_reason};
use crate::config::postgres::{DbTls, PostgresSettings, redacted_url};

/// Connects as `[postgres]` says, and sets the session's `statement_timeout`. The
/// connection's I/O runs on a spawned task that ends when the client is dropped.
pub async fn connect(s: &PostgresSettings) -> Result<Client, PgError> {
    connect_notified(s, None).await
}

/// [`connect`], handing the payload of every notification the session gets (`LISTEN`) to
/// `notices`; the sender is dropped when the connection ends.
pub async fn connect_notified(
    s: &PostgresSettings,
    notices: Option<UnboundedSender<String>>,
) -> Result<Client, PgError> {
    let url = redacted_url(&s.url);
    let fail = |reason: String| PgError::Connect {
        url: url.clone(),
        reason,
    };
    let mut cfg: tokio_postgres::Config = s
        .url
        .parse()
        .map_err(|e: tokio_postgres::Error| fail(db_reason(&e)))?;
    cfg.connect_timeout(s.connect_timeout);
    if let Some(path) = &s.password_file {
        let pw = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("password_file {}: {e}", path.display())))?;
        cfg.password(pw.trim_end_matches(['\n', '\r']));
    }
    let client = match s.tls {
        DbTls::Disable => {
            cfg.ssl_mode(SslMode::Disable);
            let (client, conn) = cfg
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| fail(db_reason(&e)))?;
            tokio::spawn(drive(conn, notices));
            client
        }
        DbTls::VerifyFull => {
            cfg.ssl_mode(SslMode::Require);
            let tls =
                client_config_trusting(&s.ca_file).map_err(|e| fail(format!("ca_file: {e}")))?;
            let (client, conn) = cfg
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .await
                .map_err(|e| fail(db_reason(&e)))?;
            tokio::spawn(drive(conn, notices));
            client
        }
    };
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            s.statement_timeout.as_millis()
        ))
        .await
        .map_err(|e| PgError::statement("setting statement_timeout", &e))?;
    Ok(client)
}

/// Runs a connection's I/O until it ends, handing notifications' payloads to `notices`.
async fn drive<S, T>(mut conn: Connection<S, T>, notices: Option<UnboundedSender<String>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                if let Some(tx) = &notices {
                    let _ = tx.send(n.payload().to_owned());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %db_reason(&e), "PostgreSQL connection ended");
                return;
            }
            None => return,
        }
    }
}

/// A TLS client configuration (ring, safe protocol versions, no client certificate) that
/// trusts the CA certificates of the PEM `bundle`; an error names the file and what is wrong.
fn client_config_trusting(bundle: &Path) -> Result<rustls::ClientConfig, String> {
    let pem = std::fs::read(bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: {e}", bundle.display()))?;
        // A bundle may hold certificates webpki cannot use; the others still count.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("{}: no usable CA certificate", bundle.display()));
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS settings: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
