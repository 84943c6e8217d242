//! RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.
//!
//! - leaf hash `SHA-256(0x00 ‖ leaf bytes)`, node hash `SHA-256(0x01 ‖ left ‖ right)`;
//! - the root of `n > 1` leaves splits at the largest power of two smaller than `n`;
//! - the root of the empty tree is `SHA-256("")`.
//!
//! [`Frontier`] keeps only the O(log n) right edge of the tree: enough to append
//! and compute the root, which is all a streaming verifier needs. [`MerkleTree`]
//! keeps the hash of every complete subtree (about 2n hashes) and produces
//! inclusion and consistency proofs for any tree size up to its own.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// Why a proof was not produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The requested index or size lies beyond the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// The proof has the wrong number of hashes for the sizes it claims to connect.
    #[error("proof has the wrong length: {0}")]
    BadLength(String),
    /// The proof's hashes do not lead to the expected root(s).
    #[error("proof does not match the root: {0}")]
    Mismatch(String),
}

/// `SHA-256(0x00 ‖ data)`: the hash of a leaf whose bytes are `data`.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree: `SHA-256("")`.
#[must_use]
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The right edge of a Merkle tree: one complete-subtree hash per set bit of the size.
///
/// Appending is amortised O(1) hashes; the root costs O(log n) hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Roots of the complete subtrees that make up the tree, largest (leftmost) first.
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf given its leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_stored(leaf, |_| {});
    }

    /// Appends one leaf and hands `stored` the hashes this completes, in the order of the
    /// stored-hash layout (see [`stored_hash_index`]): the leaf hash, then the root of each
    /// complete subtree it closes, smallest first.
    pub fn push_stored(&mut self, leaf: Hash, mut stored: impl FnMut(Hash)) {
        stored(leaf);
        let mut h = leaf;
        let mut n = self.size;
        // Each trailing one bit of the old size is a complete subtree that merges with the new one.
        while n & 1 == 1 {
            let left = self.nodes.pop().unwrap_or_default();
            h = node_hash(&left, &h);
            stored(h);
            n >>= 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// The frontier of a tree of `size` leaves from its complete subtrees' roots, largest
    /// (leftmost) first: the nodes [`frontier_nodes`] names. `None` when their number is not
    /// one per set bit of `size`.
    #[must_use]
    pub fn from_nodes(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (nodes.len() == size.count_ones() as usize).then_some(Self { size, nodes })
    }

    /// The complete subtrees' roots, largest (leftmost) first: what
    /// [`from_nodes`](Self::from_nodes) takes back (a database stores them beside the size).
    #[must_use]
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Root hash of the tree.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// `(level, index)` of the complete subtrees whose roots make up the frontier of a tree of
/// `size` leaves, largest (leftmost) first.
#[must_use]
pub fn frontier_nodes(size: u64) -> Vec<(u32, u64)> {
    let mut start = 0u64;
    let mut out = Vec::with_capacity(size.count_ones() as usize);
    for k in (0..64u32).rev() {
        if size & (1 << k) != 0 {
            out.push((k, start >> k));
            start += 1 << k;
        }
    }
    out
}

/// Position of node `(level, index)` in the stored-hash layout: every hash in the order
/// [`Frontier::push_stored`] produces them (each leaf, then the subtrees it completes), as Go's
/// `sumdb/tlog` stores them. The layout only ever grows at its end, so it suits an
/// append-only file; a tree of `n` leaves holds [`stored_hash_count`]`(n)` hashes.
#[must_use]
pub fn stored_hash_index(level: u32, index: u64) -> u64 {
    // The node closes when leaf `last` is pushed: after the hashes of the `last` leaves
    // before it, then the leaf and one parent per level up to this one.
    let last = ((index + 1) << level) - 1;
    stored_hash_count(last) + u64::from(level)
}

/// Number of hashes the stored-hash layout holds for a tree of `n` leaves (`2n - popcount(n)`).
#[must_use]
pub fn stored_hash_count(n: u64) -> u64 {
    2 * n - u64::from(n.count_ones())
}

/// Where the hashes of complete subtrees come from: memory ([`MerkleTree`]) or files.
///
/// The proof functions below ([`root_of`], [`inclusion_proof_of`], [`consistency_proof_of`],
/// [`root_with_leaves`]) work over any source; a source that reads files reports its I/O
/// errors through `Error`.
pub trait NodeSource {
    /// Why a node could not be read; a request out of range is a [`ProofError`].
    type Error: From<ProofError>;
    /// Number of leaves the source holds.
    fn size(&self) -> u64;
    /// Root of the complete subtree of `2^level` leaves starting at leaf `index << level`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

fn check_size<S: NodeSource>(s: &S, size: u64) -> Result<(), ProofError> {
    if size > s.size() {
        return Err(ProofError::OutOfRange(format!(
            "tree size {size} is beyond the log's {} entries",
            s.size()
        )));
    }
    Ok(())
}

/// MTH(D[start..end]) where `start` is aligned to the largest power of two `< end - start`
/// (always true inside the RFC 6962 recursion).
fn subtree<S: NodeSource>(s: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        let k = n.trailing_zeros();
        return s.node(k, start >> k);
    }
    let k = split_point(n);
    Ok(node_hash(
        &subtree(s, start, start + k)?,
        &subtree(s, start + k, end)?,
    ))
}

/// Root the tree of `s` had when it had `size` leaves.
pub fn root_of<S: NodeSource>(s: &S, size: u64) -> Result<Hash, S::Error> {
    check_size(s, size)?;
    subtree(s, 0, size)
}

/// Inclusion proof (RFC 6962 `PATH`) of leaf `index` in the tree of `size` leaves of `s`.
pub fn inclusion_proof_of<S: NodeSource>(
    s: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    check_size(s, size)?;
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf index {index} is not below tree size {size}"
        ))
        .into());
    }
    let mut proof = Vec::new();
    path(s, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path<S: NodeSource>(
    s: &S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(s, m, start, start + k, out)?;
        out.push(subtree(s, start + k, end)?);
    } else {
        path(s, m - k, start + k, end, out)?;
        out.push(subtree(s, start, start + k)?);
    }
    Ok(())
}

