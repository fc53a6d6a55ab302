//! GitHub on loopback, over HTTPS with a test CA. It answers to GitHub's own names (`github.com`,
//! `api.github.com`, at a port of its own), which the gateway's `egress.resolve` maps to 127.0.0.1, so the
//! `github` rule judges it with its defaults, as it would GitHub. `github.com` serves git's smart HTTP
//! through the real `git http-backend` (CGI) over bare repositories; `api.github.com` answers the REST calls
//! that move refs
//! (`PATCH` and `DELETE /repos/{owner}/{repo}/git/refs/{ref}`) by really moving them, so a call the broker
//! let through would show in the repository. Both want the brokered token; `mirror.test` (no credential)
//! answers `GET /` with `mirror`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::json;

use super::http::{Request, Response, Server};
use super::tls::TestCa;

pub const GIT_HOST: &str = "github.com";
pub const API_HOST: &str = "api.github.com";
pub const MIRROR_HOST: &str = "mirror.test";
/// The user name git sends with a GitHub token.
pub const GIT_USER: &str = "x-access-token";

pub struct GitHub {
    pub server: Server,
    /// Holds `owner/repo.git` bare repositories.
    pub root: PathBuf,
}

impl GitHub {
    /// Serves `acme/app` (one commit on `main`) under `dir`; both hosts accept only `token`.
    pub fn start(dir: &Path, ca: &TestCa, token: &str) -> GitHub {
        let root = dir.join("github");
        let bare = root.join("acme/app.git");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        git(&bare, &["config", "http.receivepack", "true"]);
        let seed = dir.join("seed");
        std::fs::create_dir_all(&seed).unwrap();
        git(&seed, &["init", "-q", "-b", "main"]);
        std::fs::write(seed.join("README.md"), "app\n").unwrap();
        git(&seed, &["add", "."]);
        git(&seed, &["commit", "-q", "-m", "first"]);
        git(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]);
        let basic =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{GIT_USER}:{token}")));
        let bearer = format!("Bearer {token}");
        let repos = root.clone();
        let handler = Arc::new(move |req: &Request| match req.host.as_str() {
            GIT_HOST if req.header("authorization") != Some(basic.as_str()) => unauthorized(),
            GIT_HOST => git_http_backend(&repos, req),
            API_HOST if req.header("authorization") != Some(bearer.as_str()) => unauthorized(),
            API_HOST => api(&repos, req),
            MIRROR_HOST => Response::new(200, "text/plain", "mirror\n"),
            _ => Response::new(404, "text/plain", "no such host\n"),
        });
        let tls = ca.server_config(&[GIT_HOST, API_HOST, MIRROR_HOST]);
        GitHub { server: Server::start(Some(tls), handler), root }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Where the sandbox clones `acme/app` from.
    pub fn clone_url(&self) -> String {
        format!("https://{GIT_HOST}:{}/acme/app.git", self.port())
    }

    /// The bare repository of `acme/app`.
    pub fn bare(&self) -> PathBuf {
        self.root.join("acme/app.git")
    }

    /// The commit `reference` names in `acme/app`, if it exists.
    pub fn rev(&self, reference: &str) -> Option<String> {
        let out = Command::new("git")
            .args(["rev-parse", "--verify", "-q", reference])
            .current_dir(self.bare())
            .output()
            .unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// Runs git in `dir`, with no configuration of the machine's.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn unauthorized() -> Response {
    let mut r = Response::new(401, "text/plain", "the brokered token is missing or wrong\n");
    r.headers.push(("www-authenticate".into(), "Basic realm=\"GitHub\"".into()));
    r
}

/// One request through `git http-backend` (CGI): the request as its environment and stdin, its headers and
/// body back.
pub fn git_http_backend(root: &Path, req: &Request) -> Response {
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", GIT_USER)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", &req.path)
        .env("QUERY_STRING", &req.query)
        .env("CONTENT_LENGTH", req.body.len().to_string());
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(v) = req.header(header) {
            cmd.env(var, v);
        }
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let body = req.body.clone();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let text = &out.stdout;
    let (head_len, sep) = match find(text, b"\r\n\r\n") {
        Some(i) => (i, 4),
        None => (find(text, b"\n\n").unwrap_or(text.len()), 2),
    };
    let mut resp =
        Response { status: 200, headers: Vec::new(), body: text.get(head_len + sep..).unwrap_or_default().to_vec() };
    for line in String::from_utf8_lossy(&text[..head_len]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
        if name == "status" {
            resp.status = value.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(500);
        } else {
            resp.headers.push((name, value));
        }
    }
    resp
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The REST calls that move refs, done for real on the bare repository.
fn api(root: &Path, req: &Request) -> Response {
    let parts: Vec<&str> = req.path.trim_start_matches('/').splitn(6, '/').collect();
    let ["repos", owner, repo, "git", "refs", rest] = parts.as_slice() else {
        return match parts.as_slice() {
            ["repos", owner, repo] => Response::json(200, &json!({"full_name": format!("{owner}/{repo}")})),
            _ => Response::json(404, &json!({"message": "Not Found"})),
        };
    };
    let bare = root.join(owner).join(format!("{repo}.git"));
    let reference = format!("refs/{rest}");
    match req.method.as_str() {
        "PATCH" => {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let Some(sha) = body["sha"].as_str() else {
                return Response::json(422, &json!({"message": "sha is required"}));
            };
            let force = body["force"].as_bool().unwrap_or(false);
            let fast_forward = Command::new("git")
                .args(["merge-base", "--is-ancestor", &reference, sha])
                .current_dir(&bare)
                .status()
                .is_ok_and(|s| s.success());
            if !force && !fast_forward {
                return Response::json(422, &json!({"message": "Update is not a fast forward"}));
            }
            let ok = Command::new("git").args(["update-ref", &reference, sha]).current_dir(&bare).status().unwrap();
            if !ok.success() {
                return Response::json(422, &json!({"message": "Object does not exist"}));
            }
            Response::json(200, &json!({"ref": reference, "object": {"sha": sha, "type": "commit"}}))
        }
        "DELETE" => {
            let ok = Command::new("git").args(["update-ref", "-d", &reference]).current_dir(&bare).status().unwrap();
            if ok.success() {
                Response::new(204, "text/plain", "")
            } else {
                Response::json(422, &json!({"message": "Reference does not exist"}))
            }
        }
        _ => Response::json(404, &json!({"message": "Not Found"})),
    }
}
