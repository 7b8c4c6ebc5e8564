//! `cargo xtask layers` (also a step of `ci`): buffer-core's modules import only from their own
//! layer or the layers below it.
//!
//! Each layer is a folder `src/<layer>/` of the crate; [`BUFFER_CORE`] lists them bottom to top.
//! The check reads the source text (no compiler): every `.rs` file but `lib.rs` lies in a layer
//! folder, and every path in it that reaches the crate root (`crate::…`, `$crate::…`, or
//! `super::…` climbing out of the layer, groups included) names a layer at or below the file's
//! own, or an exported macro defined there. What would hide a path from it is refused in a layer
//! file: an alias of the crate root (`use crate as x`, `extern crate self`), `#[path]`,
//! `include!`, a `super` that climbs above the root. Paths in comments and literals do not count;
//! test code counts like any other. `src/lib.rs` is the crate root and may name every layer: it
//! only re-exports.
//!
//! It reads the source, not the expansion: a macro that rewrites the tokens it is given (drops
//! a `mod x {` around a `use super::…`, say) can still hide a path from it.

mod tokens;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokens::Token;

/// A crate's layers: a module may import from its own layer and from those below it.
pub struct Layering {
    /// The crate's source folder, from the workspace root.
    pub src: &'static str,
    /// Each layer's folder under `src` and what it holds, bottom first.
    pub layers: &'static [(&'static str, &'static str)],
}

/// buffer-core's layers, bottom to top.
#[rustfmt::skip] // one line a layer, so that changing the layering is a one-line edit
pub const BUFFER_CORE: Layering = Layering {
    src: "crates/buffer-core/src",
    layers: &[
        ("sync", "atomics (std or loom), futex, the `ShmSafe` marker; compiled under loom"),
        ("lockfree", "the lock-free queue and the wait/wake protocol; compiled under loom"),
        ("shm", "memory regions, shared-memory segments, fork handling, kernel-held liveness locks, clock"),
        ("block", "the `#[repr(C)]` pool block: layout, slots, port entries, process table, the view, the reaper"),
        ("pool", "the public pool API (`BufferPool`, guards, ports, errors, ...)"),
        ("ext", "extras built on the pool layer (tiered pools, bytes interop, the counting allocator)"),
    ],
};

/// What to do when the check fails.
pub const FIX: &str = "a module reaches up a layer: move the item it needs down into a lower layer, or the code that needs it up into a higher one; a file outside the layers moves into the folder of the layer it belongs to (the layers, bottom to top, are `BUFFER_CORE` in xtask/src/layers.rs)";

/// Checks [`BUFFER_CORE`] in the workspace at `root`, printing one line per violation; whether
/// there was none.
pub fn run(root: &Path) -> bool {
    match check(root, &BUFFER_CORE) {
        Ok(violations) if violations.is_empty() => true,
        Ok(violations) => {
            for violation in &violations {
                eprintln!("{violation}");
            }
            eprintln!(
                "{} violations of the layering ({}, bottom to top)",
                violations.len(),
                layer_names(&BUFFER_CORE)
            );
            false
        }
        Err(message) => {
            eprintln!("{message}");
            false
        }
    }
}

/// The violations of `layering` in the workspace at `root`, one line each
/// (`crates/…/src/block/slot.rs:12: layer `block` imports …`), in file order; an error when
/// the sources cannot be read.
pub fn check(root: &Path, layering: &Layering) -> Result<Vec<String>, String> {
    let src = root.join(layering.src);
    let mut files = Vec::new();
    rust_files(&src, &mut files)?;
    files.sort();
    let mut sources = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap_or(file).to_path_buf();
        let source = std::fs::read_to_string(file).map_err(|error| {
            format!(
                "cannot read {}: {error}",
                Path::new(layering.src).join(&relative).display()
            )
        })?;
        sources.push((relative, source));
    }
    let macros = exported_macros(layering, &sources);
    let mut violations = Vec::new();
    for (relative, source) in &sources {
        let shown = Path::new(layering.src).join(relative);
        let parts: Vec<&str> = relative.iter().filter_map(|part| part.to_str()).collect();
        if parts == ["lib.rs"] {
            continue; // the crate root re-exports every layer
        }
        let Some(rank) = layering.rank(parts[0]).filter(|_| parts.len() > 1) else {
            violations.push(stray(layering, &shown, &parts));
            continue;
        };
        for finding in findings(&tokens::tokens(source), &module_of(&parts)) {
            if let Some(message) = layering.judge(rank, &finding, &macros) {
                violations.push(format!("{}:{}: {message}", shown.display(), finding.line()));
            }
        }
    }
    Ok(violations)
}

