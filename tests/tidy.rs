//! Tidy: the imports of `src/` point one way.
//!
//! Modelled on rust-analyzer's `tidy` tests: read every `src/**/*.rs`, collect
//! the `crate::...` paths it names (in `use` lines or inline), map the file and
//! each path to a unit (a top-level module, or one of [`SPLIT_UNITS`]), and
//! fail for every edge that goes against [`LAYERS`]: a unit may import units of
//! lower layers only, never its own layer's neighbours or anything above. A
//! few items ([`AWAY_FROM_HOME`]) may not be imported from where they are now.
//!
//! Not checked: comments, `super::`/`self::` paths (they stay inside a unit),
//! `main.rs` and `lib.rs` (the roots), and test code (`#[cfg(test)] mod ...`
//! blocks and the `tests.rs` files they load), which may exercise anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A unit may import the units of the layers
/// below its own, and nothing else.
const LAYERS: &[&[&str]] = &[
    // Foundations: shared values that import nothing of the crate
    // (`Problem`/`Problems`, the clock, kinds/urgency/priority, business hours).
    &["problem", "clock", "text", "priority", "calendar"],
    // Bytes in: raw mail to a parsed message.
    &["parse"],
    // Pure functions of a parsed message (thread keys, is it machine-sent?,
    // the new text of a reply);
    // the log setup that contains parser panics; the metrics registry
    // every layer above reports to.
    &["thread", "automated", "telemetry", "metrics", "reply"],
    // Is the sender authenticated? (Authentication-Results, over a parsed
    // message.)
    &["authres"],
    // Command lines of a reply, and who may give them (pure).
    &["commands"],
    // The routing-rule engine.
    &["rules"],
    // The validated configuration (desks, queues, calendars, matrix).
    &["config"],
    // Desk, queue, kind and priority of a message: rules, defaults, due time.
    &["classify"],
    // The only module that speaks SQL.
    &["store"],
    // Composes and sends mail; may use the store's outbox.
    &["notify"],
    // The report card: figures from the store's counts (pure); the
    // scheduler may mail it.
    &["report"],
    // The SLA clock: pure deadlines, and the scheduler's tick (store + notify).
    &["sla"],
    // prepare (pure) and commit (one transaction per batch).
    &["pipeline"],
    // Where messages come from: the IMAP watchers; files, Maildirs, mbox and
    // stdin. They hand raw mail (with its `pipeline::Origin`) to the pipeline.
    &["sources"],
    // `triaged ingest`'s engine.
    &["ingest"],
    // `/metrics`, `/healthz`, `/readyz`: reads the metrics registry and the
    // store; the daemon starts it.
    &["http"],
    // The running service: watchers, sender, shutdown.
    &["daemon"],
    // `triaged classify`, `rules test`, `rules diff`.
    &["rules_cmd"],
    // Tooling apart from the product (feature `dev`): mail stack, demo,
    // bench. It may import anything but the command line; only the command
    // line imports it.
    &["dev"],
    // The command line: clap definitions and the small commands.
    &["cli"],
];

/// Files that form a unit of their own inside a top-level module, with the
/// path prefix (`crate::sources::files`) that names them.
/// None today: `sources::files` sits with the rest of `sources`.
const SPLIT_UNITS: &[(&str, &str)] = &[];

/// Items imported from a module that is not their home, with their home:
/// an import of one of them is a violation even where the module edge is
/// allowed.
const AWAY_FROM_HOME: &[(&str, &str)] = &[
    ("store::now_ms", "the clock module"),
    ("config::Problem", "the problem module"),
    ("config::Problems", "the problem module"),
];

/// Edges that go against [`LAYERS`] or [`AWAY_FROM_HOME`] today, as (file, unit it imports). Other
/// branches of issue 8 remove them; empty this list as they land. An entry
/// that no longer occurs fails the test too, so the list only shrinks.
const KNOWN_VIOLATIONS: &[(&str, &str)] = &[];

fn layer_of(unit: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&unit))
}

/// The unit of a file, from its path relative to `src/`; `None` for the roots.
fn unit_of_file(rel: &str) -> Option<String> {
    let stem = rel.strip_suffix(".rs").unwrap_or(rel);
    if stem == "lib" || stem == "main" {
        return None;
    }
    for (prefix, unit) in SPLIT_UNITS {
        if stem == *prefix || stem.starts_with(&format!("{prefix}/")) {
            return Some(unit.to_string());
        }
    }
    Some(stem.split('/').next().unwrap_or(stem).to_string())
}

