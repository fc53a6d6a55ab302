//! Nothing the agent writes runs on the host afterwards. A real local session (bubblewrap) plants, from
//! inside, every way we know to make git on the host run a command: `core.fsmonitor`, `core.hooksPath`,
//! `core.pager`, aliases, filter and textconv drivers (in `.git/config`, `.git/info/attributes` and
//! `.gitattributes`), `.git/config.worktree`, `.git/modules/*/config`, hooks in `.git/hooks`, a nested
//! repository, a `.git` file pointing at a repository of its own, a directory git would open as a
//! repository (`HEAD` + `core.worktree`), `.git` itself replaced. Then the user's git commands run on the
//! host — in the workspace and its subdirectories, after `paddock session diff` and `apply` — and a marker
//! file that any of those commands would write never appears. The same git commands run in the agent's
//! copy do write markers: the plants were real, and the copy is what keeps them off the host.

mod local;

use std::path::Path;
use std::process::Command;

use local::{paddock, run_session, up, yaml_json};
use serde_json::{Value, json};

const AGENT: &str = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: planter}\nspec:\n  harness: custom\n  model: scripted\n  tools: [shell]\n";

/// Runs git as the user would: their HOME (empty here), no system config; returns its exit status.
fn git(dir: &Path, home: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .unwrap()
        .status
        .success()
}

fn git_ok(dir: &Path, home: &Path, args: &[&str]) {
    let ident = ["-c", "user.name=u", "-c", "user.email=u@example.com", "-c", "init.defaultBranch=main"];
    let all: Vec<&str> = ident.iter().copied().chain(args.iter().copied()).collect();
    assert!(git(dir, home, &all), "git {args:?} in {}", dir.display());
}

/// The plants, each one shell command run inside the sandbox; `M` is the host's marker directory.
fn plants(m: &str) -> Vec<(&'static str, String)> {
    let hook = |name: &str| format!("#!/bin/sh\\necho {name} >> {m}/{name}\\n");
    vec![
        ("config fsmonitor", format!("git config core.fsmonitor 'echo fsmonitor >> {m}/fsmonitor; false'; echo rc=$?")),
        (
            "config appended",
            format!(
                "printf '[core]\\n\\tfsmonitor = \"echo appended >> {m}/appended; false\"\\n' >> .git/config; echo rc=$?"
            ),
        ),
        ("config hooksPath", "git config core.hooksPath .githooks; echo rc=$?".to_owned()),
        ("config pager", format!("git config core.pager 'echo pager >> {m}/pager; cat'; echo rc=$?")),
        ("config alias", format!("git config alias.st '!echo alias >> {m}/alias'; echo rc=$?")),
        (
            "hook post-checkout",
            format!(
                "printf '{}' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout; echo rc=$?",
                hook("post-checkout")
            ),
        ),
        (
            "hook pre-commit",
            format!(
                "printf '{}' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit; echo rc=$?",
                hook("pre-commit")
            ),
        ),
        (
            "hooks in the worktree",
            format!(
                "mkdir -p .githooks && for h in post-checkout pre-commit post-commit; do printf '#!/bin/sh\\necho $h >> {m}/worktree-hook\\n' > .githooks/$h; chmod +x .githooks/$h; done; echo rc=$?"
            ),
        ),
        (
            "info attributes and filters",
            format!(
                "echo '* filter=evil diff=evil' > .git/info/attributes; echo rc=$?; echo '* filter=evil diff=evil' > .gitattributes; git config filter.evil.clean 'echo filter >> {m}/filter; cat'; git config diff.evil.textconv 'echo textconv >> {m}/textconv; cat'; echo rc=$?"
            ),
        ),
        (
            "config.worktree",
            format!(
                "printf '[core]\\n\\tfsmonitor = \"echo worktree-config >> {m}/worktree-config; false\"\\n' > .git/config.worktree; echo rc=$?"
            ),
        ),
        (
            "submodule config",
            format!(
                "mkdir -p .git/modules/m && printf '[core]\\n\\tfsmonitor = \"echo module >> {m}/module; false\"\\n' > .git/modules/m/config; echo rc=$?"
            ),
        ),
        (
            "nested repository",
            format!(
                "mkdir -p nested && cd nested && git init -q && git config core.fsmonitor 'echo nested >> {m}/nested; false' && printf '{}' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout && echo hi > file.txt; echo rc=$?",
                hook("nested-hook")
            ),
        ),
        (
            "a .git file pointing at a repository of the agent's",
            format!(
                "git init -q --bare gitdir-of-mine && git -C gitdir-of-mine config core.fsmonitor 'echo gitfile >> {m}/gitfile; false' && git -C gitdir-of-mine config core.bare false && mkdir -p linked && printf 'gitdir: ../gitdir-of-mine\\n' > linked/.git && echo x > linked/x.txt; echo rc=$?"
            ),
        ),
        (
            "a directory git opens as a repository",
            format!(
                "git init -q --bare disguised && git -C disguised config core.bare false && git -C disguised config core.worktree .. && git -C disguised config core.fsmonitor 'echo disguised >> {m}/disguised; false'; echo rc=$?"
            ),
        ),
        ("direnv", format!("echo 'echo envrc >> {m}/envrc' > .envrc; echo rc=$?")),
        (
            "the work itself",
            "echo 'hello from the agent' >> README.md && echo new > sub/new.txt; echo rc=$?".to_owned(),
        ),
        (
            ".git replaced",
            format!(
                "mv .git .git-was 2>&1; rm -rf .git 2>&1; mkdir -p .git 2>&1; git init -q . 2>&1; git config core.fsmonitor 'echo replaced >> {m}/replaced; false' 2>&1; echo rc=$?"
            ),
        ),
        ("a symlinked .git", "rm -rf .git 2>/dev/null; ln -s /tmp .git; echo rc=$?".to_owned()),
    ]
}

