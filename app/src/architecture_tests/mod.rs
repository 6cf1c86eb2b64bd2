//! The dependency rule of docs/architecture.md, checked on the sources.
//!
//! `APP_LAYERS` is the one home of the app's layer order: a top-level module may import only
//! modules in layers below its own, except that every module above the bottom layers may use
//! `state` (`AppState`, the composition root). `app_layers` reads every `app/src/**/*.rs`
//! and fails with each import that breaks the order (`goods/handlers.rs:12 imports orders,
//! which is above goods`). `OPERATOR_LAYERS` and `operator_layers` do the same for the
//! operator, whose pure decision modules at the bottom also name no crate that does I/O.

mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use parse::{Ref, names};

/// The app's top-level modules, bottom layer first. A module may import modules of the
/// layers before its own (and `state`, if it is not in the bottom layers).
const APP_LAYERS: &[(Kind, &[&str])] = &[
    (Kind::Bottom, &["error"]),
    (Kind::Bottom, &["extract"]),
    (Kind::Bottom, &["config"]),
    (Kind::Bottom, &["platform"]),
    (Kind::Bottom, &["pagination"]),
    (Kind::Domain, &["users"]),
    (Kind::Domain, &["auth"]),
    (Kind::Domain, &["idempotency"]),
    (Kind::Domain, &["queue"]),
    (Kind::Domain, &["goods"]),
    (Kind::Domain, &["cart"]),
    (Kind::Domain, &["wallet"]),
    (Kind::Domain, &["coupons"]),
    (Kind::Domain, &["orders"]),
    (Kind::Domain, &["concerts"]),
    (Kind::Domain, &["reservations"]),
    (Kind::Domain, &["admin"]),
    (Kind::Root, &["state"]),
    (Kind::Top, &["http"]),
    (Kind::Top, &["seed"]),
    (Kind::Top, &["server"]),
    (Kind::Top, &["architecture_tests"]),
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Infrastructure and shared request types: import no domain, no `state`, no `http`.
    Bottom,
    Domain,
    /// `state`: holds every domain's handles; any module above the bottom may take it.
    Root,
    /// The router, its layers, the server and the CLI tools.
    Top,
    /// An operator module that names no I/O crate (`IO_CRATES`).
    Pure,
    /// An operator module that does I/O.
    Io,
}

/// The operator's top-level modules, bottom layer first. The pure ones decide from values
/// (no API client, no Redis, no HTTP, no runtime; tables and properties test them); the
/// others talk to the API server, Redis, Prometheus or files, or wire those up.
const OPERATOR_LAYERS: &[(Kind, &[&str])] = &[
    (Kind::Pure, &["window"]),
    (Kind::Pure, &["phase"]),
    (Kind::Pure, &["merge", "scaling"]),
    (Kind::Io, &["crd", "store", "telemetry"]),
    (Kind::Io, &["observe"]),
    (Kind::Io, &["reconcile"]),
    (Kind::Io, &["cluster", "local", "http"]),
];
/// Crates that do I/O (or run tasks); a pure module names none of them.
const IO_CRATES: &[&str] = &[
    "axum",
    "hyper",
    "hyper_rustls",
    "hyper_util",
    "k8s_openapi",
    "kube",
    "redis",
    "reqwest",
    "rustls",
    "tokio",
];

/// One source file: its path under `src/`, the top-level module it belongs to, and its names.
struct Source {
    rel: String,
    owner: String,
    names: parse::Names,
}

