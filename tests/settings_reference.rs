//! The book's settings page (`docs/src/operations/settings.md`) is exactly what
//! `face-attendance settings-reference` prints from the commands' own definitions; and,
//! read independently from every command's `--help` (both binaries, every subcommand), every
//! setting variable of the code is in the page's tables once and nothing else is.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const PAGE: &str = "docs/src/operations/settings.md";
const REGENERATE: &str =
    "cargo run --release --bin face-attendance -- settings-reference > docs/src/operations/settings.md";

fn page() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(PAGE))
        .unwrap_or_else(|e| panic!("{PAGE}: {e}; make it with: {REGENERATE}"))
}

fn run(binary: &str, args: &[&str]) -> String {
    let out = Command::new(binary).args(args).output().unwrap();
    assert!(out.status.success(), "{binary} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The `[env: NAME]` names of `--help` of `path` and of every subcommand under it.
fn help_env_names(binary: &str, path: &mut Vec<String>, names: &mut BTreeSet<String>) {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let help = run(binary, &args);
    for rest in help.split("[env: ").skip(1) {
        names.insert(
            rest.split(['=', ']'])
                .next()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let commands: Vec<String> = help
        .split("\nCommands:\n")
        .nth(1)
        .map(|section| {
            section
                .lines()
                .take_while(|l| l.starts_with("  "))
                .filter(|l| !l.starts_with("   "))
                .filter_map(|l| l.split_whitespace().next())
                .filter(|c| *c != "help")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for command in commands {
        path.push(command);
        help_env_names(binary, path, names);
        path.pop();
    }
}

/// The variables of the page's two settings tables (`## face-attendance`,
/// `## face-attendance-bench`), each once.
fn page_table_names(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_tables = false;
    for line in page.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            in_tables = heading == "face-attendance" || heading == "face-attendance-bench";
            continue;
        }
        if !in_tables {
            continue;
        }
        if let Some(name) = line
            .strip_prefix("| `")
            .and_then(|rest| rest.split('`').next())
        {
            assert!(names.insert(name.to_string()), "{name} twice in {PAGE}");
        }
    }
    names
}

#[test]
fn the_settings_page_is_generated_from_the_code() {
    let generated = run(
        env!("CARGO_BIN_EXE_face-attendance"),
        &["settings-reference"],
    );
    let page = page();
    if generated != page {
        let line = generated
            .lines()
            .zip(page.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one is longer".to_string(),
                |n| format!("first difference at line {}", n + 1),
            );
        panic!("{PAGE} is not what the code says ({line}); regenerate it with:\n  {REGENERATE}");
    }
}

#[test]
fn every_setting_of_the_code_and_nothing_else_is_on_the_page() {
    let mut code = BTreeSet::new();
    for binary in [
        env!("CARGO_BIN_EXE_face-attendance"),
        env!("CARGO_BIN_EXE_face-attendance-bench"),
    ] {
        help_env_names(binary, &mut Vec::new(), &mut code);
    }
    // The walk itself reached the commands' settings, not only the top level's.
    for name in [
        "FACE_DATA_DIR",
        "CAMERA_DEVICE",
        "MQTT_URL",
        "FACE_SERVER",
        "FACES_DIR",
    ] {
        assert!(
            code.contains(name),
            "{name} not found in any --help: {code:?}"
        );
    }
    let page = page_table_names(&page());
    let missing: Vec<_> = code.difference(&page).collect();
    let extra: Vec<_> = page.difference(&code).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "settings of the code missing from {PAGE}: {missing:?}; on the page but not in the \
         code: {extra:?}; regenerate it with:\n  {REGENERATE}"
    );
}

#[test]
fn a_page_with_a_setting_too_many_or_too_few_is_caught() {
    let page = page();
    let names = page_table_names(&page);
    let first = names.iter().next().unwrap().clone();
    // One row removed: that setting is missing.
    let without: String = page
        .lines()
        .filter(|l| !l.starts_with(&format!("| `{first}` ")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!page_table_names(&without).contains(&first));
    // A made-up row added to the service's table: it is found.
    let with = page.replacen(
        "|---|---|---|---|---|\n",
        "|---|---|---|---|---|\n| `FACE_NOT_A_SETTING` | `--nope` | (none) | x | y |\n",
        1,
    );
    assert!(page_table_names(&with).contains("FACE_NOT_A_SETTING"));
    assert_eq!(page_table_names(&with).len(), names.len() + 1);
}