/// Each `#[macro_export]` macro of the crate, by name, with the rank of the layer whose file
/// defines it (`lib.rs`'s count as the bottom's). Such a macro lives at the crate root whatever
/// file defines it, so `crate::name` is the only path to it.
fn exported_macros(layering: &Layering, sources: &[(PathBuf, String)]) -> HashMap<String, usize> {
    let mut macros = HashMap::new();
    for (relative, source) in sources {
        let first = relative
            .iter()
            .next()
            .and_then(|part| part.to_str())
            .unwrap_or("");
        let rank = layering.rank(first).unwrap_or(0);
        let tokens = tokens::tokens(source);
        let text = |at: usize| tokens.get(at).map(|token| token.text);
        for at in 0..tokens.len() {
            if [Some("#"), Some("["), Some("macro_export")]
                == [text(at), text(at + 1), text(at + 2)]
            {
                let definition = (at + 3..tokens.len())
                    .find(|&next| text(next) == Some("macro_rules") && text(next + 1) == Some("!"));
                if let Some(name) = definition.and_then(|next| text(next + 2)) {
                    macros.insert(name.to_owned(), rank);
                }
            }
        }
    }
    macros
}

impl Layering {
    /// The rank of the layer `name`, from 0 at the bottom, if it is one.
    fn rank(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|&(layer, _)| layer == name)
    }

    /// What is wrong with `finding`, in a file of the layer of rank `own`, if anything.
    fn judge(
        &self,
        own: usize,
        finding: &Finding,
        macros: &HashMap<String, usize>,
    ) -> Option<String> {
        let layer = self.layers[own].0;
        let reach = match finding {
            Finding::Root(reach) => reach,
            Finding::Opaque { what, .. } => {
                return Some(format!(
                    "layer `{layer}` uses {what}, which hides from this check where its paths lead"
                ));
            }
        };
        let through = if reach.written.starts_with("crate::") {
            String::new()
        } else {
            format!(" (written `{}`)", reach.written)
        };
        match self
            .rank(reach.first)
            .or_else(|| macros.get(reach.first).copied())
        {
            Some(rank) if rank <= own => None,
            Some(_) if self.rank(reach.first).is_some() => Some(format!(
                "layer `{layer}` imports `crate::{}` (a layer above it){through}",
                reach.first
            )),
            Some(rank) => Some(format!(
                "layer `{layer}` imports `crate::{}`, a macro exported by layer `{}` (above it){through}",
                reach.first, self.layers[rank].0
            )),
            None => Some(format!(
                "layer `{layer}` imports `crate::{}` from the crate root{through}: name the layer (crate::<layer>::{}) instead of the crate root's re-export",
                reach.first,
                if reach.first == "*" {
                    "…"
                } else {
                    reach.first
                }
            )),
        }
    }
}

/// The layers' folders, bottom to top, for messages: `sync/, lockfree/, …`.
fn layer_names(layering: &Layering) -> String {
    let names: Vec<String> = layering
        .layers
        .iter()
        .map(|(name, _)| format!("{name}/"))
        .collect();
    names.join(", ")
}

