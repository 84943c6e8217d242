//! Host and principal patterns, and the questions policy asks about them.
//!
//! A pattern is a string in which `*` stands for any run of characters (none, and dots,
//! included), `?` for exactly one character, and every other character for itself; there
//! is no escaping and there are no `[...]` classes. Host names compare ASCII
//! case-insensitively ([`Case::Insensitive`]), Unix account names exactly
//! ([`Case::Sensitive`]). [`matches`] is the matcher the PAM module applies to the host's
//! name (`names::host_matches`), so what the daemon decides with [`covers`] and
//! [`common_name`] is exactly what hosts will admit:
//!
//! - [`covers`]: does **every** name a requested pattern matches also match one of a
//!   rule's patterns? (language containment; repeating a rule's pattern verbatim, or
//!   asking for a narrower one, is covered.) Decided exactly, over all strings, with a
//!   name that shows why when the answer is no.
//! - [`common_name`]: is there **any** name both patterns match? (overlap; how deny
//!   rules are applied to a requested pattern.)
//!
//! Pure and synchronous; every loop is bounded by the patterns' lengths or by
//! [`MAX_COVERAGE_WORK`].

use std::collections::{HashSet, VecDeque};

/// How characters compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// ASCII letters compare case-insensitively (host names).
    Insensitive,
    /// Every character compares exactly (Unix account names).
    Sensitive,
}

/// True when `c` is one of the pattern wildcards `*` and `?`.
#[must_use]
pub fn is_wildcard(c: char) -> bool {
    c == '*' || c == '?'
}

/// True when `pattern` contains a wildcard, i.e. may match more than one name.
#[must_use]
pub fn is_pattern(pattern: &str) -> bool {
    pattern.chars().any(is_wildcard)
}

/// One element of a parsed pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// This character (case-folded as the [`Case`] says).
    Lit(char),
    /// `?`: exactly one character.
    One,
    /// `*`: any run of characters (consecutive stars are one).
    Any,
}

impl Case {
    fn fold(self, c: char) -> char {
        match self {
            Case::Insensitive => c.to_ascii_lowercase(),
            Case::Sensitive => c,
        }
    }
}

fn tokens(pattern: &str, case: Case) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(pattern.len());
    for c in pattern.chars() {
        let t = match c {
            '*' => Token::Any,
            '?' => Token::One,
            c => Token::Lit(case.fold(c)),
        };
        if !(t == Token::Any && out.last() == Some(&Token::Any)) {
            out.push(t);
        }
    }
    out
}

/// True when `name` matches `pattern`.
#[must_use]
pub fn matches(pattern: &str, name: &str, case: Case) -> bool {
    let p = tokens(pattern, case);
    let s: Vec<char> = name.chars().map(|c| case.fold(c)).collect();
    // Greedy match, backtracking only to the last star: each iteration advances `si`
    // or moves the last star's start one character on, so at most |p|·|s| steps.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(Token::Any) => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(Token::One) => {
                pi += 1;
                si += 1;
            }
            Some(Token::Lit(c)) if *c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    star = Some((sp, ss + 1));
                    pi = sp + 1;
                    si = ss + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|t| *t == Token::Any)
}

/// A name both `a` and `b` match, if there is one (a short one, where stars stand for
/// at least one character when that is possible, to read well in messages).
#[must_use]
pub fn common_name(a: &str, b: &str, case: Case) -> Option<String> {
    shortest_common_name(&nonempty_stars(a), &nonempty_stars(b), case)
        .or_else(|| shortest_common_name(a, b, case))
}

/// `pattern` with each `*` replaced by `?*`: the names it matches where every star
/// stands for something (a subset of `pattern`'s, used for readable examples).
fn nonempty_stars(pattern: &str) -> String {
    pattern.replace('*', "?*")
}

