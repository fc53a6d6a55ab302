//! The egress gateway and the credential broker, end to end, from inside real local sessions (bubblewrap,
//! the custom harness with the scripted model) against stand-ins on loopback that `--egress-resolve` maps
//! names to: GitHub over HTTPS under its own names (`github.com`, `api.github.com`, each at a port of its own;
//! real `git http-backend`, a REST API that really moves refs) behind a test CA the gateway trusts
//! (`--egress-trust`) and the sandbox does not, and an npm registry over plain HTTP.
//!
//! The Agent holds a GitHub token only as a brokered credential (`--secrets-dir`); its `github` rule runs on
//! the wire only (`on: [egress, git_push]`), so what is shown here is the wire's guarantee, not the shell
//! parser's: the commands are allowed to run, and it is the gateway that refuses their effects.

mod local;
mod standins;

use std::path::Path;

use local::{Up, paddock, repo, start, up_args, wait_end};
use serde_json::Value;
use standins::github::{self, API_HOST, GIT_HOST, GitHub, MIRROR_HOST};
use standins::registry::{self, Registry};
use standins::tls::TestCa;

/// The brokered GitHub token: the stand-in accepts only it, the sandbox must never see it.
const TOKEN: &str = "ghp_brokeredTokenThatMustStayInTheGateway0123";

fn agent(gh: u16, reg: u16, pypi: u16) -> String {
    format!(
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: pusher}}
spec:
  harness: custom
  model: scripted
  tools: [shell]
  sandbox:
    egress: ["{GIT_HOST}:{gh}", "{API_HOST}:{gh}", "{MIRROR_HOST}:{gh}", "{reg_host}:{reg}", "{pypi_host}:{pypi}"]
  credentials:
    - {{host: "{GIT_HOST}:{gh}", secretName: github, key: token, scheme: basic, username: x-access-token}}
    - {{host: "{API_HOST}:{gh}", secretName: github, key: token, scheme: bearer}}
  limits: {{timeoutSeconds: 240}}
"#,
        reg_host = registry::HOST,
        pypi_host = registry::PYPI_HOST,
    )
}

/// Deny force pushes, tag pushes and deletes, judged on the wire only.
const POLICY: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: github-wire}
spec:
  rules:
    - name: pushes
      use: github
      on: [egress, git_push]
      with:
        write_repos: [acme/app]
        write_branches: ["*"]
        deny_force_push: true
        deny_tag_push: true
"#;

/// A script that runs each command as a shell tool call, in one turn.
fn script(commands: &[String]) -> String {
    let mut calls = String::new();
    for c in commands {
        calls.push_str(&format!(
            "          - {{name: shell, args: {{command: {}}}}}\n",
            serde_json::to_string(c).unwrap()
        ));
    }
    format!(
        "scripts:\n  - name: probe\n    turns:\n      - text: probing\n        tool_calls:\n{calls}      - text: done\n"
    )
}

struct World {
    _dir: tempfile::TempDir,
    github: GitHub,
    registry: Registry,
    up: Up,
    workspace: std::path::PathBuf,
}

