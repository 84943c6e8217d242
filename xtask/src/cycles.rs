//! `xtask check-cycles`: no import cycles between the modules (files) of a crate.
//!
//! A module uses another when it names it: a `use` of one of its items, or a path in the
//! code that starts with `crate::`, `super::`, `self::` or a child module's name (macro
//! bodies included, `$crate::` too). Each crate's module tree is read from its root file by
//! following `mod` declarations, parsed with `syn`; `#[cfg(test)]` items and modules are left
//! out (a test module uses its parent by nature). A module uses a module, not an item: the
//! target of a path is the deepest module it names. Cycles are the strongly connected
//! components of that graph with more than one module; a module using itself, or a parent
//! owning its children (`mod x;`), does not count.
//!
//! What it cannot see: paths that macros build from pieces, and modules declared by a
//! macro. Both are rare here; `cargo modules dependencies` (rust-analyzer based) sees
//! through macros but counts only `use` items, and costs ten minutes to install.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// A module's path below its crate root (`[]` is the root).
pub type ModPath = Vec<String>;

/// One module of a crate and what it names.
#[derive(Debug)]
struct Module {
    /// The file it is in.
    file: PathBuf,
    /// Its child modules (declared with `mod`), test modules left out.
    children: BTreeSet<String>,
    /// Paths it names, as written (relative ones resolved later).
    paths: Vec<Vec<String>>,
}

/// A use of one module by another, with one path that shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The module that names the other.
    pub from: ModPath,
    /// The module named.
    pub to: ModPath,
    /// The file of `from`.
    pub file: PathBuf,
    /// One path, as written, that names `to`.
    pub via: String,
}

/// The module graph of one crate.
#[derive(Debug)]
pub struct Graph {
    /// Every non-test module, with its file.
    pub modules: BTreeMap<ModPath, PathBuf>,
    /// One edge per (from, to) pair.
    pub edges: Vec<Edge>,
}

/// A cycle: modules that all reach each other, and the edges between them.
#[derive(Debug)]
pub struct Cycle {
    /// The modules, sorted.
    pub modules: Vec<ModPath>,
    /// The edges among them.
    pub edges: Vec<Edge>,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.modules.iter().map(|m| name(m)).collect();
        writeln!(f, "cycle between {}:", names.join(", "))?;
        for e in &self.edges {
            writeln!(
                f,
                "  {} -> {}   ({}: `{}`)",
                name(&e.from),
                name(&e.to),
                e.file.display(),
                e.via
            )?;
        }
        Ok(())
    }
}

/// `crate::a::b` for a module path.
#[must_use]
pub fn name(m: &[String]) -> String {
    std::iter::once("crate")
        .chain(m.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("::")
}

/// Reads the crate whose root file is `root` (`src/lib.rs` or a binary's main file).
pub fn read_crate(root: &Path) -> Result<Graph, String> {
    let mut modules = BTreeMap::new();
    let dir = root.parent().unwrap_or(Path::new(".")).to_owned();
    load_file(root, Vec::new(), &dir, &mut modules)?;
    let mut edges: Vec<Edge> = Vec::new();
    for (path, m) in &modules {
        for p in &m.paths {
            let Some(abs) = resolve(path, p, &m.children) else {
                continue;
            };
            let Some(to) = deepest_module(&abs, &modules) else {
                continue;
            };
            if &to == path || edges.iter().any(|e| &e.from == path && e.to == to) {
                continue;
            }
            edges.push(Edge {
                from: path.clone(),
                to,
                file: m.file.clone(),
                via: p.join("::"),
            });
        }
    }
    Ok(Graph {
        modules: modules.into_iter().map(|(k, v)| (k, v.file)).collect(),
        edges,
    })
}

/// The cycles of `g`, largest first.
#[must_use]
pub fn cycles(g: &Graph) -> Vec<Cycle> {
    let nodes: Vec<&ModPath> = g.modules.keys().collect();
    let index: BTreeMap<&ModPath, usize> = nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut succ = vec![Vec::new(); nodes.len()];
    for e in &g.edges {
        if let (Some(&a), Some(&b)) = (index.get(&e.from), index.get(&e.to)) {
            succ[a].push(b);
        }
    }
    let mut out: Vec<Cycle> = tarjan(&succ)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let set: BTreeSet<&ModPath> = c.iter().map(|&i| nodes[i]).collect();
            let mut modules: Vec<ModPath> = set.iter().map(|m| (*m).clone()).collect();
            modules.sort();
            let edges = g
                .edges
                .iter()
                .filter(|e| set.contains(&e.from) && set.contains(&e.to))
                .cloned()
                .collect();
            Cycle { modules, edges }
        })
        .collect();
    out.sort_by(|a, b| {
        b.modules
            .len()
            .cmp(&a.modules.len())
            .then(a.modules.cmp(&b.modules))
    });
    out
}

