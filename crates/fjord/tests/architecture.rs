//! ARCHITECTURE.md stays true: this test reads the code and fails when the document's code map or
//! its invariants no longer describe it. Each check names the rule it enforces; a failure lists every
//! place that breaks it.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The crates of the workspace, by directory name.
fn crates() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The text of ARCHITECTURE.md's section on `krate` (from its heading to the next one).
fn section<'a>(doc: &'a str, krate: &str) -> Option<&'a str> {
    let heading = format!("### `crates/{krate}`");
    let start = doc.find(&heading)?;
    let rest = &doc[start + heading.len()..];
    let end = rest.find("\n## ").into_iter().chain(rest.find("\n### ")).min().unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The top-level modules of a crate: `src/NAME.rs` and `src/NAME/` (not lib, main, or unit tests).
fn top_modules(krate: &str) -> Vec<String> {
    let src = root().join("crates").join(krate).join("src");
    let mut out: Vec<String> = std::fs::read_dir(&src)
        .expect("src/")
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let name = p.file_stem()?.to_string_lossy().into_owned();
            let module = p.is_dir() && p.join("mod.rs").is_file() || p.extension().is_some_and(|x| x == "rs");
            (module && !["lib", "main", "tests"].contains(&name.as_str())).then_some(name)
        })
        .collect();
    out.sort();
    out
}

/// Lines of the non-test code of `file`: up to its first `#[cfg(test)]`, without comments.
fn code_lines(file: &Path) -> Vec<(usize, String)> {
    let text = read(file);
    let body = text.split("#[cfg(test)]").next().unwrap_or("");
    body.lines().enumerate().map(|(i, l)| (i + 1, l.trim().to_string())).filter(|(_, l)| !l.starts_with("//")).collect()
}

/// Where any of `needles` appears in the non-test code of the crates `scope` selects.
fn occurrences(scope: impl Fn(&str, &Path) -> bool, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for krate in crates() {
        let src = root().join("crates").join(&krate).join("src");
        for file in rust_files(&src) {
            if !scope(&krate, &file) {
                continue;
            }
            for (n, line) in code_lines(&file) {
                if let Some(needle) = needles.iter().find(|s| line.contains(*s)) {
                    let rel = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
                    found.push(format!("{rel}:{n}: {needle}"));
                }
            }
        }
    }
    found
}

#[test]
fn every_crate_and_top_level_module_is_in_the_code_map() {
    let doc = read(&root().join("ARCHITECTURE.md"));
    let mut missing = Vec::new();
    for krate in crates() {
        let Some(text) = section(&doc, &krate) else {
            missing.push(format!("crate {krate} has no `### \\`crates/{krate}\\`` section"));
            continue;
        };
        for module in top_modules(&krate) {
            let named = [format!("{module}.rs"), format!("{module}/"), format!("`{module}`")];
            if !named.iter().any(|n| text.contains(n.as_str())) {
                missing.push(format!("crates/{krate}/src/{module}: not named in its crate's section"));
            }
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md's code map is out of date:\n{}", missing.join("\n"));
}

/// "fjord-store is the only crate with SQL."
#[test]
fn sql_on_the_state_database_only_in_the_store() {
    let found = occurrences(|krate, _| krate != "fjord-store", &["sqlx::", "use sqlx"]);
    assert!(found.is_empty(), "SQL on the state database outside fjord-store:\n{}", found.join("\n"));
    for krate in crates().iter().filter(|k| *k != "fjord-store") {
        let manifest = read(&root().join("crates").join(krate).join("Cargo.toml"));
        let deps = manifest.split("[dev-dependencies]").next().unwrap_or("");
        assert!(!deps.contains("sqlx"), "crates/{krate} depends on sqlx: only fjord-store may");
    }
}

/// "fjord-exec is the only crate that starts processes or writes files" (benchmarks build their
/// scratch fixtures in their own module, `crates/fjord/src/bench/`).
#[test]
fn processes_and_host_files_only_in_the_executor() {
    let outside = |krate: &str, file: &Path| krate != "fjord-exec" && !file.to_string_lossy().contains("/src/bench/");
    let spawns = ["std::process::Command", "tokio::process::", "process::Command::new", "process::Stdio"];
    let found = occurrences(outside, &spawns);
    assert!(found.is_empty(), "processes started outside fjord-exec:\n{}", found.join("\n"));
    let writes = [
        "fs::write(",
        "fs::create_dir",
        "fs::remove_",
        "fs::rename(",
        "fs::copy(",
        "fs::set_permissions(",
        "fs::hard_link(",
        "File::create(",
        "OpenOptions::new()",
        "fs::symlink(",
    ];
    let found = occurrences(outside, &writes);
    assert!(found.is_empty(), "host files written outside fjord-exec:\n{}", found.join("\n"));
}

/// "The web crate depends on neither the daemon nor the executor": it reaches hosts only through the
/// actions layer and tasks.
#[test]
fn the_web_crate_reaches_hosts_only_through_actions() {
    let manifest = read(&root().join("crates/fjord-web/Cargo.toml"));
    for dep in ["fjord-daemon", "fjord-exec"] {
        assert!(!manifest.contains(dep), "crates/fjord-web depends on {dep}");
    }
    let found = occurrences(|krate, _| krate == "fjord-web", &["fjord_daemon", "fjord_exec"]);
    assert!(found.is_empty(), "fjord-web names the daemon or the executor:\n{}", found.join("\n"));
    // Nor does the actions layer sit on the daemon: the daemon sits on it.
    let actions = read(&root().join("crates/fjord-actions/Cargo.toml"));
    assert!(!actions.contains("fjord-daemon"), "crates/fjord-actions depends on fjord-daemon");
}

/// "Every change goes through the change layer": only the store and the actions layer queue tasks or
/// write desired state; the CLI, the web crate and the daemon call the actions layer.
#[test]
fn changes_are_queued_only_through_the_actions_layer() {
    let callers = |krate: &str, file: &Path| {
        ["fjord", "fjord-web"].contains(&krate) && !file.to_string_lossy().contains("/src/bench/")
    };
    let store_writes =
        ["store.enqueue(", "store.commit_change(", "store.create_site", "store.add_platform(", "store.add_server("];
    let found = occurrences(callers, &store_writes);
    assert!(found.is_empty(), "changes queued around the actions layer:\n{}", found.join("\n"));
}
