//! The import graph, checked: imports run down only (wire → sql → engine → store), and
//! no two top-level modules import each other, directly or around a circle. Read from
//! the source files, so a new `use crate::...` that breaks the layering fails this test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What each top-level module may not import.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "store",
        &["sql", "wire", "engine", "server", "endpoint", "config"],
    ),
    ("engine", &["sql", "wire", "server", "endpoint", "config"]),
    ("sql", &["wire", "server", "endpoint", "config"]),
    ("types", &["sql", "wire", "engine", "store", "server"]),
    (
        "json",
        &["sql", "wire", "engine", "store", "server", "types"],
    ),
    ("error", &["sql", "wire", "engine", "store", "server"]),
    ("metrics", &["sql", "wire", "engine", "store", "server"]),
    ("faults", &["sql", "wire", "engine", "server"]),
    ("config", &["wire", "sql", "engine", "server"]),
    (
        "scram",
        &["wire", "sql", "engine", "store", "server", "config"],
    ),
];

/// The top-level module a source file belongs to (`src/sql/catalog/mod.rs` → `sql`).
fn module_of(path: &Path, src: &Path) -> Option<String> {
    let rel = path.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every `crate::name` a source text mentions, outside comments.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::SERVER_VERSION` and other items of lib.rs itself are not modules.
            if name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Module → the other top-level modules it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    // Cargo sets the directory when it runs the test; the one compiled in can be stale
    // when a target directory is shared by two checkouts.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    let src = Path::new(&dir).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let Some(m) = module_of(&f, &src) else {
            continue;
        };
        // The binary and the crate root see everything; this file names modules.
        if matches!(m.as_str(), "main" | "lib" | "layers") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let refs = crate_refs(&text);
        let entry = g.entry(m.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| r != &m));
    }
    g
}

#[test]
fn imports_run_down_only() {
    let g = graph();
    assert!(
        g.contains_key("engine") && g.contains_key("sql") && g.contains_key("wire"),
        "the sources were not found: {:?}",
        g.keys().collect::<Vec<_>>()
    );
    let mut wrong = Vec::new();
    for (module, forbidden) in FORBIDDEN {
        for dep in g.get(*module).into_iter().flatten() {
            if forbidden.contains(&dep.as_str()) {
                wrong.push(format!("{module} imports {dep}"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken: {wrong:?}");
}

#[test]
fn no_circle_between_modules() {
    let g = graph();
    // Depth-first search for a back edge.
    fn visit<'a>(
        g: &'a BTreeMap<String, BTreeSet<String>>,
        m: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            let mut circle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            circle.push(m.to_string());
            return Some(circle);
        }
        if !done.insert(m) {
            return None;
        }
        path.push(m);
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, d, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        let mut path = Vec::new();
        if let Some(c) = visit(&g, m, &mut path, &mut done) {
            panic!("modules import each other in a circle: {}", c.join(" → "));
        }
    }
}

#[test]
fn references_are_read_from_code_not_comments() {
    let refs = crate_refs("use crate::store::Row; // crate::wire\nlet v = crate::SERVER_VERSION;");
    assert_eq!(refs.into_iter().collect::<Vec<_>>(), vec!["store"]);
}
