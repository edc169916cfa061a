//! `--user NAME`: once everything that needs root is done, the whole
//! process (every thread) becomes that user, with its primary group and
//! no capability left.
//!
//! What needs root happens before: the XDP program is loaded and attached
//! (through a BPF link, which closing detaches, so no capability is needed
//! at exit), the AF_XDP sockets are bound and their UMEM registered, the
//! admin socket is bound, the certificates are read (a self-signed one is
//! made and handed to the user), the access logs are opened. What runs
//! after, as the user: serving, the site's reloads (the user must be able
//! to read the site), SIGHUP (the certificate files and the config must be
//! readable by the user, e.g. through a group), log reopening (the log's
//! directory must be writable by the user).

use anyhow::{bail, Context};
use nix::unistd::{setgid, setgroups, setuid, Gid, Uid, User};

/// The user to become, looked up before any privilege is given up (so a
/// typo is a start-up error, not a half-dropped process).
pub struct Target {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

pub fn lookup(name: &str) -> anyhow::Result<Target> {
    let user = User::from_name(name)
        .with_context(|| format!("--user {name}: looking it up"))?
        .with_context(|| format!("--user {name}: no such user"))?;
    if user.uid.is_root() {
        bail!("--user {name} is root: nothing would be dropped");
    }
    Ok(Target {
        name: name.to_owned(),
        uid: user.uid,
        gid: user.gid,
    })
}

/// Becomes `target` for good: supplementary groups, group, then user
/// (glibc applies each to every thread). Checks that it took: root cannot
/// be regained and no thread keeps a capability.
pub fn drop_to(target: &Target) -> anyhow::Result<()> {
    setgroups(&[target.gid]).context("--user: setgroups")?;
    setgid(target.gid).context("--user: setgid")?;
    setuid(target.uid).context("--user: setuid")?;
    if setuid(Uid::from_raw(0)).is_ok() {
        bail!("--user: root could be regained after dropping privileges");
    }
    if let Some(thread) = thread_with_capabilities()? {
        bail!("--user: thread {thread} still has capabilities");
    }
    Ok(())
}

/// A thread of this process whose effective capability set is not empty.
fn thread_with_capabilities() -> anyhow::Result<Option<String>> {
    for task in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
        let task = task?;
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(str::trim)
            .unwrap_or("0");
        if u64::from_str_radix(eff, 16).unwrap_or(1) != 0 {
            return Ok(Some(task.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}
