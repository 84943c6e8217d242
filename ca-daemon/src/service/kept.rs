//! Issued certificates kept in memory for `Fetch` and `WatchRequest`, until they expire:
//! ordered by expiry, so that keeping one and dropping the expired ones is O(log n) each,
//! never a scan. A certificate no longer kept is signed again from its recorded grant
//! ([`super::Service::certificate_of`]).

use std::collections::{BTreeSet, HashMap};

use breakglass_proto::audit::RequestId;
use breakglass_proto::v1::RequestCertificateResponse;

/// The kept certificates.
#[derive(Debug, Default)]
pub struct Kept {
    by_request: HashMap<RequestId, RequestCertificateResponse>,
    /// `(valid_before, request)`, soonest first.
    by_expiry: BTreeSet<(i64, RequestId)>,
}

impl Kept {
    /// Keeps the certificate of `id`, after dropping those expired at `now` (Unix seconds).
    /// One already expired is not kept.
    pub fn keep(&mut self, id: RequestId, c: RequestCertificateResponse, now: i64) {
        self.drop_expired(now);
        if c.valid_before <= now {
            return;
        }
        if let Some(old) = self.by_request.insert(id, c.clone()) {
            self.by_expiry.remove(&(old.valid_before, id));
        }
        self.by_expiry.insert((c.valid_before, id));
    }

    /// The certificate of `id`, if kept and valid at `now`.
    pub fn get(&self, id: RequestId, now: i64) -> Option<RequestCertificateResponse> {
        self.by_request
            .get(&id)
            .filter(|c| c.valid_before > now)
            .cloned()
    }

    /// Drops the certificates expired at `now`.
    pub fn drop_expired(&mut self, now: i64) {
        while let Some(&(until, id)) = self.by_expiry.first()
            && until <= now
        {
            self.by_expiry.pop_first();
            self.by_request.remove(&id);
        }
    }

    /// Number of certificates kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_request.len()
    }

    /// True when none is kept.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_request.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(valid_before: i64) -> RequestCertificateResponse {
        RequestCertificateResponse {
            valid_before,
            ..RequestCertificateResponse::default()
        }
    }

    #[test]
    fn the_kept_certificates_never_outnumber_the_live_ones() {
        let mut k = Kept::default();
        // One certificate of 60 s per second for an hour: at most 60 are ever kept.
        for t in 0..3600i64 {
            k.keep(RequestId(t as u64), cert(t + 60), t);
            assert!(k.len() <= 60, "{} kept at {t}", k.len());
        }
        assert!(k.get(RequestId(3599), 3599).is_some());
        assert!(k.get(RequestId(3000), 3599).is_none(), "expired, dropped");
        k.drop_expired(10_000);
        assert!(k.is_empty());
        // Kept again (after a restart, signed anew): replaced, not doubled.
        k.keep(RequestId(1), cert(20_000), 10_000);
        k.keep(RequestId(1), cert(20_001), 10_000);
        assert_eq!(k.len(), 1);
        k.drop_expired(20_000);
        assert_eq!(k.len(), 1, "the replaced expiry does not drop the new one");
        // An expired certificate is not kept at all.
        k.keep(RequestId(2), cert(5), 10_000);
        assert_eq!(k.len(), 1);
    }
}
