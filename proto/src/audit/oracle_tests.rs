//! Cross-checks against independent implementations: `tlog_tiles` (a port of Go's
//! `sumdb/tlog`) for the Merkle tree and checkpoints, `signed_note` (byte-identical with Go's
//! `sumdb/note`) for signed notes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use breakglass_test_support::oracle::TlogStore as Store;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use signed_note::{Note, Signer as _, StandardSigner, StandardVerifier, VerifierList};
use tlog_tiles::{check_record, check_tree, prove_record, prove_tree, tree_hash};

use super::merkle::{Hash, MerkleTree, leaf_hash, verify_consistency, verify_inclusion};
use super::note::{Checkpoint, NoteSigner, NoteVerifier};

fn both(n: u64) -> (Vec<Vec<u8>>, MerkleTree, Store) {
    let data: Vec<Vec<u8>> = (0..n).map(|i| format!("event {i}").into_bytes()).collect();
    let mut ours = MerkleTree::new();
    let mut store = Store::default();
    for (i, d) in data.iter().enumerate() {
        ours.push(leaf_hash(d));
        store.push(i as u64, d);
    }
    (data, ours, store)
}

fn theirs(h: Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(h)
}

#[test]
fn roots_and_proofs_equal_tlog_tiles() {
    let (data, ours, store) = both(70);
    for t in 1..=70u64 {
        let root = ours.root_at(t).unwrap();
        assert_eq!(tree_hash(t, &store).unwrap().0, root, "root at {t}");
        for n in 0..t {
            let ours_p = ours.inclusion_proof(n, t).unwrap();
            let their_p = prove_record(t, n, &store).unwrap();
            assert_eq!(
                ours_p,
                their_p.iter().map(|h| h.0).collect::<Vec<_>>(),
                "inclusion {n} in {t}"
            );
            let lh = leaf_hash(&data[n as usize]);
            check_record(
                &ours_p.iter().copied().map(theirs).collect(),
                t,
                theirs(root),
                n,
                theirs(lh),
            )
            .unwrap();
            verify_inclusion(
                &lh,
                n,
                t,
                &their_p.iter().map(|h| h.0).collect::<Vec<_>>(),
                &root,
            )
            .unwrap();
        }
        for old in 1..=t {
            let old_root = ours.root_at(old).unwrap();
            let ours_p = ours.consistency_proof(old, t).unwrap();
            let their_p = prove_tree(t, old, &store).unwrap();
            assert_eq!(
                ours_p,
                their_p.iter().map(|h| h.0).collect::<Vec<_>>(),
                "consistency {old} -> {t}"
            );
            check_tree(
                &ours_p.iter().copied().map(theirs).collect(),
                t,
                theirs(root),
                old,
                theirs(old_root),
            )
            .unwrap();
            verify_consistency(old, t, &old_root, &root, &ours_p).unwrap();
            if old < t {
                let forked = leaf_hash(b"fork");
                assert!(
                    check_tree(
                        &ours_p.iter().copied().map(theirs).collect(),
                        t,
                        theirs(root),
                        old,
                        theirs(forked)
                    )
                    .is_err()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_sizes_agree_with_tlog_tiles(t in 1u64..3000, a in any::<u64>(), b in any::<u64>()) {
        let (data, ours, store) = both(t);
        let root = ours.root();
        prop_assert_eq!(tree_hash(t, &store).unwrap().0, root);
        let n = a % t;
        let p = ours.inclusion_proof(n, t).unwrap();
        prop_assert!(check_record(&p.iter().copied().map(theirs).collect(), t, theirs(root), n, theirs(leaf_hash(&data[n as usize]))).is_ok());
        let old = 1 + b % t;
        let c = ours.consistency_proof(old, t).unwrap();
        prop_assert!(check_tree(&c.iter().copied().map(theirs).collect(), t, theirs(root), old, theirs(ours.root_at(old).unwrap())).is_ok());
    }
}

fn signed_note_signer(name: &str, seed: &[u8; 32]) -> StandardSigner {
    let key = SigningKey::from_bytes(seed);
    let vk = key.verifying_key();
    let mut pubkey = vec![1u8];
    pubkey.extend_from_slice(vk.as_bytes());
    let id = signed_note::key_id(name, &pubkey);
    let mut priv_ = vec![1u8];
    priv_.extend_from_slice(seed);
    StandardSigner::new(&format!(
        "PRIVATE+KEY+{name}+{id:08x}+{}",
        B64.encode(priv_)
    ))
    .unwrap()
}

#[test]
fn notes_interoperate_with_signed_note() {
    let name = "ca.example.com/audit/v1";
    let seed = [42u8; 32];
    let ours = NoteSigner::new(name, SigningKey::from_bytes(&seed)).unwrap();
    let verifier = ours.verifier();

    // Same verifier key text and key id.
    let their_vkey = signed_note::new_ed25519_verifier_key(name, verifier.public_key());
    assert_eq!(verifier.to_string(), their_vkey);
    let theirs = signed_note_signer(name, &seed);
    assert_eq!(u32::from_be_bytes(verifier.key_id()), theirs.key_id());
    assert_eq!(NoteVerifier::parse(&their_vkey).unwrap(), verifier);

    let cp = Checkpoint {
        origin: name.into(),
        size: 13,
        root: leaf_hash(b"x"),
        extensions: vec![],
    };
    // The checkpoint body equals tlog_tiles' encoding of the same checkpoint.
    let tcp = tlog_tiles::Checkpoint::new(name, 13, tlog_tiles::Hash(cp.root), "").unwrap();
    assert_eq!(cp.to_body().as_bytes(), tcp.to_bytes().as_slice());
    assert_eq!(
        Checkpoint::parse(std::str::from_utf8(&tcp.to_bytes()).unwrap()).unwrap(),
        cp
    );

    // Ours → signed_note verifies; identical bytes (Ed25519 is deterministic).
    let our_note = ours.sign_checkpoint(&cp).unwrap();
    let list = VerifierList::new(vec![Box::new(StandardVerifier::new(&their_vkey).unwrap())]);
    let parsed = Note::from_bytes(our_note.as_bytes()).unwrap();
    let (verified, _) = parsed.verify(&list).unwrap();
    assert_eq!(verified.len(), 1);
    let mut their_note = Note::new(cp.to_body().as_bytes(), &[]).unwrap();
    their_note.add_sigs(&[&theirs]).unwrap();
    assert_eq!(their_note.to_bytes(), our_note.as_bytes());

    // Theirs (with a second, unknown signature) → ours verifies.
    let other = signed_note_signer("witness.example", &[7u8; 32]);
    let mut n2 = Note::new(cp.to_body().as_bytes(), &[]).unwrap();
    n2.add_sigs(&[&other, &theirs]).unwrap();
    let text = String::from_utf8(n2.to_bytes()).unwrap();
    assert_eq!(verifier.verify_checkpoint(&text).unwrap(), cp);

    // One flipped byte in the body: both refuse.
    let bad = our_note.replacen("\n13\n", "\n14\n", 1);
    assert!(verifier.verify_checkpoint(&bad).is_err());
    assert!(
        Note::from_bytes(bad.as_bytes())
            .unwrap()
            .verify(&list)
            .is_err()
    );
}