fn src_dir(crate_dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module depth by file name: `lib.rs` 0, `x.rs` and `x/mod.rs` 1, `x/y.rs` 2, ...
fn depth_of(rel: &str) -> usize {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.last() {
        Some(&"lib.rs") if parts.len() == 1 => 0,
        Some(&"mod.rs") => parts.len() - 1,
        _ => parts.len(),
    }
}

/// Every library source of `crate_dir/src` (not the binary root `main.rs`), each read at
/// its module depth; files included by `#[path]` belong to the module that includes them.
fn sources(crate_dir: &str, extern_crates: &[&str]) -> Vec<Source> {
    let root = src_dir(crate_dir);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        if rel != "main.rs" {
            texts.insert(rel, std::fs::read_to_string(&f).expect("read source"));
        }
    }
    // `#[path = "x_tests.rs"] mod tests;` in dir/y.rs: dir/x_tests.rs, one level below y
    let mut included: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for (rel, text) in &texts {
        for pm in names(text, depth_of(rel), &[]).path_mods {
            let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
            let target = if dir.is_empty() {
                pm.file
            } else {
                format!("{dir}/{}", pm.file)
            };
            included.insert(target, (owner_of(rel), pm.depth));
        }
    }
    texts
        .iter()
        .map(|(rel, text)| {
            let (owner, depth) = included
                .get(rel)
                .cloned()
                .unwrap_or_else(|| (owner_of(rel), depth_of(rel)));
            Source {
                rel: rel.clone(),
                owner,
                names: names(text, depth, extern_crates),
            }
        })
        .collect()
}

fn owner_of(rel: &str) -> String {
    let first = rel.split('/').next().unwrap_or(rel);
    first.trim_end_matches(".rs").to_string()
}

/// The modules `lib.rs` declares (`pub mod x;`, `#[cfg(test)] mod y;`).
fn declared_modules(crate_dir: &str) -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src_dir(crate_dir).join("lib.rs")).expect("read lib.rs");
    let toks = parse::tokenize(&lib);
    toks.windows(3)
        .filter_map(|w| match (&w[0].tok, &w[1].tok, &w[2].tok) {
            (parse::Tok::Ident(m), parse::Tok::Ident(name), parse::Tok::Char(';'))
                if m == "mod" =>
            {
                Some(name.clone())
            }
            _ => None,
        })
        .collect()
}

/// The imports that break a layer table, one line each (`prefix` names the crate), plus
/// the table's own faults: a module `lib.rs` declares but the table does not place, or the
/// other way round.
fn violations(
    table: (&str, &[(Kind, &[&str])]),
    prefix: &str,
    sources: &[Source],
    declared: &BTreeSet<String>,
) -> Vec<String> {
    let (table_name, layers) = table;
    let rank: BTreeMap<&str, (usize, Kind)> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, (kind, mods))| mods.iter().map(move |m| (*m, (i, *kind))))
        .collect();
    let mut out = Vec::new();
    for m in declared.iter().filter(|m| !rank.contains_key(m.as_str())) {
        out.push(format!(
            "{prefix}lib.rs declares module {m}, which has no layer in {table_name}"
        ));
    }
    for m in rank.keys().filter(|m| !declared.contains(**m)) {
        out.push(format!(
            "{table_name} names {m}, which {prefix}lib.rs does not declare"
        ));
    }
    for s in sources {
        let Some(&(from, from_kind)) = rank.get(s.owner.as_str()) else {
            continue;
        };
        for Ref { line, name } in &s.names.crate_refs {
            let Some(&(to, to_kind)) = rank.get(name.as_str()) else {
                continue;
            };
            let uses_root = to_kind == Kind::Root && from_kind != Kind::Bottom;
            if *name == s.owner || to < from || uses_root {
                continue;
            }
            let relation = if to == from { "beside" } else { "above" };
            let (rel, owner) = (&s.rel, &s.owner);
            out.push(format!(
                "{prefix}{rel}:{line} imports {name}, which is {relation} {owner}"
            ));
        }
        if from_kind == Kind::Pure {
            for Ref { line, name } in &s.names.extern_refs {
                let (rel, owner) = (&s.rel, &s.owner);
                out.push(format!(
                    "{prefix}{rel}:{line} uses the crate {name}; {owner} is pure"
                ));
            }
        }
    }
    out
}

