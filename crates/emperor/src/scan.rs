//! Reading the apps-enabled directory and diffing it against what we know.
//!
//! Filesystem events are only hints: after any of them (and periodically) the whole
//! directory is rescanned. An app is a `*.ini` entry (a file or a symlink to one); its
//! fingerprint is the resolved target, the inode, the nanosecond mtime and a hash of
//! the content. Any difference is a change: `touch` reloads (as with uWSGI), an edit
//! reloads, an editor's atomic save (new inode) reloads once.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `<run-dir>/emperor/` is the emperor's own directory, so no app may be called that.
pub const RESERVED: &str = "emperor";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// The ini's path in apps-enabled (what the vassal is given).
    pub path: PathBuf,
    /// Where it resolves to (itself for a regular file).
    pub target: PathBuf,
    pub is_link: bool,
    pub ino: u64,
    pub mtime_ns: i128,
    pub hash: u64,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub apps: BTreeMap<String, FileState>,
    /// Entries that look like apps but cannot be used (dangling link, unreadable).
    pub problems: Vec<(String, String)>,
    /// Apps whose file exists but could not be read this time: keep what we had.
    pub unreadable: Vec<String>,
}

/// The app name for a directory entry, if it is one: `example-app.ini` ->
/// `example-app`. Hidden files and editor leftovers (`.x.ini.swp`, `x.ini~`) are not.
pub fn app_name(file_name: &str) -> Option<&str> {
    if file_name.starts_with('.') {
        return None;
    }
    let name = file_name.strip_suffix(".ini")?;
    (!name.is_empty()).then_some(name)
}

pub fn scan(dir: &Path) -> std::io::Result<Scan> {
    let mut out = Scan::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(app_name) else {
            continue;
        };
        if name == RESERVED {
            out.problems.push((
                name.to_owned(),
                format!(
                    "the app name `{RESERVED}` is reserved for the emperor's own run directory"
                ),
            ));
            continue;
        }
        let path = entry.path();
        let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                let why = if is_link {
                    format!("dangling symlink ({e})")
                } else {
                    e.to_string()
                };
                out.problems.push((name.to_owned(), why));
                continue;
            }
        };
        if !meta.is_file() {
            out.problems
                .push((name.to_owned(), "not a regular file".to_owned()));
            continue;
        }
        let content = match std::fs::read(&path) {
            Ok(c) => c,
            Err(e) => {
                out.problems
                    .push((name.to_owned(), format!("unreadable: {e}")));
                out.unreadable.push(name.to_owned());
                continue;
            }
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        content.hash(&mut h);
        out.apps.insert(
            name.to_owned(),
            FileState {
                target: std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone()),
                path,
                is_link,
                ino: meta.ino(),
                mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
                hash: h.finish(),
            },
        );
    }
    Ok(out)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// What changed between two scans. Apps listed in `keep` (unreadable right now) are
/// neither changed nor removed.
pub fn diff(
    old: &BTreeMap<String, FileState>,
    new: &BTreeMap<String, FileState>,
    keep: &[String],
) -> Diff {
    let mut d = Diff::default();
    for (name, st) in new {
        match old.get(name) {
            None => d.added.push(name.clone()),
            Some(prev) if prev != st => d.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    for name in old.keys() {
        if !new.contains_key(name) && !keep.contains(name) {
            d.removed.push(name.clone());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(target: &str, mtime_ns: i128, hash: u64) -> FileState {
        FileState {
            path: PathBuf::from(format!("/e/{target}")),
            target: PathBuf::from(target),
            is_link: true,
            ino: 1,
            mtime_ns,
            hash,
        }
    }

    #[test]
    fn names() {
        assert_eq!(app_name("example-app.ini"), Some("example-app"));
        assert_eq!(app_name(".example-app.ini.swp"), None);
        assert_eq!(app_name(".hidden.ini"), None);
        assert_eq!(app_name("x.ini~"), None);
        assert_eq!(app_name("x.yaml"), None);
        assert_eq!(app_name(".ini"), None);
    }

    #[test]
    fn diff_table() {
        let a = |v: &[(&str, FileState)]| -> BTreeMap<String, FileState> {
            v.iter().map(|(k, s)| (k.to_string(), s.clone())).collect()
        };
        let base = a(&[("x", st("/t/x", 1, 1)), ("y", st("/t/y", 1, 1))]);
        // (old, new, keep, added, changed, removed)
        let cases = [
            (base.clone(), base.clone(), vec![], vec![], vec![], vec![]),
            (
                base.clone(),
                a(&[("x", st("/t/x", 2, 1)), ("y", st("/t/y", 1, 1))]),
                vec![],
                vec![],
                vec!["x"],
                vec![],
            ),
            (
                base.clone(),
                a(&[("x", st("/t/x", 1, 9)), ("y", st("/t/y2", 1, 1))]),
                vec![],
                vec![],
                vec!["x", "y"],
                vec![],
            ),
            (
                base.clone(),
                a(&[("x", st("/t/x", 1, 1)), ("z", st("/t/z", 1, 1))]),
                vec![],
                vec!["z"],
                vec![],
                vec!["y"],
            ),
            (
                base.clone(),
                a(&[("x", st("/t/x", 1, 1))]),
                vec!["y".to_string()],
                vec![],
                vec![],
                vec![],
            ),
        ];
        for (i, (old, new, keep, added, changed, removed)) in cases.into_iter().enumerate() {
            let d = diff(&old, &new, &keep);
            assert_eq!(d.added, added, "case {i}");
            assert_eq!(d.changed, changed, "case {i}");
            assert_eq!(d.removed, removed, "case {i}");
        }
    }

    #[test]
    fn scan_follows_links_and_reports_dangling_ones() {
        let dir = std::env::temp_dir().join(format!("emperor-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("avail")).unwrap();
        std::fs::create_dir_all(dir.join("enabled")).unwrap();
        std::fs::write(dir.join("avail/a.ini"), "[uwsgi]\n").unwrap();
        std::os::unix::fs::symlink(dir.join("avail/a.ini"), dir.join("enabled/a.ini")).unwrap();
        std::os::unix::fs::symlink(dir.join("avail/gone.ini"), dir.join("enabled/gone.ini"))
            .unwrap();
        std::fs::write(dir.join("enabled/notes.txt"), "x").unwrap();
        let s = scan(&dir.join("enabled")).unwrap();
        assert_eq!(s.apps.keys().collect::<Vec<_>>(), ["a"]);
        assert!(s.apps["a"].is_link);
        assert_eq!(s.problems.len(), 1);
        assert!(s.problems[0].1.contains("dangling"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
