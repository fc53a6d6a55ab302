//! When `paddock up` runs as root, no sandboxed process is root outside its sandbox. bubblewrap started by
//! root maps the sandbox user to root itself, and root is exempt from `RLIMIT_NPROC` (and owns every file
//! it creates). So each session gets a uid (and gid) of its own, [`UID_BASE`] + a free slot, and bubblewrap
//! is started as that uid: it then builds its user namespace as an unprivileged user would, and the
//! sandbox's processes are that uid on the host. One uid per session means one `RLIMIT_NPROC` count per
//! session: concurrent sessions cannot starve each other.
//!
//! That uid cannot reach Paddock's data (a 0700 directory of root's) and owns none of the session's files.
//! Before bubblewrap starts, the child process — still root — enters a mount namespace of its own, mounts a
//! small tmpfs over a directory (`/run` where it exists) and moves there the mounts bubblewrap reads: the
//! session's directory (token, manifest, prompt, the workspace copy) and the gateway's socket *id-mapped*,
//! so that what root owns appears owned by the session's uid (and what the session writes is stored as
//! root's), and the `paddock` executable as a plain bind. Nothing is chowned; nothing changes on the host.
//! Then it drops to the session's uid (no supplementary groups, no new privileges) and runs bubblewrap.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The first uid (and gid) given to sessions; session `n` of those running gets `UID_BASE + n`. Chosen
/// above the ranges distributions hand out (users, system users, `/etc/subuid`'s usual 100000+65536·k).
pub const UID_BASE: u32 = 0x7000_0000;
/// How many sessions can run at once as root.
pub const UID_SLOTS: u32 = 65536;

static USED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// A session's uid, returned to the pool when dropped (when the session has ended).
#[derive(Debug)]
pub struct SessionUid(u32);

impl SessionUid {
    /// A free uid, if fewer than [`UID_SLOTS`] sessions run.
    pub fn take() -> Option<SessionUid> {
        let mut used = USED.lock().expect("uids");
        let slot = (0..UID_SLOTS).find(|s| !used.contains(s))?;
        used.insert(slot);
        Some(SessionUid(slot))
    }

    pub fn uid(&self) -> u32 {
        UID_BASE + self.0
    }
}

impl Drop for SessionUid {
    fn drop(&mut self) {
        USED.lock().expect("uids").remove(&self.0);
    }
}

/// Whether this process is root (then sessions run as their own uid).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn last_err(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL")
}

/// A user namespace mapping root's uid and gid (0) to `id`: the id-mapping of the staged mounts.
fn idmap_userns(id: u32) -> std::io::Result<OwnedFd> {
    let mut fds = [0; 2];
    let mut go = [0; 2];
    // SAFETY: pipe2 writes two fds into the arrays.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0
        || unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) } != 0
    {
        return Err(last_err("pipe2"));
    }
    // SAFETY: each fd is owned once from here on.
    let (ready_r, ready_w, go_r, go_w) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
            OwnedFd::from_raw_fd(go[0]),
            std::fs::File::from_raw_fd(go[1]),
        )
    };
    // SAFETY: the child only makes async-signal-safe system calls (unshare, write, read, _exit).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_err("fork"));
    }
    if pid == 0 {
        unsafe {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                libc::_exit(1);
            }
            libc::write(ready_w.as_raw_fd(), b"x".as_ptr().cast(), 1);
            let mut b = 0u8;
            libc::read(go_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    drop((ready_w, go_r));
    let result = (|| {
        let mut b = [0u8; 1];
        if (&ready_r).read(&mut b)? != 1 {
            return Err(std::io::Error::other("the helper could not create a user namespace"));
        }
        std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {id} 1\n"))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 {id} 1\n"))?;
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
        Ok(OwnedFd::from(ns))
    })();
    let _ = (&go_w).write_all(b"x");
    drop(go_w);
    // SAFETY: reaps our own child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    result
}

/// A detached copy of the mount at `host` (a bind mount not attached anywhere yet), id-mapped by `userns`
/// when given.
fn detached_mount(host: &Path, userns: Option<&OwnedFd>) -> std::io::Result<OwnedFd> {
    let p = cpath(host);
    // SAFETY: open_tree(2) with a valid path; the result is a new fd we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(last_err(&format!("open_tree {}", host.display())));
    }
    // SAFETY: a fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    if let Some(ns) = userns {
        let attr =
            MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: ns.as_raw_fd() as u64 };
        // SAFETY: mount_setattr(2) on our detached mount with a correctly sized attribute struct.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                fd.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r != 0 {
            return Err(last_err(&format!(
                "cannot id-map {} for the session's uid (the file system must support id-mapped mounts: ext4, \
                 xfs, btrfs, tmpfs on Linux 6.3+)",
                host.display()
            )));
        }
    }
    Ok(fd)
}

