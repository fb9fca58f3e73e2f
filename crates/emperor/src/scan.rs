//! Reading the apps-enabled directory and diffing it against what we know.
//!
//! Filesystem events are only hints: after any of them (and periodically) the whole
//! directory is rescanned. An app is a `*.ini` entry (a file or a symlink to one); its
//! fingerprint is the resolved target, the inode, the nanosecond mtime and a hash of
//! the content. Any difference is a change: `touch` reloads (as with uWSGI), an edit
//! reloads, an editor's atomic save (new inode) reloads once.
//!
//! An ini larger than `max-ini-size` is never read whole: its size comes from its
//! metadata (and the read is bounded, should it grow meanwhile), and it is reported as
//! too large. A file that cannot be opened because the emperor is out of file
//! descriptors is not an invalid ini either: it is reported as such and retried.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::Read as _;
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
    /// Set when the file is over the size limit: its size (the content was not read).
    pub too_large: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub apps: BTreeMap<String, FileState>,
    /// Entries that look like apps but cannot be used (dangling link, unreadable).
    pub problems: Vec<(String, String)>,
    /// Apps whose file exists but could not be read this time: keep what we had.
    pub unreadable: Vec<String>,
    /// Of those, the ones that failed for lack of file descriptors (EMFILE/ENFILE).
    pub out_of_fds: Vec<String>,
}

/// Whether an I/O error means the process (or system) has no file descriptor left.
pub fn is_out_of_fds(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// An I/O error as a reason for `status`: "cannot open: Too many open files" (without
/// Rust's " (os error 24)" suffix).
pub fn open_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("cannot open: {}", nix::errno::Errno::from_raw(code).desc()),
        None => format!("cannot open: {e}"),
    }
}

/// Reads at most `max` bytes of `path`; `Ok(Err(size))` when it is larger.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Result<Vec<u8>, u64>> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > max {
        return Ok(Err(size));
    }
    let mut content = Vec::with_capacity(size as usize);
    file.take(max + 1).read_to_end(&mut content)?;
    if content.len() as u64 > max {
        return Ok(Err(content.len() as u64));
    }
    Ok(Ok(content))
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

/// Reads `dir`; inis over `max_size` bytes are reported, not read.
pub fn scan(dir: &Path, max_size: u64) -> std::io::Result<Scan> {
    let mut out = Scan::default();
    // The listing is read whole and the directory closed before any ini is opened, so a
    // scan needs one descriptor at a time.
    // (A DirEntry keeps the directory open: only names and types are kept.)
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        entries.push((entry.file_name(), entry.path(), is_link));
    }
    for (file_name, path, is_link) in entries {
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
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let too_large = if meta.len() > max_size {
            Some(meta.len())
        } else {
            match read_bounded(&path, max_size) {
                Ok(Ok(content)) => {
                    content.hash(&mut h);
                    None
                }
                Ok(Err(size)) => Some(size),
                Err(e) => {
                    if is_out_of_fds(&e) {
                        out.problems.push((name.to_owned(), open_error(&e)));
                        out.out_of_fds.push(name.to_owned());
                    } else {
                        out.problems
                            .push((name.to_owned(), format!("unreadable: {e}")));
                    }
                    out.unreadable.push(name.to_owned());
                    continue;
                }
            }
        };
        too_large.hash(&mut h);
        out.apps.insert(
            name.to_owned(),
            FileState {
                target: std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone()),
                path,
                is_link,
                ino: meta.ino(),
                mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
                hash: h.finish(),
                too_large,
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
            too_large: None,
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
        let s = scan(&dir.join("enabled"), 1 << 20).unwrap();
        assert_eq!(s.apps.keys().collect::<Vec<_>>(), ["a"]);
        assert!(s.apps["a"].is_link);
        assert_eq!(s.problems.len(), 1);
        assert!(s.problems[0].1.contains("dangling"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Issue 9 #6: a 50 MB ini is refused from its metadata, never read.
    #[test]
    fn an_ini_over_the_limit_is_reported_by_size_without_being_read() {
        let dir = std::env::temp_dir().join(format!("emperor-scan-size-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("small.ini"), "[uwsgi]\nmodule = app\n").unwrap();
        let big = std::fs::File::create(dir.join("big.ini")).unwrap();
        big.set_len(50 << 20).unwrap();
        let s = scan(&dir, 1 << 20).unwrap();
        assert_eq!(s.apps["small"].too_large, None);
        assert_eq!(s.apps["big"].too_large, Some(50 << 20));
        // Growing (or shrinking) the big file is a change.
        big.set_len(51 << 20).unwrap();
        let s2 = scan(&dir, 1 << 20).unwrap();
        assert_ne!(s.apps["big"], s2.apps["big"]);
        assert_eq!(
            read_bounded(&dir.join("small.ini"), 4).unwrap(),
            Err(std::fs::metadata(dir.join("small.ini")).unwrap().len()),
            "a bounded read refuses what is over the limit"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fd_exhaustion_is_named_as_such() {
        let e = std::io::Error::from_raw_os_error(libc::EMFILE);
        assert!(is_out_of_fds(&e));
        assert_eq!(open_error(&e), "cannot open: Too many open files");
        assert!(!is_out_of_fds(&std::io::Error::from_raw_os_error(
            libc::ENOENT
        )));
    }
}