/// The violation of a file outside every layer folder (`parts`: its path under `src`, shown as
/// `shown`).
fn stray(layering: &Layering, shown: &Path, parts: &[&str]) -> String {
    let stem = parts[0].strip_suffix(".rs").unwrap_or(parts[0]);
    if parts.len() == 1 && layering.rank(stem).is_some() {
        return format!(
            "{}: every module belongs to a layer, and a layer is a folder: move it to {}/{stem}/mod.rs",
            shown.display(),
            layering.src
        );
    }
    format!(
        "{}: every module belongs to a layer: move it into one of {}",
        shown.display(),
        layer_names(layering)
    )
}

/// Adds the `.rs` files under `dir`, at any depth, to `files`.
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("cannot read {}: {error}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|error| format!("cannot read {}: {error}", dir.display()))?
            .path();
        if path.is_dir() {
            rust_files(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// The module a file is, from its path under `src` (`block/view.rs` is `block::view`;
/// `block/mod.rs` is `block`).
fn module_of<'a>(parts: &[&'a str]) -> Vec<&'a str> {
    let (file, folders) = parts.split_last().expect("a file has a name");
    let mut module = folders.to_vec();
    if *file != "mod.rs" {
        module.push(file.strip_suffix(".rs").unwrap_or(file));
    }
    module
}

/// A path that resolves to the crate root and names something there.
#[derive(Debug, PartialEq, Eq)]
struct RootPath<'a> {
    /// The first segment after the root: a layer, a root re-export, an exported macro, or `*`.
    first: &'a str,
    /// The line of that segment.
    line: usize,
    /// The path as written, up to that segment (`super::super::pool`, `crate::block`).
    written: String,
}

/// What the check finds in a file's code.
#[derive(Debug, PartialEq, Eq)]
enum Finding<'a> {
    /// A path reaching the crate root, judged by what it names there.
    Root(RootPath<'a>),
    /// Something whose paths the check cannot follow, refused wherever it is: an alias of the
    /// crate root, `#[path]`, `include!`, a `super` climbing above the root.
    Opaque { line: usize, what: String },
}

impl Finding<'_> {
    fn line(&self) -> usize {
        match self {
            Finding::Root(reach) => reach.line,
            Finding::Opaque { line, .. } => *line,
        }
    }
}

