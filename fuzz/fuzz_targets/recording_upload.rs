//! Recording uploads as the daemon decides them (`ca-daemon/src/recordings/`): a sequence
//! of upload calls, each a sequence of messages (session, offset, bytes) that may end
//! normally or be cut, driven through the daemon's own decisions
//! (`recordings::UploadCheck`: where a call must start, which message is appended, which
//! breaks the call, when the recording is refused as too long, when it is complete) and,
//! once complete, its chain check against the digest the session record claims
//! (`audit::recordings::check_recording`); the `.part` file is a byte vector here.
//! Besides, the recording chain (`proto::recording::ChainHasher`, fed in the pieces the
//! upload arrived in, across resumed calls) is checked against the chain as the contract
//! states it, computed here with SHA-256 directly.
//!
//! Input (`Arbitrary`): the recorded file (its size chosen up to three chain chunks and a
//! bit, filled from the input's bytes), which digest the log claims (the true one, or a
//! wrong size or hash), and the calls.
//!
//! Properties: what the daemon holds never exceeds the record's size and is exactly what it
//! appended; a recording is stored only when its bytes are the recorded file under the true
//! digest (never under a wrong one), once; whatever the calls did, an honest host then gets
//! the recording stored with at most two more uploads (resume from what is held, or start
//! over after a refusal); the chain of the stored bytes, fed in upload pieces, is the
//! contract's chain.
#![no_main]

use breakglass_ca::recordings::{MAX_CHUNK_BYTES, Step, UploadCheck};
use breakglass_proto::audit::recordings::check_recording;
use breakglass_proto::recording::{CHAIN_DOMAIN, CHUNK_BYTES, ChainHasher, RecordingDigest};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest as _, Sha256};

const SESSION: &str = "db-1-g-00000000000000aa-4242-1796083200000";

#[derive(Arbitrary, Debug)]
struct Input {
    /// Size of the recorded file, reduced below `3 * CHUNK_BYTES + 300`.
    size: u32,
    /// Bytes the file is made of (repeated).
    fill: Vec<u8>,
    /// What the log claims: 0 and most values: the true digest; 1: a wrong size;
    /// 2: a wrong hash.
    claim: u8,
    wrong_size: u64,
    wrong_hash: [u8; 32],
    calls: Vec<Call>,
}

#[derive(Arbitrary, Debug)]
struct Call {
    messages: Vec<Message>,
    /// The stream breaks after the last message (nothing is checked, a resume follows).
    cut: bool,
}

#[derive(Arbitrary, Debug)]
struct Message {
    /// For another session.
    other_session: bool,
    /// Where the message says it starts: `None` where the sender's copy ends (the
    /// honest offset), else this.
    offset: Option<u64>,
    /// Bytes sent (of the file from the offset; past its end, made up).
    len: u32,
    /// One byte of the message flipped (a corrupted transfer or a lying host).
    flip: Option<(u32, u8)>,
}

/// `h_n` of the contract (`proto/src/recording.rs` module docs), chunk by chunk.
fn contract_chain(bytes: &[u8]) -> [u8; 32] {
    let mut h: [u8; 32] = Sha256::digest(CHAIN_DOMAIN).into();
    for chunk in bytes.chunks(CHUNK_BYTES) {
        let mut s = Sha256::new();
        s.update(h);
        s.update(chunk);
        h = s.finalize().into();
    }
    h
}

/// The daemon's side of the uploads of one recording.
struct Daemon {
    digest: RecordingDigest,
    /// `incoming/<session>.part`.
    held: Vec<u8>,
    /// The hasher fed with what was appended, in the pieces it came in.
    pieces: ChainHasher,
    stored: Option<Vec<u8>>,
    refused: u32,
}

impl Daemon {
    fn discard(&mut self) {
        self.held.clear();
        self.pieces = ChainHasher::new();
        self.refused += 1;
    }

