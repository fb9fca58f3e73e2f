//! Man pages and shell completions for the three binaries, generated from their clap
//! definitions so they cannot drift from what the binaries accept.
//!
//! `emperor` and `emperorctl` parse their arguments with clap, and their libraries export
//! the very `clap::Command` they parse ([`emperor::cli::command`],
//! [`emperorctl::cli::command`]). `vassal` parses uWSGI-style options by hand (the config
//! crate's `args` module: getopt rules, uWSGI's option table), so [`vassal::command`] is a
//! clap description of its common options written for the docs only; its tests check it
//! against the config crate's option tables, so an option the vassal stops accepting, or
//! one added without documentation, fails the build.
//!
//! Every page goes in section 8 (system administration: these are daemons and the tool
//! that controls them). emperorctl's subcommands get their own pages
//! (`emperorctl-reload(8)`, ...), which its main page's SUBCOMMANDS section names.
//! Sections clap has no field for (the emperor's ini keys, FILES, ENVIRONMENT, EXIT
//! STATUS, SEE ALSO) are troff in `sections.rs`, inserted before VERSION.

mod sections;
pub mod vassal;

use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// The man page section of every page.
pub const SECTION: &str = "8";

/// The three commands, as their binaries know them.
pub fn commands() -> Vec<clap::Command> {
    vec![
        emperor::cli::command(),
        vassal::command(),
        emperorctl::cli::command(),
    ]
}

/// The man pages for `cmd` and each of its visible subcommands, as (file name, troff).
pub fn man_pages(cmd: clap::Command) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    // Building sets the subcommands' display names (`emperorctl-reload`), which name
    // their pages and the references to them.
    cmd.build();
    let mut pages = Vec::new();
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    for c in std::iter::once(cmd).chain(subs) {
        let name = c.get_display_name().unwrap_or(c.get_name()).to_string();
        let man = clap_mangen::Man::new(c)
            .section(SECTION)
            .source(format!("emperor {}", env!("CARGO_PKG_VERSION")))
            .manual("System Administration");
        let mut rendered = Vec::new();
        man.render(&mut rendered)?;
        let troff = with_sections(&String::from_utf8_lossy(&rendered), sections::extra(&name));
        pages.push((man.get_filename(), troff.into_bytes()));
    }
    Ok(pages)
}

/// `page` with `extra` inserted before its VERSION section (clap_mangen's last one),
/// or at its end.
fn with_sections(page: &str, extra: &str) -> String {
    match page.find("\n.SH VERSION\n") {
        Some(at) => format!("{}\n{}{}", &page[..at], extra, &page[at + 1..]),
        None => format!("{page}{extra}"),
    }
}

/// Where each shell's completion file for `bin` goes below `OUTDIR/completions/`, as
/// Debian's bash-completion, zsh and fish packages name them.
pub fn completion_file(shell: Shell, bin: &str) -> String {
    match shell {
        Shell::Zsh => format!("completions/zsh/_{bin}"),
        Shell::Fish => format!("completions/fish/{bin}.fish"),
        _ => format!("completions/{shell}/{bin}"),
    }
}

/// Writes every man page and completion below `outdir`; returns the files written.
pub fn generate(outdir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut write = |rel: &str, data: &[u8]| -> io::Result<()> {
        let path = outdir.join(rel);
        std::fs::create_dir_all(path.parent().expect("a joined path has a parent"))?;
        std::fs::write(&path, data)?;
        written.push(path);
        Ok(())
    };
    for cmd in commands() {
        let bin = cmd.get_name().to_string();
        for (file, troff) in man_pages(cmd.clone())? {
            write(&format!("man{SECTION}/{file}"), &troff)?;
        }
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &bin, &mut script);
            write(&completion_file(shell, &bin), &script)?;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_consistent() {
        for cmd in commands() {
            cmd.debug_assert();
        }
    }

    #[test]
    fn pages_are_section_8_troff_named_after_their_command() {
        let names: Vec<String> = commands()
            .into_iter()
            .flat_map(|c| man_pages(c).expect("rendering into memory cannot fail"))
            .map(|(name, troff)| {
                let text = String::from_utf8(troff).expect("troff is UTF-8");
                let title = text
                    .lines()
                    .find(|l| l.starts_with(".TH "))
                    .unwrap_or_else(|| panic!("{name} has no .TH line"));
                assert!(title.contains(" 8 "), "{name}: {title}");
                name
            })
            .collect();
        for want in [
            "emperor.8",
            "vassal.8",
            "emperorctl.8",
            "emperorctl-reload.8",
            "emperorctl-check.8",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
    }

    #[test]
    fn extra_sections_come_before_version() {
        let page = |cmd| {
            let (_, troff) = man_pages(cmd).expect("renders").remove(0);
            String::from_utf8(troff).expect("troff is UTF-8")
        };
        let emperor = page(emperor::cli::command());
        let files = emperor.find(".SH FILES").expect("emperor(8) has FILES");
        let version = emperor.find(".SH VERSION").expect("emperor(8) has VERSION");
        assert!(files < version);
        assert!(emperor.contains(".SH CONFIGURATION"));
        assert!(page(emperorctl::cli::command()).contains(".SH EXIT STATUS"));
        assert!(page(vassal::command()).contains(".SH ENVIRONMENT"));
    }
}
