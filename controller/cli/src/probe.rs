//! `paddock probe`: tries one thing a sandboxed agent must not be able to do, and says whether it worked.
//! Exit 0 when the attempt succeeded (the sandbox failed), 1 when it was blocked. The sandbox-escape tests run
//! it inside real sessions.

use std::io::Read;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// tcp HOST:PORT | udp HOST:PORT | dns NAME | read PATH | write PATH | env NAME | signal PID | ptrace PID |
    /// userns new | clone-newnet new | io_uring setup | memfd-exec PATH | fork MAX | fill PATH:MiB
    kind: String,
    target: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let t = args.target.as_str();
    let result: Result<String, String> = match args.kind.as_str() {
        "tcp" => std::net::TcpStream::connect_timeout(
            &t.parse().map_err(|e| anyhow::anyhow!("{t}: {e}"))?,
            std::time::Duration::from_secs(2),
        )
        .map(|_| format!("connected to {t}"))
        .map_err(|e| e.to_string()),
        "udp" => std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.send_to(b"paddock-probe", t))
            .map(|n| format!("sent {n} bytes to {t}"))
            .map_err(|e| e.to_string()),
        "dns" => std::net::ToSocketAddrs::to_socket_addrs(&(t, 443))
            .map(|a| format!("resolved to {:?}", a.collect::<Vec<_>>()))
            .map_err(|e| e.to_string()),
        "read" => std::fs::File::open(t)
            .and_then(|mut f| {
                let mut s = String::new();
                f.read_to_string(&mut s).map(|_| s)
            })
            .map(|s| format!("read {} bytes", s.len()))
            .map_err(|e| e.to_string()),
        "write" => std::fs::write(t, b"escaped").map(|_| format!("wrote {t}")).map_err(|e| e.to_string()),
        "env" => std::env::var(t).map(|v| format!("{t} is set ({} chars)", v.len())).map_err(|e| e.to_string()),
        "signal" => {
            let pid: i32 = t.parse()?;
            // SAFETY: kill(2) with signal 0 only checks whether the process can be signalled.
            let r = unsafe { libc::kill(pid, 0) };
            if r == 0 { Ok(format!("can signal {pid}")) } else { Err(std::io::Error::last_os_error().to_string()) }
        }
        "ptrace" => {
            let pid: i32 = t.parse()?;
            // SAFETY: PTRACE_ATTACH on a pid; detached at once if it worked.
            let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
            if r == 0 {
                unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
                Ok(format!("attached to {pid}"))
            } else {
                Err(std::io::Error::last_os_error().to_string())
            }
        }
        // A new user namespace (the door to most kernel attack surface) by unshare(2) and by clone(2).
        "userns" => {
            // SAFETY: unshare(2) with a flag; on success this process is in a new namespace, nothing more.
            let r = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
            if r == 0 {
                Ok("created a user namespace".into())
            } else {
                Err(std::io::Error::last_os_error().to_string())
            }
        }
        "clone-newnet" => {
            // SAFETY: a raw clone(2) with SIGCHLD and a namespace flag; the child exits at once.
            let pid =
                unsafe { libc::syscall(libc::SYS_clone, (libc::CLONE_NEWNET | libc::SIGCHLD) as u64, 0, 0, 0, 0) };
            match pid {
                0 => unsafe { libc::_exit(0) },
                p if p > 0 => {
                    unsafe { libc::waitpid(p as i32, std::ptr::null_mut(), 0) };
                    Ok("cloned into a new network namespace".into())
                }
                _ => Err(std::io::Error::last_os_error().to_string()),
            }
        }
        "io_uring" => io_uring(),
        "memfd-exec" => memfd_exec(t),
        "fork" => fork_until_refused(t.parse()?),
        "fill" => {
            let (path, mib) = t.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("fill PATH:MiB"))?;
            fill(path, mib.parse()?)
        }
        other => anyhow::bail!("unknown probe `{other}`"),
    };
    Ok(match result {
        Ok(what) => {
            println!("ESCAPED: {} {t}: {what}", args.kind);
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("blocked: {} {t}: {why}", args.kind);
            ExitCode::from(1)
        }
    })
}

/// An io_uring instance (the door to system calls that seccomp does not see).
fn io_uring() -> Result<String, String> {
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(2) with one entry and a zeroed `struct io_uring_params` (120 bytes).
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) };
    if fd >= 0 {
        unsafe { libc::close(fd as i32) };
        Ok("created an io_uring".into())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// Runs the executable at `path` from an anonymous memory file (fileless execution).
fn memfd_exec(path: &str) -> Result<String, String> {
    let code = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: memfd_create(2) with a static name; the fd is ours.
    let fd = unsafe { libc::memfd_create(c"probe".as_ptr(), 0) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: we own fd.
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    std::io::Write::write_all(&mut file, &code).map_err(|e| e.to_string())?;
    let status = std::process::Command::new(format!("/proc/self/fd/{fd}"))
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("exec from the memfd: {e}"))?;
    if status.success() { Ok(format!("ran {path} from a memfd")) } else { Err(format!("it ran but failed: {status}")) }
}

/// Starts processes until the kernel refuses one or `max` run; says how many ran and why it stopped.
fn fork_until_refused(max: u32) -> Result<String, String> {
    let mut hold = [0; 2];
    // SAFETY: a pipe whose read end the children wait on; closing the write end releases them.
    if unsafe { libc::pipe(hold.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let mut children = Vec::new();
    let mut refused = None;
    while children.len() < max as usize {
        // SAFETY: the child only reads from the pipe and exits.
        let pid = unsafe { libc::fork() };
        match pid {
            0 => unsafe {
                libc::close(hold[1]);
                let mut b = 0u8;
                libc::read(hold[0], (&mut b as *mut u8).cast(), 1);
                libc::_exit(0);
            },
            p if p > 0 => children.push(p),
            _ => {
                refused = Some(std::io::Error::last_os_error());
                break;
            }
        }
    }
    unsafe { libc::close(hold[1]) };
    for p in &children {
        unsafe { libc::waitpid(*p, std::ptr::null_mut(), 0) };
    }
    match refused {
        None => Ok(format!("started all {max} processes")),
        Some(e) => Err(format!("started {} processes, then: {e}", children.len())),
    }
}

/// Writes `mib` MiB of zeros to `path`; says how much fitted.
fn fill(path: &str, mib: u64) -> Result<String, String> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let chunk = vec![0u8; 1 << 20];
    for written in 0..mib {
        if let Err(e) = f.write_all(&chunk).and_then(|_| f.flush()) {
            let _ = std::fs::remove_file(path);
            return Err(format!("wrote {written} MiB, then: {e}"));
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(format!("wrote all {mib} MiB"))
}
