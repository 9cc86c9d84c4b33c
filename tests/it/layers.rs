//! The host's modules point one way: each uses only the modules below it in
//! the layer table at the top of `host/src/lib.rs`. This reads that table
//! and every `crate::…` path in the code of `host/src` (comments left out,
//! `crate::{a, b::c}` groups included) and fails on an import that climbs
//! back up, naming the file and line. It also fails when a top-level module
//! is missing from the table or from ARCHITECTURE.md's code map, so a new
//! module gets a place in both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn host_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src")
}

/// The layers, top first, as `lib.rs`'s `# Layers` table lists them.
fn layers(lib: &str) -> Vec<Vec<String>> {
    let doc: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .collect();
    let start = doc
        .iter()
        .position(|l| *l == "# Layers")
        .expect("lib.rs has a `# Layers` section");
    let table: Vec<&str> = doc[start..]
        .iter()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .copied()
        .collect();
    table
        .iter()
        .map(|line| {
            let (names, _) = line
                .split_once(" — ")
                .unwrap_or_else(|| panic!("layer line without ` — `: {line:?}"));
            names.split_whitespace().map(str::to_owned).collect()
        })
        .collect()
}

/// The top-level modules `lib.rs` declares.
fn modules(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or_else(|| l.trim().strip_prefix("mod "))
        })
        .filter_map(|rest| rest.strip_suffix(';'))
        .map(str::to_owned)
        .collect()
}

/// Every `.rs` file of a top-level module.
fn files_of(module: &str) -> Vec<PathBuf> {
    let dir = host_src().join(module);
    if !dir.is_dir() {
        return vec![host_src().join(format!("{module}.rs"))];
    }
    let mut out = Vec::new();
    let mut todo = vec![dir];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A line without its comment: a line comment starts at `//` at the start
/// or after whitespace (so `"https://…"` in a string stays code).
fn code_of(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return "";
    }
    match line.find(" //") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// The first segment of each path a `crate::` at `text[at..]` names:
/// one for `crate::a::b`, one per item for `crate::{a, b::c}`.
fn named_after(text: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = text.strip_prefix('{') else {
        return vec![ident(text)];
    };
    let mut depth = 0usize;
    let mut items = Vec::new();
    let mut current = String::new();
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
        .iter()
        .map(|i| ident(i))
        .filter(|i| !i.is_empty())
        .collect()
}

/// For one module: each other top-level module it names, with where.
fn uses(module: &str, all: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files_of(module) {
        let text = std::fs::read_to_string(&file).unwrap();
        // Code only, one string, with each byte's line number kept.
        let mut code = String::new();
        let mut line_of = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let c = code_of(line);
            code.push_str(c);
            code.push('\n');
            line_of.extend(std::iter::repeat_n(n + 1, c.len() + 1));
        }
        for (at, _) in code.match_indices("crate::") {
            for name in named_after(&code[at + "crate::".len()..]) {
                if name != module && all.contains(&name) {
                    let shown = file.strip_prefix(host_src()).unwrap_or(&file);
                    found.entry(name).or_default().push(format!(
                        "{}:{}",
                        shown.display(),
                        line_of[at]
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let lib = std::fs::read_to_string(host_src().join("lib.rs")).unwrap();
    let layers = layers(&lib);
    let modules = modules(&lib);
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, names)| names.iter().map(move |n| (n.as_str(), i)))
        .collect();
    let unplaced: Vec<&String> = modules
        .iter()
        .filter(|m| !layer_of.contains_key(m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from lib.rs's layer table: {unplaced:?}"
    );
    let stale: Vec<&&str> = layer_of
        .keys()
        .filter(|n| !modules.iter().any(|m| m == *n))
        .collect();
    assert!(
        stale.is_empty(),
        "the layer table names no such module: {stale:?}"
    );
    let mut upward = Vec::new();
    for module in &modules {
        let own = layer_of[module.as_str()];
        for (used, places) in uses(module, &modules) {
            if layer_of[used.as_str()] <= own {
                upward.push(format!("{module} -> {used} at {}", places.join(", ")));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not point down the layers of lib.rs:\n{}",
        upward.join("\n")
    );
}

/// The check itself finds what it must: a path, a group across lines, a
/// comment left out.
#[test]
fn crate_paths_are_read_as_written() {
    assert_eq!(named_after("store::Store;"), ["store"]);
    assert_eq!(
        named_after("{\n    audit::AuditLog,\n    store::{A, B},\n};"),
        ["audit", "store"]
    );
    assert_eq!(code_of("    // crate::api"), "");
    assert_eq!(code_of("let x = y; // crate::api"), "let x = y;");
    assert_eq!(
        code_of(r#"let u = "https://x"; crate::a"#),
        r#"let u = "https://x"; crate::a"#
    );
}

#[test]
fn every_module_is_in_the_code_map() {
    let lib = std::fs::read_to_string(host_src().join("lib.rs")).unwrap();
    let map = std::fs::read_to_string(host_src().join("../../ARCHITECTURE.md")).unwrap();
    let missing: Vec<String> = modules(&lib)
        .into_iter()
        .filter(|m| {
            let as_dir = format!("`{m}/`");
            let as_file = format!("`{m}.rs`");
            !map.contains(&as_dir) && !map.contains(&as_file)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map does not name these host/src modules: {missing:?}"
    );
}
