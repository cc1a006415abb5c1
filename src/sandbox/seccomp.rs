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

/// Builds the BPF program for this host.
pub fn fake_root_program() -> Result<BpfProgram, String> {
    let arch: TargetArch = std::env::consts::ARCH.try_into().map_err(|e| format!("seccomp: {e:?}"))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in faked() {
        rules.insert(nr, vec![]);
    }
    let device_rules = |arg: u8| -> Result<Vec<SeccompRule>, String> {
        [S_IFCHR, S_IFBLK]
            .iter()
            .map(|t| {
                let c = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(S_IFMT), *t)
                    .map_err(|e| format!("seccomp: {e:?}"))?;
                SeccompRule::new(vec![c]).map_err(|e| format!("seccomp: {e:?}"))
            })
            .collect()
    };
    rules.insert(libc::SYS_mknodat, device_rules(2)?);
    #[cfg(target_arch = "x86_64")]
    rules.insert(libc::SYS_mknod, device_rules(1)?);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(0), arch)
        .map_err(|e| format!("seccomp: {e:?}"))?;
    let mut prog: BpfProgram = filter.try_into().map_err(|e| format!("seccomp: {e:?}"))?;
    // seccompiler kills the process on a foreign ABI (instruction 2); allow it instead
    const RET_K: u16 = 0x06;
    if prog.len() > 2 && prog[2].code == RET_K && prog[2].k == libc::SECCOMP_RET_KILL_PROCESS {
        prog[2].k = libc::SECCOMP_RET_ALLOW;
    } else {
        return Err("seccomp: unexpected filter layout".into());
    }
    Ok(prog)
}

/// Installs the filter on the calling thread (inherited by children; sets no_new_privs).
pub fn install_fake_root() -> Result<(), String> {
    let prog = fake_root_program()?;
    seccompiler::apply_filter(&prog).map_err(|e| format!("cannot install the seccomp filter: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn builds_for_this_host() {
        let p = super::fake_root_program().unwrap();
        assert!(p.len() > 20);
        assert_eq!(p[2].k, libc::SECCOMP_RET_ALLOW);
    }
}
