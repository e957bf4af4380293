//! `scripts/check-book-links`, the book's link check in `scripts/test`, on small books made
//! here: a clean one passes; a link to a missing page, to a missing #anchor (on another page
//! and on its own), out of the book, and README links to a missing chapter or anchor each fail
//! it, named in its output. (The real book is checked by `scripts/test` after `mdbook build`.)

use std::path::Path;
use std::process::{Command, Output};

fn check(book: &Path, readme: Option<&Path>) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-book-links");
    let mut command = Command::new("python3");
    command.arg(script).arg(book);
    if let Some(readme) = readme {
        command.arg(readme);
    }
    command.output().expect("python3")
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A repository with a README and a built book of two pages that link to each other.
fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        &root.join("target/book/index.html"),
        r##"<h1 id="intro">Intro</h1><a href="install/cpu.html#flags">flags</a>
           <a href="#intro">top</a><a href="https://example.org/x#y">out</a>
           <img src="img/logo.svg">"##,
    );
    write(&root.join("target/book/img/logo.svg"), "<svg/>");
    write(
        &root.join("target/book/install/cpu.html"),
        r##"<h2 id="flags">Flags</h2><a name="old-name"></a><a href="../index.html">back</a>
           <a href="../index.html#intro">intro</a>"##,
    );
    // print.html repeats the chapters with links of its own: not checked.
    write(
        &root.join("target/book/print.html"),
        r#"<a href="nowhere.html">x</a>"#,
    );
    write(&root.join("docs/src/install/cpu.md"), "# CPU\n");
    write(&root.join("docs/src/SUMMARY.md"), "# Summary\n");
    write(&root.join("ARCHITECTURE.md"), "# Architecture\n");
    write(
        &root.join("README.md"),
        "See [flags](docs/src/install/cpu.md#flags), [old](docs/src/install/cpu.md#old-name),\n\
         [the book](docs/src/SUMMARY.md), [the design](ARCHITECTURE.md) and [a site](https://x.org).\n\
         ```\n[not a link](nowhere.md)\n```\n",
    );
    dir
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The check's output names `text`.
fn says(out: &Output, text: &str) {
    assert!(stdout(out).contains(text), "{text}: {}", stdout(out));
}

/// The check failed (exit status 1), naming `text`.
fn fails_saying(out: &Output, text: &str) {
    assert_eq!(out.status.code(), Some(1), "{text}: {}", stdout(out));
    says(out, text);
}

#[test]
fn a_clean_book_and_readme_pass() {
    let site = site();
    let root = site.path();
    let out = check(&root.join("target/book"), Some(&root.join("README.md")));
    assert!(out.status.success(), "{}", stdout(&out));
    says(&out, "every internal link");
}

#[test]
fn each_broken_link_fails_the_check_and_is_named() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "install/cpu.html",
            r#"<a href="../missing.html">m</a>"#,
            "../missing.html: no such file",
        ),
        (
            "index.html",
            r#"<a href="install/cpu.html#nope">m</a>"#,
            "no id 'nope' in install/cpu.html",
        ),
        (
            "index.html",
            r##"<a href="#gone">m</a>"##,
            "no id 'gone' in index.html",
        ),
        (
            "index.html",
            r#"<a href="../../etc/passwd">m</a>"#,
            "leaves the book",
        ),
        (
            "index.html",
            r#"<img src="img/none.png">"#,
            "img/none.png: no such file",
        ),
    ];
    for (page, link, said) in cases {
        let site = site();
        let book = site.path().join("target/book");
        let path = book.join(page);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}{link}")).unwrap();
        let out = check(&book, None);
        fails_saying(&out, said);
        says(&out, "1 broken link(s)");
    }
}

#[test]
fn a_readme_link_to_a_missing_chapter_or_anchor_fails() {
    for (link, said) in [
        ("docs/src/install/cpu.md#nope", "no id 'nope'"),
        ("docs/src/cameras.md", "no such file"),
        ("scripts/nothing", "no such file"),
    ] {
        let site = site();
        let root = site.path();
        let readme = root.join("README.md");
        let text = std::fs::read_to_string(&readme).unwrap();
        std::fs::write(&readme, format!("{text}\nAlso [this]({link}).\n")).unwrap();
        let out = check(&root.join("target/book"), Some(&readme));
        fails_saying(&out, said);
    }
    // A chapter file that exists but is not in the book (not in SUMMARY.md): refused too.
    let site = site();
    let root = site.path();
    write(&root.join("docs/src/orphan.md"), "# Orphan\n");
    let readme = root.join("README.md");
    std::fs::write(&readme, "[orphan](docs/src/orphan.md)\n").unwrap();
    let out = check(&root.join("target/book"), Some(&readme));
    fails_saying(&out, "not a page of the book");
}
