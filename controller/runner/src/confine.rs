//! The second layer inside a local sandbox: the runner confines itself, before it starts any thread or the
//! harness, with Landlock (writes only to the workspace and scratch directories) and a seccomp filter (no
//! ptrace, no mounts, no namespaces, no kernel modules or BPF, no io_uring). Every process it starts inherits
//! both. If the kernel cannot enforce them, the session fails: the sandbox never degrades silently.
//!
//! `memfd_create` stays allowed: Landlock here limits where the agent writes, not which files it may
//! execute (an agent runs what it builds, from the workspace or `/tmp`), so code run from a memfd can do
//! nothing that the same code written to `/tmp` could not; blocking it would only break the tools that use
//! it.

use std::path::PathBuf;

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    path_beneath_rules,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("Landlock is not available (kernel 5.13+ with Landlock enabled is required): {0}")]
    Landlock(String),
    #[error("Landlock is only partly enforced by this kernel ({0:?}); refusing to run with less isolation")]
    Partial(RulesetStatus),
    #[error("cannot install the seccomp filter: {0}")]
    Seccomp(String),
}

/// Syscalls a runner never needs; they fail with EPERM.
const DENIED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_userfaultfd,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_adjtimex,
    // io_uring runs system calls from kernel workers, out of a seccomp filter's sight, and has been a
    // steady source of kernel exploits; no harness needs it.
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// Confines the calling process: `writable` directories may be written, everything else is read-only.
/// Call it while the process has a single thread.
pub fn confine(writable: &[PathBuf]) -> Result<(), ConfineError> {
    let abi = ABI::V3;
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(writable, AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| ConfineError::Landlock(e.to_string()))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(ConfineError::Partial(status.ruleset));
    }
    use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};
    let arch =
        if cfg!(target_arch = "aarch64") { seccompiler::TargetArch::aarch64 } else { seccompiler::TargetArch::x86_64 };
    let err = |e: &dyn std::fmt::Display| ConfineError::Seccomp(e.to_string());
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|n| (*n, vec![])).collect();
    // clone(2) that would make a new namespace; plain clone (threads, fork) stays allowed.
    let mut clone_rules = Vec::new();
    for flag in NAMESPACE_FLAGS {
        let cond = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
            .map_err(|e| err(&e))?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(|e| err(&e))?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .map_err(|e| err(&e))?;
    // clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes libc fall back to clone.
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| err(&e))?;
    for filter in [deny, clone3] {
        let program: seccompiler::BpfProgram = filter.try_into().map_err(|e: seccompiler::BackendError| err(&e))?;
        seccompiler::apply_filter_all_threads(&program).map_err(|e| err(&e))?;
    }
    Ok(())
}

const NAMESPACE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];
