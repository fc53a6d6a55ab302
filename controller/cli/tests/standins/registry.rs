//! Package registries: npm over plain HTTP at `registry.test` (one package, `paddock-probe@1.0.0`, whose
//! `index.js` exports `probe ok`), and a PyPI simple index over HTTPS with the test CA at `pypi.test` (one
//! wheel, `paddock_probe`, whose `VALUE` is `probe ok`). The PyPI one is reached through an end-to-end
//! tunnel: the client sees the registry's own certificate, not the gateway's.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::json;
use sha2::Digest;

use super::http::{Request, Response, Server};
use super::tls::TestCa;

pub const HOST: &str = "registry.test";
pub const PYPI_HOST: &str = "pypi.test";
pub const PACKAGE: &str = "paddock-probe";
const WHEEL: &str = "paddock_probe-1.0.0-py3-none-any.whl";

pub struct Registry {
    pub server: Server,
    pub pypi: Server,
}

impl Registry {
    pub fn start(dir: &Path, ca: &TestCa) -> Registry {
        let pypi = pypi(dir, ca);
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
        Registry { server: Server::start(None, handler), pypi }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    pub fn pypi_port(&self) -> u16 {
        self.pypi.port
    }
}

/// A PyPI simple index (PEP 503) of one wheel, built with Python's `zipfile`.
fn pypi(dir: &Path, ca: &TestCa) -> Server {
    let wheel = dir.join("registry").join(WHEEL);
    std::fs::create_dir_all(wheel.parent().unwrap()).unwrap();
    let build = r#"
import sys, zipfile
info = "paddock_probe-1.0.0.dist-info"
files = {
    "paddock_probe/__init__.py": "VALUE = 'probe ok'\n",
    info + "/METADATA": "Metadata-Version: 2.1\nName: paddock-probe\nVersion: 1.0.0\n",
    info + "/WHEEL": "Wheel-Version: 1.0\nGenerator: paddock-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
    z.writestr(info + "/RECORD", "".join(f"{n},,\n" for n in files) + info + "/RECORD,,\n")
"#;
    let ok = Command::new("python3").args(["-c", build]).arg(&wheel).status().unwrap();
    assert!(ok.success(), "cannot build the test wheel");
    let bytes = std::fs::read(&wheel).unwrap();
    let sha256 = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let handler = Arc::new(move |req: &Request| match req.path.as_str() {
        "/simple/paddock-probe/" => Response::new(
            200,
            "text/html",
            format!("<!DOCTYPE html><html><body><a href=\"/files/{WHEEL}#sha256={sha256}\">{WHEEL}</a></body></html>"),
        ),
        p if p == format!("/files/{WHEEL}") => Response::new(200, "application/octet-stream", bytes.clone()),
        _ => Response::new(404, "text/plain", "not found\n"),
    });
    Server::start(Some(ca.server_config(&[PYPI_HOST])), handler)
}
