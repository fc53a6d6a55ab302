//! `paddock probe`: tries one thing a sandboxed agent must not be able to do, and says whether it worked.
//! Exit 0 when the attempt succeeded (the sandbox failed), 1 when it was blocked. The sandbox-escape tests run
//! it inside real sessions.

use std::io::Read;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// tcp HOST:PORT | udp HOST:PORT | dns NAME | read PATH | write PATH | env NAME | signal PID | ptrace PID |
    /// userns new | clone-newnet new
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
