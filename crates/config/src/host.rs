//! The outside world the loader depends on: files, environment variables and a few facts
//! about the process (the static magic variables).
//!
//! Everything goes through the [`Host`] trait so that unit tests, golden tests and the fuzz
//! target run the exact same resolver against an in-memory [`MemHost`], without touching the
//! real filesystem or environment.

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Facts about the running process that uWSGI exposes as static magic variables
/// (`%v %h %k %u %U %g %G %t %T %V %b`). They are taken once, at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// `%v`: working directory at startup; also the base for relative ini paths.
    pub cwd: String,
    /// `%h`
    pub hostname: String,
    /// `%k`
    pub cpus: u32,
    /// `%u` / `%U`
    pub uid: u32,
    pub user: String,
    /// `%g` / `%G`
    pub gid: u32,
    pub group: String,
    /// `%t` (seconds) / `%T` (microseconds) since the epoch.
    pub time_s: u64,
    pub time_us: u64,
    /// `%b`
    pub binary: String,
    /// `%V`: the version string. uWSGI prints its own; we print ours.
    pub version: String,
}

impl ProcessInfo {
    /// Reads the facts about the current process. Never fails: anything unreadable gets a
    /// harmless fallback (uWSGI does the same, e.g. `%U` falls back to the numeric uid).
    pub fn current() -> Self {
        let cwd = std::env::current_dir()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "/".to_string());
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let cpus = std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let uid = status_id(&status, "Uid:").unwrap_or(0);
        let gid = status_id(&status, "Gid:").unwrap_or(0);
        let user = name_for_id("/etc/passwd", uid).unwrap_or_else(|| uid.to_string());
        let group = name_for_id("/etc/group", gid).unwrap_or_else(|| gid.to_string());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let binary = std::env::current_exe()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        ProcessInfo {
            cwd,
            hostname,
            cpus,
            uid,
            user,
            gid,
            group,
            time_s: now.as_secs(),
            time_us: u64::try_from(now.as_micros()).unwrap_or(u64::MAX),
            binary,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Fixed values, for tests and fuzzing.
    pub fn fixed(cwd: &str) -> Self {
        ProcessInfo {
            cwd: cwd.to_string(),
            hostname: "testhost".into(),
            cpus: 4,
            uid: 1000,
            user: "app".into(),
            gid: 1001,
            group: "appgroup".into(),
            time_s: 1_700_000_000,
            time_us: 1_700_000_000_123_456,
            binary: "/usr/bin/vassal".into(),
            version: "0.0.0".into(),
        }
    }
}

/// The real uid/gid line of /proc/self/status: "Uid:\treal\teffective\t...".
fn status_id(status: &str, field: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Looks a numeric id up in /etc/passwd or /etc/group (`name:x:id:...`).
fn name_for_id(db: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(db).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        (fields.next()?.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}

/// What the resolver needs from the outside world.
pub trait Host {
    fn info(&self) -> &ProcessInfo;
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn env_var(&self, name: &str) -> Option<String>;
    /// `lstat` says it is a symbolic link.
    fn is_symlink(&self, path: &Path) -> bool;
    /// `realpath(3)`.
    fn realpath(&self, path: &Path) -> io::Result<PathBuf>;
    /// The inode number (`lstat`), for `%i`.
    fn inode(&self, path: &Path) -> Option<u64>;
}

/// The real filesystem and environment.
#[derive(Debug, Clone)]
pub struct RealHost {
    info: ProcessInfo,
}

impl RealHost {
    pub fn new() -> Self {
        RealHost {
            info: ProcessInfo::current(),
        }
    }

    /// As if the process ran in `cwd` (`%v`, base of relative ini paths): the emperor
    /// reads each vassal's ini as the vassal will, from apps-enabled.
    pub fn with_cwd(cwd: &Path) -> Self {
        let mut info = ProcessInfo::current();
        info.cwd = cwd.to_string_lossy().into_owned();
        RealHost { info }
    }
}

impl Default for RealHost {
    fn default() -> Self {
        Self::new()
    }
}

impl RealHost {
    /// Relative paths are relative to `info.cwd`, which is the process's working directory
    /// unless the host was made with [`RealHost::with_cwd`].
    fn at(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            Path::new(&self.info.cwd).join(path)
        }
    }
}

impl Host for RealHost {
    fn info(&self) -> &ProcessInfo {
        &self.info
    }
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(self.at(path))
    }
    fn env_var(&self, name: &str) -> Option<String> {
        // uWSGI's getenv() accepts any name; a name that is not valid for set_var
        // (empty, containing '=' or NUL) simply is not set.
        if name.is_empty() || name.contains(['=', '\0']) {
            return None;
        }
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }
    fn is_symlink(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(self.at(path))
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
    }
    fn realpath(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(self.at(path))
    }
    fn inode(&self, path: &Path) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(self.at(path))
            .ok()
            .map(|m| m.ino())
    }
}

/// An in-memory host: a few files, a few environment variables, fixed process facts.
#[derive(Debug, Clone)]
pub struct MemHost {
    info: ProcessInfo,
    files: HashMap<PathBuf, Vec<u8>>,
    /// Symbolic link -> its target (absolute).
    symlinks: HashMap<PathBuf, PathBuf>,
    env: HashMap<String, String>,
}

impl MemHost {
    /// An empty host whose working directory is `cwd` (absolute).
    pub fn new(cwd: &str) -> Self {
        MemHost {
            info: ProcessInfo::fixed(cwd),
            files: HashMap::new(),
            symlinks: HashMap::new(),
            env: HashMap::new(),
        }
    }

    pub fn with_info(mut self, info: ProcessInfo) -> Self {
        self.info = info;
        self
    }

    /// Adds a file; a relative path is taken relative to the host's cwd.
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        let abs = self.absolute(Path::new(path));
        self.files.insert(abs, content.into());
        self
    }

    /// Adds a symbolic link `link` -> `target` (both relative to the cwd or absolute).
    pub fn symlink(mut self, link: &str, target: &str) -> Self {
        let link = self.absolute(Path::new(link));
        let target = self.absolute(Path::new(target));
        self.symlinks.insert(link, target);
        self
    }

    /// The absolute path with a symlink (one level) resolved.
    fn resolve(&self, path: &Path) -> PathBuf {
        let abs = self.absolute(path);
        self.symlinks.get(&abs).cloned().unwrap_or(abs)
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_string(), value.to_string());
        self
    }

    fn absolute(&self, path: &Path) -> PathBuf {
        let joined = Path::new(&self.info.cwd).join(path);
        let mut out = PathBuf::from("/");
        for component in joined.components() {
            match component {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(c) => out.push(c),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        out
    }
}

impl Host for MemHost {
    fn info(&self) -> &ProcessInfo {
        &self.info
    }
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(&self.resolve(path))
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn env_var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn is_symlink(&self, path: &Path) -> bool {
        self.symlinks.contains_key(&self.absolute(path))
    }
    fn realpath(&self, path: &Path) -> io::Result<PathBuf> {
        let abs = self.resolve(path);
        if self.files.contains_key(&abs) {
            Ok(abs)
        } else {
            Err(io::Error::from(io::ErrorKind::NotFound))
        }
    }
    fn inode(&self, path: &Path) -> Option<u64> {
        self.files.contains_key(&self.resolve(path)).then_some(42)
    }
}
