//! The sandbox's seccomp filters.
//!
//! [`docker_default_program`]: every namespace step gets the system calls Docker's default
//! profile withholds from a container without extra capabilities refused with `EPERM` (module
//! loading, clock changes, `mount` and the new mount API, keyrings, `kexec`/`reboot`, swap,
//! `bpf`, `perf_event_open`, `userfaultfd`, `open_by_handle_at`, namespace creation through
//! `unshare`/`setns`/`clone` flags, …). `clone3` answers `ENOSYS`, as under Docker, so libc
//! falls back to `clone`, whose flags can be checked.
//!
//! The "fake root" seccomp filter for single-uid user namespaces (charliecloud's approach):
//! ownership and identity changes (`chown` family, `set*id`, `setgroups`, `capset`) and the
//! creation of device nodes report success without doing anything, so `apt-get`/`dpkg` and
//! `useradd` do not fail on ids the namespace cannot map. Regular files, FIFOs and sockets made
//! with `mknod` are created for real.
//!
//! The filter is built for the host's system-call ABI: with binfmt or proot, guest binaries run
//! inside a host-architecture qemu whose system calls are what the kernel sees. System calls of
//! another ABI (32-bit x86 on x86_64) are allowed unchanged instead of killing the process.

use std::collections::BTreeMap;

use super::plan::SetupError;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

const S_IFMT: u64 = 0o170000;
const S_IFCHR: u64 = 0o020000;
const S_IFBLK: u64 = 0o060000;

/// The system calls that are faked unconditionally.
fn faked() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_fchown,
        libc::SYS_fchownat,
        libc::SYS_setuid,
        libc::SYS_setgid,
        libc::SYS_setreuid,
        libc::SYS_setregid,
        libc::SYS_setresuid,
        libc::SYS_setresgid,
        libc::SYS_setgroups,
        libc::SYS_setfsuid,
        libc::SYS_setfsgid,
        libc::SYS_capset,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([libc::SYS_chown, libc::SYS_lchown]);
    v
}

/// System calls refused outright (Docker's default profile allows none of them without a
/// capability the step does not have).
fn refused() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_acct,
        libc::SYS_add_key,
        libc::SYS_bpf,
        libc::SYS_clock_adjtime,
        libc::SYS_clock_settime,
        libc::SYS_delete_module,
        libc::SYS_finit_module,
        libc::SYS_init_module,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fsopen,
        libc::SYS_fspick,
        libc::SYS_get_mempolicy,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_io_uring_setup,
        libc::SYS_kcmp,
        libc::SYS_kexec_file_load,
        libc::SYS_kexec_load,
        libc::SYS_keyctl,
        libc::SYS_lookup_dcookie,
        libc::SYS_mbind,
        libc::SYS_mount,
        libc::SYS_mount_setattr,
        libc::SYS_move_mount,
        libc::SYS_move_pages,
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        libc::SYS_open_tree,
        libc::SYS_perf_event_open,
        libc::SYS_pidfd_getfd,
        libc::SYS_pivot_root,
        libc::SYS_quotactl,
        libc::SYS_reboot,
        libc::SYS_request_key,
        libc::SYS_set_mempolicy,
        libc::SYS_setns,
        libc::SYS_settimeofday,
        libc::SYS_swapoff,
        libc::SYS_swapon,
        libc::SYS_syslog,
        libc::SYS_umount2,
        libc::SYS_unshare,
        libc::SYS_userfaultfd,
        libc::SYS_vhangup,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        libc::SYS_ioperm,
        libc::SYS_iopl,
        libc::SYS_nfsservctl,
        libc::SYS__sysctl,
        libc::SYS_sysfs,
        libc::SYS_uselib,
        libc::SYS_ustat,
    ]);
    v
}

/// `clone` flags that create namespaces (Docker refuses them without `CAP_SYS_ADMIN`).
const NAMESPACE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// Docker's default posture as deny lists (see the module documentation): two programs, the
/// deny list and `clone3` → `ENOSYS`, installed one after the other.
pub(super) fn docker_default_programs() -> Result<Vec<BpfProgram>, SetupError> {
    let err = |e: &dyn std::fmt::Debug| SetupError(format!("seccomp: {e:?}"));
    let arch: TargetArch = std::env::consts::ARCH.try_into().map_err(|e| err(&e))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in refused() {
        rules.insert(nr, vec![]);
    }
    // clone(flags, …): the flags are the first argument on x86_64 and aarch64 alike
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|f| {
            let c = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(*f), *f)
                .map_err(|e| err(&e))?;
            SeccompRule::new(vec![c]).map_err(|e| err(&e))
        })
        .collect::<Result<Vec<_>, SetupError>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .map_err(|e| err(&e))?;
    // clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc use clone
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| err(&e))?;
    let mut out = Vec::new();
    for f in [deny, clone3] {
        let mut prog: BpfProgram = f.try_into().map_err(|e| err(&e))?;
        allow_foreign_abi(&mut prog)?;
        out.push(prog);
    }
    Ok(out)
}

