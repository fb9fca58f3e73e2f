//! Magic variables (`%n`, `%d`, `%p`, ...), a port of uWSGI's `config_magic_table_fill`,
//! `init_magic_table` and `magic_sub`.
//!
//! uWSGI keeps ONE global table of 256 entries, refilled each time a config file is loaded,
//! and substitutes it over the raw bytes of that file before lexing (comments and section
//! headers included). Every `%X` is replaced by entry `X`: unset entries are the empty string,
//! `%%` is `%` and `%(` stays `%(` so placeholders survive to the later `%` pass. The
//! substitution is single-pass: a substituted value is never rescanned.
//!
//! Verified against uWSGI 2.0.31: `%d` keeps its trailing slash (`/srv/app/`) because the C
//! code removes it only while computing `%c` and `%0`..`%9`, then puts it back.

use crate::host::Host;
use std::path::Path;

/// The global magic table.
#[derive(Debug, Clone)]
pub struct MagicTable {
    entries: Vec<Vec<u8>>,
    /// The upper-case variables (`%N %D ...`) are copies of the first file's values.
    first_round_done: bool,
}

impl MagicTable {
    /// `init_magic_table` plus the static variables uWSGI sets once at startup.
    pub fn new(host: &dyn Host) -> Self {
        let mut table = MagicTable {
            entries: vec![Vec::new(); 256],
            first_round_done: false,
        };
        let info = host.info();
        table.set(b'%', "%");
        table.set(b'(', "%(");
        table.set(b'v', &info.cwd);
        table.set(b'h', &info.hostname);
        table.set(b't', &info.time_s.to_string());
        table.set(b'T', &info.time_us.to_string());
        table.set(b'V', &info.version);
        table.set(b'k', &info.cpus.to_string());
        table.set(b'[', "\x1b");
        table.set(b'u', &info.uid.to_string());
        table.set(b'U', &info.user);
        table.set(b'g', &info.gid.to_string());
        table.set(b'G', &info.group);
        table
    }

    fn set(&mut self, var: u8, value: &str) {
        self.entries[usize::from(var)] = value.as_bytes().to_vec();
    }

    fn set_bytes(&mut self, var: u8, value: &[u8]) {
        self.entries[usize::from(var)] = value.to_vec();
    }

    /// The current value of `%var`.
    pub fn get(&self, var: u8) -> &[u8] {
        &self.entries[usize::from(var)]
    }

    /// Marks the upper-case variables as already taken (uWSGI's `magic_table_first_round`),
    /// returning the previous state. `include` and bare command-line files do this so they
    /// never define `%N`, `%D`, ...
    pub fn suppress_first_round(&mut self, suppress: bool) -> bool {
        std::mem::replace(&mut self.first_round_done, suppress)
    }

    /// `config_magic_table_fill` for the config spec `filename` (`path[:section]`).
    /// Fails (uWSGI exits) when the file cannot be resolved to an absolute path.
    pub fn fill(&mut self, filename: &str, host: &dyn Host) -> Result<(), std::io::Error> {
        let (name, section) = match filename.rfind(':') {
            Some(colon) => (&filename[..colon], Some(&filename[colon + 1..])),
            None => (filename, None),
        };
        // uWSGI's `%o` points into the spec string, whose `:` is overwritten with NUL while
        // the file is read: `%o` is the spec without its section (empty for `:section`).
        self.set(b'o', name);
        if !name.is_empty() {
            let path = Path::new(name);
            let fullname = if host.is_symlink(path) {
                // uWSGI does not resolve symlinks here, so an apps-enabled symlink gets
                // apps-enabled as its %d.
                if name.starts_with('/') {
                    name.to_string()
                } else {
                    format!("{}/{}", host.info().cwd, name)
                }
            } else {
                host.realpath(path)?.to_string_lossy().into_owned()
            };
            self.fill_path(&fullname, host);
        }
        self.set(b'x', section.unwrap_or(""));
        if !self.first_round_done {
            for var in *b"ODSPCENXIJ" {
                let value = self.get(var.to_ascii_lowercase()).to_vec();
                self.set_bytes(var, &value);
            }
            self.first_round_done = true;
        }
        Ok(())
    }

