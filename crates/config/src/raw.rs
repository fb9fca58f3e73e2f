//! Stage one: read ini files and arguments into uWSGI's flat, ordered option list
//! ("exported options"), then run the `$`/`@`/`%` passes over it.
//!
//! This mirrors `add_exported_option` in `core/config.c`: every `key = value` is appended
//! in order, repeats included. Immediate directives run as soon as they are appended:
//! `ini`/`include` read another file in place (its magic variables refer to that file),
//! `set = k=v` appends option `k`, `set-placeholder`/`set-ph` append a placeholder, and
//! `strict` switches strict mode on. Immediate options are marked `configured`, which is
//! why uWSGI never rewrites their values in the later passes; we keep that.

use crate::diag::{Diagnostic, Origin};
use crate::host::Host;
use crate::lexer::lex;
use crate::magic::MagicTable;
use crate::options;
use crate::placeholders;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Nested `ini =` / `include =` levels before we call it a loop (uWSGI recurses until it
/// crashes).
pub const MAX_INCLUDE_DEPTH: usize = 32;
/// Options accepted from all files together; beyond this the input is not a config file.
pub const MAX_OPTIONS: usize = 10_000;
/// Ini files read in total. The depth limit alone does not stop a file that includes
/// itself twice (2^depth reads).
pub const MAX_FILE_LOADS: usize = 64;

/// One entry of the option list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOption {
    pub key: String,
    /// `None` for a command-line flag given without a value (uWSGI prints it as `true`).
    pub value: Option<String>,
    pub origin: Origin,
    /// Applied while reading (immediate option) or a placeholder: skipped by the passes.
    pub configured: bool,
    /// Defined with `set-placeholder`: a name for `%(...)`, never an option.
    pub placeholder: bool,
}

impl RawOption {
    pub fn new(key: &str, value: Option<String>, origin: Origin) -> Self {
        RawOption {
            key: key.to_string(),
            value,
            origin,
            configured: false,
            placeholder: false,
        }
    }
}

/// Everything stage one produced.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The option list after all passes: what `uwsgi --show-config` prints.
    pub options: Vec<RawOption>,
    pub diagnostics: Vec<Diagnostic>,
    /// Ini files read, in order (as named, a `:section` suffix removed).
    pub files: Vec<PathBuf>,
    /// `%n` of the first ini file read.
    pub first_name: Option<String>,
    /// `strict` was seen (with a true value) while reading.
    pub strict: bool,
    /// Names looked up by `%(...)`: unknown keys among them are user placeholders.
    pub placeholder_refs: BTreeSet<String>,
}

/// Reads files and options in uWSGI's order.
pub struct Reader<'h> {
    host: &'h dyn Host,
    magic: MagicTable,
    last_file: Option<String>,
    depth: usize,
    loads: usize,
    resolved: Resolved,
}

impl<'h> Reader<'h> {
    pub fn new(host: &'h dyn Host) -> Self {
        Reader {
            host,
            magic: MagicTable::new(host),
            last_file: None,
            depth: 0,
            loads: 0,
            resolved: Resolved {
                options: Vec::new(),
                diagnostics: Vec::new(),
                files: Vec::new(),
                first_name: None,
                strict: false,
                placeholder_refs: BTreeSet::new(),
            },
        }
    }

