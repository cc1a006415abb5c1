//! Running one step: [`Runner::run`] checks the spec, writes the step's auxiliary files and
//! [`Plan`], starts the helper (`spxpack __sandbox-exec`) with no environment of spxpack's,
//! streams its output, and reads back how it went from the status file.

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::emulation::{self, Emulation};
use super::plan::{GUEST_AUX, Plan, PlanKind, StatusReport, UserMap};
use super::rootfs::{self, Rootfs};
use super::{Network, Outcome, RunSpec, Runner, Sandbox, TAIL_LINES, fsutil};
use crate::error::{Error, Kind, Result};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// The variables that point at the CA bundle of `--ca-bundle`.
const CA_VARS: [&str; 6] =
    ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO"];

impl Runner {
    /// Runs one step in `rootfs`, streaming its combined output to `output`. `Err` means the
    /// sandbox failed; the step's own exit code is in the [`Outcome`] (see [`Outcome::check`]).
    pub fn run(&self, rootfs: &Rootfs, spec: &RunSpec, output: &mut dyn FnMut(&[u8])) -> Result<Outcome> {
        self.check_spec(rootfs, spec)?;
        let started = Instant::now();
        let aux = rootfs::WorkDir::new_in(rootfs.work_dir(), "step-")?;
        let guest = write_network_files(aux.path(), spec.network)?;
        let mut notes = Vec::new();
        let env = self.step_env(rootfs, spec, &guest, &mut notes)?;
        let user_emulated = spec.user != (0, 0) && self.sandbox == Sandbox::Userns;
        let plan = self.plan(rootfs, spec, aux.path(), env)?;
        let plan_path = aux.path().join("plan.json");
        write_file(&plan_path, &serde_json::to_vec(&plan).map_err(|e| Error::internal(e.to_string()))?)?;
        let mut tail = Tail::default();
        let status = self.spawn_and_stream(&plan_path, &mut |b| {
            output(b);
            tail.push(b);
        })?;
        let report = StatusReport::read(aux.path());
        notes.extend(report.notes.iter().cloned());
        for n in &notes {
            tracing::info!("sandbox: {n}");
        }
        let code = self.step_exit_code(&report, status)?;
        Ok(Outcome {
            code,
            tail: tail.lines(TAIL_LINES),
            elapsed: started.elapsed(),
            notes,
            user_emulated,
            command: truncate(&spec.display(), 120),
        })
    }

    /// Refuses a spec the sandbox cannot run as asked.
    fn check_spec(&self, rootfs: &Rootfs, spec: &RunSpec) -> Result<()> {
        if rootfs.ownership() != self.ownership() {
            return Err(Error::internal(format!(
                "the rootfs was extracted for {:?} ownership but the {} sandbox needs {:?}",
                rootfs.ownership(),
                self.sandbox.name(),
                self.ownership()
            )));
        }
        if spec.argv.is_empty() || spec.argv[0].is_empty() {
            return Err(Error::input("RUN has an empty command"));
        }
        if spec.argv[0].starts_with('-') {
            return Err(Error::input(format!("RUN command {:?} starts with '-'", spec.argv[0])));
        }
        if !spec.workdir.starts_with('/') {
            return Err(Error::input(format!("working directory {:?} is not absolute", spec.workdir)));
        }
        if let Some(m) = spec.mounts.iter().find(|m| !m.target.starts_with('/') || m.target.contains('\0')) {
            return Err(Error::input(format!("mount target {:?} is not an absolute path", m.target)));
        }
        if spec.network == Network::None && self.sandbox == Sandbox::Proot {
            return Err(Error::unsupported(
                "--network none needs the root or userns sandbox; proot shares the host network",
            )
            .with_hint("run with --isolation root or userns, or use the host network"));
        }
        Ok(())
    }

    /// The step's environment: the spec's, with Docker's `PATH`/`HOME` defaults, the CA bundle
    /// variables and spxpack's apt settings (written to `guest/`).
    fn step_env(
        &self,
        rootfs: &Rootfs,
        spec: &RunSpec,
        guest: &Path,
        notes: &mut Vec<String>,
    ) -> Result<Vec<(String, String)>> {
        let mut env: Vec<(String, String)> = spec.env.clone();
        if !has(&env, "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        if !has(&env, "HOME") {
            env.push(("HOME".into(), if spec.user.0 == 0 { "/root".into() } else { "/".into() }));
        }
        let mut apt = String::new();
        if let Some(ca) = &spec.ca_bundle {
            let p = write_ca_bundle(rootfs, ca, guest)?;
            for k in CA_VARS {
                if !has(&env, k) {
                    env.push((k.into(), p.clone()));
                }
            }
            apt.push_str(&format!("Acquire::https::CaInfo \"{p}\";\n"));
        }
        if self.sandbox == Sandbox::Userns {
            apt.push_str("APT::Sandbox::User \"root\";\n");
        }
        if !apt.is_empty() {
            if has(&env, "APT_CONFIG") {
                notes.push("APT_CONFIG is set by the build; not adding spxpack's apt settings".into());
            } else {
                write_file(&guest.join("apt.conf"), apt.as_bytes())?;
                env.push(("APT_CONFIG".into(), format!("{GUEST_AUX}/apt.conf")));
            }
        }
        Ok(env)
    }

