//! `face-attendance settings-reference` (a hidden command): the book's settings page,
//! `docs/src/operations/settings.md`, printed from the commands' own clap definitions, so that
//! the page and the code have one source of truth. Every argument with an environment variable
//! is a setting: its variable, flag, default and help text (the help's first paragraph and the
//! rest, as `--help` shows them), with the commands that take it. Also the numbered cameras'
//! variables ([`crate::settings::NUMBERED_SUFFIXES`]) and the few variables read outside the
//! command line ([`OUTSIDE_THE_COMMAND_LINE`]). `tests/settings_reference.rs` fails when the page
//! and this output differ, and says how to regenerate it.

use std::fmt::Write as _;

use clap::CommandFactory;

use super::bench::BenchCli;
use super::Cli;
use crate::settings::{MAX_CAMERAS, NUMBERED_SUFFIXES};

/// The command that prints the page (hidden from `--help`).
pub const COMMAND: &str = "settings-reference";

/// The page, relative to the repository's root.
pub const PAGE: &str = "docs/src/operations/settings.md";

/// Variables read by something other than clap: (name, where it is read, meaning).
pub const OUTSIDE_THE_COMMAND_LINE: &[(&str, &str, &str)] = &[
    (
        "RUST_LOG",
        "every command (`env_logger`)",
        "the log level: `info` when unset; `warn`, `debug`, or per module \
         (`info,face_attendance::camera=debug`)",
    ),
    (
        "FACE_CPU",
        "`scripts/setup`, `scripts/test`, `scripts/cross-build --board`",
        "build time: the CPU dlib's C++ is built for, `native` (the default of `scripts/setup`) \
         or `portable` (the default of cross builds); see [Building for your \
         CPU](../install/cpu.md)",
    ),
];

/// One setting as the page shows it.
#[derive(Debug, Clone)]
struct Setting {
    env: String,
    flag: String,
    default: String,
    help: String,
    commands: Vec<String>,
}

/// The settings of a command tree, in the order of their first appearance (the commands'
/// order, each command's flags in its `--help` order), each with the top-level commands that
/// take it.
fn settings_of(root: &clap::Command) -> Vec<Setting> {
    let mut out: Vec<Setting> = Vec::new();
    for top in root.get_subcommands() {
        if top.is_hide_set() || top.get_name() == "help" {
            continue;
        }
        let command = format!("`{}`", top.get_name());
        let mut stack = vec![top];
        while let Some(cmd) = stack.pop() {
            for arg in cmd.get_arguments() {
                let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
                    continue;
                };
                if let Some(known) = out.iter_mut().find(|s| s.env == env) {
                    if !known.commands.contains(&command) {
                        known.commands.push(command.clone());
                    }
                    continue;
                }
                out.push(setting(arg, env, &command));
            }
            stack.extend(cmd.get_subcommands().collect::<Vec<_>>().into_iter().rev());
        }
    }
    out
}

/// `arg` (whose variable is `env`) as a row of the page.
fn setting(arg: &clap::Arg, env: &str, command: &str) -> Setting {
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let (mut help, stated_default) = split_default(&one_line(&help));
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let default = if !defaults.is_empty() {
        format!("`{}`", defaults.join(","))
    } else {
        stated_default.unwrap_or_else(|| "(none)".to_string())
    };
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set() && v.get_help().is_some())
        .map(|v| {
            format!(
                "`{}` ({})",
                v.get_name(),
                v.get_help().map(|h| h.to_string()).unwrap_or_default()
            )
        })
        .collect();
    if !values.is_empty() {
        let _ = write!(help, " One of: {}.", values.join("; "));
    }
    Setting {
        env: env.to_string(),
        flag: arg
            .get_long()
            .map(|l| format!("`--{l}`"))
            .unwrap_or_default(),
        default,
        help,
        commands: vec![command.to_string()],
    }
}

/// A help text on one line: its paragraphs joined.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A help text without its `[default: ...]` (a default clap cannot show, stated in the text),
/// and that default.
fn split_default(help: &str) -> (String, Option<String>) {
    let Some(start) = help.find("[default: ") else {
        return (help.to_string(), None);
    };
    let rest = &help[start + "[default: ".len()..];
    let Some(end) = rest.find(']') else {
        return (help.to_string(), None);
    };
    let default = rest[..end].trim().to_string();
    let text = format!("{}{}", help[..start].trim_end(), &rest[end + 1..]);
    (text.trim().to_string(), Some(default))
}

/// A table cell: no line breaks, `|` escaped, and outside `code spans` `<` and `>` written as
/// entities (a help text's `embeddings/<id>.npy` is text, not an HTML tag the page would hide).
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                out.push(c);
            }
            '|' => out.push_str("\\|"),
            '<' if !in_code => out.push_str("&lt;"),
            '>' if !in_code => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// A table of settings.
