//! `breakglass audit verify`: a copy of the log's directory offline, with only its public
//! key, or the daemon's log through the Audit API, trusting nothing it says unchecked.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use breakglass_proto::audit::merkle::leaf_hash;
use breakglass_proto::audit::recordings::RecordingIndex;
use breakglass_proto::audit::verify::ScanOptions;
use breakglass_proto::audit::{
    Checkpoint, Event, EventCode, Frontier, Hash, NoteVerifier, check_extends, scan_log,
    verify_dir, verify_inclusion,
};
use breakglass_proto::text;
use breakglass_proto::v1::{
    GetCheckpointRequest, GetConsistencyProofRequest, GetInclusionProofRequest,
};

use crate::commands::write_atomic;
use crate::error::CliError;
use crate::settings::Target;

use super::fetch::{audit_client, fetch_leaves};

/// Largest key or checkpoint file read.
const MAX_SMALL_FILE: u64 = 64 * 1024;

fn read_small(path: &Path, what: &str) -> Result<String, CliError> {
    use std::io::Read as _;
    let f = std::fs::File::open(path)
        .map_err(|e| CliError::Usage(format!("{what} {}: {e}", path.display())))?;
    let mut s = String::new();
    f.take(MAX_SMALL_FILE)
        .read_to_string(&mut s)
        .map_err(|e| CliError::Usage(format!("{what} {}: {e}", path.display())))?;
    Ok(s)
}

/// Reads a verifier key file (`log.pub`).
pub fn read_verifier(path: &Path) -> Result<NoteVerifier, CliError> {
    let text = read_small(path, "audit public key")?;
    NoteVerifier::parse(text.trim()).map_err(|e| {
        CliError::Usage(format!(
            "audit public key {}: {e} (expected the content of the log's log.pub)",
            path.display()
        ))
    })
}

fn counts_line(counts: &[(EventCode, u64)]) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(c, n)| format!("{} {n}", c.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn save_checkpoint(path: &Path, note: &str) -> Result<(), CliError> {
    write_atomic(path, note.as_bytes(), 0o644)
}

/// Verifies a log directory with only its public key; returns the report to print.
pub fn verify_offline(
    dir: &Path,
    key: &Path,
    since: Option<&Path>,
    save: Option<&Path>,
) -> Result<String, CliError> {
    let verifier = read_verifier(key)?;
    let saved = since
        .map(|p| read_small(p, "saved checkpoint"))
        .transpose()?;
    let report = verify_dir(dir, &verifier, saved.as_deref()).map_err(|e| {
        CliError::Verification(format!(
            "audit log {} does NOT verify: {}",
            dir.display(),
            text::escape_hazards(&e.to_string())
        ))
    })?;
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "OK: audit log {} verifies with key {}",
        dir.display(),
        verifier
    );
    let _ = writeln!(
        out,
        "  {} events in {} segment(s); {} signed checkpoints checked",
        s.size,
        s.segments.len(),
        s.checkpoints
    );
    if let Some(cp) = &s.last_checkpoint {
        let _ = writeln!(
            out,
            "  latest checkpoint: size {}, root {}",
            cp.checkpoint.size,
            b64(&cp.checkpoint.root)
        );
    }
    let _ = writeln!(out, "  events: {}", counts_line(&report.events_by_code));
    if let Some(c) = &report.extends {
        let _ = writeln!(
            out,
            "  extends the saved checkpoint of {} events (no rollback, no rewrite)",
            c.size
        );
    }
    for w in &report.warnings {
        let _ = writeln!(out, "  warning: {}", text::escape_hazards(&w.to_string()));
    }
    if let Some(p) = save {
        match &s.last_checkpoint {
            Some(cp) => {
                save_checkpoint(p, &cp.note)?;
                let _ = writeln!(
                    out,
                    "  saved the checkpoint of {} events to {} (use --since next time)",
                    cp.checkpoint.size,
                    p.display()
                );
            }
            None => {
                let _ = writeln!(out, "  nothing saved: the log is empty");
            }
        }
    }
    Ok(out)
}

fn b64(h: &Hash) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(h)
}

