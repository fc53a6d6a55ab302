//! `paddock runner`: runs one session of an Agent inside a sandbox, through the gateway.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use paddock_gitops::{Object, SourceFile, validate_files};
use paddock_runner::{GatewayClient, RunContext, Transcript};

#[derive(clap::Args)]
pub struct Args {
    /// The Agent manifest (YAML) to run.
    #[arg(long)]
    agent: PathBuf,
    /// The task (for local use: a command line is visible to every process on the machine).
    #[arg(long, required_unless_present = "prompt_file")]
    prompt: Option<String>,
    /// Read the task from this file, as written (keeps it off the command line). Runner pods get it from
    /// their token Secret, mounted at `/etc/paddock/prompt/prompt`.
    #[arg(long, conflicts_with = "prompt")]
    prompt_file: Option<PathBuf>,
    /// The directory the agent works in.
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// The gateway's address: `http://host:port`, `https://host:port` (spoken to over TLS; the harness gets
    /// plain HTTP on loopback), or `unix:/path/to/socket` inside a local sandbox.
    #[arg(long, env = "PADDOCK_GATEWAY_URL", default_value = "http://127.0.0.1:6767")]
    gateway: String,
    /// For an `https://` gateway: the CA certificate (PEM) that signed its certificate, trusted alone.
    /// Default: the system's roots.
    #[arg(long, env = "PADDOCK_GATEWAY_CA")]
    gateway_ca: Option<PathBuf>,
    /// Read the session token from this file instead of `PADDOCK_TOKEN`.
    #[arg(long, env = "PADDOCK_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Confine this process and everything it starts with Landlock (writes only to the workspace, /tmp, the
    /// home directory and these paths) and seccomp, before anything runs. Used inside local sandboxes.
    #[arg(long)]
    confine: bool,
    /// With --confine: more writable directories.
    #[arg(long = "writable")]
    writable: Vec<PathBuf>,
    /// The session this run belongs to (the gateway issued its token).
    #[arg(long, env = "PADDOCK_SESSION")]
    session: String,
    /// Use this model instead of the Agent's.
    #[arg(long)]
    model: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init(false);
    // The token comes from the environment or a file only: a command line is visible to every process.
    let token = match &args.token_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the token file `{}`", f.display()))?
            .trim()
            .to_owned(),
        None => std::env::var("PADDOCK_TOKEN").context("PADDOCK_TOKEN (the session token) is not set")?,
    };
    let bytes = std::fs::read(&args.agent).with_context(|| format!("cannot read `{}`", args.agent.display()))?;
    let report = validate_files(&[SourceFile::new(args.agent.display().to_string(), bytes)]);
    if !report.is_ok() {
        anyhow::bail!("the Agent does not validate:\n{}", report.render());
    }
    let Some((name, agent)) = report.objects.iter().find_map(|o| match &o.object {
        Object::Agent(a) => Some((o.name.clone(), a.spec.clone())),
        _ => None,
    }) else {
        anyhow::bail!("`{}` holds no Agent", args.agent.display());
    };
    let workspace = std::fs::canonicalize(&args.workspace)
        .with_context(|| format!("workspace `{}` does not exist", args.workspace.display()))?;
    let prompt = prompt(&args)?;
    // The session's trace: the one `TRACEPARENT` names (the operator's, a CI job's), else a new one. Every
    // request of the runner, its harness and its hooks carries it, so the gateway's spans join one trace.
    let trace = paddock_runner::client::new_traceparent();
    let client = |url: &str| {
        let c = GatewayClient::new(url, &args.session, &token);
        match c.traceparent() {
            Some(_) => c,
            None => c.with_traceparent(&trace),
        }
    };
    let ctx = RunContext {
        agent_name: name,
        model: args.model.unwrap_or_else(|| agent.model.clone()),
        max_turns: agent.limits.max_turns,
        timeout: Duration::from_secs(agent.limits.timeout_seconds.into()),
        agent,
        prompt,
        workspace,
        gateway: client(&args.gateway),
        paddock_bin: std::env::current_exe().context("cannot find the paddock executable")?,
        // Fetched from the gateway when the run starts (after the relay is up).
        ca_bundle: None,
    };
    if args.confine {
        // Before the runtime starts its threads: Landlock binds the calling thread and what it creates.
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| "/tmp".into());
        let mut writable = vec![ctx.workspace.clone(), "/tmp".into(), "/dev".into(), home];
        writable.extend(args.writable.iter().cloned());
        writable.retain(|p| p.exists());
        paddock_runner::confine::confine(&writable).context("the sandbox's second layer")?;
    }
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcome = rt.block_on(async {
        let mut ctx = ctx;
        if let Some(socket) = args.gateway.strip_prefix("unix:") {
            let url = paddock_runner::forward::relay_to_socket(socket.into()).await?;
            ctx.gateway = client(&url);
        } else if args.gateway.starts_with("https://") {
            let url = paddock_runner::forward::relay_to_tls(&args.gateway, args.gateway_ca.as_deref()).await?;
            ctx.gateway = client(&url);
        } else if let Some(ca) = &args.gateway_ca {
            anyhow::bail!("--gateway-ca `{}` is for an https:// gateway, not `{}`", ca.display(), args.gateway);
        }
        let transcript = Transcript::new(Some(ctx.gateway.clone()), true);
        anyhow::Ok(paddock_runner::run(&ctx, &transcript).await)
    })?;
    Ok(if outcome.phase == "Succeeded" { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The task: `--prompt`, or the whole of `--prompt-file`. An empty file is refused: it is a mount gone wrong
/// (the Session's prompt is never empty), not a task.
fn prompt(args: &Args) -> anyhow::Result<String> {
    match (&args.prompt, &args.prompt_file) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) => {
            let p = std::fs::read_to_string(f)
                .with_context(|| format!("--prompt-file: cannot read the prompt file `{}`", f.display()))?;
            if p.trim().is_empty() {
                anyhow::bail!("--prompt-file: the prompt file `{}` is empty", f.display());
            }
            Ok(p)
        }
        (None, None) => anyhow::bail!("give --prompt or --prompt-file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = ["paddock", "--agent", "a.yaml", "--session", "s"];
        Cli::try_parse_from(base.iter().chain(extra)).map(|c| c.args)
    }

    #[test]
    fn the_prompt_comes_from_a_file_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prompt");
        let text = "Fix \"the\" bug; don't run $(rm -rf /)\nthen say 'done'\n";
        std::fs::write(&file, text).unwrap();
        let args = parse(&["--prompt-file", file.to_str().unwrap()]).unwrap();
        assert_eq!(prompt(&args).unwrap(), text);
        // Local use keeps --prompt.
        assert_eq!(prompt(&parse(&["--prompt", "hi"]).unwrap()).unwrap(), "hi");
    }

    #[test]
    fn a_missing_or_empty_prompt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = prompt(&parse(&["--prompt-file", missing.to_str().unwrap()]).unwrap()).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with(&format!("--prompt-file: cannot read the prompt file `{}`", missing.display())),
            "{msg}"
        );
        assert!(msg.contains("No such file"), "{msg}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = prompt(&parse(&["--prompt-file", empty.to_str().unwrap()]).unwrap()).unwrap_err();
        assert_eq!(e.to_string(), format!("--prompt-file: the prompt file `{}` is empty", empty.display()));
    }

    #[test]
    fn one_prompt_source_is_required_and_only_one() {
        assert!(parse(&[]).is_err(), "neither");
        let both = parse(&["--prompt", "a", "--prompt-file", "/x"]).err().unwrap();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