/// The unit a `crate::` path names, from its segments.
fn unit_of_path(segments: &[String]) -> Option<String> {
    let first = segments.first()?;
    for (_, unit) in SPLIT_UNITS {
        let want: Vec<&str> = unit.split("::").collect();
        if segments.len() >= want.len() && segments.iter().zip(&want).all(|(a, b)| a == b) {
            return Some(unit.to_string());
        }
    }
    Some(first.clone())
}

/// The text of a file with comments blanked and test code cut off, one entry
/// per line (so line numbers stay right).
fn code_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_test = false;
    let mut after_cfg_test = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if in_test {
            // A `#[cfg(test)] mod` block at the top level ends at a `}` in column 0.
            if line == "}" {
                in_test = false;
            }
            out.push(String::new());
            continue;
        }
        if after_cfg_test && trimmed.starts_with("mod ") {
            after_cfg_test = false;
            in_test = trimmed.ends_with('{');
            out.push(String::new());
            continue;
        }
        after_cfg_test = trimmed.starts_with("#[cfg(test)]");
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push(code.to_string());
    }
    out
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Colons,
    Open,
    Close,
    Comma,
    Other,
}

fn tokens(s: &str) -> impl Iterator<Item = Tok> + '_ {
    let mut chars = s.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some(&(_, c)) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
            } else {
                break;
            }
        }
        let (_, c) = chars.next()?;
        Some(match c {
            '{' => Tok::Open,
            '}' => Tok::Close,
            ',' => Tok::Comma,
            ':' if chars.peek().map(|&(_, c)| c) == Some(':') => {
                chars.next();
                Tok::Colons
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut id = c.to_string();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' {
                        id.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                Tok::Ident(id)
            }
            _ => Tok::Other,
        })
    })
}

/// The paths of the use tree that starts right after a `crate::`, as segments
/// (`{config::Config, store::{Store, now_ms}}` gives `config::Config`,
/// `store::Store`, `store::now_ms`).
fn paths_after(text: &str) -> Vec<Vec<String>> {
    fn tree(
        toks: &mut std::iter::Peekable<impl Iterator<Item = Tok>>,
        prefix: Vec<String>,
        out: &mut Vec<Vec<String>>,
    ) {
        let mut path = prefix;
        loop {
            match toks.next() {
                Some(Tok::Ident(id)) => {
                    path.push(id);
                    if toks.peek() == Some(&Tok::Colons) {
                        toks.next();
                        continue;
                    }
                    out.push(path);
                    return;
                }
                Some(Tok::Open) => {
                    loop {
                        tree(toks, path.clone(), out);
                        // Skip `as name` and the like up to the separator.
                        loop {
                            match toks.next() {
                                Some(Tok::Comma) => break,
                                Some(Tok::Close) | None => return,
                                _ => {}
                            }
                        }
                        if toks.peek() == Some(&Tok::Close) {
                            toks.next();
                            return;
                        }
                    }
                }
                _ => {
                    if !path.is_empty() {
                        out.push(path);
                    }
                    return;
                }
            }
        }
    }
    let mut out = Vec::new();
    tree(&mut tokens(text).peekable(), Vec::new(), &mut out);
    out
}