/// The last `rc=N` a plant printed.
fn rc(output: &str) -> i32 {
    let at = output.rfind("rc=").unwrap_or_else(|| panic!("no rc in {output}"));
    output[at + 3..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn what_a_session_plants_in_its_workspace_never_runs_on_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let markers = dir.join("markers");
    std::fs::create_dir_all(&markers).unwrap();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    // The user's project: a git repository with a commit and a subdirectory.
    let ws = dir.join("project");
    std::fs::create_dir_all(ws.join("sub")).unwrap();
    std::fs::write(ws.join("README.md"), "# project\n").unwrap();
    std::fs::write(ws.join("sub/a.txt"), "a\n").unwrap();
    git_ok(&ws, &home, &["init", "-q"]);
    git_ok(&ws, &home, &["add", "."]);
    git_ok(&ws, &home, &["commit", "-qm", "start"]);
    let config_before = std::fs::read(ws.join(".git/config")).unwrap();
    let hooks_before: Vec<_> =
        std::fs::read_dir(ws.join(".git/hooks")).unwrap().flatten().map(|e| e.file_name()).collect();

    let m = markers.display().to_string();
    let plants = plants(&m);
    let calls: Vec<Value> = plants.iter().map(|(_, c)| json!({"name": "shell", "args": {"command": c}})).collect();
    let script =
        json!({"scripts": [{"name": "plant", "turns": [{"text": "planting", "tool_calls": calls}, {"text": "done"}]}]});
    local::repo(dir, &[("agent.yaml", AGENT)], &yaml_json(&script));
    let up = up(dir);
    let (id, events) = run_session(&up, "planter", "plant everything", &ws);
    let results: Vec<&str> =
        events.iter().filter(|e| e["type"] == "tool_result").filter_map(|e| e["output"].as_str()).collect();
    assert_eq!(results.len(), plants.len(), "every plant ran: {events:#?}");
    // Inside, git's config and hooks are read-only: those plants failed there already.
    for (i, what) in
        [(0, "config fsmonitor"), (1, "config appended"), (2, "config hooksPath"), (5, "hook post-checkout")]
    {
        assert_eq!(plants[i].0, what);
        assert_ne!(rc(results[i]), 0, "{what} must fail inside: {}", results[i]);
    }
    assert_eq!(rc(results[11]), 0, "a nested repository can be made: {}", results[11]);

    // The user's directory was not written by the session.
    assert_eq!(std::fs::read_to_string(ws.join("README.md")).unwrap(), "# project\n");
    assert!(!ws.join("nested").exists() && !ws.join(".envrc").exists());

    // The work comes back through diff and apply, and nothing of git with it.
    let (ok, diff) = paddock(&up, &["session", "diff", &id]);
    assert!(ok && diff.contains("+hello from the agent") && diff.contains("+++ b/sub/new.txt"), "{diff}");
    assert!(!diff.contains("fsmonitor ="), "no git metadata in the diff: {diff}");
    let (ok, applied) = paddock(&up, &["session", "apply", &id]);
    assert!(ok, "{applied}");
    assert!(applied.contains("M README.md") && applied.contains("A sub/new.txt"), "{applied}");
    assert!(applied.contains("disguised") && applied.contains("which git would take for a repository"), "{applied}");
    assert_eq!(std::fs::read_to_string(ws.join("README.md")).unwrap(), "# project\nhello from the agent\n");
    assert_eq!(std::fs::read(ws.join(".git/config")).unwrap(), config_before, "the user's git config is untouched");
    let hooks_after: Vec<_> =
        std::fs::read_dir(ws.join(".git/hooks")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(hooks_before, hooks_after);
    for p in ["nested/.git", "linked/.git", "gitdir-of-mine", "disguised"] {
        assert!(std::fs::symlink_metadata(ws.join(p)).is_err(), "{p} must not come back");
    }
    assert!(ws.join("nested/file.txt").is_file() && ws.join("linked/x.txt").is_file());

    // The user's git commands, in the workspace and in every subdirectory the agent made.
    for args in [
        &["status"][..],
        &["diff"][..],
        &["log", "-p"][..],
        &["st"][..],
        &["add", "-A"][..],
        &["commit", "-qm", "the agent's work"][..],
        &["checkout", "-q", "-b", "other"][..],
        &["checkout", "-q", "main"][..],
        &["diff", "HEAD~1"][..],
    ] {
        let ident = ["-c", "user.name=u", "-c", "user.email=u@example.com"];
        let all: Vec<&str> = ident.iter().copied().chain(args.iter().copied()).collect();
        git(&ws, &home, &all);
    }
    for sub in ["sub", "nested", "linked", ".githooks", "disguised", "gitdir-of-mine"] {
        let d = ws.join(sub);
        if d.is_dir() {
            git(&d, &home, &["status"]);
            git(&d, &home, &["diff"]);
        }
    }
    let ran: Vec<_> = std::fs::read_dir(&markers).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(ran.is_empty(), "git on the host ran what the agent planted: {ran:?}");

    // Control: the same commands in the agent's copy run its plants (so the test can see one run).
    let copy = up.data.join("sessions").join(&id).join("workspace");
    for sub in ["nested", "disguised"] {
        git(&copy.join(sub), &home, &["status"]);
    }
    let ran: Vec<String> =
        std::fs::read_dir(&markers).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(ran.contains(&"nested".to_owned()) && ran.contains(&"disguised".to_owned()), "{ran:?}");
}