/// What the check finds in `tokens`, the code of the module `module`: every path that resolves
/// to the crate root, with what it names there (in `use` items, groups included, and inline in
/// code), and everything that would hide such a path. A path that stays inside `module`'s layer
/// (`super::x` from below the layer's folder, `self::x`) names nothing at the root; `pub(crate)`
/// and `pub(in crate::x)` are visibility, not paths.
fn findings<'a>(tokens: &[Token<'a>], module: &[&'a str]) -> Vec<Finding<'a>> {
    let text = |at: usize| tokens.get(at).map(|token| token.text);
    let opaque = |at: usize, what: &str| Finding::Opaque {
        line: tokens[at].line,
        what: what.to_owned(),
    };
    let mut found = Vec::new();
    // The inline modules (`mod tests { … }`) around the current token, with their brace depth.
    let mut inline: Vec<(&str, usize)> = Vec::new();
    let mut depth = 0;
    // The end of the path last resolved: its inner `super`s and groups are resolved already.
    let mut resolved_to = 0;
    for at in 0..tokens.len() {
        match tokens[at].text {
            "{" => {
                depth += 1;
                if at >= 2 && text(at - 2) == Some("mod") && tokens[at - 1].is_ident() {
                    inline.push((tokens[at - 1].text, depth));
                }
            }
            "}" => {
                if inline.last().is_some_and(|&(_, open)| open == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ if at < resolved_to => {}
            "#" if text(at + 1) == Some("[") && text(at + 2) == Some("path") => {
                found.push(opaque(
                    at,
                    "a `#[path]` attribute (a module file outside its folder)",
                ));
            }
            "include" if text(at + 1) == Some("!") => {
                found.push(opaque(at, "`include!` (code from another file)"));
            }
            "extern" if [text(at + 1), text(at + 2)] == [Some("crate"), Some("self")] => {
                found.push(opaque(
                    at,
                    "`extern crate self` (an alias of the crate root)",
                ));
            }
            "crate" if text(at + 1) == Some("as") => {
                found.push(opaque(at, "`use crate as …` (an alias of the crate root)"));
            }
            "crate" | "super" | "self"
                if text(at + 1) == Some("::")
                    && text(at.wrapping_sub(1)) != Some("::")
                    && !is_visibility(tokens, at) =>
            {
                let mut here: Vec<&str> = module.to_vec();
                here.extend(inline.iter().map(|&(name, _)| name));
                resolved_to = resolve(tokens, at, here, String::new(), &mut found);
            }
            _ => {}
        }
    }
    found
}

/// Whether the path at `tokens[at]` is the module of a `pub(in …)` visibility.
fn is_visibility(tokens: &[Token], at: usize) -> bool {
    let text = |back: usize| at.checked_sub(back).map(|at| tokens[at].text);
    [text(3), text(2), text(1)] == [Some("pub"), Some("("), Some("in")]
}

/// Resolves the path at `tokens[at]` from the module `here` (written so far: `written`),
/// adding to `found` what it names at the crate root, and the `super`s and groups inside it;
/// returns where the path ends.
fn resolve<'a>(
    tokens: &[Token<'a>],
    at: usize,
    mut here: Vec<&'a str>,
    mut written: String,
    found: &mut Vec<Finding<'a>>,
) -> usize {
    let text = |at: usize| tokens.get(at).map(|token| token.text);
    let mut next = at;
    while let Some(keyword @ ("crate" | "super" | "self")) = text(next)
        && text(next + 1) == Some("::")
    {
        match keyword {
            "crate" => here.clear(),
            "super" if here.pop().is_none() => {
                found.push(Finding::Opaque {
                    line: tokens[next].line,
                    what: format!(
                        "`{written}super`, which climbs above the crate root (a module a macro makes?)"
                    ),
                });
                return next + 2;
            }
            _ => {}
        }
        written.push_str(keyword);
        written.push_str("::");
        next += 2;
    }
    if text(next) != Some("{") {
        if here.is_empty() {
            named_at_root(tokens, next, &written, found);
        }
        return next + 1;
    }
    // A group: each item goes on from `here`, and may climb further with its own `super`s.
    let mut item = next + 1;
    loop {
        let end = end_of_item(tokens, item);
        match (text(item), text(item + 1)) {
            (Some("}") | None, _) => return item + 1,
            (Some("crate" | "super" | "self"), Some("::")) => {
                resolve(tokens, item, here.clone(), written.clone(), found);
            }
            (Some("self"), Some("as")) if here.is_empty() => found.push(Finding::Opaque {
                line: tokens[item].line,
                what: format!("`{written}{{self as …}}` (an alias of the crate root)"),
            }),
            _ if here.is_empty() => named_at_root(tokens, item, &written, found),
            _ => {} // below the root: inside the file's own layer
        }
        if text(end) != Some(",") {
            return end + 1; // the group's `}` (or not Rust)
        }
        item = end + 1;
    }
}

/// Adds what the path at `tokens[at]`, reached at the crate root through `written`, names there
/// to `found`: its first segment (an exported macro's name for `crate::name!`); nothing for
/// `crate::{self}`.
fn named_at_root<'a>(tokens: &[Token<'a>], at: usize, written: &str, found: &mut Vec<Finding<'a>>) {
    let Some(token) = tokens.get(at) else {
        return;
    };
    match token.text {
        "self" => {}
        first if first == "*" || token.is_ident() => found.push(Finding::Root(RootPath {
            first,
            line: token.line,
            written: format!("{written}{first}"),
        })),
        _ => {}
    }
}

/// Where the use-tree item starting at `tokens[at]` ends: the `,` or `}` after it at its own
/// level (or the end of the tokens).
fn end_of_item(tokens: &[Token], at: usize) -> usize {
    let mut depth = 0usize;
    for (offset, token) in tokens[at..].iter().enumerate() {
        match token.text {
            "{" => depth += 1,
            "}" if depth == 0 => return at + offset,
            "}" => depth -= 1,
            "," | ";" if depth == 0 => return at + offset,
            _ => {}
        }
    }
    tokens.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A crate tree in a temporary folder, laid out as [`BUFFER_CORE`] says, removed on drop.
    struct Fixture {
        root: PathBuf,
    }

    /// A clean tree: every layer imports from itself and below, through every kind of path.
    const CLEAN: &[(&str, &str)] = &[
        (
            "lib.rs",
            "mod sync;\nmod lockfree;\nmod shm;\nmod block;\nmod pool;\nmod ext;\npub use pool::{BufferPool, Guard};\npub use ext::tiered::Tiered;\n",
        ),
        ("sync/mod.rs", "pub struct Atomic;\n"),
        (
            "lockfree/mod.rs",
            "use crate::sync::Atomic;\npub struct Queue(Atomic);\n",
        ),
        ("shm/mod.rs", "pub mod fork;\n"),
        ("shm/fork.rs", "pub fn track() {}\n"),
        (
            "block/mod.rs",
            "mod slot;\nmod view;\nuse crate::{lockfree::Queue, shm::fork};\nuse self::slot::Slot;\n",
        ),
        ("block/slot.rs", "pub struct Slot;\n"),
        (
            "block/view.rs",
            "use super::slot::Slot;\nuse crate::block::slot;\nfn f() { crate::shm::fork::track(); }\n",
        ),
        (
            "pool/mod.rs",
            "use super::block;\nuse super::sync::Atomic;\npub struct BufferPool;\npub struct Guard;\n",
        ),
        ("ext/mod.rs", "pub mod tiered;\n"),
        (
            "ext/tiered.rs",
            "use crate::pool::{BufferPool, Guard};\npub struct Tiered(BufferPool);\n",
        ),
    ];

    impl Fixture {
        /// The [`CLEAN`] tree, with `files` (paths under `src`) added or replaced.
        fn new(files: &[(&str, &str)]) -> Fixture {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let root = std::env::temp_dir().join(format!(
                "xtask-layers-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&root);
            let src = root.join(BUFFER_CORE.src);
            for (path, text) in CLEAN.iter().chain(files) {
                let path = src.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
            Fixture { root }
        }

        /// The violations the check finds.
        fn check(&self) -> Vec<String> {
            check(&self.root, &BUFFER_CORE).unwrap()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    /// The violations the check finds in the clean tree with `file` (path under `src`) holding
    /// `text`.
    fn violations(file: &str, text: &str) -> Vec<String> {
        Fixture::new(&[(file, text)]).check()
    }

    #[test]
    fn the_layers_are_distinct_and_described() {
        for (at, (name, about)) in BUFFER_CORE.layers.iter().enumerate() {
            assert_eq!(BUFFER_CORE.rank(name), Some(at), "{name} is listed twice");
            assert!(!about.is_empty(), "{name} has no description");
        }
    }

    #[test]
    fn a_clean_tree_passes() {
        assert_eq!(Fixture::new(&[]).check(), Vec::<String>::new());
    }

    #[test]
    fn an_upward_use_fails_with_its_file_and_line() {
        assert_eq!(
            violations(
                "block/slot.rs",
                "pub struct Slot;\nuse crate::pool::BufferPool;\n"
            ),
            [
                "crates/buffer-core/src/block/slot.rs:2: layer `block` imports `crate::pool` (a layer above it)"
            ]
        );
    }

    #[test]
    fn an_upward_grouped_import_fails_on_the_line_of_its_item() {
        assert_eq!(
            violations(
                "shm/mod.rs",
                "use crate::{sync::Atomic, pool::{BufferPool, Guard}};\n"
            ),
            [
                "crates/buffer-core/src/shm/mod.rs:1: layer `shm` imports `crate::pool` (a layer above it)"
            ]
        );
        assert_eq!(
            violations(
                "pool/mod.rs",
                "use crate::{\n    self,\n    block::{self, Slot},\n    ext::tiered::{Tiered},\n};\n"
            ),
            [
                "crates/buffer-core/src/pool/mod.rs:4: layer `pool` imports `crate::ext` (a layer above it)"
            ]
        );
    }

    #[test]
    fn an_upward_inline_path_fails() {
        assert_eq!(
            violations(
                "lockfree/mod.rs",
                "fn wake() {\n    let _ = crate::shm::fork::track();\n}\n"
            ),
            [
                "crates/buffer-core/src/lockfree/mod.rs:2: layer `lockfree` imports `crate::shm` (a layer above it)"
            ]
        );
        assert_eq!(
            violations(
                "sync/mod.rs",
                "macro_rules! m { () => { $crate::block::Slot } }\n"
            ),
            [
                "crates/buffer-core/src/sync/mod.rs:1: layer `sync` imports `crate::block` (a layer above it)"
            ]
        );
    }

    #[test]
    fn a_root_re_export_fails_in_a_layer_file() {
        let found = violations("block/view.rs", "use crate::BufferPool;\nuse crate::*;\n");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with(
            "crates/buffer-core/src/block/view.rs:1: layer `block` imports `crate::BufferPool` from the crate root"
        ));
        assert!(found[0].ends_with(
            "name the layer (crate::<layer>::BufferPool) instead of the crate root's re-export"
        ));
        assert!(found[1].contains("view.rs:2: layer `block` imports `crate::*`"));
    }

    #[test]
    fn an_upward_path_through_super_fails() {
        assert_eq!(
            violations("block/view.rs", "use super::super::pool::Guard;\n"),
            [
                "crates/buffer-core/src/block/view.rs:1: layer `block` imports `crate::pool` (a layer above it) (written `super::super::pool`)"
            ]
        );
        assert_eq!(
            violations("block/mod.rs", "use super::{ext, pool::BufferPool};\n"),
            [
                "crates/buffer-core/src/block/mod.rs:1: layer `block` imports `crate::ext` (a layer above it) (written `super::ext`)",
                "crates/buffer-core/src/block/mod.rs:1: layer `block` imports `crate::pool` (a layer above it) (written `super::pool`)",
            ]
        );
        assert_eq!(
            violations(
                "shm/fork.rs",
                "mod tests {\n    use super::super::super::block::Slot;\n}\n"
            ),
            [
                "crates/buffer-core/src/shm/fork.rs:2: layer `shm` imports `crate::block` (a layer above it) (written `super::super::super::block`)"
            ]
        );
    }

    #[test]
    fn test_code_counts_like_any_other() {
        assert_eq!(
            violations(
                "sync/mod.rs",
                "#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::lockfree::Queue;\n}\n"
            ),
            [
                "crates/buffer-core/src/sync/mod.rs:4: layer `sync` imports `crate::lockfree` (a layer above it)"
            ]
        );
    }

    #[test]
    fn a_file_outside_the_layers_fails() {
        let found = Fixture::new(&[("foo.rs", ""), ("pool.rs", ""), ("util/mod.rs", "")]).check();
        assert_eq!(
            found,
            [
                "crates/buffer-core/src/foo.rs: every module belongs to a layer: move it into one of sync/, lockfree/, shm/, block/, pool/, ext/",
                "crates/buffer-core/src/pool.rs: every module belongs to a layer, and a layer is a folder: move it to crates/buffer-core/src/pool/mod.rs",
                "crates/buffer-core/src/util/mod.rs: every module belongs to a layer: move it into one of sync/, lockfree/, shm/, block/, pool/, ext/",
            ]
        );
    }

    #[test]
    fn downward_and_same_layer_imports_pass() {
        let found = Fixture::new(&[
            (
                "ext/tiered.rs",
                "use crate::{sync::Atomic, lockfree::Queue, shm, block::{self, slot::Slot}, pool::*};\nfn f() { crate::shm::fork::track(); }\n",
            ),
            (
                "block/view.rs",
                "use crate::block::slot::Slot;\nuse super::slot;\nuse self::inner::X;\nuse super::super::shm::fork;\nmod inner { pub struct X; }\n",
            ),
        ])
        .check();
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn comments_doc_comments_and_literals_pass() {
        let text = r####"//! Built on [`crate::pool::BufferPool`].
/// See [crate::ext::tiered] and `super::super::pool`.
// use crate::pool::Guard;
/* crate::pool /* nested crate::ext */ crate::pool */
/** crate::pool::Guard */
fn f() -> &'static str {
    let _ = '"';
    let _ = b'\'';
    let _ = r#"crate::pool "quoted" crate::ext"#;
    let _ = b"crate::pool";
    "crate::pool::BufferPool \" crate::ext"
}
"####;
        assert_eq!(violations("sync/mod.rs", text), Vec::<String>::new());
    }

    #[test]
    fn visibility_is_not_an_import() {
        let text = "pub(crate) fn f() {}\npub(in crate::pool) fn g() {}\npub(super) fn h() {}\npub(in super::super) fn i() {}\n";
        assert_eq!(violations("block/slot.rs", text), Vec::<String>::new());
    }

    #[test]
    fn test_modules_that_use_their_parent_pass() {
        let found = Fixture::new(&[
            (
                "block/view.rs",
                "fn f() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    mod deeper {\n        use super::super::*;\n        use super::super::super::slot::Slot;\n    }\n}\nfn g() {}\n",
            ),
            (
                "sync/mod.rs",
                "#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::sync::Atomic;\n}\n",
            ),
        ])
        .check();
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn an_inline_module_closes_where_its_brace_does() {
        // After `mod tests { … }` the file is its own module again, so one `super` leaves the
        // layer's folder: from `block/mod.rs` that is the crate root.
        assert_eq!(
            violations(
                "block/mod.rs",
                "mod tests {\n    fn f() { if true { } }\n    use super::*;\n}\nuse super::pool::Guard;\n"
            ),
            [
                "crates/buffer-core/src/block/mod.rs:5: layer `block` imports `crate::pool` (a layer above it) (written `super::pool`)"
            ]
        );
    }

    #[test]
    fn a_missing_source_folder_is_an_error_not_a_pass() {
        let error = check(Path::new("/nonexistent-xtask-layers"), &BUFFER_CORE).unwrap_err();
        assert!(error.contains("cannot read"), "{error}");
    }

    // Upward dependencies that compile (each checked with rustc, edition 2024) and that a
    // simpler scan missed, and legitimate code it refused (found by review).

    /// Asserts that the check reports at least one violation for the tree with `files`.
    fn assert_caught(files: &[(&str, &str)], what: &str) {
        let found = Fixture::new(files).check();
        assert!(
            !found.is_empty(),
            "an upward import slipped through ({what}): the check found nothing"
        );
    }

    #[test]
    fn an_alias_of_the_crate_root_is_caught() {
        // `root::pool` is then `crate::pool`.
        assert_caught(
            &[(
                "block/slot.rs",
                "use crate as root;\npub struct Slot(root::pool::BufferPool);\n",
            )],
            "`use crate as root; root::pool::…`",
        );
        assert_caught(
            &[(
                "block/slot.rs",
                "use crate::{self as root};\npub struct Slot(root::pool::BufferPool);\n",
            )],
            "`use crate::{self as root}; root::pool::…`",
        );
        assert_caught(
            &[(
                "block/view.rs",
                "use super::super::{self as root};\nfn f(_: root::pool::Guard) {}\n",
            )],
            "`use super::super::{self as root}; root::pool::…`",
        );
    }

    #[test]
    fn extern_crate_self_is_caught() {
        // `extern crate self as name;` is accepted in any module, not only at the root.
        assert_caught(
            &[(
                "block/slot.rs",
                "extern crate self as me;\npub struct Slot(me::pool::BufferPool);\n",
            )],
            "`extern crate self as me; me::pool::…`",
        );
    }

    #[test]
    fn a_path_after_for_in_is_caught() {
        // The `in` of `pub(in crate::x)` is visibility; the `in` of a `for` loop is not.
        assert_caught(
            &[(
                "lockfree/mod.rs",
                "fn f() {\n    for _ in crate::pool::BufferPool::all() {}\n}\n",
            )],
            "`for _ in crate::pool::…`",
        );
        assert_caught(
            &[(
                "block/mod.rs",
                "fn f() {\n    for _ in super::ext::tiered::items() {}\n}\n",
            )],
            "`for _ in super::ext::…`",
        );
    }

    #[test]
    fn super_inside_a_group_is_caught() {
        // `use super::{super::pool::Guard}` is `use super::super::pool::Guard`: the inner
        // `super` continues the prefix.
        assert_caught(
            &[("block/view.rs", "use super::{super::pool::Guard};\n")],
            "`use super::{super::pool::Guard}` from block/view.rs",
        );
    }

    #[test]
    fn a_path_attribute_is_caught() {
        // block/mod.rs compiles pool/evil.rs as `block::evil`; the check judges that file as
        // layer `pool`, where `crate::pool` is allowed.
        assert_caught(
            &[
                (
                    "block/mod.rs",
                    "mod slot;\nmod view;\n#[path = \"../pool/evil.rs\"]\nmod evil;\n",
                ),
                (
                    "pool/evil.rs",
                    "pub fn g() -> crate::pool::BufferPool { todo!() }\n",
                ),
            ],
            "`#[path = \"../pool/evil.rs\"] mod evil;` in block",
        );
        // A module in a file without the `.rs` extension is never read.
        assert_caught(
            &[
                (
                    "block/mod.rs",
                    "mod slot;\nmod view;\n#[path = \"hidden.txt\"]\nmod hidden;\n",
                ),
                ("block/hidden.txt", "use crate::pool::BufferPool;\n"),
            ],
            "`#[path = \"hidden.txt\"] mod hidden;` in block",
        );
    }

    #[test]
    fn include_is_caught() {
        assert_caught(
            &[
                (
                    "shm/fork.rs",
                    "pub fn track() {}\nfn f() { let _ = include!(\"guard.in\"); }\n",
                ),
                ("shm/guard.in", "crate::pool::Guard"),
            ],
            "`include!(\"guard.in\")` naming crate::pool in shm",
        );
    }

    #[test]
    fn an_exported_macro_of_a_higher_layer_is_caught() {
        // The macro `crate::make_guard!` names is defined in `pool/` and expands to
        // `$crate::pool::…` inside `block/`.
        assert_caught(
            &[
                (
                    "pool/mod.rs",
                    "pub struct BufferPool;\npub struct Guard;\n#[macro_export]\nmacro_rules! make_guard { () => { $crate::pool::Guard } }\n",
                ),
                (
                    "block/slot.rs",
                    "pub struct Slot;\nfn f() { let _ = crate::make_guard!(); }\n",
                ),
            ],
            "`crate::make_guard!()` (defined in pool/) invoked in block",
        );
    }

    #[test]
    fn a_module_made_by_a_macro_is_caught() {
        // `mod $n { … }` is not seen as an inline module, so `super::super` from block/mod.rs
        // seems to climb above the root; expanded as `block::inner`, it is `crate::pool`.
        assert_caught(
            &[(
                "block/mod.rs",
                "mod slot;\nmod view;\nmacro_rules! m { ($n:ident) => { mod $n { use super::super::pool::Guard; } } }\nm!(inner);\n",
            )],
            "`mod $n { use super::super::pool::… }` expanded in block/mod.rs",
        );
    }

    #[test]
    fn importing_an_exported_macro_of_a_lower_layer_passes() {
        // A `#[macro_export]` macro lives at the crate root whatever file defines it, so
        // `use crate::name;` is the only path there is to it: not a root re-export to avoid.
        let found = Fixture::new(&[
            (
                "sync/mod.rs",
                "pub struct Atomic;\n#[macro_export]\nmacro_rules! atomic { () => { $crate::sync::Atomic } }\n",
            ),
            (
                "lockfree/mod.rs",
                "use crate::sync::Atomic;\nuse crate::atomic;\npub struct Queue(Atomic);\nfn f() -> Atomic { atomic!() }\n",
            ),
        ])
        .check();
        assert_eq!(found, Vec::<String>::new());
    }
}
