//! Golden tests: our stage-one resolver must print what real uWSGI 2.0.31 printed with
//! `--show-config` for the same files and command lines (see golden/generate.sh). uWSGI is
//! not needed at test time: its output is committed as golden/*.expected.

use config::{MemHost, RawOption};
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every file under the golden directory, in an in-memory host whose cwd is that directory
/// and whose environment matches the one generate.sh gives uWSGI.
fn host(dir: &Path) -> MemHost {
    let mut host = MemHost::new(&dir.to_string_lossy())
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/root")
        .env("GOLDEN_PORT", "8123")
        .env("GOLDEN_HOME", "/home/golden");
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("golden dir is readable") {
            let path = entry.expect("golden dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                // uWSGI does not resolve a symlinked ini for %p/%d (symlink.args).
                if path.is_symlink() {
                    let target = std::fs::canonicalize(&path).expect("symlink target exists");
                    host = host.symlink(&path.to_string_lossy(), &target.to_string_lossy());
                } else {
                    let content = std::fs::read(&path).expect("golden file is readable");
                    host = host.file(&path.to_string_lossy(), content);
                }
            }
        }
    }
    host
}

fn show_config(options: &[RawOption], dir: &str) -> String {
    options
        .iter()
        .map(|o| {
            format!("{} = {}\n", o.key, o.value.as_deref().unwrap_or("true")).replace(dir, "@DIR@")
        })
        .collect()
}

#[test]
fn resolver_matches_real_uwsgi_show_config() {
    let dir = golden_dir();
    let host = host(&dir);
    let dir_text = dir.to_string_lossy().into_owned();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ini" || e == "args"))
        .collect();
    names.sort();
    let mut failures = Vec::new();
    for fixture in &names {
        let file_name = fixture
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let args: Vec<String> = if fixture.extension().is_some_and(|e| e == "ini") {
            vec!["--ini".into(), file_name.clone()]
        } else {
            std::fs::read_to_string(fixture)
                .expect("args file")
                .lines()
                .map(str::to_string)
                .collect()
        };
        let expected_path = fixture.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path).expect("expected file exists");
        let resolved = config::resolve_args(&host, &args);
        let got = show_config(&resolved.options, &dir_text);
        if got != expected {
            failures.push(format!(
                "--- {file_name}: expected\n{expected}--- got\n{got}"
            ));
        }
    }
    assert!(names.len() >= 10, "fixtures missing: {names:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The golden files also load as typed configs with the expected diagnostics.
#[test]
fn golden_fixtures_load_typed() {
    let dir = golden_dir();
    let host = host(&dir);
    let basic = config::load_ini_with(&host, "basic.ini").expect("basic.ini is valid");
    let c = &basic.config;
    assert_eq!(c.name, "basic");
    assert_eq!(c.module.as_deref(), Some("mysite.wsgi:application"));
    assert_eq!(c.processes, 4);
    assert!(c.master && c.vacuum && c.die_on_term && c.enable_threads);
    assert_eq!(c.chmod_socket, Some(0o664));
    assert_eq!(c.sockets.len(), 2);
    assert_eq!(c.env[1], ("A".to_string(), "B=C".to_string()));
    // inline, hash, quoted, backslash are unknown keys: warnings, not errors.
    assert_eq!(basic.warnings.len(), 4, "{:?}", basic.warnings);

    let typos = config::load_ini_with(&host, "typos.ini").expect("only warnings");
    let messages: Vec<String> = typos.warnings.iter().map(ToString::to_string).collect();
    let want = [
        "typos.ini:2: warning: unknown option `procesess`; did you mean `processes`?",
        "typos.ini:3: warning: unknown option `vaccum`; did you mean `vacuum`?",
        // Lines 4 and 5 (`harakiri`, `max-requests`) are supported options.
        "typos.ini:6: warning: `static-map` is a uWSGI option vassal does not support yet; ignored",
        "typos.ini:8: warning: unknown option `harakiri_verbose`; did you mean `harakiri-verbose`?",
        "typos.ini:9: warning: a line with `=` but no key before it",
        "typos.ini:10: warning: unknown option `key with space`",
        "typos.ini:11: warning: unknown option `w`; `-w` is the command-line shortcut of `module`, write `module` in ini files",
    ];
    assert_eq!(messages, want);
    assert_eq!(
        (typos.config.harakiri, typos.config.max_requests),
        (30, 5000)
    );
}