/// The stand-ins, `paddock up` with the secrets, trust and name mappings, and a workspace that is a clone
/// of `acme/app` whose `origin` is the HTTPS stand-in. `commands(gh_port, npm_port, pypi_port)` are the session's.
fn world(commands: impl Fn(u16, u16, u16) -> Vec<String>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ca = TestCa::new();
    let github = GitHub::start(root, &ca, TOKEN);
    let registry = Registry::start(root, &ca);
    let (gh, reg) = (github.port(), registry.port());
    // `main` has two commits; `feature/ok` and `feature/old` point at the first and second.
    let seed = root.join("seed");
    std::fs::write(seed.join("README.md"), "app, second\n").unwrap();
    github::git(&seed, &["commit", "-q", "-am", "second"]);
    let bare = github.bare();
    github::git(
        &seed,
        &["push", "-q", bare.to_str().unwrap(), "main", "main~1:refs/heads/feature/ok", "main:refs/heads/feature/old"],
    );

    let ws = root.join("ws");
    github::git(root, &["clone", "-q", bare.to_str().unwrap(), ws.to_str().unwrap()]);
    github::git(&ws, &["remote", "set-url", "origin", &github.clone_url()]);
    github::git(&ws, &["config", "user.name", "Agent"]);
    github::git(&ws, &["config", "user.email", "agent@example.com"]);
    let standins = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins");
    // The agent may trust a CA of its own choosing for a tunnel it opens (for pip, `REQUESTS_CA_BUNDLE`: it
    // wins over `--cert`); that changes nothing about what the proxy allows.
    std::fs::write(ws.join("test-ca.pem"), &ca.cert_pem).unwrap();
    for probe in ["connect.py", "no_secret.py"] {
        std::fs::copy(standins.join(probe), ws.join(probe)).unwrap();
    }

    repo(
        root,
        &[("agent.yaml", &agent(gh, reg, registry.pypi_port())), ("policy.yaml", POLICY)],
        &script(&commands(gh, reg, registry.pypi_port())),
    );
    let secrets = root.join("secrets");
    std::fs::create_dir_all(secrets.join("github")).unwrap();
    std::fs::write(secrets.join("github/token"), TOKEN).unwrap();
    let trust = root.join("test-ca.pem");
    std::fs::write(&trust, &ca.cert_pem).unwrap();
    let mut args: Vec<String> = vec!["--secrets-dir".into(), secrets.display().to_string()];
    args.extend(["--egress-trust".into(), trust.display().to_string()]);
    for host in [GIT_HOST, API_HOST, MIRROR_HOST, registry::HOST, registry::PYPI_HOST, "evil.test"] {
        args.extend(["--egress-resolve".into(), format!("{host}=127.0.0.1")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Debug logs: whatever the gateway logs, a credential must not be in it.
    let up = up_args(root, &args, &[("RUST_LOG", "debug")]);
    World { _dir: dir, github, registry, up, workspace: ws }
}

/// Runs the session; each command's output in order, and everything for a failure message.
fn run(w: &World) -> (Vec<String>, String) {
    let id = start(&w.up, "pusher", "probe the wire", &w.workspace);
    let phase = wait_end(&w.up, &id);
    let (_, logs) = paddock(&w.up, &["session", "logs", &id, "-o", "json"]);
    let events: Vec<Value> = logs.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let outputs: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "tool_result")
        .map(|e| e["output"].as_str().unwrap_or_default().to_owned())
        .collect();
    let runner_log =
        std::fs::read_to_string(w.up.data.join("sessions").join(&id).join("runner.log")).unwrap_or_default();
    let context = format!("phase {phase}\n{}\nrunner.log:\n{runner_log}", outputs.join("\n-----\n"));
    assert_eq!(phase, "Succeeded", "{context}");
    (outputs, context)
}

#[test]
fn github_rules_hold_on_the_wire_and_the_token_stays_in_the_gateway() {
    let w = world(|gh, _, _| {
        let api = format!("https://{API_HOST}:{gh}/repos/acme/app/git/refs/heads");
        vec![
            // 0: main rewritten locally (the remote's main is not an ancestor any more).
            "git reset -q --hard HEAD~1 && git commit -q --allow-empty -m rewritten && git rev-parse HEAD".into(),
            // 1-3: a force push in three spellings the shell parser cannot judge.
            r#"python3 -c 'import subprocess; subprocess.run(["git","push","-f","origin","main"])' 2>&1; echo done"#
                .into(),
            "printf 'git push --force origin main\\n' > force.sh && sh force.sh 2>&1; echo exit $?".into(),
            format!(
                r#"curl -sS -X PATCH {api}/main -H 'content-type: application/json' -d '{{"sha":"'"$(git rev-parse HEAD~1)"'","force":true}}' -w '\nHTTP %{{http_code}}\n'"#
            ),
            // 4: a fast-forward of feature/ok lands.
            "git checkout -q --no-track -b feature/ok origin/feature/ok && git commit -q --allow-empty -m ok && git push origin feature/ok 2>&1 && git rev-parse HEAD".into(),
            // 5-7: a tag push, a branch delete by git and by the API.
            "git tag v1 && git push origin v1 2>&1; echo exit $?".into(),
            "git push origin --delete feature/old 2>&1; echo exit $?".into(),
            format!("curl -sS -X DELETE {api}/feature/old -w '\\nHTTP %{{http_code}}\\n'"),
            // 8: a force update through GraphQL, its force given as a variable.
            format!(
                r#"curl -sS -X POST https://{API_HOST}:{gh}/graphql -H 'content-type: application/json' -d '{{"query":"mutation Move($force: Boolean!) {{ updateRef(input: {{refId: \"REF_main\", oid: \"'"$(git rev-parse HEAD~1)"'\", force: $force}}) {{ ref {{ name }} }} }}","variables":{{"force":true}}}}' -w '\nHTTP %{{http_code}}\n'"#
            ),
            // 9-10: the brokered token is nowhere the sandbox can read (git's config files included: the
            // repository's, the home's, /etc/gitconfig); the same search finds the proxy URL.
            format!(
                "python3 no_secret.py {} /workspace /tmp /home /run /etc /opt /usr/local/etc",
                TOKEN.chars().rev().collect::<String>()
            ),
            "python3 no_secret.py _kdp:kcoddap /tmp".into(),
        ]
    });
    let main_before = w.github.rev("refs/heads/main").unwrap();
    let old_before = w.github.rev("refs/heads/feature/old").unwrap();
    let (out, context) = run(&w);
    assert_eq!(out.len(), 11, "{context}");

    // Refused at the wire, and the remote's main is where it was.
    assert_eq!(w.github.rev("refs/heads/main").as_deref(), Some(main_before.as_str()), "main moved:\n{context}");
    for (i, spelling) in [(1, "python"), (2, "script file")] {
        assert!(
            out[i].contains("[remote rejected]") || out[i].contains("! ["),
            "{spelling} force push not refused:\n{}",
            out[i]
        );
        assert!(out[i].to_lowercase().contains("force"), "{spelling}: git shows why:\n{}", out[i]);
    }
    assert!(out[3].contains("HTTP 403"), "the API force update is refused:\n{}", out[3]);
    assert!(out[3].contains("github-wire"), "the refusal names the policy:\n{}", out[3]);

    // The fast-forward landed.
    let pushed = out[4].lines().rev().find(|l| l.len() == 40).unwrap_or_else(|| panic!("no commit:\n{}", out[4]));
    assert_eq!(w.github.rev("refs/heads/feature/ok").as_deref(), Some(pushed), "{context}");

    // Tags and deletes are refused; git says why.
    assert_eq!(w.github.rev("refs/tags/v1"), None, "{}", out[5]);
    assert!(out[5].contains("[remote rejected] v1") && out[5].contains("tags"), "git shows why:\n{}", out[5]);
    assert!(!out[5].contains("exit 0"), "{}", out[5]);
    assert_eq!(w.github.rev("refs/heads/feature/old").as_deref(), Some(old_before.as_str()), "{}\n{}", out[6], out[7]);
    assert!(out[6].contains("[remote rejected] feature/old") && out[6].contains("delet"), "git shows why:\n{}", out[6]);
    assert!(!out[6].contains("exit 0"), "{}", out[6]);
    assert!(out[7].contains("HTTP 403"), "{}", out[7]);

    assert!(
        out[8].contains("HTTP 403") && out[8].contains("force"),
        "the GraphQL force update is refused:\n{}",
        out[8]
    );

    // No refused request reached the stand-in; every one that did carried the broker's token.
    for r in w.github.server.requests() {
        assert!(r.header("authorization").is_some(), "{} {} {} without a credential", r.method, r.host, r.path);
        assert!(!(r.host == API_HOST && r.method != "GET"), "the API saw {} {}", r.method, r.path);
    }

    assert!(!context.contains(TOKEN), "the token is in the transcript or the runner's log:\n{context}");
    let printed = w.up.output.lock().unwrap().clone();
    assert!(printed.contains("brokered credentials (spec.credentials) from"), "{printed}");
    assert!(printed.contains("push allowed"), "the gateway's debug logs were read: {printed}");
    assert!(!printed.contains(TOKEN), "paddock up printed the token:\n{printed}");

    // Nothing the sandbox can read holds the token, and the search does find what is there.
    assert!(!out[9].contains("found in"), "the brokered token is inside the sandbox:\n{}", out[9]);
    let searched: usize = out[9]
        .lines()
        .find_map(|l| l.strip_prefix("searched ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("the search did not run:\n{}", out[9]));
    assert!(searched > 20, "the search read only {searched} files:\n{}", out[9]);
    assert!(out[10].contains("found in /proc/"), "the search finds the proxy URL in the environment:\n{}", out[10]);
}

#[test]
fn allowed_hosts_work_others_are_refused_and_tunnels_must_name_their_host() {
    let w = world(|gh, reg, pypi| {
        vec![
            // 0: npm install from the registry stand-in (plain HTTP through the proxy).
            format!(
                "npm install --registry http://{}:{reg}/ --no-audit --no-fund --no-update-notifier {} 2>&1 && node -e \"console.log(require('{}'))\"",
                registry::HOST,
                registry::PACKAGE,
                registry::PACKAGE
            ),
            // 1-2: a host not allowed, over plain HTTP and through CONNECT.
            "curl -sS -i http://evil.test/ 2>&1".into(),
            "python3 connect.py evil.test 443 evil.test".into(),
            // 3-4: a tunnel to an allowed host works end to end; one whose SNI names another host is cut.
            format!("python3 connect.py {MIRROR_HOST} {gh} {MIRROR_HOST}"),
            format!("python3 connect.py {MIRROR_HOST} {gh} other.test"),
            // 5: what the shell's processes are given: the proxy, what bypasses it, and one CA bundle.
            format!(
                "python3 -c 'import os, json; print(json.dumps({{k: os.environ.get(k) for k in {vars:?}}})); b = open(os.environ[\"SSL_CERT_FILE\"]).read(); print(b.count(\"BEGIN CERTIFICATE\")); print(b[-4000:])'",
                vars = PROBED_VARS
            ),
            // 6-7: pip through an end-to-end tunnel: it works when pip trusts the registry's own CA,
            // and fails with the bundle the runner gives (the gateway does not terminate TLS it brokers
            // nothing for).
            format!(
                "REQUESTS_CA_BUNDLE=/workspace/test-ca.pem python3 -m pip install --disable-pip-version-check --no-cache-dir --retries 0 --index-url https://{}:{pypi}/simple/ --target /tmp/pylib {} 2>&1 && PYTHONPATH=/tmp/pylib python3 -c 'import paddock_probe; print(paddock_probe.VALUE)'",
                registry::PYPI_HOST,
                registry::PACKAGE
            ),
            format!(
                "python3 -m pip download --disable-pip-version-check --no-cache-dir --retries 0 --timeout 10 --index-url https://{}:{pypi}/simple/ --no-deps -d /tmp/dl {} 2>&1; echo exit $?",
                registry::PYPI_HOST,
                registry::PACKAGE
            ),
        ]
    });
    let (out, context) = run(&w);
    assert_eq!(out.len(), 8, "{context}");
    assert!(out[0].contains("probe ok"), "npm install did not work:\n{}", out[0]);
    assert!(w.registry.server.requests().iter().any(|r| r.path.ends_with(".tgz")), "{context}");
    for (i, how) in [(1, "plain HTTP"), (2, "CONNECT")] {
        assert!(out[i].contains(" 403"), "{how} to a host not allowed: {}", out[i]);
        assert!(out[i].contains("paddock/egress"), "{how}: the refusal names the policy: {}", out[i]);
    }
    assert!(out[6].contains("probe ok"), "pip install through a tunnel did not work:\n{}", out[6]);
    assert!(
        out[7].contains("CERTIFICATE_VERIFY_FAILED") && !out[7].contains("exit 0"),
        "the tunnel is end to end: the registry's certificate is not the gateway's:\n{}",
        out[7]
    );
    assert!(out[3].contains("answer: mirror"), "the tunnel to an allowed host works: {}", out[3]);
    assert!(out[4].starts_with("cut:"), "a tunnel whose SNI is another host is cut: {}", out[4]);
    let mirror_hits = w.github.server.requests().iter().filter(|r| r.host == MIRROR_HOST).count();
    assert_eq!(mirror_hits, 1, "only the honest tunnel reached the server");

    let mut lines = out[5].lines();
    let env: Value =
        serde_json::from_str(lines.next().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {}", out[5]));
    let proxy = env["HTTPS_PROXY"].as_str().unwrap_or_default();
    assert!(proxy.starts_with("http://paddock:pdk_") && proxy.contains("@127.0.0.1:"), "{env}");
    for var in ["HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "npm_config_https_proxy"] {
        assert_eq!(env[var], proxy, "{var}: {env}");
    }
    assert_eq!(env["NO_PROXY"], "127.0.0.1,localhost,::1", "{env}");
    let bundle = env["SSL_CERT_FILE"].as_str().unwrap_or_default();
    for var in [
        "NODE_EXTRA_CA_CERTS",
        "GIT_SSL_CAINFO",
        "REQUESTS_CA_BUNDLE",
        "CARGO_HTTP_CAINFO",
        "PIP_CERT",
        "CURL_CA_BUNDLE",
    ] {
        assert_eq!(env[var], bundle, "{var}: {env}");
    }
    assert!(!bundle.starts_with("/workspace"), "the bundle is the runner's, not in the workspace: {bundle}");
    let egress_ca = std::fs::read_to_string(w.up.data.join("egress-ca.pem")).unwrap();
    assert!(out[5].contains(egress_ca.trim()), "the bundle ends with the gateway's egress CA:\n{}", out[5]);
    let roots: usize = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    let system = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    assert_eq!(roots, system.matches("BEGIN CERTIFICATE").count() + 1, "the system's roots and the egress CA");
}

/// The variables the probe reads inside the session.
const PROBED_VARS: [&str; 14] = [
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "https_proxy",
    "http_proxy",
    "ALL_PROXY",
    "npm_config_https_proxy",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "REQUESTS_CA_BUNDLE",
    "CARGO_HTTP_CAINFO",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
];