/// A shortest name both `a` and `b` match, if there is one.
fn shortest_common_name(a: &str, b: &str, case: Case) -> Option<String> {
    let (a, b) = (tokens(a, case), tokens(b, case));
    let width = b.len() + 1;
    let index = |i: usize, j: usize| i * width + j;
    // Breadth-first over pairs of positions (at most (|a|+1)·(|b|+1) of them); each
    // remembers where it came from and the character that took it there.
    let mut from: Vec<Option<(usize, Option<char>)>> = vec![None; (a.len() + 1) * width];
    let mut queue = VecDeque::from([(0usize, 0usize)]);
    from[0] = Some((0, None));
    let filler = other_char(a.iter().chain(&b));
    while let Some((i, j)) = queue.pop_front() {
        if i == a.len() && j == b.len() {
            let mut name = Vec::new();
            let mut at = index(i, j);
            while at != 0 {
                let (prev, c) = from[at]?;
                name.extend(c);
                at = prev;
            }
            return Some(name.into_iter().rev().collect());
        }
        let (ta, tb) = (a.get(i).copied(), b.get(j).copied());
        let mut next = Vec::with_capacity(3);
        // A star may match nothing.
        if ta == Some(Token::Any) {
            next.push((i + 1, j, None));
        }
        if tb == Some(Token::Any) {
            next.push((i, j + 1, None));
        }
        // Both take one character, if some character suits both.
        if let (Some(ta), Some(tb)) = (ta, tb)
            && !(ta == Token::Any && tb == Token::Any)
        {
            let c = match (ta, tb) {
                (Token::Lit(x), Token::Lit(y)) => (x == y).then_some(x),
                (Token::Lit(x), _) | (_, Token::Lit(x)) => Some(x),
                _ => Some(filler),
            };
            if let Some(c) = c {
                let ni = if ta == Token::Any { i } else { i + 1 };
                let nj = if tb == Token::Any { j } else { j + 1 };
                next.push((ni, nj, Some(c)));
            }
        }
        for (ni, nj, c) in next {
            let k = index(ni, nj);
            if from[k].is_none() {
                from[k] = Some((index(i, j), c));
                queue.push_back((ni, nj));
            }
        }
    }
    None
}

/// A character no token of `tokens` names: it stands for every character the patterns
/// do not mention (they all behave alike). Prefers a readable one.
fn other_char<'a>(tokens: impl Iterator<Item = &'a Token>) -> char {
    let named: Vec<char> = tokens
        .filter_map(|t| match t {
            Token::Lit(c) => Some(*c),
            _ => None,
        })
        .collect();
    "xyzqjkw0123456789abcdefghilmnoprstuv"
        .chars()
        .chain('!'..=char::MAX)
        .find(|c| !named.contains(c) && !is_wildcard(*c))
        .unwrap_or('x')
}

/// Most work [`covers`] does (rule states stepped) before it gives up with
/// [`Coverage::TooComplex`]: well under a second. Patterns as policies write them
/// (`*.prod.example.com`, `db-??`) need a few thousand.
pub const MAX_COVERAGE_WORK: usize = 1 << 20;

/// Whether a requested pattern is covered by a rule's patterns.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// Every name the pattern matches is matched by at least one of the rule's patterns.
    Covered,
    /// This name is matched by the pattern and by none of the rule's patterns.
    NotCovered(String),
    /// Deciding would take more than [`MAX_COVERAGE_WORK`]; treat it as not covered.
    TooComplex,
}

/// Decides whether every name `pattern` matches is matched by at least one of `by`
/// (language containment: L(pattern) ⊆ L(by₁) ∪ L(by₂) ∪ …).
pub fn covers<S: AsRef<str>>(by: &[S], pattern: &str, case: Case) -> Coverage {
    // A name (no wildcard) matches itself only: it is covered exactly when one of `by`
    // matches it. The common request, decided by the matcher alone: the search below
    // builds an automaton per call (it was a sixth of the daemon's CPU per certificate).
    if !is_pattern(pattern) {
        return if by.iter().any(|b| matches(b.as_ref(), pattern, case)) {
            Coverage::Covered
        } else {
            Coverage::NotCovered(pattern.to_owned())
        };
    }
    match search_coverage(by, pattern, case) {
        // Prefer an example where every star stands for something: it reads better.
        Coverage::NotCovered(short) => match search_coverage(by, &nonempty_stars(pattern), case) {
            Coverage::NotCovered(readable) => Coverage::NotCovered(readable),
            _ => Coverage::NotCovered(short),
        },
        answer => answer,
    }
}