/// Strongly connected components (Tarjan), iteratively: no recursion on deep graphs.
fn tarjan(succ: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = succ.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        // (node, position in its successor list)
        let mut work = vec![(start, 0)];
        index[start] = next;
        low[start] = next;
        next += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some(&mut (v, ref mut i)) = work.last_mut() {
            if let Some(&w) = succ[v].get(*i) {
                *i += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(comp);
            }
        }
    }
    out
}

/// The absolute module path `p` (written in module `cur`) starts with, if it is in this
/// crate: `crate::`, `super::`, `self::`, or a child module of `cur`.
fn resolve(cur: &[String], p: &[String], children: &BTreeSet<String>) -> Option<Vec<String>> {
    let first = p.first()?;
    match first.as_str() {
        "crate" | "$crate" => Some(p[1..].to_vec()),
        "self" => Some(cur.iter().chain(&p[1..]).cloned().collect()),
        "super" => {
            let mut base = cur.to_vec();
            let mut rest = p;
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
            Some(base.into_iter().chain(rest.iter().cloned()).collect())
        }
        name if children.contains(name) => Some(cur.iter().chain(p).cloned().collect()),
        _ => None,
    }
}

/// The longest prefix of `abs` that is a module of the crate.
fn deepest_module(abs: &[String], modules: &BTreeMap<ModPath, Module>) -> Option<ModPath> {
    (0..=abs.len())
        .rev()
        .map(|n| abs[..n].to_vec())
        .find(|m| modules.contains_key(m))
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| matches!(&m, syn::Meta::Path(p) if p.is_ident("test")))
    })
}

fn load_file(
    file: &Path,
    path: ModPath,
    dir: &Path,
    modules: &mut BTreeMap<ModPath, Module>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let ast =
        syn::parse_file(&text).map_err(|e| format!("cannot parse {}: {e}", file.display()))?;
    load_items(&ast.items, file, path, dir, modules)
}

/// Adds module `path` (whose items are `items`, in `file`; its children's files are in
/// `dir`) and its non-test descendants.
fn load_items(
    items: &[syn::Item],
    file: &Path,
    path: ModPath,
    dir: &Path,
    modules: &mut BTreeMap<ModPath, Module>,
) -> Result<(), String> {
    let mut m = Module {
        file: file.to_owned(),
        children: BTreeSet::new(),
        paths: Vec::new(),
    };
    let mut subs = Vec::new();
    for item in items {
        match item {
            syn::Item::Mod(sub) => {
                if is_cfg_test(&sub.attrs) {
                    continue;
                }
                let name = sub.ident.to_string();
                m.children.insert(name.clone());
                subs.push(sub);
            }
            syn::Item::Use(u) if !is_cfg_test(&u.attrs) => {
                use_paths(&u.tree, &mut Vec::new(), &mut m.paths);
            }
            other => {
                if item_is_cfg_test(other) {
                    continue;
                }
                let mut v = PathCollector {
                    paths: &mut m.paths,
                };
                v.visit_item(other);
            }
        }
    }
    modules.insert(path.clone(), m);
    for sub in subs {
        let name = sub.ident.to_string();
        let mut child = path.clone();
        child.push(name.clone());
        let child_dir = dir.join(&name);
        match &sub.content {
            Some((_, items)) => load_items(items, file, child, &child_dir, modules)?,
            None => {
                let flat = dir.join(format!("{name}.rs"));
                let nested = dir.join(&name).join("mod.rs");
                let (child_file, grand_dir) = if flat.is_file() {
                    (flat, child_dir)
                } else if nested.is_file() {
                    (nested, child_dir)
                } else {
                    return Err(format!(
                        "{}: module `{name}` is in neither {} nor {}",
                        file.display(),
                        flat.display(),
                        nested.display()
                    ));
                };
                load_file(&child_file, child, &grand_dir, modules)?;
            }
        }
    }
    Ok(())
}

