//! Dropping root: resolve `uid`/`gid` (names or numbers), clear supplementary
//! groups, then setgid before setuid (the other order would leave no right to
//! change the group).

use nix::unistd::{Gid, Group, Uid, User};

pub fn resolve_user(s: &str) -> Result<Uid, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(Uid::from_raw(n));
    }
    match User::from_name(s) {
        Ok(Some(u)) => Ok(u.uid),
        Ok(None) => Err(format!("no such user `{s}`")),
        Err(e) => Err(format!("cannot look up user `{s}`: {e}")),
    }
}

pub fn resolve_group(s: &str) -> Result<Gid, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    match Group::from_name(s) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(format!("no such group `{s}`")),
        Err(e) => Err(format!("cannot look up group `{s}`: {e}")),
    }
}

/// Applies `gid` then `uid`. Without root this only succeeds for our own ids.
pub fn drop_privileges(uid: Option<&str>, gid: Option<&str>) -> Result<(), String> {
    if let Some(g) = gid {
        let gid = resolve_group(g)?;
        if Uid::effective().is_root() {
            nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        }
        nix::unistd::setgid(gid).map_err(|e| format!("setgid({g}): {e}"))?;
    }
    if let Some(u) = uid {
        let uid = resolve_user(u)?;
        if gid.is_none() && Uid::effective().is_root() {
            nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        }
        nix::unistd::setuid(uid).map_err(|e| format!("setuid({u}): {e}"))?;
    }
    if Uid::effective().is_root() {
        tracing::warn!("the app runs as root; set uid = and gid = to drop privileges");
    }
    Ok(())
}