/// [`covers`], with a shortest example.
fn search_coverage<S: AsRef<str>>(by: &[S], pattern: &str, case: Case) -> Coverage {
    let inner = tokens(pattern, case);
    // A pattern the rule names (up to case and repeated stars) is covered, however
    // complex: no need to search.
    if by.iter().any(|p| tokens(p.as_ref(), case) == inner) {
        return Coverage::Covered;
    }
    // Only the rule's patterns that share a name with the requested one can cover any
    // of its names; leaving out the others keeps the search small.
    let outer: Vec<Vec<Token>> = by
        .iter()
        .filter(|p| shortest_common_name(p.as_ref(), pattern, case).is_some())
        .map(|p| tokens(p.as_ref(), case))
        .collect();
    // The rule's patterns as one automaton: state `start[k] + j` is "pattern k has
    // matched its first j tokens"; `start[k] + len_k` accepts.
    let mut start = Vec::with_capacity(outer.len());
    let mut flat: Vec<Option<Token>> = Vec::new();
    for p in &outer {
        start.push(flat.len());
        flat.extend(p.iter().copied().map(Some));
        flat.push(None);
    }
    let words = flat.len().div_ceil(64).max(1);
    let accepting = |set: &[u64]| {
        flat.iter()
            .enumerate()
            .any(|(s, t)| t.is_none() && set[s / 64] & (1 << (s % 64)) != 0)
    };
    // Adds the states a star may skip to (stars only ever move forward, so one
    // ascending pass over the members suffices).
    let close = |set: &mut [u64]| {
        for w in 0..set.len() {
            let mut bits = set[w];
            while bits != 0 {
                let s = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if flat[s] == Some(Token::Any) {
                    let to = s + 1;
                    set[to / 64] |= 1 << (to % 64);
                    if to / 64 == w {
                        bits |= 1 << (to % 64);
                    }
                }
            }
        }
    };
    let step = |set: &[u64], c: char| {
        let mut out = vec![0u64; words];
        for (w, &word) in set.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let s = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let to = match flat[s] {
                    Some(Token::Lit(x)) if x == c => s + 1,
                    Some(Token::One) => s + 1,
                    Some(Token::Any) => s,
                    _ => continue,
                };
                out[to / 64] |= 1 << (to % 64);
            }
        }
        close(&mut out);
        out
    };
    // Every character that can make a difference, plus one for all the others.
    let mut alphabet: Vec<char> = inner
        .iter()
        .chain(outer.iter().flatten())
        .filter_map(|t| match t {
            Token::Lit(c) => Some(*c),
            _ => None,
        })
        .collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    // The stand-in for all other characters goes first: examples read better with it.
    alphabet.insert(0, other_char(inner.iter().chain(outer.iter().flatten())));

    // Breadth-first over (position in the requested pattern, set of rule states reached
    // by the same name); a pair at the pattern's end whose set accepts nothing is a name
    // the pattern matches and the rule does not.
    let mut initial = vec![0u64; words];
    for &s in &start {
        initial[s / 64] |= 1 << (s % 64);
    }
    close(&mut initial);
    let mut search = Search::default();
    search.visit((0, initial), 0, None);
    let mut work = 0usize;
    while let Some((id, (i, set))) = search.queue.pop_front() {
        if i == inner.len() && !accepting(&set) {
            return Coverage::NotCovered(search.name_to(id));
        }
        let mut next: Vec<(Node, Option<char>)> = Vec::new();
        match inner.get(i) {
            None => {}
            Some(Token::Lit(c)) => next.push(((i + 1, step(&set, *c)), Some(*c))),
            Some(t) => {
                if *t == Token::Any {
                    next.push(((i + 1, set.clone()), None));
                }
                let to = if *t == Token::Any { i } else { i + 1 };
                for &c in &alphabet {
                    next.push(((to, step(&set, c)), Some(c)));
                }
            }
        }
        let members: usize = set.iter().map(|w| w.count_ones() as usize).sum();
        work = work.saturating_add(next.len().saturating_mul(members + words));
        if work > MAX_COVERAGE_WORK {
            return Coverage::TooComplex;
        }
        for (node, c) in next {
            search.visit(node, id, c);
        }
    }
    Coverage::Covered
}