    /// What the helper is to do.
    fn plan(&self, rootfs: &Rootfs, spec: &RunSpec, aux: &Path, env: Vec<(String, String)>) -> Result<Plan> {
        // a single-uid user namespace cannot switch users: the step runs as root (emulated)
        let user = if spec.user == (0, 0) || self.sandbox == Sandbox::Userns { None } else { Some(spec.user) };
        Ok(Plan {
            kind: self.plan_kind()?,
            rootfs: rootfs.path().to_path_buf(),
            aux: aux.to_path_buf(),
            argv: spec.argv.clone(),
            env,
            workdir: spec.workdir.clone(),
            user,
            network_none: spec.network == Network::None,
            mounts: spec.mounts.clone(),
        })
    }

    fn plan_kind(&self) -> Result<PlanKind> {
        if self.sandbox == Sandbox::Proot {
            return Ok(PlanKind::Proot {
                proot: self.proot.clone().ok_or_else(|| Error::internal("proot runner without proot"))?,
                qemu: if self.emulation == Emulation::ProotQemu { self.qemu.clone() } else { None },
            });
        }
        let binfmt = if self.emulation == Emulation::PrivateBinfmt {
            let arch = emulation::Arch::of(&self.platform)
                .ok_or_else(|| Error::internal("private binfmt without a known architecture"))?;
            Some((self.qemu.clone().ok_or_else(|| Error::internal("private binfmt without qemu"))?, arch.e_machine))
        } else {
            None
        };
        let userns = match self.sandbox {
            Sandbox::Userns => Some(UserMap::Single {
                uid: rustix::process::geteuid().as_raw(),
                gid: rustix::process::getegid().as_raw(),
            }),
            _ if binfmt.is_some() => Some(UserMap::Identity),
            _ => None,
        };
        Ok(PlanKind::Namespaces { userns, binfmt, fake_root: self.sandbox == Sandbox::Userns })
    }

    /// Starts the helper for `plan_path` and hands its combined output to `output` until it
    /// ends; nothing of the step survives this.
    fn spawn_and_stream(&self, plan_path: &Path, output: &mut dyn FnMut(&[u8])) -> Result<ExitStatus> {
        let (mut reader, writer) = std::io::pipe().map_err(|e| Error::io("cannot create a pipe for", plan_path, e))?;
        let writer2 = writer.try_clone().map_err(|e| Error::io("cannot create a pipe for", plan_path, e))?;
        if self.sandbox == Sandbox::Proot {
            // proot shares the host's /proc: at least spxpack's own environment and descriptors
            // (credentials, the output pipe) are then closed to a step of the same user
            let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
        }
        // the helper gets no environment of spxpack's (credentials, tokens): all it needs is
        // in the plan, and the step's environment is the plan's `env` alone
        let mut child = Command::new(&self.helper)
            .arg("__sandbox-exec")
            .arg(plan_path)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer2)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                Error::io("cannot start the sandbox helper", &self.helper, e)
                    .with_hint("the helper is the spxpack executable itself (Options::helper)")
            })?;
        let pgid = child.id();
        let hook = crate::atomic::register_hook(move || kill_group(pgid));
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => output(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    kill_group(pgid);
                    crate::atomic::unregister_hook(hook);
                    return Err(Error::from_io("cannot read the output of", "the RUN step", e));
                }
            }
        }
        let status = child.wait();
        // nothing of the step may survive it (the PID namespace already ensures this)
        kill_group(pgid);
        crate::atomic::unregister_hook(hook);
        status.map_err(|e| Error::from_io("cannot wait for", "the RUN step", e))
    }

    /// The step's exit code, or the error when the sandbox failed before the step ran.
    fn step_exit_code(&self, report: &StatusReport, status: ExitStatus) -> Result<i32> {
        if let Some(err) = &report.error {
            return Err(Error::new(Kind::Unsupported, format!("the {} sandbox failed: {err}", self.describe()))
                .with_hint(
                    "run `spxpack` with --isolation to choose another sandbox, or -v to see what was detected",
                ));
        }
        match (report.started, report.exit) {
            (true, Some(c)) => Ok(c),
            _ => {
                use std::os::unix::process::ExitStatusExt;
                Err(Error::internal(format!(
                    "the sandbox helper ended without running the step ({})",
                    match status.code() {
                        Some(c) => format!("exit code {c}"),
                        None => format!("signal {}", status.signal().unwrap_or(0)),
                    }
                )))
            }
        }
    }
}

