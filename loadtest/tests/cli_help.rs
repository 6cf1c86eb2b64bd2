//! The command line as a user meets it, through the real binary: `--help` names every
//! executor with its meaning and describes every option (as k6's docs do), and a bad value
//! is a usage error (exit 2) that says what was wrong and what is accepted, before any run.

use std::process::{Command, Output};

fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_floodgate-loadtest"))
        .args(args)
        .env_remove("FLOODGATE_TARGET")
        .output()
        .expect("run floodgate-loadtest")
}

fn help(args: &[&str]) -> String {
    let out = loadtest(args);
    assert!(out.status.success(), "{args:?} failed: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// Every `--flag` (and positional `<ARG>`) entry of a help's `Arguments:` and `Options:`
/// sections with its description, whitespace collapsed: the text after the head on the same
/// line (clap's compact layout) and the blank or deeper-indented lines under it.
fn entries(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_section = false;
    let mut open = false;
    for line in text.lines() {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        if body.is_empty() || (open && indent > 6) {
            if let Some((_, text)) = out.last_mut().filter(|_| open) {
                text.push(' ');
                text.push_str(body);
            }
            continue;
        }
        open = false;
        if indent == 0 {
            in_section = body == "Arguments:" || body == "Options:";
            continue;
        }
        let is_entry =
            in_section && indent <= 6 && (body.starts_with('-') || body.starts_with('<'));
        if !is_entry || body.starts_with("-h, --help") || body.starts_with("-V, --version") {
            continue;
        }
        let (head, same_line) = body.split_once("  ").unwrap_or((body, ""));
        out.push((head.to_string(), same_line.to_string()));
        open = true;
    }
    out.into_iter()
        .map(|(head, text)| (head, text.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect()
}

fn described<'a>(entries: &'a [(String, String)], flag: &str) -> &'a str {
    let (_, text) = entries
        .iter()
        .find(|(head, _)| head.split_whitespace().next() == Some(flag))
        .unwrap_or_else(|| panic!("{flag} is not in the help"));
    text
}

#[test]
fn every_option_of_every_subcommand_is_described() {
    for sub in ["run", "merge", "ceiling-server"] {
        let entries = entries(&help(&[sub, "--help"]));
        assert!(entries.len() >= 2, "{sub}: no options parsed");
        for (head, text) in &entries {
            let words = text
                .split_whitespace()
                .filter(|w| !w.starts_with('['))
                .count();
            assert!(
                words >= 4,
                "{sub} --help: `{head}` is printed bare: {text:?}"
            );
        }
    }
}

#[test]
fn run_help_explains_executors_and_load_options_as_k6_does() {
    let text = help(&["run", "--help"]);
    let entries = entries(&text);
    let executor = described(&entries, "--executor");
    for (name, meaning) in [
        ("constant-vus", "Closed model"),
        ("ramping-vus", "Closed model"),
        ("constant-arrival-rate", "Open model"),
        ("ramping-arrival-rate", "Open model"),
    ] {
        assert!(
            executor.contains(&format!("- {name}: {meaning}")),
            "--executor does not list {name} with its meaning: {executor}"
        );
    }
    // each option says what it is in k6's terms, its unit and its default
    for (flag, needles) in [
        ("--rate", &["per --time-unit", "`rate`"][..]),
        ("--start-rate", &["`startRate`", "default"]),
        (
            "--time-unit",
            &["`timeUnit`", "[default: 1s]", "1.5 iterations a second"],
        ),
        ("--vus", &["`preAllocatedVUs`", "constant-vus [default: 1]"]),
        ("--max-vus", &["`maxVUs`", "dropped"]),
        ("--duration", &["[default: 30s]", "1m30s"]),
        (
            "--stages",
            &["DURATION:TARGET", "ramping-vus", "ramping-arrival-rate"],
        ),
        ("--scale", &["durations stay"]),
        ("--threshold", &["p(95)", "99"]),
        ("--segment", &["i of N"]),
    ] {
        let text = described(&entries, flag);
        for needle in needles {
            assert!(text.contains(needle), "{flag}: no {needle:?} in {text:?}");
        }
    }
    let examples = text
        .split("Examples:")
        .nth(1)
        .expect("an Examples: section");
    assert!(
        examples.matches("floodgate-loadtest run ").count() >= 4,
        "too few examples: {examples}"
    );
    assert!(examples.contains("--executor constant-arrival-rate"));
    assert!(examples.contains("merge"));
}

/// Exit 2 and stderr with every needle, before any request is sent (the target is closed).
fn rejects(args: &[&str], needles: &[&str]) {
    let mut argv = vec!["run", "goods-list", "--target", "http://127.0.0.1:9"];
    argv.extend_from_slice(args);
    let out = loadtest(&argv);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: no {needle:?} in {stderr}"
        );
    }
}

#[test]
fn bad_values_are_usage_errors_that_say_what_is_accepted() {
    rejects(
        &["--executor", "constant-vu"],
        &[
            "invalid value 'constant-vu' for '--executor <EXECUTOR>'",
            "[possible values: constant-vus, ramping-vus, constant-arrival-rate, ramping-arrival-rate]",
            "tip: a similar value exists: 'constant-vus'",
        ],
    );
    rejects(
        &["--stages", "10s-100"],
        &[
            "invalid value '10s-100' for '--stages <DURATION:TARGET,...>'",
            "stage \"10s-100\" is not DURATION:TARGET",
        ],
    );
    rejects(
        &["--stages", "10s:-5"],
        &["stage target -5 must be a number >= 0"],
    );
    rejects(
        &["--rate", "0"],
        &[
            "invalid value '0' for '--rate <RATE>'",
            "must be a number above 0",
        ],
    );
    rejects(&["--rate", "fast"], &["not a number"]);
    rejects(
        &["--time-unit", "0s"],
        &["'--time-unit <DURATION>'", "must be longer than 0"],
    );
    rejects(
        &["--duration", "10x"],
        &["unknown unit \"x\"", "k6 durations: 500ms, 30s, 1m30s, 2h"],
    );
    rejects(
        &["--vus", "0"],
        &["invalid value '0' for '--vus <N>'", "0 is not in 1.."],
    );
    rejects(
        &["--max-vus=-3"],
        &["invalid value '-3' for '--max-vus <N>'"],
    );
    rejects(&["--segment", "4/4"], &["segment \"4/4\" needs 0 <= i < N"]);
}

#[test]
fn an_executor_without_what_it_needs_says_which_flag_is_missing() {
    let out = loadtest(&[
        "run",
        "goods-list",
        "--target",
        "http://127.0.0.1:9",
        "--executor",
        "ramping-vus",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--executor ramping-vus needs --stages DURATION:TARGET,..."),
        "{stderr}"
    );
}