    fn fill_path(&mut self, fullname: &str, host: &dyn Host) {
        self.set(b'b', &host.info().binary.clone());
        self.set(b'p', fullname);
        self.set(b'j', &hex_upper(&djb33x(fullname.as_bytes()).to_le_bytes()));
        if let Some(inode) = host.inode(Path::new(fullname)) {
            self.set(b'i', &inode.to_string());
        }
        let slash = fullname.rfind('/').map_or(0, |i| i + 1);
        let (dir, file) = fullname.split_at(slash);
        self.set(b's', file);
        self.set(b'd', dir);
        self.set(b'c', "");
        self.set(b'e', "");
        self.set(b'n', file);
        for digit in b'0'..=b'9' {
            self.set(digit, "");
        }
        let dir_no_slash = dir.strip_suffix('/').unwrap_or(dir);
        if let Some(last) = dir_no_slash.rfind('/') {
            self.set(b'c', &dir_no_slash[last + 1..]);
        }
        for (digit, component) in
            (b'0'..=b'9').zip(dir_no_slash.split('/').filter(|c| !c.is_empty()))
        {
            self.set(digit, component);
        }
        if let Some(dot) = file.rfind('.') {
            self.set(b'e', &file[dot + 1..]);
            self.set(b'n', &file[..dot]);
        }
    }

    /// `magic_sub` over a whole file, returning its lines with their ORIGINAL line numbers
    /// (a `%` before a newline swallows it, as in uWSGI, and the joined line keeps the
    /// number of its first part).
    pub fn substitute(&self, text: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut lines = Vec::new();
        let mut current = Vec::new();
        let mut current_number = 1u32;
        let mut input_line = 1u32;
        let mut i = 0;
        while i < text.len() {
            let byte = text[i];
            if byte == b'%' && i + 1 < text.len() {
                let var = text[i + 1];
                if var == b'\n' {
                    input_line = input_line.saturating_add(1);
                }
                for &b in self.get(var) {
                    if b == b'\n' {
                        lines.push((current_number, std::mem::take(&mut current)));
                    } else {
                        current.push(b);
                    }
                }
                i += 2;
                continue;
            }
            if byte == b'\n' {
                lines.push((current_number, std::mem::take(&mut current)));
                input_line = input_line.saturating_add(1);
                current_number = input_line;
            } else {
                current.push(byte);
            }
            i += 1;
        }
        if !current.is_empty() {
            lines.push((current_number, current));
        }
        lines
    }
}

