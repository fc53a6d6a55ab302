//! `paddock`: GitOps for AI agents. This binary is the CLI and, in later releases, every server part.

mod cluster_approve;
mod controller_cmd;
mod gateway_cmd;
mod generate;
mod hook_cmd;
mod local;
mod logging;
mod probe;
mod runner_cmd;
mod terminal;
mod test;
mod validate;

use std::process::ExitCode;

/// mimalloc, not glibc's malloc: a tenth of the gateway's CPU per proxied request was malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// Paddock — GitOps for AI agents on Kubernetes.
///
/// Platform teams keep Agents and Policies in a git repository (`agents/*.yaml`, `policies/*.yaml`);
/// Paddock validates them, applies them, and governs every LLM request and tool call the agents make.
#[derive(Parser)]
#[command(name = "paddock", version, about, long_about, propagate_version = true)]
#[command(
    after_help = "Start here:\n  paddock validate agents-repo-template   check an agents repository\n  paddock test agents-repo-template       run its policy tests\n  paddock schema --out schemas            JSON Schemas for editor completion\n  paddock crdgen                          regenerate crds/ from the API types\n\nDocs: docs/agents-repo.md, docs/api.md"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check an agents repository (or single manifest files) the way the GitSource controller will.
    ///
    /// Reads every `*.yaml`/`*.yml` under each PATH (hidden directories and `*.test.yaml` policy tests
    /// are skipped) and checks YAML syntax, apiVersion and kind, every field against the CRD schema
    /// (unknown fields are errors), and meaning: unique names, referenced Policies and Agents exist,
    /// models are in the catalog, egress entries parse, rules use known builtins.
    ///
    /// Errors are printed as `file:line:column: error: field.path: message`. The exit status is 1 when
    /// any error is found, 0 otherwise (warnings do not fail).
    Validate(validate::Args),
    /// Run policy tests (`*.test.yaml`): events in, expected verdicts out, like `kyverno test`.
    ///
    /// Each case is a fresh session whose steps share state; a failing step prints the expected and
    /// actual verdict, policy and reason. Ends with `N passed, N failed`; exits 1 on any failure.
    Test(test::Args),
    /// Write the CustomResourceDefinitions generated from the API types (one file per kind).
    Crdgen(generate::CrdgenArgs),
    /// Write JSON Schemas for manifest files, for editors (yaml-language-server modeline).
    ///
    /// Put `# yaml-language-server: $schema=<path>/agent.schema.json` on the first line of a manifest to
    /// get completion, hover docs and errors in VS Code, Neovim and other editors.
    Schema(generate::SchemaArgs),
    /// Run the gateway: the LLM proxy (Anthropic and OpenAI wire formats) and the admission API that every
    /// model request and tool call passes. Listens on 127.0.0.1:6767 by default.
    Gateway(gateway_cmd::Args),
    /// Run one session of an Agent (inside its sandbox): start its harness with every model request and
    /// tool call going through the gateway, and print the transcript as JSON lines. The session token is
    /// read from `PADDOCK_TOKEN`.
    Runner(runner_cmd::Args),
    /// Start Paddock on this machine: the gateway on 127.0.0.1:6767, the Agents and Policies of a directory
    /// or local git repository (reloaded on change), and sandboxed sessions. `--demo` runs the governed demo.
    Up(local::up::Args),
    /// Run, list, follow and stop local sessions (talks to `paddock up`).
    Session {
        #[command(subcommand)]
        command: local::commands::SessionCommand,
        #[command(flatten)]
        conn: local::client::Conn,
    },
    /// List the asks waiting for a human.
    Approvals {
        #[command(flatten)]
        conn: local::client::Conn,
        #[command(flatten)]
        out: local::commands::Output,
    },
    /// Approve an ask.
    Approve(local::commands::DecideArgs),
    /// Try one thing a sandboxed agent must not be able to do (for the sandbox-escape tests).
    #[command(hide = true)]
    Probe(probe::Args),
    /// Deny an ask.
    Deny(local::commands::DecideArgs),
    /// Harness hooks that ask the gateway's admission API before a tool runs. `paddock hook claude` is
    /// Claude Code's PreToolUse command hook: exit 0 allows, exit 2 blocks, and every error blocks.
    Hook(hook_cmd::Args),
    /// Run the Kubernetes controller: GitSources are fetched, validated whole and applied (refused with
    /// file:line when broken), Agents and Policies get status; serves /metrics, /healthz and the git webhook.
    Controller(controller_cmd::Args),
}

/// `approve` / `deny`: locally through `paddock up`, or with `--cluster` as an Approval object.
fn decide(a: local::commands::DecideArgs, approve: bool) -> anyhow::Result<ExitCode> {
    if a.cluster {
        return cluster_approve::run(
            a.namespace,
            a.session.unwrap_or_default(),
            a.id,
            approve,
            a.reason.unwrap_or_default(),
        );
    }
    local::commands::decide(a.conn, a.id, a.reason, approve)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Test(args) => test::run(args),
        Command::Crdgen(args) => generate::crdgen(args),
        Command::Schema(args) => generate::schema(args),
        Command::Gateway(args) => gateway_cmd::run(args),
        Command::Runner(args) => runner_cmd::run(args),
        Command::Up(args) => local::up::run(args),
        Command::Session { command, conn } => local::commands::session(command, conn),
        Command::Approvals { conn, out } => local::commands::approvals(conn, out),
        Command::Approve(a) => decide(a, true),
        Command::Deny(a) => decide(a, false),
        Command::Probe(args) => probe::run(args),
        Command::Hook(args) => hook_cmd::run(args),
        Command::Controller(args) => controller_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Errors quote outside text (a gateway's error body, a file's contents): inert before printing.
            eprintln!("paddock: error: {}", terminal::block(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}