fn has(env: &[(String, String)], k: &str) -> bool {
    env.iter().any(|(n, _)| n == k)
}

/// Creates `AUX/guest` (mounted at [`GUEST_AUX`]) with the step's resolv.conf and hosts.
fn write_network_files(aux: &Path, network: Network) -> Result<PathBuf> {
    let guest = aux.join("guest");
    std::fs::create_dir(&guest).map_err(|e| Error::io("cannot write", &guest, e))?;
    set_mode(aux, 0o755)?;
    let (resolv, hosts) = match network {
        Network::Host => (
            std::fs::read("/etc/resolv.conf").unwrap_or_default(),
            std::fs::read("/etc/hosts").unwrap_or_else(|_| DEFAULT_HOSTS.as_bytes().to_vec()),
        ),
        Network::None => (Vec::new(), DEFAULT_HOSTS.as_bytes().to_vec()),
    };
    write_file(&guest.join("resolv.conf"), &resolv)?;
    write_file(&guest.join("hosts"), &hosts)?;
    Ok(guest)
}

/// The image's CA bundle plus the PEM file `ca`, written to `guest/`; returns its guest path.
fn write_ca_bundle(rootfs: &Rootfs, ca: &Path, guest: &Path) -> Result<String> {
    let extra = crate::input::read(ca, crate::input::MAX_TEXT).map_err(|e| match crate::input::refusal(&e) {
        Some(refused) => refused,
        None => Error::io("cannot read the CA bundle", ca, e).with_hint("pass a PEM file with --ca-bundle"),
    })?;
    if !extra.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(Error::input(format!("{} contains no PEM certificate", ca.display())));
    }
    let mut bundle = fsutil::read_in_root(rootfs.path(), "etc/ssl/certs/ca-certificates.crt", 64 << 20)
        .ok()
        .flatten()
        .unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(&extra);
    write_file(&guest.join("ca-certificates.crt"), &bundle)?;
    Ok(format!("{GUEST_AUX}/ca-certificates.crt"))
}

fn truncate(s: &str, n: usize) -> String {
    let one = s.replace('\n', " ");
    if one.chars().count() <= n { one } else { one.chars().take(n).collect::<String>() + "…" }
}

fn write_file(p: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(p, data).map_err(|e| Error::io("cannot write", p, e))?;
    set_mode(p, 0o644)
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io("cannot chmod", p, e))
}

/// Kills a process group and waits (up to 3 s) until none of its processes is running.
fn kill_group(pgid: u32) {
    let Some(pid) = rustix::process::Pid::from_raw(pgid as i32) else { return };
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && group_alive(pgid) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn group_alive(pgid: u32) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else { return false };
    rd.flatten().any(|e| {
        e.file_name().to_string_lossy().parse::<u32>().is_ok()
            && std::fs::read_to_string(e.path().join("stat")).ok().is_some_and(|s| {
                let f: Vec<&str> = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("").split_whitespace().collect();
                f.len() > 3 && f[0] != "Z" && f[0] != "X" && f[3].parse::<u32>().ok() == Some(pgid)
            })
    })
}

/// The last lines of a byte stream (bounded memory).
#[derive(Default)]
struct Tail {
    buf: VecDeque<u8>,
}

impl Tail {
    const MAX: usize = 16 << 10;
    fn push(&mut self, data: &[u8]) {
        self.buf.extend(data);
        while self.buf.len() > Self::MAX {
            self.buf.pop_front();
        }
    }
    fn lines(&self, n: usize) -> Vec<String> {
        let v: Vec<u8> = self.buf.iter().copied().collect();
        let s = String::from_utf8_lossy(&v);
        let all: Vec<&str> = s.lines().collect();
        all[all.len().saturating_sub(n)..].iter().map(|l| truncate(l, 400)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::default();
        for i in 0..100 {
            t.push(format!("line {i}\n").as_bytes());
        }
        t.push(b"partial");
        assert_eq!(t.lines(3), vec!["line 98", "line 99", "partial"]);
    }

    #[test]
    fn long_commands_are_cut_to_one_line() {
        assert_eq!(truncate("a\nb", 10), "a b");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}
