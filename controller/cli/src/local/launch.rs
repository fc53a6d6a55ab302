//! Starting a session's bubblewrap with the limits that hold for the whole sandbox: the session's cgroup
//! (where the host allows one), resource limits, its own uid when `paddock up` runs as root ([`run_as`]),
//! and bubblewrap's options passed through a file descriptor (`--args`), so that the command line the
//! sandbox sees as `/proc/1/cmdline` names no host path.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use paddock_sandbox::SandboxSpec;
use paddock_sandbox::local::LocalSandbox;

use super::cgroup::SessionCgroup;
use super::run_as::{SessionUid, Staging};

/// Where bubblewrap reads its options from, in the child.
const ARGS_FD: i32 = 3;

/// What a running session holds: its uid and its cgroup, released when it ends.
#[derive(Debug)]
pub struct SessionHold {
    _uid: Option<SessionUid>,
    _cgroup: Option<SessionCgroup>,
}

/// Options of bubblewrap whose next argument is a host path.
const SOURCE_OPTIONS: [&str; 5] = ["--bind", "--bind-try", "--ro-bind", "--ro-bind-try", "--dev-bind"];

/// Replaces each bind mount's host path by where `map` says bubblewrap finds it.
pub fn map_sources(argv: &mut [String], map: impl Fn(&Path) -> std::path::PathBuf) {
    let dashes = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    let mut i = 0;
    while i + 1 < dashes {
        if SOURCE_OPTIONS.contains(&argv[i].as_str()) {
            argv[i + 1] = map(Path::new(&argv[i + 1])).to_string_lossy().into_owned();
            i += 3;
        } else {
            i += 1;
        }
    }
}

/// `off` turns session cgroups off (for hosts whose cgroup manager must not see others' cgroups).
pub const NO_CGROUP_VAR: &str = "PADDOCK_SESSION_CGROUP";

static SAID_NO_CGROUP: AtomicBool = AtomicBool::new(false);

/// Prepares the command that starts `sandbox` for session `id` with `spec`'s limits. `private` are what the sandbox reads and
/// writes of Paddock's (the session's directory and the gateway's socket: id-mapped to the session's uid
/// when root), `paddock_bin` and `shown` what it sees read-only (the `paddock` executable, the harness CLIs'
/// directories), staged when root so that the session's uid reaches them wherever they are. Writes to `log` what bounds
/// the session.
pub fn command(
    id: &str,
    sandbox: &mut LocalSandbox,
    spec: &SandboxSpec,
    private: &[&Path],
    paddock_bin: &Path,
    shown: &[std::path::PathBuf],
    log: &mut std::fs::File,
) -> Result<(tokio::process::Command, SessionHold), String> {
    let (uid, staging) = if super::run_as::is_root() {
        let uid = SessionUid::take().ok_or("too many sessions run as root at once")?;
        let mut staging = Staging::new(&uid).map_err(|e| format!("cannot prepare the session's uid: {e}"))?;
        for p in private {
            staging.add(p, true).map_err(|e| e.to_string())?;
        }
        for p in std::iter::once(paddock_bin).chain(shown.iter().map(|p| p.as_path())) {
            staging.add(p, false).map_err(|e| e.to_string())?;
        }
        map_sources(&mut sandbox.argv, |p| staging.path(p));
        (Some(uid), Some(staging))
    } else {
        (None, None)
    };
    let cgroup = if std::env::var_os(NO_CGROUP_VAR).is_some_and(|v| v == "off") {
        Err(format!("{NO_CGROUP_VAR}=off"))
    } else {
        SessionCgroup::create(id, spec.pids, spec.memory_bytes)
    };
    let cgroup = match cgroup {
        Ok(cg) => {
            let _ = writeln!(log, "paddock: session limits: {}", cg.summary);
            Some(cg)
        }
        Err(why) => {
            let who = uid.as_ref().map_or("this user".to_owned(), |u| format!("the session's uid {}", u.uid()));
            let _ = writeln!(
                log,
                "paddock: no cgroup for this session ({why}); processes are limited by RLIMIT_NPROC={} for {who}",
                sandbox.rlimits.processes
            );
            if !SAID_NO_CGROUP.swap(true, Ordering::Relaxed) {
                tracing::warn!(reason = %why, "sessions get no cgroup of their own; RLIMIT_NPROC limits their processes");
            }
            None
        }
    };
    if let Some(u) = &uid {
        let _ = writeln!(log, "paddock: the sandbox runs as uid {} (paddock up runs as root)", u.uid());
    }
    let (options, rest) = sandbox.options_and_command();
    let args = options_fd(&options).map_err(|e| format!("cannot pass bubblewrap its options: {e}"))?;
    let mut cmd = tokio::process::Command::new(&sandbox.argv[0]);
    cmd.arg("--args").arg(ARGS_FD.to_string()).args(&rest);
    let limits = sandbox.rlimits.clone();
    let join = cgroup.as_ref().map(SessionCgroup::joiner);
    // SAFETY: only async-signal-safe system calls run between fork and exec (see each callee); the values
    // they use were prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let args_raw = args.as_raw_fd();
            if let Some(j) = &join {
                j.join()?;
            }
            for (res, v) in [
                (libc::RLIMIT_DATA, limits.data_bytes),
                (libc::RLIMIT_NPROC, limits.processes),
                (libc::RLIMIT_FSIZE, limits.file_bytes),
                (libc::RLIMIT_NOFILE, limits.open_files),
            ] {
                let l = libc::rlimit { rlim_cur: v, rlim_max: v };
                if libc::setrlimit(res, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if args_raw == ARGS_FD {
                if libc::fcntl(ARGS_FD, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(args_raw, ARGS_FD) != ARGS_FD {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(s) = &staging {
                s.enter()?;
            }
            Ok(())
        });
    }
    // The closure owns the options' fd and the staging's detached mounts: they live as long as `cmd`.
    Ok((cmd, SessionHold { _uid: uid, _cgroup: cgroup }))
}

/// A memory file holding bubblewrap's options, NUL-separated, read from its start.
fn options_fd(options: &[u8]) -> std::io::Result<OwnedFd> {
    // SAFETY: memfd_create(2) with a static name; the fd is ours.
    let fd = unsafe { libc::memfd_create(c"paddock-bwrap-args".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(options)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
    Ok(OwnedFd::from(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bind_sources_are_mapped() {
        // The paddock executable installed at the very place it appears inside: the destination stays.
        let mut argv: Vec<String> =
            ["bwrap", "--ro-bind", "/opt/paddock/paddock", "/opt/paddock/paddock", "--bind", "/d/s/ws", "/workspace"]
                .iter()
                .chain(&["--setenv", "X", "/d/s/ws", "--", "/opt/paddock/paddock", "runner"])
                .map(|s| s.to_string())
                .collect();
        map_sources(&mut argv, |p| Path::new("/run/m").join(p.strip_prefix("/").unwrap()));
        assert_eq!(
            argv,
            [
                "bwrap",
                "--ro-bind",
                "/run/m/opt/paddock/paddock",
                "/opt/paddock/paddock",
                "--bind",
                "/run/m/d/s/ws",
                "/workspace",
                "--setenv",
                "X",
                "/d/s/ws",
                "--",
                "/opt/paddock/paddock",
                "runner"
            ]
        );
    }
}
