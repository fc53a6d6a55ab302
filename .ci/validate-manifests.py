#!/usr/bin/env python3
"""Validates every object in the given YAML files (multi-document) against its schema, offline.

Built-in kinds: the Kubernetes OpenAPI schemas of `kubernetes-validate` (strict: unknown fields are errors).
paddock.dev kinds: the openAPIV3Schema of the matching CRD in crds/.
monitoring.coreos.com ServiceMonitor: its required shape (its CRD is not vendored here).

Usage: validate-manifests.py [-k 1.33.0] FILE...     Exit 1 on any error.
"""
import argparse
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent


def crd_schemas():
    out = {}
    for f in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        kind = crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            out[(f"{crd['spec']['group']}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return out


def check_service_monitor(doc):
    spec = doc.get("spec") or {}
    errors = []
    if not isinstance(spec.get("selector"), dict):
        errors.append("spec.selector is required")
    eps = spec.get("endpoints")
    if not isinstance(eps, list) or not eps:
        errors.append("spec.endpoints must be a non-empty list")
    for i, ep in enumerate(eps or []):
        extra = set(ep) - {"port", "path", "interval", "scheme", "scrapeTimeout", "targetPort", "honorLabels", "tlsConfig"}
        if extra:
            errors.append(f"spec.endpoints[{i}]: unexpected {sorted(extra)}")
        tls = ep.get("tlsConfig")
        if tls is not None:
            # The SafeTLSConfig fields a scrape over TLS uses; a CA from a Secret or ConfigMap key.
            extra = set(tls) - {"ca", "serverName", "insecureSkipVerify", "cert", "keySecret"}
            if extra:
                errors.append(f"spec.endpoints[{i}].tlsConfig: unexpected {sorted(extra)}")
            ca = (tls.get("ca") or {}).get("secret") or (tls.get("ca") or {}).get("configMap")
            if "ca" in tls and not (isinstance(ca, dict) and ca.get("name") and ca.get("key")):
                errors.append(f"spec.endpoints[{i}].tlsConfig.ca: give secret or configMap with name and key")
    return errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", "--kubernetes-version", default="1.33.0")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    schemas = crd_schemas()
    failures = 0
    count = 0
    for name in args.files:
        for i, doc in enumerate(yaml.safe_load_all(pathlib.Path(name).read_text())):
            if not doc:
                continue
            count += 1
            where = f"{name}#{i} {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
            try:
                if (api, kind) in schemas:
                    jsonschema.validate(doc, schemas[(api, kind)])
                elif api.startswith("monitoring.coreos.com/"):
                    errs = check_service_monitor(doc)
                    if errs:
                        raise ValueError("; ".join(errs))
                else:
                    kubernetes_validate.validate(doc, args.kubernetes_version, strict=True)
            except Exception as e:  # noqa: BLE001 - report every kind of failure with its object
                failures += 1
                msg = getattr(e, "message", None) or str(e)
                print(f"INVALID {where}: {msg.splitlines()[0] if msg else e!r}", file=sys.stderr)
    print(f"{count} objects, {failures} invalid")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
