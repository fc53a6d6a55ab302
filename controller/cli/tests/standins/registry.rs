//! An npm registry over plain HTTP at `registry.test`: one package, `paddock-probe@1.0.0`, whose
//! `index.js` exports `probe ok`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::json;
use sha2::Digest;

use super::http::{Request, Response, Server};

pub const HOST: &str = "registry.test";
pub const PACKAGE: &str = "paddock-probe";

pub struct Registry {
    pub server: Server,
}

impl Registry {
    pub fn start(dir: &Path) -> Registry {
        let src = dir.join("registry/package");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            src.join("package.json"),
            json!({"name": PACKAGE, "version": "1.0.0", "main": "index.js"}).to_string(),
        )
        .unwrap();
        std::fs::write(src.join("index.js"), "module.exports = 'probe ok';\n").unwrap();
        let tgz = dir.join("registry/probe.tgz");
        let ok = Command::new("tar")
            .args(["czf", tgz.to_str().unwrap(), "-C", dir.join("registry").to_str().unwrap(), "package"])
            .status()
            .unwrap();
        assert!(ok.success());
        let tarball = std::fs::read(&tgz).unwrap();
        let integrity =
            format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&tarball)));
        let tarball_path = format!("/{PACKAGE}/-/{PACKAGE}-1.0.0.tgz");
        let handler = Arc::new(move |req: &Request| {
            if req.method != "GET" {
                return Response::json(405, &json!({"error": "read only"}));
            }
            let port =
                req.header("host").and_then(|h| h.rsplit_once(':')).map(|(_, p)| p.to_owned()).unwrap_or_default();
            if req.path == format!("/{PACKAGE}") {
                let url = format!("http://{HOST}:{port}{tarball_path}");
                Response::json(
                    200,
                    &json!({
                        "name": PACKAGE,
                        "dist-tags": {"latest": "1.0.0"},
                        "versions": {"1.0.0": {"name": PACKAGE, "version": "1.0.0", "main": "index.js",
                                               "dist": {"tarball": url, "integrity": integrity}}}
                    }),
                )
            } else if req.path == tarball_path {
                Response::new(200, "application/octet-stream", tarball.clone())
            } else {
                Response::json(404, &json!({"error": "Not found"}))
            }
        });
        Registry { server: Server::start(None, handler) }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }
}