fn proof_hashes(v: Vec<Vec<u8>>, what: &str) -> Result<Vec<Hash>, CliError> {
    v.into_iter()
        .map(|h| {
            h.try_into().map_err(|_| {
                CliError::Verification(format!("{what}: a proof hash is not 32 bytes"))
            })
        })
        .collect()
}

/// Verifies the daemon's log through the API; returns the report to print.
///
/// Downloads the latest checkpoint and checks its signature (with the pinned key if
/// `key` is given), downloads every entry, checks that each decodes and that the root
/// recomputed from them is the checkpoint's, checks inclusion proofs of the first and last
/// entry, and, with `since`, that the log extends the saved checkpoint — both from the
/// entries and with the daemon's consistency proof. Saves the checkpoint to `save`.
pub async fn verify_remote(
    target: &Target,
    key: Option<&Path>,
    since: Option<&Path>,
    save: Option<&Path>,
) -> Result<String, CliError> {
    let mut out = String::new();
    let mut client = audit_client(target)?;
    let status = |s| crate::connect::failure(target, s);
    let cp_resp = client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let verifier = match key {
        Some(k) => {
            let pinned = read_verifier(k)?;
            if pinned.to_string() != cp_resp.verifier_key.trim() {
                return Err(CliError::Verification(format!(
                    "the daemon's audit key {} is not the pinned key {} from {}",
                    text::escaped(cp_resp.verifier_key.trim()),
                    pinned,
                    k.display()
                )));
            }
            pinned
        }
        None => {
            let v = NoteVerifier::parse(cp_resp.verifier_key.trim()).map_err(|e| {
                CliError::Verification(format!("the daemon's audit key does not parse: {e}"))
            })?;
            let _ = writeln!(
                out,
                "note: trusting the audit key the daemon sent ({v}); pin it with --key log.pub"
            );
            v
        }
    };
    let cp = verifier
        .verify_checkpoint(&cp_resp.checkpoint)
        .map_err(|e| {
            CliError::Verification(format!(
                "the daemon's checkpoint does not verify with key {verifier}: {e}"
            ))
        })?;
    let saved: Option<(Checkpoint, PathBuf)> = match since {
        Some(p) => {
            let text = read_small(p, "saved checkpoint")?;
            let c = verifier.verify_checkpoint(&text).map_err(|e| {
                CliError::Verification(format!(
                    "saved checkpoint {}: {e} (it must be signed by the same key)",
                    p.display()
                ))
            })?;
            Some((c, p.to_owned()))
        }
        None => None,
    };
    // Rolled back (smaller than the saved checkpoint): no proof can help, say so first.
    if let Some((s, p)) = &saved
        && s.size > cp.size
        && let Err(e) = check_extends(s, &cp, &[])
    {
        return Err(CliError::Verification(format!(
            "the daemon's log does not extend the saved checkpoint {}: {e}",
            p.display()
        )));
    }

    // Every entry: decodes canonically, and together they give the signed root.
    let leaves = fetch_leaves(&mut client, target, 0, cp.size).await?;
    let mut frontier = Frontier::new();
    let mut root_at_saved = None;
    let mut counts: HashMap<EventCode, u64> = HashMap::new();
    let mut recordings = RecordingIndex::default();
    let want = saved.as_ref().map(|(s, _)| s.size);
    if want == Some(0) {
        root_at_saved = Some(frontier.root());
    }
    let mut hashes = Vec::with_capacity(leaves.len());
    for (i, leaf) in leaves.iter().enumerate() {
        let e =
            Event::decode(leaf).map_err(|e| CliError::Verification(format!("entry {i}: {e}")))?;
        *counts.entry(e.code()).or_default() += 1;
        recordings.apply(i as u64, &e);
        let h = leaf_hash(leaf);
        hashes.push(h);
        frontier.push(h);
        if Some(frontier.size()) == want {
            root_at_saved = Some(frontier.root());
        }
    }
    if frontier.root() != cp.root {
        return Err(CliError::Verification(format!(
            "the root recomputed from the {} entries the daemon sent differs from its signed \
             checkpoint's: an entry was changed or the daemon serves a different log",
            cp.size
        )));
    }
    let _ = writeln!(
        out,
        "OK: audit log of {} verifies (key {verifier})",
        target.shown()
    );
    let _ = writeln!(
        out,
        "  checkpoint: {} events, root {}, signature OK",
        cp.size,
        b64(&cp.root)
    );
    let _ = writeln!(
        out,
        "  {} entries downloaded; each decodes; their root is the checkpoint's",
        cp.size
    );

    // Inclusion proofs of a few entries, checked against the signed root.
    let mut probes = vec![0, cp.size.saturating_sub(1), cp.size / 2];
    if let Some(s) = want
        && s < cp.size
    {
        probes.push(s);
    }
    probes.sort_unstable();
    probes.dedup();
    if cp.size > 0 {
        for &i in &probes {
            let p = client
                .get_inclusion_proof(GetInclusionProofRequest {
                    index: i,
                    tree_size: cp.size,
                })
                .await
                .map_err(status)?
                .into_inner();
            let proof = proof_hashes(p.hashes, "inclusion proof")?;
            verify_inclusion(&hashes[i as usize], i, cp.size, &proof, &cp.root).map_err(|e| {
                CliError::Verification(format!("inclusion proof of entry {i}: {e}"))
            })?;
        }
        let _ = writeln!(
            out,
            "  inclusion proofs of entries {} OK",
            probes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    if let Some((s, p)) = &saved {
        if root_at_saved != Some(s.root) {
            return Err(CliError::Verification(format!(
                "the log's root at size {} differs from the saved checkpoint {}: history was \
                 rewritten (fork)",
                s.size,
                p.display()
            )));
        }
        let proof = client
            .get_consistency_proof(GetConsistencyProofRequest {
                old_size: s.size,
                new_size: cp.size,
            })
            .await
            .map_err(status)?
            .into_inner();
        let proof = proof_hashes(proof.hashes, "consistency proof")?;
        check_extends(s, &cp, &proof).map_err(|e| {
            CliError::Verification(format!(
                "the daemon's log does not extend the saved checkpoint {}: {e}",
                p.display()
            ))
        })?;
        let _ = writeln!(
            out,
            "  extends the saved checkpoint of {} events ({}): entries and consistency proof agree",
            s.size,
            p.display()
        );
    }
    let mut counts: Vec<(EventCode, u64)> = counts.into_iter().collect();
    counts.sort();
    let _ = writeln!(out, "  events: {}", counts_line(&counts));
    // Every stored recording, fetched and checked against its session's record.
    let checked = super::recording::check_remote(&mut client, target, &recordings).await?;
    checked.finish(&mut out)?;
    if let Some(p) = save {
        save_checkpoint(p, &cp_resp.checkpoint)?;
        let _ = writeln!(
            out,
            "  saved the checkpoint of {} events to {} (use --since next time)",
            cp.size,
            p.display()
        );
    }
    Ok(out)
}

/// Checks the recordings stored beside a log directory (or in `recordings`) against the
/// log's session records; appends what it found to `out`. Fails naming every session whose
/// recording does not match or is missing.
pub fn verify_recordings_offline(
    dir: &Path,
    key: &Path,
    recordings: Option<&Path>,
    out: &mut String,
) -> Result<(), CliError> {
    let events = read_dir_events(dir, key)?;
    let index = RecordingIndex::of(events.iter().map(|(i, e)| (*i, e)));
    let checked = match super::recording::recordings_dir(dir, recordings) {
        Some(d) => super::recording::check_dir(&index, &d),
        None => super::recording::not_checked(&index),
    };
    checked.finish(out)
}

/// Reads and verifies a log directory, returning its events.
pub fn read_dir_events(dir: &Path, key: &Path) -> Result<Vec<(u64, Event)>, CliError> {
    let verifier = read_verifier(key)?;
    let mut events = Vec::new();
    scan_log(
        dir,
        &verifier,
        &ScanOptions {
            every_signature: true,
            roots_at: Vec::new(),
        },
        |e| {
            events.push((e.index, Event::decode(e.leaf).map_err(|d| d.to_string())?));
            Ok(())
        },
    )
    .map_err(|e| {
        CliError::Verification(format!(
            "audit log {} does NOT verify: {}",
            dir.display(),
            text::escape_hazards(&e.to_string())
        ))
    })?;
    Ok(events)
}
