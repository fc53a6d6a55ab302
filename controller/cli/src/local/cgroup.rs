//! A cgroup of its own for each local session, where the host lets `paddock up` make one: `pids.max` bounds
//! the processes and threads of the whole sandbox (whatever uid they run as), `memory.max` its memory,
//! tmpfs pages included. cgroup v2 (`/sys/fs/cgroup` unified) when `paddock up`'s own cgroup delegates the
//! `pids` controller; else the v1 `pids` (and `memory`) hierarchies when they are mounted and writable.
//! Where neither is possible the session says so in its log, and `RLIMIT_NPROC` (under the session's own
//! uid when `paddock up` runs as root) is the process limit.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A session's cgroup(s): removed when dropped.
#[derive(Debug)]
pub struct SessionCgroup {
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each, for the child to join before it runs bubblewrap.
    procs: Vec<CString>,
    /// What bounds the session, for its log.
    pub summary: String,
}

const ROOT: &str = "/sys/fs/cgroup";

/// `paddock up`'s own cgroup path in a hierarchy (`""` for v2, else the v1 controller's name).
fn own_path(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() { ctrls.is_empty() } else { ctrls.split(',').any(|c| c == controller) };
        hit.then(|| path.trim_start_matches('/').to_owned())
    })
}

fn make(parent: &Path, name: &str, limits: &[(&str, String)]) -> Result<PathBuf, String> {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (file, value) in limits {
        if let Err(e) = std::fs::write(dir.join(file), value) {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("cannot set {}/{file}: {e}", dir.display()));
        }
    }
    Ok(dir)
}

impl SessionCgroup {
    /// Makes the session's cgroup with at most `pids` tasks and `memory` bytes; `Err` says why there is none.
    pub fn create(session: &str, pids: u32, memory: u64) -> Result<SessionCgroup, String> {
        let name = format!("paddock-{session}");
        let root = Path::new(ROOT);
        let mut cg = SessionCgroup { dirs: Vec::new(), procs: Vec::new(), summary: String::new() };
        if root.join("cgroup.controllers").exists() {
            let own = own_path("").ok_or("no cgroup v2 entry in /proc/self/cgroup")?;
            let parent = root.join(own);
            let enabled = std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "pids") {
                std::fs::write(parent.join("cgroup.subtree_control"), "+pids")
                    .map_err(|e| format!("the pids controller is not delegated to {} ({e})", parent.display()))?;
            }
            let enabled = std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
            let mut limits = vec![("pids.max", pids.to_string())];
            if enabled.split_whitespace().any(|c| c == "memory") {
                limits.push(("memory.max", memory.to_string()));
                limits.push(("memory.swap.max", "0".into()));
            }
            let dir = make(&parent, &name, &limits)?;
            cg.summary = format!("cgroup v2 {} ({})", dir.display(), limit_text(&limits));
            cg.add(dir);
            return Ok(cg);
        }
        let pids_root = root.join("pids");
        if !pids_root.join("cgroup.procs").exists() {
            return Err("neither cgroup v2 nor the v1 pids controller is mounted at /sys/fs/cgroup".into());
        }
        let own = own_path("pids").ok_or("no pids entry in /proc/self/cgroup")?;
        let limits = [("pids.max", pids.to_string())];
        let dir = make(&pids_root.join(own), &name, &limits)?;
        cg.summary = format!("cgroup v1 {} ({})", dir.display(), limit_text(&limits));
        cg.add(dir);
        // Memory is a bonus in v1: without it the session still has its pids limit.
        if let Some(own) = own_path("memory") {
            let limits = [("memory.limit_in_bytes", memory.to_string())];
            if let Ok(dir) = make(&root.join("memory").join(own), &name, &limits) {
                cg.summary.push_str(&format!(", cgroup v1 {} ({})", dir.display(), limit_text(&limits)));
                cg.add(dir);
            }
        }
        Ok(cg)
    }

    fn add(&mut self, dir: PathBuf) {
        self.procs.push(CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).expect("no NUL"));
        self.dirs.push(dir);
    }

    /// What the forked child needs to join the cgroup(s).
    pub fn joiner(&self) -> CgroupJoin {
        CgroupJoin(self.procs.clone())
    }
}

/// The `cgroup.procs` files a child writes itself into.
#[derive(Clone, Debug)]
pub struct CgroupJoin(Vec<CString>);

impl CgroupJoin {
    /// Runs in the forked child: moves it (and so everything it starts) into the cgroup(s). Only
    /// async-signal-safe system calls; writing `0` to `cgroup.procs` moves the writer.
    pub fn join(&self) -> std::io::Result<()> {
        for p in &self.0 {
            // SAFETY: open/write/close on a path prepared before the fork.
            unsafe {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                libc::close(fd);
                if !ok {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

fn limit_text(limits: &[(&str, String)]) -> String {
    limits.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

impl Drop for SessionCgroup {
    fn drop(&mut self) {
        // The sandbox's processes are gone when its bubblewrap has ended, but their exit may lag a moment.
        for dir in &self.dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// Where the host allows it, a session's cgroup stops a fork bomb at its limit, even for root (whom
    /// `RLIMIT_NPROC` does not stop). Where it does not, the reason is given (and the sandbox relies on the
    /// session's own uid; `tests/sandbox_limits.rs` checks that path).
    #[test]
    fn a_session_cgroup_bounds_processes_even_for_root() {
        let cg = match SessionCgroup::create(&format!("test-{}", std::process::id()), 20, 256 << 20) {
            Ok(cg) => cg,
            Err(why) => {
                assert!(!why.is_empty());
                eprintln!("no cgroup here: {why}");
                return;
            }
        };
        assert!(cg.summary.contains("pids.max=20"), "{}", cg.summary);
        let pids = cg.dirs[0].clone();
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "i=0; while [ $i -lt 60 ]; do sleep 2 & i=$((i+1)); done 2>/dev/null; wait"]);
        let join = cg.joiner();
        // SAFETY: open/write/close only.
        unsafe { cmd.pre_exec(move || join.join()) };
        let mut child = cmd.spawn().unwrap();
        let mut most = 0u32;
        // The sleepers outlive the shell (which may stop at the first refused fork): watch for a second.
        let watch = std::time::Instant::now();
        while watch.elapsed() < std::time::Duration::from_secs(1) {
            let now = std::fs::read_to_string(pids.join("pids.current")).unwrap_or_default();
            most = most.max(now.trim().parse().unwrap_or(0));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child.wait().unwrap();
        let events = std::fs::read_to_string(pids.join("pids.events")).unwrap_or_default();
        let refused: u64 = events.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(most > 10 && most <= 20, "at most 20 tasks ran at once: {most}");
        assert!(refused > 0, "forks past the limit were refused: {events}");
        for pid in std::fs::read_to_string(pids.join("cgroup.procs")).unwrap_or_default().lines() {
            // SAFETY: kill(2) of the test's own sleepers.
            unsafe { libc::kill(pid.parse().unwrap(), libc::SIGKILL) };
        }
        drop(cg);
        assert!(!pids.exists(), "the cgroup is removed with the session (its sleepers gone)");
    }
}