/// Consistency proof (RFC 6962 `PROOF`) between the trees of `old` and `new` leaves of `s`.
///
/// Empty when `old == 0` or `old == new`.
pub fn consistency_proof_of<S: NodeSource>(
    s: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, S::Error> {
    check_size(s, new)?;
    if old > new {
        return Err(ProofError::OutOfRange(format!(
            "old size {old} is larger than new size {new}"
        ))
        .into());
    }
    let mut proof = Vec::new();
    if old > 0 && old < new {
        subproof(s, old, 0, new, true, &mut proof)?;
    }
    Ok(proof)
}

fn subproof<S: NodeSource>(
    s: &S,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(subtree(s, start, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(s, m, start, start + k, complete, out)?;
        out.push(subtree(s, start + k, end)?);
    } else {
        subproof(s, m - k, start + k, end, false, out)?;
        out.push(subtree(s, start, start + k)?);
    }
    Ok(())
}

/// Root of the tree of `size` leaves of `s` in which leaves `first..first + leaves.len()`
/// are the given hashes rather than those of `s`: every subtree that holds one of them is
/// recomputed from them, the others are read from `s`. Equal to the signed root of `size`
/// exactly when the given leaves are the log's (O(len + log size) hashes), so a range read
/// from disk is checked against a signed checkpoint without trusting the stored hashes.
pub fn root_with_leaves<S: NodeSource>(
    s: &S,
    size: u64,
    first: u64,
    leaves: &[Hash],
) -> Result<Hash, S::Error> {
    check_size(s, size)?;
    let end = first + leaves.len() as u64;
    if end > size {
        return Err(ProofError::OutOfRange(format!(
            "leaves {first}..{end} are not within the tree of size {size}"
        ))
        .into());
    }
    with_leaves(s, 0, size, first, leaves)
}

fn with_leaves<S: NodeSource>(
    s: &S,
    start: u64,
    end: u64,
    first: u64,
    leaves: &[Hash],
) -> Result<Hash, S::Error> {
    let last = first + leaves.len() as u64;
    if end <= first || start >= last {
        return subtree(s, start, end);
    }
    let n = end - start;
    if n == 1 {
        return Ok(leaves[(start - first) as usize]);
    }
    let k = split_point(n);
    Ok(node_hash(
        &with_leaves(s, start, start + k, first, leaves)?,
        &with_leaves(s, start + k, end, first, leaves)?,
    ))
}

/// A Merkle tree that keeps every complete-subtree hash, for proofs at any size.
///
/// `levels[k][i]` is the root of the complete subtree of `2^k` leaves starting at leaf
/// `i * 2^k`. Memory is about `64 * n` bytes.
#[derive(Clone, Debug, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// The empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends one leaf given its leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut level = 0;
        // While the level just extended has an even number of nodes, a new parent is complete.
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let parent = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
    }

    /// Drops every leaf at index `size` and above.
    pub fn truncate(&mut self, size: u64) {
        for (k, level) in self.levels.iter_mut().enumerate() {
            level.truncate(usize::try_from(size >> k).unwrap_or(usize::MAX));
        }
        while self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
    }

    /// Leaf hash at `index`, if present.
    #[must_use]
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let i = usize::try_from(index).ok()?;
        self.levels.first()?.get(i).copied()
    }

    /// The frontier of the tree at its current size.
    #[must_use]
    pub fn frontier(&self) -> Frontier {
        let size = self.size();
        let mut nodes = Vec::new();
        let mut start = 0u64;
        for k in (0..64).rev() {
            if size & (1 << k) != 0 {
                nodes.push(self.levels[k][(start >> k) as usize]);
                start += 1 << k;
            }
        }
        Frontier { size, nodes }
    }

    /// Root of the current tree.
    #[must_use]
    pub fn root(&self) -> Hash {
        // In-memory nodes never fail and the size is in range.
        root_of(self, self.size()).unwrap_or_else(|_| empty_root())
    }

    /// Root the tree had when it had `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        root_of(self, size)
    }

    /// Inclusion proof (RFC 6962 `PATH`) of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        inclusion_proof_of(self, index, size)
    }

    /// Consistency proof (RFC 6962 `PROOF`) between the trees of `old` and `new` leaves.
    ///
    /// Empty when `old == 0` or `old == new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        consistency_proof_of(self, old, new)
    }
}