/// Every `crate::` path of a file's code, with its line number (1-based).
fn crate_paths(text: &str) -> Vec<(usize, Vec<String>)> {
    let lines = code_lines(text);
    let joined = lines.join("\n");
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = joined[from..].find("crate::") {
        let at = from + i;
        from = at + "crate::".len();
        let before = joined[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let line = joined[..at].matches('\n').count() + 1;
        for path in paths_after(&joined[from..]) {
            found.push((line, path));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (file, unit imported) -> first line, for every edge between units; and the
/// problems found on the way (files or paths in no layer).
fn edges() -> (BTreeMap<(String, String), usize>, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut edges = BTreeMap::new();
    let mut problems = Vec::new();
    for file in files {
        let rel_src = file
            .strip_prefix(root.join("src"))
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        let shown = format!("src/{rel_src}");
        // `tests.rs` files are test modules (`#[cfg(test)] mod tests;`).
        if rel_src.ends_with("/tests.rs") || rel_src == "tests.rs" {
            continue;
        }
        let Some(unit) = unit_of_file(&rel_src) else {
            continue;
        };
        if layer_of(&unit).is_none() {
            problems.push(format!(
                "{shown}: its module `{unit}` is in no layer of tests/tidy.rs's LAYERS: add it"
            ));
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (line, path) in crate_paths(&text) {
            let Some(target) = unit_of_path(&path) else {
                continue;
            };
            if target == unit {
                continue;
            }
            if layer_of(&target).is_none() {
                problems.push(format!(
                    "{shown}:{line}: imports crate::{}, a module in no layer of tests/tidy.rs's LAYERS: add it",
                    path.join("::")
                ));
                continue;
            }
            let item = path.iter().take(2).cloned().collect::<Vec<_>>().join("::");
            if AWAY_FROM_HOME.iter().any(|(p, _)| *p == item) {
                edges.entry((shown.clone(), item)).or_insert(line);
            }
            edges.entry((shown.clone(), target)).or_insert(line);
        }
    }
    (edges, problems)
}

#[test]
fn imports_point_one_way() {
    let (edges, mut problems) = edges();
    let known: BTreeSet<(String, String)> = KNOWN_VIOLATIONS
        .iter()
        .map(|(f, u)| (f.to_string(), u.to_string()))
        .collect();
    let mut seen_known = BTreeSet::new();
    for ((file, target), line) in &edges {
        let key = (file.clone(), target.clone());
        if let Some((_, home)) = AWAY_FROM_HOME.iter().find(|(p, _)| p == target) {
            if known.contains(&key) {
                seen_known.insert(key);
            } else {
                problems.push(format!(
                    "{file} imports crate::{target} (line {line}), which is to live in {home}: import it from there"
                ));
            }
            continue;
        }
        let rel = file.trim_start_matches("src/");
        let (Some(unit), Some(to)) = (unit_of_file(rel), layer_of(target)) else {
            continue;
        };
        let Some(from) = layer_of(&unit) else {
            continue;
        };
        if to < from {
            continue;
        }
        if known.contains(&key) {
            seen_known.insert(key);
            continue;
        }
        problems.push(format!(
            "{file} imports crate::{target}, against the allowed direction (line {line}: \
             `{unit}` is in layer {from}, `{target}` in layer {to}; a module imports lower layers only)"
        ));
    }
    for key in known.difference(&seen_known) {
        problems.push(format!(
            "{} no longer imports crate::{} against the direction: remove it from KNOWN_VIOLATIONS",
            key.0, key.1
        ));
    }
    if !problems.is_empty() {
        let mut msg = String::from("imports against tests/tidy.rs's LAYERS:\n");
        for p in &problems {
            let _ = writeln!(msg, "  {p}");
        }
        panic!("{msg}");
    }
}

#[test]
fn the_path_reader_reads_use_trees() {
    let text = "use crate::config::Config;\n\
                // use crate::cli::x;\n\
                /// [`crate::daemon`]\n\
                use crate::{store::{Store, now_ms}, sources::files::Walker as W};\n\
                let x = crate::pipeline::head_of(b); $crate::no; my_crate::no;\n\
                #[cfg(test)]\n\
                mod tests {\n    use crate::dev::x;\n}\n\
                use crate::notify;\n";
    let got: Vec<(usize, String)> = crate_paths(text)
        .into_iter()
        .map(|(l, p)| (l, p.join("::")))
        .collect();
    let want: Vec<(usize, String)> = [
        (1, "config::Config"),
        (4, "store::Store"),
        (4, "store::now_ms"),
        (4, "sources::files::Walker"),
        (5, "pipeline::head_of"),
        (10, "notify"),
    ]
    .into_iter()
    .map(|(l, p)| (l, p.to_string()))
    .collect();
    assert_eq!(got, want);
    let units: Vec<Option<String>> = crate_paths(text)
        .iter()
        .map(|(_, p)| unit_of_path(p))
        .collect();
    assert_eq!(units[3].as_deref(), Some("sources"));
    assert_eq!(unit_of_file("sources/files.rs").as_deref(), Some("sources"));
    assert_eq!(unit_of_file("sources/imap.rs").as_deref(), Some("sources"));
    assert_eq!(unit_of_file("notify/mod.rs").as_deref(), Some("notify"));
    assert_eq!(unit_of_file("lib.rs"), None);
}

#[test]
fn every_unit_is_in_one_layer() {
    let mut seen = BTreeSet::new();
    for unit in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(seen.insert(*unit), "{unit} is in two layers");
    }
}
