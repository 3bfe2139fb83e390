//! The house rules of ARCHITECTURE.md ("Architecture invariant notes"), checked from the source
//! as rust-analyzer's tidy tests check theirs: which module may name which, and no circles.
//!
//! The graph is read from the paths the source names (`crate::…`, `super::…`, `self::…`,
//! braces expanded), each resolved to the file that holds it; comments and `#[cfg(test)]`
//! modules are left out, for tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A source file, as the module path it is (`["store", "usage"]`; `[]` for `lib.rs`).
type Module = Vec<String>;

struct Source {
    /// Each file's module path and its text without comments or tests.
    files: BTreeMap<Module, String>,
}

impl Source {
    fn read() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = BTreeMap::new();
        let mut test_only: Vec<Module> = Vec::new();
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).expect("src is readable") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let module = module_of(&root, &path);
                    let text = std::fs::read_to_string(&path).expect("a source file");
                    for child in test_modules(&text) {
                        let mut test_module = module.clone();
                        test_module.push(child);
                        test_only.push(test_module);
                    }
                    files.insert(module, without_comments_or_tests(&text));
                }
            }
        }
        assert!(files.len() > 50, "the source tree was not found");
        files.retain(|module, _| !test_only.iter().any(|t| module.starts_with(t)));
        Self { files }
    }

    /// The file a path from the crate's root is in: the longest prefix that is a file.
    fn file_of(&self, path: &[String]) -> Option<Module> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|prefix| self.files.contains_key(prefix))
    }

    /// Every file each file names (never itself).
    fn imports(&self) -> BTreeMap<Module, BTreeSet<Module>> {
        let mut graph = BTreeMap::new();
        for (module, text) in &self.files {
            let mut named = BTreeSet::new();
            for path in paths_named(module, text) {
                if let Some(file) = self.file_of(&path)
                    && file != *module
                    && !file.is_empty()
                {
                    named.insert(file);
                }
            }
            graph.insert(module.clone(), named);
        }
        graph
    }
}

fn module_of(root: &Path, path: &Path) -> Module {
    let relative = path.strip_prefix(root).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

/// The modules `text` declares in files of their own for tests only (`#[cfg(test)] mod x;`).
fn test_modules(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|pair| pair[0] == "#[cfg(test)]")
        .filter_map(|pair| {
            let declared = pair[1].trim_start_matches("pub ").strip_prefix("mod ")?;
            Some(declared.strip_suffix(';')?.to_owned())
        })
        .collect()
}

/// The text without `//` comments, and cut at its inline `#[cfg(test)]` module.
fn without_comments_or_tests(text: &str) -> String {
    let mut kept = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|l| l.contains("mod ") && l.trim_end().ends_with('{'))
        {
            break;
        }
        let code = match line.find("//") {
            // Not inside a string literal with a URL: good enough for `use` lines and paths.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        kept.push_str(code);
        kept.push('\n');
    }
    kept
}

/// The paths from the crate's root that `text` (the file `module`) names.
fn paths_named(module: &Module, text: &str) -> Vec<Vec<String>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let starts_word = at == 0
            || !(bytes[at - 1].is_ascii_alphanumeric()
                || bytes[at - 1] == b'_'
                || bytes[at - 1] == b':');
        let rest = &bytes[at..];
        let base: Option<(Vec<String>, usize)> = if !starts_word {
            None
        } else if rest.starts_with(b"crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with(b"self::") {
            Some((module.clone(), "self::".len()))
        } else if rest.starts_with(b"super::") {
            let mut base = module.clone();
            let mut used = 0;
            while bytes[at + used..].starts_with(b"super::") {
                base.pop();
                used += "super::".len();
            }
            Some((base, used))
        } else {
            None
        };
        match base {
            Some((base, used)) => {
                let (paths, end) = parse_tree(text, at + used);
                for path in paths {
                    let mut full = base.clone();
                    full.extend(path);
                    found.push(full);
                }
                at = end.max(at + 1);
            }
            None => at += 1,
        }
    }
    found
}

/// A path tree at `at` (`a::b::{c, d::e}`): its paths, and where it ends.
fn parse_tree(text: &str, mut at: usize) -> (Vec<Vec<String>>, usize) {
    let bytes = text.as_bytes();
    let mut prefix: Vec<String> = Vec::new();
    loop {
        let start = at;
        while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
            at += 1;
        }
        if at > start {
            let segment = &text[start..at];
            if segment != "self" {
                prefix.push(segment.to_owned());
            }
        }
        if bytes[at..].starts_with(b"::{") {
            at += 3;
            let mut paths = Vec::new();
            loop {
                while at < bytes.len() && bytes[at].is_ascii_whitespace() {
                    at += 1;
                }
                if at >= bytes.len() || bytes[at] == b'}' {
                    break;
                }
                let (inner, end) = parse_tree(text, at);
                for path in inner {
                    let mut full = prefix.clone();
                    full.extend(path);
                    paths.push(full);
                }
                at = end;
                // Past an `as` rename, to the next item or the brace's end.
                while at < bytes.len() && bytes[at] != b',' && bytes[at] != b'}' {
                    at += 1;
                }
                if at < bytes.len() && bytes[at] == b',' {
                    at += 1;
                }
            }
            return (paths, (at + 1).min(bytes.len()));
        }
        if bytes[at..].starts_with(b"::") && !bytes[at..].starts_with(b"::*") {
            at += 2;
            continue;
        }
        return (vec![prefix], at);
    }
}