fn table(out: &mut String, settings: &[Setting]) {
    out.push_str("| variable | flag | default | meaning | commands |\n");
    out.push_str("|---|---|---|---|---|\n");
    for s in settings {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            s.env,
            cell(&s.flag),
            cell(&s.default),
            cell(&s.help),
            cell(&s.commands.join(", "))
        );
    }
}

/// The environment variable names of every setting of both binaries (for the tests).
pub fn variables() -> Vec<String> {
    settings_of(&Cli::command())
        .into_iter()
        .chain(settings_of(&BenchCli::command()))
        .map(|s| s.env)
        .collect()
}

/// The whole page, Markdown.
pub fn markdown() -> String {
    let service = settings_of(&Cli::command());
    let bench: Vec<Setting> = settings_of(&BenchCli::command())
        .into_iter()
        .filter(|b| !service.iter().any(|s| s.env == b.env))
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "# Settings\n\n\
         <!-- Generated by `face-attendance {COMMAND}` from the commands' own definitions \
         (src/cli/): do not edit. Change the help text in the code, then run\n\
         \x20    cargo run --release --bin face-attendance -- {COMMAND} > {PAGE}\n\
         tests/settings_reference.rs fails when this page and the code disagree. -->\n\n\
         Every setting is a flag or an environment variable (flags win). Defaults are the \
         original service's. Each command takes the settings it uses (its `--help` lists them), \
         after its name: `face-attendance serve --data DIR`. The older form with settings \
         before the command (`face-attendance --data DIR serve`) still works; a flag the \
         command does not take is refused (an environment variable it does not use is \
         ignored). On a box, the service's settings are the lines of `/etc/face-attendance/env` \
         (`sudo systemctl restart face-attendance` after a change); `GET /config` shows the \
         effective ones. A setting `serve` cannot use stops it with exit status 2 and one line \
         naming the setting.\n\n\
         This page is generated from the code (`face-attendance {COMMAND}`), so it lists \
         exactly the settings the commands take.\n\n\
         ## face-attendance\n\n"
    );
    table(&mut out, &service);
    let _ = write!(
        out,
        "\n## Further cameras\n\n\
         A box runs up to {MAX_CAMERAS} cameras: the first from `CAMERA_DEVICE` (or \
         `CAMERA_FRAMES`), the others from `CAMERA_2_DEVICE` to `CAMERA_{MAX_CAMERAS}_DEVICE`, \
         each with its own settings, read by `serve` and `cameras` from the environment only \
         (no flags):\n\n"
    );
    for suffix in NUMBERED_SUFFIXES {
        let _ = writeln!(
            out,
            "- `CAMERA_<N>_{suffix}`: as `CAMERA_{suffix}` for camera N (2 to {MAX_CAMERAS})"
        );
    }
    out.push_str(
        "\nAny other `CAMERA_<digit>...` variable stops `serve` (exit status 2), so a typo is \
         not ignored. See [Two cameras](../cameras.md#two-cameras-an-entrance-and-an-exit).\n",
    );
    out.push_str(
        "\n## face-attendance-bench\n\n\
         The benchmarks' binary takes the settings above that it uses, and these:\n\n",
    );
    table(&mut out, &bench);
    out.push_str("\n## Read outside the command line\n\n");
    out.push_str("| variable | read by | meaning |\n|---|---|---|\n");
    for (name, by, meaning) in OUTSIDE_THE_COMMAND_LINE {
        let _ = writeln!(out, "| `{name}` | {by} | {meaning} |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_keeps_angle_brackets_as_text_outside_code() {
        assert_eq!(
            cell("embeddings/<id>.npy, `<prefix>/x` | y"),
            "embeddings/&lt;id&gt;.npy, `<prefix>/x` \\| y"
        );
    }

    #[test]
    fn a_default_stated_in_the_help_moves_to_its_column() {
        assert_eq!(
            split_default("Address [default: 127.0.0.1:8000, or 0.0.0.0:8000]. More"),
            (
                "Address. More".to_string(),
                Some("127.0.0.1:8000, or 0.0.0.0:8000".into())
            )
        );
        assert_eq!(
            split_default("No default"),
            ("No default".to_string(), None)
        );
    }

    #[test]
    fn the_camera_tolerance_help_states_the_constant() {
        let service = settings_of(&Cli::command());
        let tolerance = service
            .iter()
            .find(|s| s.env == "CAMERA_TOLERANCE")
            .expect("CAMERA_TOLERANCE");
        assert_eq!(
            tolerance.default,
            crate::camera::DEFAULT_CAMERA_TOLERANCE.to_string()
        );
    }

    #[test]
    fn every_setting_once_with_a_meaning() {
        let names = variables();
        assert!(names.len() > 60, "{names:?}");
        let service = settings_of(&Cli::command());
        for s in &service {
            assert!(!s.help.is_empty(), "{} has no help text", s.env);
            assert!(!s.flag.is_empty(), "{} has no flag", s.env);
        }
    }
}
