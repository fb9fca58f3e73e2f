//! uWSGI-style command lines (`vassal --socket :8000 --protocol=http -w wsgi`), parsed the
//! way GNU `getopt_long` parses them for uWSGI (`uwsgi_commandline_config`):
//! - `--name=value`, `--name value` (options that need a value), `--flag` (flags), and
//!   `--chmod-socket[=value]` (an optional value is only taken after `=`);
//! - short options, also bundled or with the value attached: `-M -p 4`, `-Mp4`, `-wapp`;
//! - `--` ends the options;
//! - every other argument is a config file loaded like `--ini`, but, as with getopt's
//!   argument permutation in uWSGI, only AFTER all options, so options from a bare
//!   `app.ini` override earlier `--options` of the same name. `--ini app.ini` is read in
//!   place instead.
//!
//! For an unknown `--option` we cannot know whether it takes a value: we take the next
//! argument as its value unless it starts with `-` or ends with `.ini`.

use crate::diag::{Diagnostic, Origin};
use crate::options::{self, Arity};
use crate::raw::Reader;

fn arity_of(name: &str) -> Option<Arity> {
    options::uwsgi_option(name).map(|o| o.arity)
}

/// Feeds `args` (without argv\[0\]) to `reader`, in uWSGI's order.
pub fn read_args(reader: &mut Reader<'_>, args: &[String]) {
    let origin = Origin::CommandLine;
    let mut bare: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        if arg == "--" {
            bare.extend(args[i..].iter().map(String::as_str));
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let value = match (arity_of(name), attached) {
                (_, Some(v)) => Some(v),
                (Some(Arity::None | Arity::Optional), None) => None,
                (Some(Arity::Required), None) => match args.get(i) {
                    Some(next) => {
                        i += 1;
                        Some(next.clone())
                    }
                    None => {
                        reader.diagnose(Diagnostic::error(
                            &origin,
                            format!("option `--{name}` needs a value"),
                        ));
                        continue;
                    }
                },
                (None, None) => match args.get(i) {
                    Some(next) if !next.starts_with('-') && !next.ends_with(".ini") => {
                        i += 1;
                        Some(next.clone())
                    }
                    _ => None,
                },
            };
            reader.add(name, value, origin.clone());
            continue;
        }
        if let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            for (at, letter) in shorts.char_indices() {
                let Some(name) = options::shortcut(letter) else {
                    reader.diagnose(Diagnostic::error(
                        &origin,
                        format!("unknown option `-{letter}`"),
                    ));
                    continue;
                };
                let rest = &shorts[at + letter.len_utf8()..];
                match arity_of(name).unwrap_or(Arity::None) {
                    Arity::None => reader.add(name, None, origin.clone()),
                    Arity::Optional => {
                        reader.add(
                            name,
                            (!rest.is_empty()).then(|| rest.to_string()),
                            origin.clone(),
                        );
                        break;
                    }
                    Arity::Required => {
                        let value = if !rest.is_empty() {
                            Some(rest.to_string())
                        } else if let Some(next) = args.get(i) {
                            i += 1;
                            Some(next.clone())
                        } else {
                            None
                        };
                        match value {
                            Some(v) => reader.add(name, Some(v), origin.clone()),
                            None => reader.diagnose(Diagnostic::error(
                                &origin,
                                format!("option `-{letter}` (`--{name}`) needs a value"),
                            )),
                        }
                        break;
                    }
                }
            }
            continue;
        }
        bare.push(arg);
    }
    for file in bare {
        // uWSGI skips arguments starting with `[`.
        if !file.starts_with('[') {
            reader.load_by_extension(file, &origin);
        }
    }
}