fn item_is_cfg_test(item: &syn::Item) -> bool {
    let attrs = match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::ExternCrate(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::ForeignMod(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::TraitAlias(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        _ => return false,
    };
    is_cfg_test(attrs)
}

/// Every path a `use` tree names (`use a::{self, b::*}` names `a` and `a::b`).
fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) if n.ident == "self" => out.push(prefix.clone()),
        syn::UseTree::Name(n) => out.push(
            prefix
                .iter()
                .cloned()
                .chain([n.ident.to_string()])
                .collect(),
        ),
        syn::UseTree::Rename(r) if r.ident == "self" => out.push(prefix.clone()),
        syn::UseTree::Rename(r) => {
            out.push(
                prefix
                    .iter()
                    .cloned()
                    .chain([r.ident.to_string()])
                    .collect(),
            );
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_paths(t, prefix, out);
            }
        }
    }
}

/// Collects the paths in an item's code, and the `crate::`/`super::`/`self::` paths in
/// the token streams of the macros it calls or defines. Nested `#[cfg(test)]` items are
/// skipped.
struct PathCollector<'a> {
    paths: &'a mut Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for PathCollector<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() {
            self.paths
                .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        macro_paths(m.tokens.clone(), self.paths);
        syn::visit::visit_macro(self, m);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_cfg_test(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {
        // `pub(super)`, `pub(in crate::a)`: who may see an item, not a use of a module.
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // A module inside a function or block is rare; its paths belong to it, not here.
    }
}

