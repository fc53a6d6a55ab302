#!/usr/bin/env python3
"""Checks every pod (Pods, and the pod templates of Deployments, StatefulSets, DaemonSets, Jobs) in the given
YAML files against the Kubernetes "restricted" Pod Security Standard (policy version v1.33), rule by rule, plus
Paddock's own additions for runner pods (read-only root filesystem, resources set, no service-account token).

Usage: pss-restricted.py FILE...     Exit 1 on any violation.
"""
import pathlib
import sys

import yaml

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
BASELINE_CAPS = set()  # restricted: only NET_BIND_SERVICE may be added
UNSAFE_SYSCTLS_OK = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def pods(doc):
    kind = doc.get("kind")
    name = f"{kind}/{(doc.get('metadata') or {}).get('name')}"
    if kind == "Pod":
        yield name, doc.get("metadata") or {}, doc.get("spec") or {}
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        t = doc["spec"]["template"]
        yield name, t.get("metadata") or {}, t.get("spec") or {}
    elif kind == "CronJob":
        t = doc["spec"]["jobTemplate"]["spec"]["template"]
        yield name, t.get("metadata") or {}, t.get("spec") or {}


def violations(meta, spec, runner):
    bad = []
    psc = spec.get("securityContext") or {}
    # --- baseline ---
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(f):
            bad.append(f"{f} must not be true")
    if spec.get("hostUsers") is False and False:
        pass
    for s in psc.get("sysctls") or []:
        if s.get("name") not in UNSAFE_SYSCTLS_OK:
            bad.append(f"sysctl {s.get('name')} is not allowed")
    if (psc.get("seLinuxOptions") or {}).get("type") not in (None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"):
        bad.append("seLinuxOptions.type not allowed")
    for k, v in (meta.get("annotations") or {}).items():
        if k.startswith("container.apparmor.security.beta.kubernetes.io/") and v not in ("runtime/default",) and not v.startswith("localhost/"):
            bad.append(f"AppArmor {k}={v}")
    # --- restricted: volume types ---
    for v in spec.get("volumes") or []:
        types = set(v) - {"name"}
        if not types <= ALLOWED_VOLUMES:
            bad.append(f"volume {v.get('name')}: type {sorted(types - ALLOWED_VOLUMES)} not allowed")
    pod_non_root = psc.get("runAsNonRoot") is True
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if psc.get("runAsUser") == 0:
        bad.append("pod runAsUser must not be 0")
    containers = [("container", c) for c in spec.get("containers") or []]
    containers += [("initContainer", c) for c in spec.get("initContainers") or []]
    containers += [("ephemeralContainer", c) for c in spec.get("ephemeralContainers") or []]
    if not spec.get("containers"):
        bad.append("no containers")
    for what, c in containers:
        at = f"{what} {c.get('name')}"
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            bad.append(f"{at}: privileged")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                bad.append(f"{at}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"{at}: procMount")
        if (sc.get("seLinuxOptions") or {}).get("type") not in (None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"):
            bad.append(f"{at}: seLinuxOptions.type")
        if (sc.get("appArmorProfile") or {}).get("type", "RuntimeDefault") not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{at}: appArmorProfile")
        # --- restricted ---
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{at}: allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot")
        if not (non_root is True or (non_root is None and pod_non_root)):
            bad.append(f"{at}: runAsNonRoot must be true (container or pod)")
        if sc.get("runAsUser") == 0:
            bad.append(f"{at}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{at}: seccompProfile.type must be RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{at}: capabilities.drop must include ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"{at}: only NET_BIND_SERVICE may be added")
        # --- Paddock's own rules (DESIGN §6), for every pod we ship ---
        if sc.get("readOnlyRootFilesystem") is not True:
            bad.append(f"{at}: readOnlyRootFilesystem must be true")
        res = c.get("resources") or {}
        for key in ("cpu", "memory"):
            if key not in (res.get("limits") or {}) or key not in (res.get("requests") or {}):
                bad.append(f"{at}: {key} requests and limits must be set")
    if runner and spec.get("automountServiceAccountToken") is not False:
        bad.append("runner pods must set automountServiceAccountToken: false")
    return bad


def main():
    failures = checked = 0
    for name in sys.argv[1:]:
        for doc in yaml.safe_load_all(pathlib.Path(name).read_text()):
            if not doc:
                continue
            for what, meta, spec in pods(doc):
                checked += 1
                runner = (meta.get("labels") or {}).get("app.kubernetes.io/name") == "paddock-runner"
                for v in violations(meta, spec, runner):
                    failures += 1
                    print(f"{name}: {what}: {v}", file=sys.stderr)
    print(f"{checked} pods checked against the restricted Pod Security Standard, {failures} violations")
    return 1 if failures or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
