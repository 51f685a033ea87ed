//! The man page, doc/pgsplit.1, is generated from the clap definition
//! (src/config/cli.rs) so it cannot say something --help does not. This
//! test renders it and fails when the checked-in file differs; run it
//! with PGSPLIT_WRITE_MAN=1 to write the file instead. The .deb ships the
//! checked-in file (Cargo.toml [package.metadata.deb]).

use clap::CommandFactory;
use pgsplit::config::{Cli, HELP_SECTIONS};
use std::path::Path;

fn rendered() -> Vec<u8> {
    // Not Man::render: it would fill clap's after_long_help as one
    // paragraph. The sections are rendered here, preformatted, instead.
    let man = clap_mangen::Man::new(Cli::command())
        .date("")
        .manual("pgsplit manual")
        .source(concat!("pgsplit ", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out).expect("render");
    man.render_name_section(&mut out).expect("render");
    man.render_synopsis_section(&mut out).expect("render");
    man.render_description_section(&mut out).expect("render");
    man.render_options_section(&mut out).expect("render");
    for (heading, body) in HELP_SECTIONS {
        out.extend_from_slice(format!(".SH \"{heading}\"\n.nf\n{}\n.fi\n", roff(body)).as_bytes());
    }
    man.render_version_section(&mut out).expect("render");
    out
}

/// Text as roff shows it literally: backslashes and dashes escaped, and a
/// line starting with a control character ('.' or an apostrophe) guarded.
fn roff(text: &str) -> String {
    text.lines()
        .map(|line| {
            let escaped = line.replace('\\', "\\e").replace('-', "\\-");
            match escaped.starts_with(['.', '\'']) {
                true => format!("\\&{escaped}"),
                false => escaped,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_checked_in_man_page_is_the_one_clap_renders() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("doc/pgsplit.1");
    let fresh = rendered();
    if std::env::var_os("PGSPLIT_WRITE_MAN").is_some() {
        std::fs::write(&path, &fresh).expect("write doc/pgsplit.1");
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "doc/pgsplit.1 is stale: regenerate it with \
         PGSPLIT_WRITE_MAN=1 cargo test --test man_page, and commit it"
    );
}

/// The page has what a reader needs without the README: every option,
/// the signals and the exit status.
#[test]
fn the_man_page_covers_options_signals_and_exit_status() {
    let text = String::from_utf8(rendered()).unwrap();
    for needle in [
        "check\\-config",
        "metrics\\-listen",
        "SIGHUP",
        "SIGTERM",
        "EXIT STATUS",
        "config.toml.example",
    ] {
        assert!(
            text.contains(needle),
            "the man page lacks {needle}:\n{text}"
        );
    }
}
