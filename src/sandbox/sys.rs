//! The only `unsafe` code in spxpack: two system calls the sandbox helper needs that no safe
//! wrapper offers. Each block says why it is sound. The crate denies `unsafe_code`; this module
//! is its one exception (`tests::only_this_module_allows_unsafe` keeps it that way).
//!
//! - [`close_inherited_fds`]: `close_range(3, ~0, 0)`. The helper is a freshly executed
//!   process; whatever descriptors spxpack's caller left open without `O_CLOEXEC` (a CI runner's
//!   pipe, a host file, a directory) were inherited through spxpack into it, and must not reach a
//!   RUN step (the runc CVE-2024-21626 class). std and rustix have no safe `close_range`.
//! - [`install_filter`]: `seccomp(SECCOMP_SET_MODE_FILTER)` *without* setting no_new_privs.
//!   seccompiler always sets no_new_privs, which would stop setuid programs (`su`, `sudo`,
//!   `ping`) a step run as a non-root `USER` needs; Docker does not set it either. The kernel
//!   allows this for a caller with `CAP_SYS_ADMIN` in its user namespace, which the sandbox
//!   init has.
#![allow(unsafe_code)]

use seccompiler::BpfProgram;

/// Closes every file descriptor from 3 up. Call only at the start of a freshly executed,
/// single-threaded process, before anything has opened a descriptor of its own.
pub(super) fn close_inherited_fds() -> std::io::Result<()> {
    // SAFETY: no Rust object of this process owns a descriptor >= 3 yet (the helper calls this
    // first thing after exec, before reading its plan), so no `File`/`OwnedFd` can later close
    // or use a number that was closed here. The call takes plain integers.
    let rc = unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    // kernels before 5.9: close what /proc/self/fd lists (read fully first: the listing's own
    // descriptor is among them and is closed last, by the iterator's drop)
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|fd| *fd >= 3)
        .collect();
    for fd in fds {
        // SAFETY: as above, nothing of ours owns these numbers; EBADF for the listing's own
        // (already closed) descriptor is harmless.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Installs a seccomp filter on the calling thread (inherited by its children) without setting
/// no_new_privs. Needs `CAP_SYS_ADMIN` in the current user namespace.
pub(super) fn install_filter(prog: &BpfProgram) -> std::io::Result<()> {
    let len = u16::try_from(prog.len()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // seccompiler's instruction type has the kernel's `struct sock_filter` layout (repr(C));
    // the kernel copies the program during the call and keeps no pointer to our memory.
    let fprog = libc::sock_fprog { len, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `fprog` points to `len` valid instructions for the duration of the call; the
    // kernel reads them with copy_from_user and does not retain the pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    /// `unsafe` stays in this one module: the crate-wide lint is `deny`, and only this file
    /// may lift it.
    #[test]
    fn only_this_module_allows_unsafe() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        for p in crate::testkit::source_files().into_iter().filter(|p| !p.ends_with("sandbox/sys.rs")) {
            let text = std::fs::read_to_string(&p).unwrap();
            if text.contains(concat!("allow(", "unsafe_code")) || text.contains(concat!("unsafe", " {")) {
                offenders.push(p.strip_prefix(&root).unwrap().display().to_string());
            }
        }
        assert!(offenders.is_empty(), "unsafe code outside src/sandbox/sys.rs: {offenders:?}");
    }
}