    pub fn host(&self) -> &'h dyn Host {
        self.host
    }

    pub fn diagnose(&mut self, diagnostic: Diagnostic) {
        self.resolved.diagnostics.push(diagnostic);
    }

    /// Runs the passes and returns the result.
    pub fn finish(mut self) -> Resolved {
        self.resolved.placeholder_refs = placeholders::apply_all(
            &mut self.resolved.options,
            self.host,
            &mut self.resolved.diagnostics,
        );
        self.resolved
    }

    /// `uwsgi_opt_load`: a file named by `include =` or a bare command-line argument,
    /// chosen by extension, without defining the upper-case magic variables.
    pub fn load_by_extension(&mut self, spec: &str, origin: &Origin) {
        if spec.ends_with(".ini") {
            let previous = self.magic.suppress_first_round(true);
            self.load_ini(spec, origin);
            self.magic.suppress_first_round(previous);
        } else if spec.contains(".ini:") {
            self.diagnose(Diagnostic::error(
                origin,
                format!("cannot load `{spec}`: files loaded by extension cannot select a section; use `ini = {spec}` or `--ini {spec}`"),
            ));
        } else {
            self.diagnose(Diagnostic::error(
                origin,
                format!("cannot load configuration from `{spec}`: only .ini files are supported"),
            ));
        }
    }

    /// `uwsgi_opt_load_ini`: reads `path[:section]` (default section `uwsgi`; `:section`
    /// alone means the last ini file read) and appends its options.
    pub fn load_ini(&mut self, spec: &str, origin: &Origin) {
        if spec.contains("://") || spec == "-" {
            self.diagnose(Diagnostic::error(
                origin,
                format!("cannot load `{spec}`: only plain ini files are supported (no stdin or scheme:// sources)"),
            ));
            return;
        }
        if self.depth >= MAX_INCLUDE_DEPTH {
            self.diagnose(Diagnostic::error(
                origin,
                format!("`{spec}`: ini files nested more than {MAX_INCLUDE_DEPTH} levels deep (do they include each other?)"),
            ));
            return;
        }
        if self.loads >= MAX_FILE_LOADS {
            if self.loads == MAX_FILE_LOADS {
                self.diagnose(Diagnostic::error(
                    origin,
                    format!("more than {MAX_FILE_LOADS} ini files read (do they include each other?); giving up"),
                ));
                self.loads += 1;
            }
            return;
        }
        self.loads += 1;
        let (file, section) = match spec.rfind(':') {
            Some(colon) => {
                let section = &spec[colon + 1..];
                (
                    &spec[..colon],
                    if section.is_empty() { "uwsgi" } else { section },
                )
            }
            None => (spec, "uwsgi"),
        };
        let file = if file.is_empty() {
            match self.last_file.clone() {
                Some(last) => last,
                None => {
                    self.diagnose(Diagnostic::error(
                        origin,
                        format!("`{spec}` names a section of the previous ini file, but no ini file was read before"),
                    ));
                    return;
                }
            }
        } else {
            file.to_string()
        };
        if let Err(e) = self.magic.fill(spec, self.host) {
            self.diagnose(Diagnostic::error(
                origin,
                format!("cannot read `{file}`: {e}"),
            ));
            return;
        }
        let bytes = match self.host.read_file(Path::new(&file)) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.diagnose(Diagnostic::error(
                    origin,
                    format!("cannot read `{file}`: {e}"),
                ));
                return;
            }
        };
        self.last_file = Some(file.clone());
        let path = PathBuf::from(&file);
        if !self.resolved.files.contains(&path) {
            self.resolved.files.push(path.clone());
        }
        if self.resolved.first_name.is_none() {
            self.resolved.first_name =
                Some(String::from_utf8_lossy(self.magic.get(b'n')).into_owned());
        }
        let lexed = lex(&self.magic.substitute(&bytes), section);
        if !lexed.found_section {
            self.diagnose(Diagnostic::warning(
                &Origin::File {
                    path: path.clone(),
                    line: 0,
                },
                format!("no `[{section}]` section with options in `{file}`"),
            ));
        }
        self.depth += 1;
        for entry in lexed.entries {
            let origin = Origin::File {
                path: path.clone(),
                line: entry.line,
            };
            self.add(&entry.key, Some(entry.value), origin);
        }
        self.depth -= 1;
    }

    /// `add_exported_option`: appends one option and runs it at once if it is immediate.
    pub fn add(&mut self, key: &str, value: Option<String>, origin: Origin) {
        if self.resolved.options.len() >= MAX_OPTIONS {
            if self.resolved.options.len() == MAX_OPTIONS {
                self.diagnose(Diagnostic::error(
                    &origin,
                    format!("more than {MAX_OPTIONS} options; giving up"),
                ));
                // Push a sentinel so the message is reported once.
                self.resolved.options.push(RawOption::new("", None, origin));
            }
            return;
        }
        let immediate = options::uwsgi_option(key).is_some_and(|o| o.immediate);
        let mut option = RawOption::new(key, value.clone(), origin.clone());
        option.configured = immediate;
        self.resolved.options.push(option);
        if !immediate {
            return;
        }
        match key {
            "ini" | "include" => match value {
                Some(spec) if key == "ini" => self.load_ini(&spec, &origin),
                Some(spec) => self.load_by_extension(&spec, &origin),
                None => self.diagnose(Diagnostic::error(
                    &origin,
                    format!("`{key}` needs a file name"),
                )),
            },
            "set" | "set-placeholder" | "set-ph" => {
                let Some((name, val)) = value.as_deref().and_then(|v| v.split_once('=')) else {
                    self.diagnose(Diagnostic::error(
                        &origin,
                        format!(
                            "`{key}` needs `name=value`, got `{}`",
                            value.as_deref().unwrap_or("")
                        ),
                    ));
                    return;
                };
                if key == "set" {
                    self.depth += 1;
                    if self.depth > MAX_INCLUDE_DEPTH {
                        self.diagnose(Diagnostic::error(&origin, "`set` nested too deeply"));
                    } else {
                        self.add(name, Some(val.to_string()), origin.clone());
                    }
                    self.depth -= 1;
                } else if options::is_option(name) {
                    self.diagnose(Diagnostic::error(
                        &origin,
                        format!(
                            "`{name}` is an option, it cannot be a placeholder (use `set` instead)"
                        ),
                    ));
                } else {
                    let mut placeholder = RawOption::new(name, Some(val.to_string()), origin);
                    placeholder.configured = true;
                    placeholder.placeholder = true;
                    self.resolved.options.push(placeholder);
                }
            }
            "strict" => {
                self.resolved.strict = value.as_deref().is_none_or(crate::typed::parse_bool);
            }
            _ => {}
        }
    }
}