/// uWSGI's `djb33x_hash`; `char` is signed on the platforms uWSGI targets, so bytes >= 0x80
/// are sign-extended before the xor.
fn djb33x(bytes: &[u8]) -> u32 {
    bytes.iter().fold(5381u32, |hash, &b| {
        // Sign extension of a C `char`, reinterpreted as unsigned like the C expression.
        let extended = i32::from(b as i8) as u32;
        (hash << 5).wrapping_add(hash) ^ extended
    })
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemHost;

    fn sub(table: &MagicTable, text: &str) -> String {
        let lines = table.substitute(text.as_bytes());
        let joined: Vec<String> = lines
            .iter()
            .map(|(_, l)| String::from_utf8_lossy(l).into_owned())
            .collect();
        joined.join("\n")
    }

    #[test]
    fn variables_for_a_file() {
        let host = MemHost::new("/srv").file("/etc/emperor/apps/my.app.ini", "");
        let mut t = MagicTable::new(&host);
        t.fill("/etc/emperor/apps/my.app.ini:dev", &host)
            .expect("file exists");
        #[rustfmt::skip]
        let cases = [
            ("%p", "/etc/emperor/apps/my.app.ini"),
            ("%s", "my.app.ini"),
            ("%n", "my.app"),
            ("%e", "ini"),
            ("%d", "/etc/emperor/apps/"),
            ("%c", "apps"),
            ("%0|%1|%2|%3", "etc|emperor|apps|"),
            ("%o", "/etc/emperor/apps/my.app.ini"),
            ("%x", "dev"),
            ("%v", "/srv"),
            ("%h %k %u %U %g %G", "testhost 4 1000 app 1001 appgroup"),
            ("%t %T", "1700000000 1700000000123456"),
            ("%%", "%"),
            ("%%(x)", "%(x)"),
            ("%(x)", "%(x)"),
            ("%q%Z%!", ""),
            ("100%", "100%"),
            ("%N %D %X", "my.app /etc/emperor/apps/ dev"),
            ("%b", "/usr/bin/vassal"),
            ("%[", "\x1b"),
            ("%i", "42"),
        ];
        for (input, want) in cases {
            assert_eq!(sub(&t, input), want, "{input}");
        }
    }

    #[test]
    fn upper_case_keeps_the_first_file() {
        let host = MemHost::new("/srv")
            .file("/a/first.ini", "")
            .file("/b/second.ini", "");
        let mut t = MagicTable::new(&host);
        t.fill("/a/first.ini", &host).expect("exists");
        t.fill("/b/second.ini", &host).expect("exists");
        assert_eq!(sub(&t, "%n %N"), "second first");
    }

    #[test]
    fn relative_symlink_is_not_resolved() {
        let host = MemHost::new("/srv/enabled")
            .file("/srv/available/app.ini", "")
            .symlink("app.ini", "../available/app.ini")
            .symlink("/srv/enabled/abs.ini", "/srv/available/app.ini");
        let mut t = MagicTable::new(&host);
        t.fill("app.ini", &host).expect("exists");
        assert_eq!(sub(&t, "%p|%d"), "/srv/enabled/app.ini|/srv/enabled/");
        // ./ is kept: uWSGI concatenates cwd and the name as given.
        t.fill("./app.ini", &host).expect("exists");
        assert_eq!(sub(&t, "%p"), "/srv/enabled/./app.ini");
        t.fill("/srv/enabled/abs.ini", &host).expect("exists");
        assert_eq!(sub(&t, "%p|%c"), "/srv/enabled/abs.ini|enabled");
        // Not a symlink: resolved.
        t.fill("../available/app.ini", &host).expect("exists");
        assert_eq!(sub(&t, "%p"), "/srv/available/app.ini");
    }

    #[test]
    fn missing_file_fails() {
        let host = MemHost::new("/srv");
        let mut t = MagicTable::new(&host);
        assert!(t.fill("nope.ini", &host).is_err());
    }

    #[test]
    fn file_without_extension_and_in_root() {
        let host = MemHost::new("/").file("/config", "");
        let mut t = MagicTable::new(&host);
        t.fill("/config", &host).expect("exists");
        assert_eq!(sub(&t, "%n|%e|%d|%c|%0"), "config||/||");
    }

    #[test]
    fn djb33x_matches_uwsgi() {
        // `uwsgi --show-config` printed `j = B4459D53` for /tmp/uwt/sub/j.ini.
        let hash = djb33x(b"/tmp/uwt/sub/j.ini");
        assert_eq!(hex_upper(&hash.to_le_bytes()), "B4459D53");
    }

    #[test]
    fn percent_newline_joins_lines_and_keeps_numbers() {
        let host = MemHost::new("/");
        let t = MagicTable::new(&host);
        let lines = t.substitute(b"a%\nb\nc\n\nd");
        let want: Vec<(u32, Vec<u8>)> = vec![
            (1, b"ab".to_vec()),
            (3, b"c".to_vec()),
            (4, Vec::new()),
            (5, b"d".to_vec()),
        ];
        assert_eq!(lines, want);
    }
}