/// A state of [`covers`]' search: position in the requested pattern, and the set of
/// states of the rule's patterns (a bit set).
type Node = (usize, Vec<u64>);

/// The states [`covers`] has reached, and how (to spell out a counterexample).
#[derive(Default)]
struct Search {
    seen: HashSet<Node>,
    /// For each node reached: the node it was reached from, and the character read on
    /// the way.
    trail: Vec<(usize, Option<char>)>,
    /// Nodes still to expand, with their ids.
    queue: VecDeque<(usize, Node)>,
}

impl Search {
    fn visit(&mut self, node: Node, parent: usize, c: Option<char>) {
        if self.seen.contains(&node) {
            return;
        }
        let id = self.trail.len();
        self.seen.insert(node.clone());
        self.trail.push((parent, c));
        self.queue.push_back((id, node));
    }

    /// The name read on the way from the first node to node `id`.
    fn name_to(&self, mut id: usize) -> String {
        let mut name = Vec::new();
        while id != 0 {
            let (parent, c) = self.trail[id];
            name.extend(c);
            id = parent;
        }
        name.into_iter().rev().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: Case = Case::Insensitive;

    #[test]
    fn matching() {
        assert!(matches("db-*", "DB-7", H));
        assert!(!matches("db-*", "DB-7", Case::Sensitive));
        assert!(matches("db-?", "db-7", H));
        assert!(!matches("db-?", "db-70", H));
        assert!(matches("*", "", H));
        assert!(matches("**", "a.b", H));
        assert!(matches("a*b*c", "aXbYbc", H));
        assert!(!matches("a*b*c", "aXbYb", H));
        // No classes: a bracket is an ordinary character.
        assert!(matches("[ab]", "[AB]", H));
        assert!(!matches("[ab]", "a", H));
    }

    #[test]
    fn the_issue_examples_are_not_covered_and_overlap() {
        // A request for *.dev.example can reach the hosts a deny rule names.
        assert_eq!(
            common_name("*.dev.example", "secret-*.dev.example", H).as_deref(),
            Some("secret-y.dev.example")
        );
        // `?` in a rule does not cover a `*` in the request.
        assert_eq!(
            covers(&["app-?.q.example"], "app-*.q.example", H),
            Coverage::NotCovered("app-yy.q.example".into())
        );
        // Where a star must stand for nothing, the example says so.
        assert_eq!(
            covers(&["app-?*"], "app-*", H),
            Coverage::NotCovered("app-".into())
        );
        assert_eq!(common_name("a*b", "ab", H).as_deref(), Some("ab"));
    }

    #[test]
    fn coverage() {
        let yes =
            |by: &[&str], p: &str| assert_eq!(covers(by, p, H), Coverage::Covered, "{by:?} ⊇ {p}");
        let no = |by: &[&str], p: &str| match covers(by, p, H) {
            Coverage::NotCovered(w) => {
                assert!(matches(p, &w, H), "{w} not matched by {p}");
                assert!(
                    !by.iter().any(|b| matches(b, &w, H)),
                    "{w} matched by {by:?}"
                );
            }
            other => panic!("{by:?} ⊇ {p}: {other:?}"),
        };
        yes(&["db-*"], "db-*");
        yes(&["db-*"], "DB-**");
        yes(&["db-*"], "db-1*");
        yes(&["db-*"], "db-?");
        yes(&["db-*"], "db-7");
        yes(&["*"], "*");
        yes(&["app-?.q.example"], "app-?.q.example");
        yes(&["app-?.q.example"], "APP-1.q.example");
        yes(&["*.example"], "*.*.example");
        yes(&["a*", "b*"], "a?*");
        // Together, two patterns cover what neither covers alone.
        yes(&["?", "??*"], "?*");
        yes(&["*a*", "*b*"], "*a*b*");
        no(&["db-*"], "*");
        no(&["db-*"], "d*");
        no(&["app-?.q.example"], "app-*.q.example");
        no(&["app-?.q.example"], "app-??.q.example");
        no(&["*.example"], "*example");
        no(&["a*", "b*"], "?*");
        no(&[], "x");
        no(&["?", "??*"], "*");
        no(&["db-7"], "db-?");
    }

    #[test]
    fn overlap() {
        assert_eq!(common_name("db-7", "DB-*", H).as_deref(), Some("db-7"));
        assert_eq!(common_name("db-7", "web-*", H), None);
        assert_eq!(common_name("a*", "*b", H).as_deref(), Some("ab"));
        assert_eq!(common_name("a?", "?b", H).as_deref(), Some("ab"));
        assert_eq!(common_name("??", "???", H), None);
        assert_eq!(common_name("*", "*", H).as_deref(), Some("x"));
        assert!(common_name("x*", "?", H).is_some());
    }

    #[test]
    fn a_rule_too_complex_to_decide_is_refused_not_waved_through() {
        // "The 21st character from the end is an a": its automaton has 2^20 states, and
        // so has the search for whether it covers a narrower pattern.
        let hard = format!("*a{}", "?".repeat(20));
        let narrower = format!("*a{}b", "?".repeat(19));
        assert_eq!(covers(&[&hard], &narrower, H), Coverage::TooComplex);
        // Repeated verbatim it is covered all the same.
        assert_eq!(covers(&[&hard], &hard, H), Coverage::Covered);
        // A moderate one is still decided.
        let fine = format!("*a{}", "?".repeat(6));
        let narrower = format!("*a{}b", "?".repeat(5));
        assert_eq!(covers(&[&fine], &narrower, H), Coverage::Covered);
        assert!(matches!(covers(&[&fine], "*", H), Coverage::NotCovered(_)));
    }

    /// A pattern over a small alphabet, so that patterns and names meet often.
    fn pattern(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(prop::sample::select(vec!['a', 'B', '.', '*', '?']), 0..=max)
            .prop_map(|v| v.into_iter().collect())
    }

    fn name(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(prop::sample::select(vec!['a', 'b', 'A', '.', 'x']), 0..=max)
            .prop_map(|v| v.into_iter().collect())
    }

    /// A name `p` matches: each `?` becomes one of `fill`'s characters, each `*` a run.
    fn instance(p: &str, fill: &[String]) -> String {
        let mut fills = fill.iter().cycle();
        p.chars()
            .map(|c| match c {
                '*' => fills.next().cloned().unwrap_or_default(),
                '?' => fills
                    .next()
                    .and_then(|f| f.chars().next())
                    .unwrap_or('x')
                    .to_string(),
                c => c.to_string(),
            })
            .collect()
    }

    /// Every name over {a, b, x, .} up to `len` characters.
    fn all_names(len: usize) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|s| ['a', 'b', 'x', '.'].map(|c| format!("{s}{c}")))
                .collect();
            out.extend(last.iter().cloned());
        }
        out
    }

    proptest! {
        /// The matcher is the `glob` crate's (case-insensitive, no literal separators), the
        /// matcher hosts used before, for every pattern both understand.
        #[test]
        fn matches_agrees_with_the_glob_crate(p in pattern(8), n in name(8), sensitive: bool) {
            prop_assume!(!p.contains("**"));
            let opts = glob::MatchOptions {
                case_sensitive: sensitive,
                require_literal_separator: false,
                require_literal_leading_dot: false,
            };
            let case = if sensitive { Case::Sensitive } else { Case::Insensitive };
            let g = glob::Pattern::new(&p).unwrap().matches_with(&n, opts);
            prop_assert_eq!(matches(&p, &n, case), g);
        }

        /// A covered pattern's names all match a covering pattern; a refusal's example is
        /// a name the pattern matches and no covering pattern does.
        #[test]
        fn covers_is_exact(
            by in proptest::collection::vec(pattern(5), 0..3),
            p in pattern(5),
            fill in proptest::collection::vec(name(3), 1..4),
            extra in name(6),
        ) {
            match covers(&by, &p, H) {
                Coverage::Covered => {
                    for n in [instance(&p, &fill), extra] {
                        if matches(&p, &n, H) {
                            prop_assert!(by.iter().any(|b| matches(b, &n, H)), "{} matches {} but none of {:?}", n, p, by);
                        }
                    }
                }
                Coverage::NotCovered(w) => {
                    prop_assert!(matches(&p, &w, H));
                    prop_assert!(!by.iter().any(|b| matches(b, &w, H)));
                }
                Coverage::TooComplex => prop_assert!(false, "small patterns are decided"),
            }
        }

        /// For a name (no wildcard), [`covers`]' shortcut answers as the search does.
        #[test]
        fn covers_of_a_name_agrees_with_the_search(
            by in proptest::collection::vec(pattern(5), 0..3),
            n in name(6),
            sensitive: bool,
        ) {
            let case = if sensitive { Case::Sensitive } else { Case::Insensitive };
            let searched = search_coverage(&by, &n, case);
            match covers(&by, &n, case) {
                Coverage::Covered => prop_assert_eq!(searched, Coverage::Covered),
                Coverage::NotCovered(w) => {
                    prop_assert_eq!(&w, &n);
                    prop_assert!(matches!(searched, Coverage::NotCovered(_)), "{:?}", searched);
                }
                Coverage::TooComplex => prop_assert!(false, "a name is always decided"),
            }
        }

        /// Overlap is exact: an example is matched by both; without one, no name of the
        /// first pattern matches the second.
        #[test]
        fn common_name_is_exact(
            a in pattern(5),
            b in pattern(5),
            fill in proptest::collection::vec(name(3), 1..4),
            extra in name(6),
        ) {
            match common_name(&a, &b, H) {
                Some(w) => {
                    prop_assert!(matches(&a, &w, H) && matches(&b, &w, H), "{:?}", w);
                }
                None => {
                    for n in [instance(&a, &fill), instance(&b, &fill), extra] {
                        prop_assert!(!(matches(&a, &n, H) && matches(&b, &n, H)), "{} matches both", n);
                    }
                }
            }
        }

        /// Repeating a pattern verbatim, or narrowing it, is always covered.
        #[test]
        fn a_pattern_covers_itself_and_its_narrowings(p in pattern(8), fill in name(3)) {
            prop_assert_eq!(covers(&[&p], &p, H), Coverage::Covered);
            let narrower = p.replacen('*', &format!("{fill}*"), 1).replacen('?', "a", 1);
            prop_assert_eq!(covers(&[&p], &narrower, H), Coverage::Covered);
        }
    }

    /// Against brute force: for small patterns, a covered pattern has no counterexample
    /// among all short names, and overlap is found iff a short common name exists.
    #[test]
    fn exhaustive_small_cases() {
        let names = all_names(6);
        let pats: Vec<String> = [
            "", "a", "*", "?", "a*", "*a", "?a", "a?", "*a*", "??", "a*b", "*.b", "?*?", "b.?",
        ]
        .map(str::to_owned)
        .to_vec();
        for by in &pats {
            for p in &pats {
                let counter = names
                    .iter()
                    .find(|n| matches(p, n, H) && !matches(by, n, H));
                match covers(&[by], p, H) {
                    Coverage::Covered => assert!(counter.is_none(), "{by} ⊇ {p}? {counter:?}"),
                    Coverage::NotCovered(_) => {
                        assert!(counter.is_some(), "{by} ⊉ {p} but no short name shows it")
                    }
                    Coverage::TooComplex => panic!("{by} {p}"),
                }
                let both = names.iter().any(|n| matches(p, n, H) && matches(by, n, H));
                assert_eq!(common_name(by, p, H).is_some(), both, "{by} ∩ {p}");
            }
        }
    }
}