/// `crate :: a :: b`, `$crate :: a`, `super :: a`, `self :: a` sequences in a token stream.
fn macro_paths(tokens: TokenStream, out: &mut Vec<Vec<String>>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Group(g) => macro_paths(g.stream(), out),
            TokenTree::Ident(id) => {
                let start = id.to_string();
                let dollar =
                    i > 0 && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == '$');
                if matches!(start.as_str(), "crate" | "super" | "self") {
                    let mut path = vec![if dollar && start == "crate" {
                        "$crate".to_owned()
                    } else {
                        start
                    }];
                    let mut j = i + 1;
                    // `::` is two `:` puncts; then an ident.
                    loop {
                        let colon = |k: usize| matches!(tokens.get(k), Some(TokenTree::Punct(p)) if p.as_char() == ':');
                        match tokens.get(j + 2) {
                            Some(TokenTree::Ident(next)) if colon(j) && colon(j + 1) => {
                                path.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    if path.len() > 1 {
                        out.push(path);
                    }
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// The root files of the workspace's library and binary targets (`cargo metadata`), by
/// package and target name. Tests, benches and examples are left out.
pub fn workspace_targets(workspace: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(workspace)
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let mut targets = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let pname = pkg["name"].as_str().unwrap_or_default();
        for t in pkg["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = t["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str())
                .collect();
            if !kinds
                .iter()
                .any(|k| matches!(*k, "lib" | "cdylib" | "rlib" | "bin"))
            {
                continue;
            }
            let tname = t["name"].as_str().unwrap_or_default();
            let src = t["src_path"].as_str().unwrap_or_default();
            targets.push((format!("{pname} ({tname})"), PathBuf::from(src)));
        }
    }
    targets.sort();
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    fn cycle_names(root: &Path) -> Vec<Vec<String>> {
        let g = read_crate(root).unwrap();
        cycles(&g)
            .iter()
            .map(|c| c.modules.iter().map(|m| name(m)).collect())
            .collect()
    }

    #[test]
    fn a_cycle_through_use_super_and_inline_paths_is_found_and_shown() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[
                ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
                ("a.rs", "use crate::b::B;\npub struct A(B);\n"),
                ("b.rs", "pub struct B;\npub fn f() { super::c::g() }\n"),
                ("c.rs", "pub fn g() { let _ = crate::a::A(crate::b::B); }\n"),
            ],
        );
        let g = read_crate(&d.path().join("lib.rs")).unwrap();
        let found = cycles(&g);
        assert_eq!(found.len(), 1, "{found:?}");
        let shown = found[0].to_string();
        assert!(shown.contains("crate::a, crate::b, crate::c"), "{shown}");
        assert!(
            shown.contains("crate::b -> crate::c") && shown.contains("super::c::g"),
            "{shown}"
        );
    }

    #[test]
    fn a_parent_re_exporting_a_child_that_uses_the_parent_is_a_cycle() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[
                ("lib.rs", "pub mod ev;\n"),
                ("ev/mod.rs", "mod kind;\npub use kind::K;\npub struct Id;\n"),
                ("ev/kind.rs", "use super::Id;\npub struct K(Id);\n"),
            ],
        );
        assert_eq!(
            cycle_names(&d.path().join("lib.rs")),
            [["crate::ev", "crate::ev::kind"]]
        );
        // The same with the shared type in a leaf sibling: no cycle.
        write(
            d.path(),
            &[
                (
                    "ev/mod.rs",
                    "mod id;\nmod kind;\npub use id::Id;\npub use kind::K;\n",
                ),
                ("ev/id.rs", "pub struct Id;\n"),
                ("ev/kind.rs", "use super::id::Id;\npub struct K(Id);\n"),
            ],
        );
        assert!(cycle_names(&d.path().join("lib.rs")).is_empty());
    }

    #[test]
    fn test_modules_and_items_and_macro_bodies_are_handled() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[
                (
                    "lib.rs",
                    "pub mod a;\npub mod b;\n#[cfg(test)]\nmod tests { use crate::a::*; }\n",
                ),
                (
                    "a.rs",
                    "pub fn f() {}\n#[cfg(test)]\nmod tests { use crate::b::g; }\n#[cfg(test)]\nfn t() { crate::b::g() }\n",
                ),
                ("b.rs", "pub fn g() { crate::a::f() }\n"),
            ],
        );
        assert!(cycle_names(&d.path().join("lib.rs")).is_empty());
        // A path inside a macro call counts.
        write(
            d.path(),
            &[("a.rs", "pub fn f() { assert!(crate::b::ok()); }\n")],
        );
        write(
            d.path(),
            &[("b.rs", "pub fn ok() -> bool { crate::a::f(); true }\n")],
        );
        assert_eq!(
            cycle_names(&d.path().join("lib.rs")),
            [["crate::a", "crate::b"]]
        );
    }

    #[test]
    fn visibility_paths_are_not_uses() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[
                ("lib.rs", "pub mod p;\n"),
                ("p/mod.rs", "mod c;\npub fn f() { c::g() }\n"),
                (
                    "p/c.rs",
                    "pub(super) fn g() {}\npub(in crate::p) struct S;\n",
                ),
            ],
        );
        assert!(cycle_names(&d.path().join("lib.rs")).is_empty());
    }

    #[test]
    fn a_missing_module_file_is_an_error_naming_both_places() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &[("lib.rs", "mod gone;\n")]);
        let e = read_crate(&d.path().join("lib.rs")).unwrap_err();
        assert!(e.contains("gone.rs") && e.contains("gone/mod.rs"), "{e}");
    }
}