/// Module pairs that import each other (`state` aside: it is the composition root).
fn cycles(sources: &[Source]) -> Vec<String> {
    let edges: BTreeSet<(&str, &str)> = sources
        .iter()
        .flat_map(|s| {
            s.names
                .crate_refs
                .iter()
                .map(move |r| (s.owner.as_str(), r.name.as_str()))
        })
        .filter(|(a, b)| a != b && *a != "state" && *b != "state")
        .collect();
    edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(*b, *a)))
        .map(|(a, b)| format!("{a} <-> {b}"))
        .collect()
}

#[test]
fn app_layers() {
    let sources = sources("app", &[]);
    let table = ("APP_LAYERS", APP_LAYERS);
    let problems = violations(table, "", &sources, &declared_modules("app"));
    let order: Vec<String> = APP_LAYERS.iter().map(|(_, mods)| mods.join(" ")).collect();
    assert!(
        problems.is_empty(),
        "{} imports break the layer order of docs/architecture.md\n(bottom first: {}; every \
         module above the bottom may use state)\n{}\nmodules that import each other: {}",
        problems.len(),
        order.join(" < "),
        problems.join("\n"),
        cycles(&sources).join(", "),
    );
}

/// The operator's layers: the pure modules at the bottom, importing no I/O module and
/// naming no I/O crate; `reconcile` above what it observes and acts on; the front ends on top.
#[test]
fn operator_layers() {
    let sources = sources("operator", IO_CRATES);
    let table = ("OPERATOR_LAYERS", OPERATOR_LAYERS);
    let problems = violations(table, "operator ", &sources, &declared_modules("operator"));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn source(rel: &str, owner: &str, text: &str, extern_crates: &[&str]) -> Source {
    Source {
        rel: rel.into(),
        owner: owner.into(),
        names: names(text, depth_of(rel), extern_crates),
    }
}

#[test]
fn a_domain_importing_a_higher_domain_is_reported_with_file_and_line() {
    let src = |rel: &str, owner: &str, text: &str| source(rel, owner, text, &[]);
    let sources = [
        src(
            "goods/handlers.rs",
            "goods",
            "use crate::{error::E, state::AppState};\nfn f() { crate::orders::clear() }",
        ),
        src(
            "platform/batch.rs",
            "platform",
            "use crate::state::AppState;",
        ),
        src("orders/mod.rs", "orders", "use crate::goods::Goods;"),
    ];
    let declared = APP_LAYERS
        .iter()
        .flat_map(|(_, m)| m.iter().map(|m| m.to_string()))
        .collect();
    assert_eq!(
        violations(("APP_LAYERS", APP_LAYERS), "", &sources, &declared),
        [
            "goods/handlers.rs:2 imports orders, which is above goods",
            "platform/batch.rs:1 imports state, which is above platform"
        ]
    );
    assert_eq!(cycles(&sources), ["goods <-> orders"]);
}

#[test]
fn a_pure_operator_module_doing_io_is_reported() {
    let sources = [
        source(
            "scaling/decide.rs",
            "scaling",
            "use super::super::observe::Signals;\nfn f() { let _ = kube::Api::all(c); }",
            IO_CRATES,
        ),
        source(
            "reconcile/mod.rs",
            "reconcile",
            "use crate::scaling::decide; use kube::Api;",
            IO_CRATES,
        ),
    ];
    let mut declared: BTreeSet<String> = OPERATOR_LAYERS
        .iter()
        .flat_map(|(_, m)| m.iter().map(|m| m.to_string()))
        .collect();
    declared.insert("gadget".into());
    declared.remove("window");
    let table = ("OPERATOR_LAYERS", OPERATOR_LAYERS);
    assert_eq!(
        violations(table, "operator ", &sources, &declared),
        [
            "operator lib.rs declares module gadget, which has no layer in OPERATOR_LAYERS",
            "OPERATOR_LAYERS names window, which operator lib.rs does not declare",
            "operator scaling/decide.rs:1 imports observe, which is above scaling",
            "operator scaling/decide.rs:2 uses the crate kube; scaling is pure",
        ]
    );
}
