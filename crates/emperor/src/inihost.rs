//! How the emperor reads a vassal's ini (and everything it includes): the real
//! filesystem, but every file bounded by `max-ini-size`, and a failure for lack of file
//! descriptors remembered, so the shell can tell "cannot open: Too many open files"
//! (retry later) from an invalid ini (wait for an edit).

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};

use config::{Host, ProcessInfo, RealHost};

pub struct IniHost {
    real: RealHost,
    max_size: u64,
    out_of_fds: RefCell<Option<io::Error>>,
}

impl IniHost {
    /// Relative paths are relative to `cwd` (apps-enabled, the vassal's working directory).
    pub fn new(cwd: &Path, max_size: u64) -> IniHost {
        IniHost {
            real: RealHost::with_cwd(cwd),
            max_size,
            out_of_fds: RefCell::new(None),
        }
    }

    /// The EMFILE/ENFILE a read hit, if any.
    pub fn out_of_fds(&self) -> Option<String> {
        self.out_of_fds
            .borrow()
            .as_ref()
            .map(crate::scan::open_error)
    }

    fn at(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            Path::new(&self.real.info().cwd).join(path)
        }
    }
}

impl Host for IniHost {
    fn info(&self) -> &ProcessInfo {
        self.real.info()
    }
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        match crate::scan::read_bounded(&self.at(path), self.max_size) {
            Ok(Ok(content)) => Ok(content),
            Ok(Err(size)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                too_large(size, self.max_size),
            )),
            Err(e) => {
                if let Some(code) = e.raw_os_error().filter(|_| crate::scan::is_out_of_fds(&e)) {
                    *self.out_of_fds.borrow_mut() = Some(io::Error::from_raw_os_error(code));
                }
                Err(e)
            }
        }
    }
    fn env_var(&self, name: &str) -> Option<String> {
        self.real.env_var(name)
    }
    fn is_symlink(&self, path: &Path) -> bool {
        self.real.is_symlink(path)
    }
    fn realpath(&self, path: &Path) -> io::Result<PathBuf> {
        self.real.realpath(path)
    }
    fn inode(&self, path: &Path) -> Option<u64> {
        self.real.inode(path)
    }
}

/// "too large: 52428800 bytes, over max-ini-size (1048576 bytes)".
pub fn too_large(size: u64, max: u64) -> String {
    format!("too large: {size} bytes, over max-ini-size ({max} bytes); not read")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_are_bounded_too() {
        let dir = std::env::temp_dir().join(format!("emperor-inihost-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.ini"), "[uwsgi]\nini = big.ini\nmodule = app\n").unwrap();
        std::fs::write(
            dir.join("big.ini"),
            format!("[uwsgi]\n;{}\n", "x".repeat(200)),
        )
        .unwrap();
        let host = IniHost::new(&dir, 100);
        let args = ["--ini".to_owned(), dir.join("a.ini").display().to_string()];
        let err = config::from_args_with(&host, &args)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max-ini-size"), "{err}");
        assert_eq!(host.out_of_fds(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