/// seccompiler kills the process on a foreign ABI (instruction 2); allow it instead.
fn allow_foreign_abi(prog: &mut BpfProgram) -> Result<(), SetupError> {
    const RET_K: u16 = 0x06;
    if prog.len() > 2 && prog[2].code == RET_K && prog[2].k == libc::SECCOMP_RET_KILL_PROCESS {
        prog[2].k = libc::SECCOMP_RET_ALLOW;
        Ok(())
    } else {
        Err(SetupError("seccomp: unexpected filter layout".into()))
    }
}

/// Builds the BPF program for this host.
pub(super) fn fake_root_program() -> Result<BpfProgram, SetupError> {
    let err = |e: &dyn std::fmt::Debug| SetupError(format!("seccomp: {e:?}"));
    let arch: TargetArch = std::env::consts::ARCH.try_into().map_err(|e| err(&e))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in faked() {
        rules.insert(nr, vec![]);
    }
    let device_rules = |arg: u8| -> Result<Vec<SeccompRule>, SetupError> {
        [S_IFCHR, S_IFBLK]
            .iter()
            .map(|t| {
                let c = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(S_IFMT), *t)
                    .map_err(|e| err(&e))?;
                SeccompRule::new(vec![c]).map_err(|e| err(&e))
            })
            .collect()
    };
    rules.insert(libc::SYS_mknodat, device_rules(2)?);
    #[cfg(target_arch = "x86_64")]
    rules.insert(libc::SYS_mknod, device_rules(1)?);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(0), arch).map_err(|e| err(&e))?;
    let mut prog: BpfProgram = filter.try_into().map_err(|e| err(&e))?;
    allow_foreign_abi(&mut prog)?;
    Ok(prog)
}

/// Installs the filter on the calling thread (inherited by children; sets no_new_privs).
pub(super) fn install_fake_root() -> Result<(), SetupError> {
    let prog = fake_root_program()?;
    seccompiler::apply_filter(&prog).map_err(|e| SetupError(format!("cannot install the seccomp filter: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn builds_for_this_host() {
        let p = super::fake_root_program().unwrap();
        assert!(p.len() > 20);
        assert_eq!(p[2].k, libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn docker_default_denies_with_eperm_and_clone3_with_enosys() {
        let progs = super::docker_default_programs().unwrap();
        assert_eq!(progs.len(), 2);
        let ret = |p: &seccompiler::BpfProgram, k: u32| p.iter().any(|i| i.code == 0x06 && i.k == k);
        assert!(ret(&progs[0], libc::SECCOMP_RET_ERRNO | libc::EPERM as u32));
        assert!(ret(&progs[1], libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
        for p in &progs {
            assert_eq!(p[2].k, libc::SECCOMP_RET_ALLOW, "a foreign ABI is allowed, not killed");
        }
    }

    /// A program compares the system-call number against `nr` somewhere (`BPF_JMP|BPF_JEQ|BPF_K`).
    fn tests_syscall(p: &seccompiler::BpfProgram, nr: i64) -> bool {
        p.iter().any(|i| i.code == 0x15 && i.k == nr as u32)
    }

    #[test]
    fn fake_root_fakes_ownership_and_id_changes_only() {
        let p = super::fake_root_program().unwrap();
        for nr in super::faked() {
            assert!(tests_syscall(&p, nr), "system call {nr} is not in the fake-root filter");
        }
        assert!(tests_syscall(&p, libc::SYS_mknodat), "device mknod is faked");
        assert!(!tests_syscall(&p, libc::SYS_openat), "ordinary calls pass untouched");
        // faked calls report success: SECCOMP_RET_ERRNO with errno 0, everything else is allowed
        let rets: Vec<u32> = p.iter().filter(|i| i.code == 0x06).map(|i| i.k).collect();
        assert!(rets.contains(&libc::SECCOMP_RET_ERRNO));
        assert!(rets.iter().all(|k| [libc::SECCOMP_RET_ERRNO, libc::SECCOMP_RET_ALLOW].contains(k)), "{rets:x?}");
    }

    #[test]
    fn docker_default_lists_every_refused_call_and_clone() {
        let progs = super::docker_default_programs().unwrap();
        for nr in super::refused().into_iter().chain([libc::SYS_clone]) {
            assert!(tests_syscall(&progs[0], nr), "system call {nr} is not in the deny list");
        }
        assert!(tests_syscall(&progs[1], libc::SYS_clone3));
        assert!(!tests_syscall(&progs[0], libc::SYS_clone3) && !tests_syscall(&progs[0], libc::SYS_execve));
        // clone is refused only with a namespace flag: its rule compares the masked first argument
        for f in super::NAMESPACE_FLAGS {
            assert!(progs[0].iter().any(|i| i.k == f as u32), "no comparison with clone flag {f:#x}");
        }
    }
}