struct Entry {
    host: PathBuf,
    staged: PathBuf,
    staged_c: CString,
    dir: bool,
    mount: OwnedFd,
}

/// The mounts bubblewrap reads, prepared for a child that will run it as the session's uid.
pub struct Staging {
    uid: u32,
    point: PathBuf,
    point_c: CString,
    entries: Vec<Entry>,
    userns: OwnedFd,
}

impl Staging {
    /// Stages over the first of `/run`, `/mnt`, `/var/tmp`, `/tmp` that exists (only in the child's own
    /// mount namespace; the host's directory is untouched).
    pub fn new(uid: &SessionUid) -> std::io::Result<Staging> {
        let point = ["/run", "/mnt", "/var/tmp", "/tmp"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_dir())
            .ok_or_else(|| std::io::Error::other("no directory to stage the sandbox's mounts over"))?;
        let userns = idmap_userns(uid.uid()).map_err(|e| std::io::Error::new(e.kind(), format!("id-map: {e}")))?;
        Ok(Staging { uid: uid.uid(), point_c: cpath(&point), point, entries: Vec::new(), userns })
    }

    /// Stages `host` (a directory or a file; id-mapped when `idmap`); returns where bubblewrap finds it.
    pub fn add(&mut self, host: &Path, idmap: bool) -> std::io::Result<PathBuf> {
        let dir = std::fs::metadata(host)?.is_dir();
        let mount = detached_mount(host, idmap.then_some(&self.userns))?;
        let staged = self.point.join(format!("m{}", self.entries.len()));
        self.entries.push(Entry {
            host: host.to_owned(),
            staged_c: cpath(&staged),
            staged: staged.clone(),
            dir,
            mount,
        });
        Ok(staged)
    }

    /// Where bubblewrap finds a host path that lies in a staged one (others are unchanged).
    pub fn path(&self, host: &Path) -> PathBuf {
        for e in &self.entries {
            if let Ok(rest) = host.strip_prefix(&e.host) {
                return if rest.as_os_str().is_empty() { e.staged.clone() } else { e.staged.join(rest) };
            }
        }
        host.to_owned()
    }

    /// Runs in the forked child before bubblewrap: a mount namespace of its own with the staged mounts,
    /// then the session's uid and gid, no groups, no new privileges. Only async-signal-safe system calls.
    pub fn enter(&self) -> std::io::Result<()> {
        // SAFETY: plain system calls on NUL-terminated strings and fds prepared before the fork.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags = libc::MS_REC | libc::MS_SLAVE;
            if libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), flags, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let opts = c"mode=0755,size=1m";
            let r = libc::mount(
                c"tmpfs".as_ptr(),
                self.point_c.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                opts.as_ptr().cast(),
            );
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for e in &self.entries {
                if e.dir {
                    if libc::mkdir(e.staged_c.as_ptr(), 0o755) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else {
                    let fd = libc::open(e.staged_c.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                let r = libc::syscall(
                    libc::SYS_move_mount,
                    e.mount.as_raw_fd(),
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    e.staged_c.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                );
                if r != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        drop_to(self.uid)
    }
}

/// When root: makes `cmd` run as a session uid (kept while the returned value lives), as sessions do.
pub fn as_session_user(cmd: &mut std::process::Command) -> Option<SessionUid> {
    use std::os::unix::process::CommandExt;
    if !is_root() {
        return None;
    }
    let uid = SessionUid::take()?;
    let id = uid.uid();
    // SAFETY: drop_to makes only async-signal-safe system calls.
    unsafe { cmd.pre_exec(move || drop_to(id)) };
    Some(uid)
}

/// Becomes `id` (uid and gid), with no supplementary groups and no way back or up.
pub fn drop_to(id: u32) -> std::io::Result<()> {
    // SAFETY: async-signal-safe credential system calls.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(id, id, id) != 0
            || libc::setresuid(id, id, id) != 0
            || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        if libc::getuid() != id || libc::geteuid() != id {
            return Err(std::io::Error::from_raw_os_error(libc::EPERM));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_running_session_has_a_uid_of_its_own() {
        let a = SessionUid::take().unwrap();
        let b = SessionUid::take().unwrap();
        assert_ne!(a.uid(), b.uid());
        assert!(a.uid() >= UID_BASE && b.uid() < UID_BASE + UID_SLOTS);
        let freed = a.uid();
        drop(a);
        let c = SessionUid::take().unwrap();
        assert_eq!(c.uid(), freed, "a finished session's uid is reused");
    }
}
