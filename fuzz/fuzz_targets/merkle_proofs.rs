//! The RFC 6962 / 9162 proof verifiers the auditor (`audit verify --remote`) and hosts use:
//! inclusion and consistency proofs, checked against a real tree of 1000 leaves.
//!
//! Input: a mode byte, two sizes or indexes, then edits applied to the real proof (flip
//! a bit of a hash, drop, duplicate or insert a hash, swap two, move an index or size,
//! flip a bit of the leaf or of a root); or, for sizes beyond the tree, raw hashes.
//!
//! Properties: the real proof verifies (completeness); a proof verifies against the real
//! tree heads only if it is exactly the real proof for the leaf, index and sizes it
//! claims, and the real proof only against the real tree heads (soundness: any edit is
//! caught; from size 0, which every tree extends, only the empty tree's root and an empty
//! proof are bound, and between equal sizes only equal roots).
#![no_main]

use std::sync::OnceLock;

use breakglass_proto::audit::merkle::{Hash, MerkleTree, leaf_hash};
use breakglass_proto::audit::{verify_consistency, verify_inclusion};
use libfuzzer_sys::fuzz_target;

const LEAVES: u64 = 1000;

fn tree() -> &'static MerkleTree {
    static T: OnceLock<MerkleTree> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = MerkleTree::new();
        for i in 0..LEAVES {
            t.push(leaf_hash(format!("leaf {i}").as_bytes()));
        }
        t
    })
}

fn root(size: u64) -> Option<Hash> {
    (size <= LEAVES).then(|| tree().root_at(size).expect("size within the tree"))
}

/// Reads what the input has left, two bytes at a time.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u64> {
        Some(u64::from(u16::from_be_bytes([self.byte()?, self.byte()?])))
    }
    fn hash(&mut self) -> Hash {
        let mut h = [0u8; 32];
        for b in &mut h {
            *b = self.byte().unwrap_or(0);
        }
        h
    }
}

/// The claim a proof is checked against, edited by the input.
struct Claim {
    a: u64,
    b: u64,
    proof: Vec<Hash>,
    leaf: Hash,
    root_a: Option<Hash>,
    root_b: Option<Hash>,
}

fn edit(c: &mut Claim, input: &mut Input<'_>) {
    while let Some(op) = input.byte() {
        let arg = usize::from(input.byte().unwrap_or(0));
        let n = c.proof.len();
        match op % 10 {
            0 if n > 0 => c.proof[arg % n][arg / 8 % 32] ^= 1 << (arg % 8),
            1 if n > 0 => {
                c.proof.remove(arg % n);
            }
            2 if n > 0 => c.proof.insert(arg % (n + 1), c.proof[arg % n]),
            3 => {
                let h = input.hash();
                c.proof.insert(arg % (n + 1), h);
            }
            4 if n > 1 => c.proof.swap(arg % n, (arg / 16) % n),
            // A claim about other sizes comes with those sizes' real (signed) tree heads.
            5 => {
                c.a = c.a.wrapping_add(arg as u64 + 1) % (LEAVES + 2);
                c.root_a = root(c.a);
            }
            6 => {
                c.b = c.b.wrapping_add(arg as u64 + 1) % (LEAVES + 2);
                c.root_b = root(c.b);
            }
            7 => c.leaf[arg % 32] ^= 1 << (arg % 8),
            8 => {
                if let Some(r) = &mut c.root_a {
                    r[arg % 32] ^= 1 << (arg % 8);
                }
            }
            9 => {
                if let Some(r) = &mut c.root_b {
                    r[arg % 32] ^= 1 << (arg % 8);
                }
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (Some(mode), Some(x), Some(y)) = (input.byte(), input.u16(), input.u16()) else {
        return;
    };
    let t = tree();
    if mode % 3 == 2 {
        // Raw: any numbers, any hashes; only "never panics" is checked here.
        let proof: Vec<Hash> = (0..usize::from(input.byte().unwrap_or(0) % 70))
            .map(|_| input.hash())
            .collect();
        let (r1, r2) = (input.hash(), input.hash());
        let big = |v: u64| v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let _ = verify_inclusion(&r1, big(x), big(y), &proof, &r2);
        let _ = verify_consistency(big(x), big(y), &r1, &r2, &proof);
        let _ = verify_inclusion(&r1, x, y, &proof, &r2);
        let _ = verify_consistency(x, y, &r1, &r2, &proof);
        return;
    }
    let inclusion = mode % 3 == 0;
    let (a, b) = if inclusion {
        let size = y % LEAVES + 1;
        (x % size, size)
    } else {
        let new = y % (LEAVES + 1);
        (x % (new + 1), new)
    };
    let real = if inclusion {
        t.inclusion_proof(a, b)
    } else {
        t.consistency_proof(a, b)
    }
    .expect("sizes within the tree");
    let mut c = Claim {
        a,
        b,
        proof: real,
        leaf: t.leaf(a).unwrap_or_default(),
        root_a: root(a),
        root_b: root(b),
    };
    let ok = |c: &Claim| {
        if inclusion {
            c.root_b
                .is_some_and(|r| verify_inclusion(&c.leaf, c.a, c.b, &c.proof, &r).is_ok())
        } else {
            match (c.root_a, c.root_b) {
                (Some(ra), Some(rb)) => verify_consistency(c.a, c.b, &ra, &rb, &c.proof).is_ok(),
                _ => false,
            }
        }
    };
    assert!(ok(&c), "the real proof for {a}, {b} does not verify");
    edit(&mut c, &mut input);
    if !ok(&c) {
        return;
    }
    // Accepted after the edits. Against the real tree head, only the real proof (and leaf)
    // verifies; the real proof verifies only against the real tree heads. Every tree
    // extends the empty one, and a tree head only itself: from size 0 only the empty
    // tree's root is bound, between equal sizes only equal roots.
    if inclusion {
        let real_proof = t.inclusion_proof(c.a, c.b).ok();
        let real_path = Some(c.leaf) == t.leaf(c.a) && real_proof.as_ref() == Some(&c.proof);
        if c.root_b == root(c.b) {
            assert!(
                c.a < c.b && c.b <= LEAVES,
                "accepted out of range: {} of {}",
                c.a,
                c.b
            );
            assert!(
                real_path,
                "accepted a forged leaf or proof for {} of {}",
                c.a, c.b
            );
        }
        if real_path {
            assert_eq!(
                c.root_b,
                root(c.b),
                "accepted the real proof with a forged root"
            );
        }
    } else if c.a == c.b {
        assert_eq!(c.root_a, c.root_b, "accepted two roots for one size");
    } else if c.a == 0 {
        assert_eq!(
            c.root_a,
            root(0),
            "accepted a forged root of the empty tree"
        );
        assert!(c.proof.is_empty());
    } else {
        let real_proof = t.consistency_proof(c.a, c.b).ok().as_ref() == Some(&c.proof);
        if c.root_b == root(c.b) {
            assert!(
                real_proof,
                "accepted a forged proof from {} to {}",
                c.a, c.b
            );
        }
        if real_proof {
            assert_eq!(
                c.root_a,
                root(c.a),
                "accepted the real proof with a forged old root"
            );
            assert_eq!(
                c.root_b,
                root(c.b),
                "accepted the real proof with a forged root"
            );
        }
    }
});