/// The circles of a graph (its strongly connected parts of more than one node), each sorted.
fn circles<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    // Two nodes are in one circle when each reaches the other.
    let reach = |from: &N| {
        let mut seen = BTreeSet::new();
        let mut pending = vec![from.clone()];
        while let Some(node) = pending.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    pending.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<N, BTreeSet<N>> = graph.keys().map(|n| (n.clone(), reach(n))).collect();
    let mut circles: BTreeSet<Vec<N>> = BTreeSet::new();
    for (node, reached) in &reaches {
        let circle: Vec<N> = reached
            .iter()
            .filter(|other| reaches.get(*other).is_some_and(|r| r.contains(node)))
            .cloned()
            .collect();
        if circle.len() > 1 {
            circles.insert(circle);
        }
    }
    circles.into_iter().collect()
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "lib".into()
    } else {
        module.join("::")
    }
}

/// Every file each file of `top` names, by the top-level module it is in.
fn named_by(source: &Source, top: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, imports) in source.imports() {
        if module.first().map(String::as_str) == Some(top) {
            for import in imports {
                named
                    .entry(name(&module))
                    .or_default()
                    .insert(import[0].clone());
            }
        }
    }
    named
}

/// The files of `top` that name one of `forbidden`, with what they name.
fn breaking(source: &Source, top: &str, forbidden: &[&str]) -> Vec<String> {
    named_by(source, top)
        .into_iter()
        .flat_map(|(file, names)| {
            names
                .into_iter()
                .filter(|n| forbidden.contains(&n.as_str()))
                .map(move |n| format!("{file} names {n}"))
        })
        .collect()
}

/// The files of `top` whose code names an outside crate of `crates` (`rusqlite::…`).
fn naming_crates(source: &Source, top: &str, crates: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (module, text) in &source.files {
        if module.first().map(String::as_str) != Some(top) {
            continue;
        }
        for krate in crates {
            let token = format!("{krate}::");
            let named = text.match_indices(&token).any(|(at, _)| {
                at == 0 || {
                    let before = text.as_bytes()[at - 1];
                    !(before.is_ascii_alphanumeric() || before == b'_' || before == b':')
                }
            });
            if named {
                found.push(format!("{} names {krate}", name(module)));
            }
        }
    }
    found
}

#[test]
fn no_two_files_import_each_other_in_a_circle() {
    let source = Source::read();
    let found: Vec<Vec<String>> = circles(&source.imports())
        .iter()
        .map(|circle| circle.iter().map(name).collect())
        .collect();
    assert!(found.is_empty(), "files in a circle: {found:?}");
}

#[test]
fn no_two_top_level_modules_import_each_other() {
    let source = Source::read();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, imports) in source.imports() {
        let Some(top) = module.first() else { continue };
        let entry = graph.entry(top.clone()).or_default();
        for import in imports {
            if import[0] != *top {
                entry.insert(import[0].clone());
            }
        }
    }
    assert!(graph.len() > 10, "top-level modules: {graph:?}");
    let found = circles(&graph);
    assert!(found.is_empty(), "top-level modules in a circle: {found:?}");
}

#[test]
fn the_domain_names_no_store_api_or_database() {
    let source = Source::read();
    let mut broken = breaking(&source, "domain", &["store", "api", "service", "cache"]);
    broken.extend(naming_crates(
        &source,
        "domain",
        &["rusqlite", "postgres", "axum"],
    ));
    assert!(broken.is_empty(), "{broken:?}");
}

#[test]
fn the_cache_names_no_database_or_api() {
    let source = Source::read();
    let mut broken = breaking(&source, "cache", &["api", "live"]);
    broken.extend(naming_crates(
        &source,
        "cache",
        &["rusqlite", "postgres", "axum"],
    ));
    assert!(broken.is_empty(), "{broken:?}");
}

#[test]
fn the_store_does_not_name_the_live_hub_or_the_api() {
    let source = Source::read();
    let broken = breaking(&source, "store", &["live", "api", "service", "cache"]);
    assert!(broken.is_empty(), "{broken:?}");
}

#[test]
fn the_hook_client_talks_to_the_server_only_over_http() {
    let source = Source::read();
    let broken = breaking(&source, "client", &["store", "service", "cache", "api"]);
    assert!(broken.is_empty(), "{broken:?}");
}

#[test]
fn notices_name_only_the_domain() {
    let source = Source::read();
    let named: BTreeSet<String> = named_by(&source, "notices")
        .into_values()
        .flatten()
        .collect();
    assert!(
        named.iter().all(|n| n == "domain"),
        "notices names {named:?}"
    );
}

#[test]
fn only_the_sqlite_schema_uses_the_wal_buffer() {
    let source = Source::read();
    let users: Vec<String> = source
        .files
        .iter()
        .filter(|(_, text)| text.contains("sqlite_wal_buffer::"))
        .map(|(module, _)| name(module))
        .collect();
    assert_eq!(users, ["store::sqlite::schema"]);
}

#[test]
fn the_reader_finds_imports_and_circles() {
    let module = vec!["store".to_owned(), "usage".to_owned()];
    let text = "use super::sql::{Dialect, Value as V};\nuse crate::domain::{time::TimeRange, \
                usage::{UsageRow, self}};\nlet x = crate::health::Thing;";
    let paths = paths_named(&module, text);
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        [
            "store::sql::Dialect",
            "store::sql::Value",
            "domain::time::TimeRange",
            "domain::usage::UsageRow",
            "domain::usage",
            "health::Thing",
        ]
    );
    let graph: BTreeMap<u8, BTreeSet<u8>> = [
        (1, BTreeSet::from([2])),
        (2, BTreeSet::from([3])),
        (3, BTreeSet::from([1])),
        (4, BTreeSet::from([1])),
    ]
    .into_iter()
    .collect();
    assert_eq!(circles(&graph), [vec![1, 2, 3]]);
}