impl NodeSource for MerkleTree {
    type Error = ProofError;

    fn size(&self) -> u64 {
        MerkleTree::size(self)
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        let missing = || ProofError::OutOfRange(format!("no node {index} at level {level}"));
        let i = usize::try_from(index).map_err(|_| missing())?;
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(i))
            .copied()
            .ok_or_else(missing)
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf index {index} is not below tree size {size}"
        )));
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::BadLength(format!(
                "inclusion proof for leaf {index} in size {size} has too many hashes ({})",
                proof.len()
            )));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::BadLength(format!(
            "inclusion proof for leaf {index} in size {size} has too few hashes ({})",
            proof.len()
        )));
    }
    if r != *root {
        return Err(ProofError::Mismatch(format!(
            "leaf {index} is not in the tree of size {size} with this root"
        )));
    }
    Ok(())
}

/// Verifies a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
///
/// `old == 0` is consistent with anything given an empty proof and the empty tree's root;
/// `old == new` needs an empty proof and equal roots.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::OutOfRange(format!(
            "old size {old} is larger than new size {new}"
        )));
    }
    if old == 0 || old == new {
        if !proof.is_empty() {
            return Err(ProofError::BadLength(format!(
                "consistency proof from {old} to {new} must be empty, has {} hashes",
                proof.len()
            )));
        }
        if old == new && old_root != new_root {
            return Err(ProofError::Mismatch(format!(
                "two different roots for the same size {old}: the log forked"
            )));
        }
        if old == 0 && *old_root != empty_root() {
            return Err(ProofError::Mismatch(
                "the root given for the empty tree is not the empty tree's root".into(),
            ));
        }
        return Ok(());
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::BadLength(format!(
            "consistency proof from {old} to {new} is empty"
        )));
    };
    let mut fn_ = old - 1;
    let mut sn = new - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = *first;
    let mut sr = *first;
    for c in rest {
        if sn == 0 {
            return Err(ProofError::BadLength(format!(
                "consistency proof from {old} to {new} has too many hashes ({})",
                proof.len()
            )));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::BadLength(format!(
            "consistency proof from {old} to {new} has too few hashes ({})",
            proof.len()
        )));
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::Mismatch(format!(
            "the tree of size {new} does not extend the tree of size {old}: rollback or fork"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Recursive MTH straight from RFC 6962 §2.1, the reference everything is compared to.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn tree_of(l: &[Hash]) -> MerkleTree {
        let mut t = MerkleTree::new();
        for h in l {
            t.push(*h);
        }
        t
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Frontier::new().root(), empty_root());
        assert_eq!(MerkleTree::new().root(), empty_root());
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn frontier_and_tree_match_reference_for_small_sizes() {
        let all = leaves(300);
        let mut f = Frontier::new();
        let mut t = MerkleTree::new();
        for n in 0..=300usize {
            let r = reference_root(&all[..n]);
            assert_eq!(f.root(), r, "frontier size {n}");
            assert_eq!(t.root(), r, "tree size {n}");
            assert_eq!(t.frontier(), f, "frontier from tree at size {n}");
            if n < 300 {
                f.push(all[n]);
                t.push(all[n]);
            }
        }
        for n in 0..=300u64 {
            assert_eq!(t.root_at(n).unwrap(), reference_root(&all[..n as usize]));
        }
        assert!(t.root_at(301).is_err());
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_up_to_64() {
        let all = leaves(64);
        let t = tree_of(&all);
        for size in 1..=64u64 {
            let root = t.root_at(size).unwrap();
            for i in 0..size {
                let p = t.inclusion_proof(i, size).unwrap();
                verify_inclusion(&all[i as usize], i, size, &p, &root).unwrap();
                let wrong = leaf_hash(b"not a leaf");
                assert!(verify_inclusion(&wrong, i, size, &p, &root).is_err());
                if !p.is_empty() {
                    assert!(verify_inclusion(&all[i as usize], i, size, &p[1..], &root).is_err());
                }
                let mut longer = p.clone();
                longer.push(root);
                assert!(verify_inclusion(&all[i as usize], i, size, &longer, &root).is_err());
            }
            for old in 0..=size {
                let p = t.consistency_proof(old, size).unwrap();
                let old_root = t.root_at(old).unwrap();
                verify_consistency(old, size, &old_root, &root, &p).unwrap();
                if old > 0 && old < size {
                    let fake = leaf_hash(b"forked");
                    assert!(verify_consistency(old, size, &fake, &root, &p).is_err());
                    assert!(verify_consistency(old, size, &old_root, &fake, &p).is_err());
                    assert!(verify_consistency(old, size, &old_root, &root, &p[1..]).is_err());
                }
            }
        }
    }

    #[test]
    fn truncate_returns_to_an_earlier_tree() {
        let all = leaves(100);
        let mut t = tree_of(&all);
        for n in (0..100u64).rev() {
            t.truncate(n);
            assert_eq!(t.size(), n);
            assert_eq!(t.root(), reference_root(&all[..n as usize]));
        }
        t.push(all[0]);
        assert_eq!(t.root(), all[0]);
    }

    #[test]
    fn out_of_range_requests_are_errors() {
        let t = tree_of(&leaves(5));
        assert!(t.inclusion_proof(5, 5).is_err());
        assert!(t.inclusion_proof(0, 6).is_err());
        assert!(t.consistency_proof(4, 3).is_err());
        assert!(t.consistency_proof(1, 6).is_err());
        let r = t.root();
        assert!(verify_inclusion(&r, 3, 3, &[], &r).is_err());
        assert!(verify_consistency(4, 3, &r, &r, &[]).is_err());
        assert!(verify_consistency(0, 3, &r, &r, &[r]).is_err());
        assert!(verify_consistency(3, 3, &r, &empty_root(), &[]).is_err());
        // Found by the merkle_proofs fuzz target: any root passed for the empty tree.
        assert!(verify_consistency(0, 3, &r, &r, &[]).is_err());
        assert!(verify_consistency(0, 0, &r, &r, &[]).is_err());
        assert!(verify_consistency(0, 3, &empty_root(), &r, &[]).is_ok());
    }

    /// The stored-hash layout as a source: what a file of appended hashes holds.
    struct Stored(u64, Vec<Hash>);

    impl NodeSource for Stored {
        type Error = ProofError;
        fn size(&self) -> u64 {
            self.0
        }
        fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
            Ok(self.1[stored_hash_index(level, index) as usize])
        }
    }

    fn stored(l: &[Hash]) -> Stored {
        let mut f = Frontier::new();
        let mut out = Vec::new();
        for h in l {
            f.push_stored(*h, |x| out.push(x));
        }
        Stored(l.len() as u64, out)
    }

    #[test]
    fn the_stored_layout_matches_the_tree_node_for_node() {
        let all = leaves(300);
        let t = tree_of(&all);
        let s = stored(&all);
        assert_eq!(s.1.len() as u64, stored_hash_count(300));
        for (k, level) in t.levels.iter().enumerate() {
            for (j, h) in level.iter().enumerate() {
                assert_eq!(s.node(k as u32, j as u64).unwrap(), *h, "node ({k}, {j})");
            }
        }
        for n in 0..=300u64 {
            let nodes = frontier_nodes(n)
                .into_iter()
                .map(|(k, j)| s.node(k, j).unwrap())
                .collect();
            let f = Frontier::from_nodes(n, nodes).unwrap();
            assert_eq!(f.root(), reference_root(&all[..n as usize]), "size {n}");
            assert_eq!(root_of(&s, n).unwrap(), f.root());
        }
        assert!(Frontier::from_nodes(3, vec![all[0]]).is_none());
    }

    #[test]
    fn root_with_leaves_is_the_root_only_with_the_right_leaves() {
        let all = leaves(100);
        let s = stored(&all);
        for (first, len, size) in [
            (0u64, 100usize, 100u64),
            (37, 10, 100),
            (99, 1, 100),
            (5, 3, 8),
            (0, 0, 64),
            (63, 1, 64),
        ] {
            let slice = &all[first as usize..first as usize + len];
            let r = root_with_leaves(&s, size, first, slice).unwrap();
            assert_eq!(
                r,
                reference_root(&all[..size as usize]),
                "{first}+{len} of {size}"
            );
            if len > 0 {
                let mut bad = slice.to_vec();
                bad[len / 2] = leaf_hash(b"changed");
                assert_ne!(root_with_leaves(&s, size, first, &bad).unwrap(), r);
            }
        }
        // A wrong stored hash outside the range, one the root is computed from (leaves
        // 0..32 for the range 50..60), changes the root too.
        let mut damaged = stored(&all);
        damaged.1[stored_hash_index(5, 0) as usize] = leaf_hash(b"rot");
        assert_ne!(
            root_with_leaves(&damaged, 100, 50, &all[50..60]).unwrap(),
            reference_root(&all)
        );
        assert!(root_with_leaves(&s, 100, 95, &all[95..100]).is_ok());
        assert!(root_with_leaves(&s, 100, 96, &all[95..100]).is_err());
        assert!(root_with_leaves(&s, 101, 0, &[]).is_err());
    }

    proptest! {
        #[test]
        fn proofs_verify_for_random_sizes(size in 1u64..2000, i_frac in 0.0f64..1.0, o_frac in 0.0f64..=1.0) {
            let all = leaves(size);
            let t = tree_of(&all);
            let root = t.root();
            prop_assert_eq!(root, reference_root(&all));
            let i = ((size as f64 * i_frac) as u64).min(size - 1);
            let p = t.inclusion_proof(i, size).unwrap();
            prop_assert!(verify_inclusion(&all[i as usize], i, size, &p, &root).is_ok());
            let old = ((size as f64 * o_frac) as u64).min(size);
            let cp = t.consistency_proof(old, size).unwrap();
            prop_assert!(verify_consistency(old, size, &t.root_at(old).unwrap(), &root, &cp).is_ok());
        }

        #[test]
        fn verifiers_never_panic_on_garbage(
            index in any::<u64>(), size in any::<u64>(), old in any::<u64>(),
            proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70),
            a in any::<[u8; 32]>(), b in any::<[u8; 32]>(),
        ) {
            let _ = verify_inclusion(&a, index, size, &proof, &b);
            let _ = verify_consistency(old, size, &a, &b, &proof);
        }
    }
}