    /// One upload call: `messages` as (session, offset, bytes); `cut` when the stream
    /// broke after them.
    fn upload(&mut self, messages: &[(&str, u64, Vec<u8>, usize)], cut: bool) {
        if self.stored.is_some() {
            return; // exactly once: answered STORED, nothing read
        }
        let Some((session, first_offset, _, _)) = messages.first() else {
            return; // no message: refused, nothing changes
        };
        if *session != SESSION {
            return; // not a recording this log expects
        }
        let start = self.held.len() as u64;
        let Ok(mut check) = UploadCheck::start(SESSION, self.digest.bytes, start, *first_offset)
        else {
            assert_ne!(
                *first_offset, start,
                "refused although it starts at the held end"
            );
            return;
        };
        for (session, offset, data, len) in messages {
            let before = self.held.len() as u64;
            match check.piece(session, *offset, *len) {
                Err(_) => {
                    assert_eq!(check.held(), before, "a broken call counts nothing more");
                    return;
                }
                Ok(Step::Refuse(_)) => {
                    assert!(
                        before.saturating_add(*len as u64) > self.digest.bytes,
                        "refused a message that fits the record"
                    );
                    self.discard();
                    return;
                }
                Ok(Step::Append) => {
                    assert_eq!(*session, SESSION, "appended another session's message");
                    assert_eq!(*offset, before, "appended a message out of order");
                    assert!(*len <= MAX_CHUNK_BYTES, "appended an oversized message");
                    self.held.extend_from_slice(data);
                    self.pieces.update(data);
                }
            }
            assert_eq!(check.held(), self.held.len() as u64, "held == appended");
            assert!(
                check.held() <= self.digest.bytes,
                "holds more than the record says"
            );
        }
        if cut {
            return;
        }
        if !check.complete() {
            assert!((self.held.len() as u64) < self.digest.bytes);
            return;
        }
        assert_eq!(self.held.len() as u64, self.digest.bytes);
        match check_recording(&self.held[..], &self.digest) {
            Ok(()) => {
                let fed = std::mem::take(&mut self.pieces).finish();
                assert_eq!(
                    fed,
                    contract_chain(&self.held),
                    "chain fed in upload pieces"
                );
                self.stored = Some(std::mem::take(&mut self.held));
            }
            Err(_) => {
                assert_ne!(
                    (contract_chain(&self.held), self.held.len() as u64),
                    (self.digest.sha256, self.digest.bytes),
                    "refused although it matches the record"
                );
                self.discard();
            }
        }
    }

    /// An honest host: sends the file from where the daemon's copy ends, in pieces of
    /// `piece` bytes.
    fn honest(&mut self, file: &[u8], piece: usize) {
        let from = self.held.len().min(file.len());
        let mut messages = Vec::new();
        let mut at = from;
        loop {
            let end = (at + piece).min(file.len());
            messages.push((SESSION, at as u64, file[at..end].to_vec(), end - at));
            at = end;
            if at >= file.len() {
                break;
            }
        }
        self.upload(&messages, false);
    }
}

fuzz_target!(|input: Input| {
    let size = input.size as usize % (3 * CHUNK_BYTES + 300);
    let file: Vec<u8> = if input.fill.is_empty() {
        (0..size).map(|i| (i * 7 + 3) as u8).collect()
    } else {
        input.fill.iter().copied().cycle().take(size).collect()
    };
    let (sha256, bytes) = breakglass_proto::recording::chain_of(&file[..]).expect("in memory");
    assert_eq!(bytes, file.len() as u64);
    assert_eq!(
        sha256,
        contract_chain(&file),
        "chain_of is the contract's chain"
    );
    let truth = RecordingDigest {
        sha256,
        bytes,
        duration_ms: 1,
    };
    let digest = match input.claim {
        1 => RecordingDigest {
            bytes: input.wrong_size % (4 * CHUNK_BYTES as u64),
            ..truth
        },
        2 => RecordingDigest {
            sha256: input.wrong_hash,
            ..truth
        },
        _ => truth,
    };
    let honest_claim = digest == truth;
    let mut d = Daemon {
        digest,
        held: Vec::new(),
        pieces: ChainHasher::new(),
        stored: None,
        refused: 0,
    };
    for call in input.calls.iter().take(16) {
        let mut sender_at = d.held.len() as u64;
        let mut messages = Vec::new();
        for m in call.messages.iter().take(64) {
            let offset = m.offset.unwrap_or(sender_at);
            let len = m.len as usize % (MAX_CHUNK_BYTES + 2);
            let from = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(file.len());
            let to = from.saturating_add(len).min(file.len());
            let mut data = file[from..to].to_vec();
            // Past the end of the file: made-up bytes (a host sending too much).
            data.resize(len.min(2 * CHUNK_BYTES), 0x5a);
            if let Some((at, x)) = m.flip
                && !data.is_empty()
            {
                let i = at as usize % data.len();
                data[i] ^= x.max(1);
            }
            let session = if m.other_session {
                "db-1-other"
            } else {
                SESSION
            };
            // A message announcing more than it carries only when it is oversized (the
            // daemon checks the length before it writes anything).
            let len = if len > MAX_CHUNK_BYTES {
                len
            } else {
                data.len()
            };
            sender_at = offset.saturating_add(len as u64);
            messages.push((session, offset, data, len));
        }
        d.upload(&messages, call.cut);
        if let Some(s) = &d.stored {
            assert!(honest_claim, "stored under a digest that is not the file's");
            assert_eq!(s, &file, "stored bytes that are not the recording");
        }
    }
    if !honest_claim {
        return;
    }
    // Whatever happened, an honest host gets it stored: resume, or (after a refusal of a
    // corrupted copy) start over.
    let piece = (input.size as usize % 70_000).max(1);
    let mut tries = 0;
    while d.stored.is_none() && tries < 2 {
        d.honest(&file, piece);
        tries += 1;
    }
    assert_eq!(
        d.stored.as_deref(),
        Some(&file[..]),
        "an honest upload is stored"
    );
});
