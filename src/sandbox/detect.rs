//! Finding a sandbox + emulation combination that works, by trying it: each candidate runs a
//! tiny static program for the target architecture (it exits with 42) through the same code
//! path as a real step, in a throw-away rootfs. Preconditions are checked first only to explain
//! failures well (Ubuntu's AppArmor lets `unshare` succeed and then denies the mount, so
//! nothing short of doing it is conclusive).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::emulation::{self, Arch, BinfmtEntry, Emulation};
use super::extract::Ownership;
use super::rootfs::{Rootfs, WorkDir};
use super::{Isolation, RunSpec, Runner, Sandbox};
use crate::error::{Error, Kind};
use crate::host_env::HostEnv;
use crate::platform::Platform;

/// Detection settings.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub isolation: Isolation,
    /// qemu-user for the target (default: `qemu-ARCH-static`, then `qemu-ARCH` on PATH).
    pub qemu: Option<PathBuf>,
    /// proot (default: `proot` on PATH).
    pub proot: Option<PathBuf>,
    /// The spxpack executable that implements `__sandbox-exec` (default: this executable).
    pub helper: Option<PathBuf>,
    /// Where probe directories go (default: the system temp dir).
    pub scratch: Option<PathBuf>,
    /// The environment: `PATH` to find qemu and proot, `GITHUB_ACTIONS` for the advice.
    pub env: HostEnv,
}

/// One combination that was tried.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub sandbox: Sandbox,
    pub emulation: Option<Emulation>,
    pub ok: bool,
    pub detail: String,
}

/// What detection found: every attempt, the machine facts that matter, and fixes.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub platform: String,
    pub attempts: Vec<Attempt>,
    pub facts: Vec<(String, String)>,
    pub fixes: Vec<String>,
}

impl Report {
    /// The error for "nothing works": one line, with the table and the fixes as the hint.
    pub fn to_error(&self) -> Error {
        Error::new(Kind::Unsupported, format!("cannot execute RUN steps for {} on this machine", self.platform))
            .with_hint(format!("{self}"))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tried:")?;
        for a in &self.attempts {
            let emu = a.emulation.map(|e| e.name()).unwrap_or("-");
            writeln!(f, "  {:<7} {:<17} {:<3}  {}", a.sandbox.name(), emu, if a.ok { "yes" } else { "no" }, a.detail)?;
        }
        if !self.facts.is_empty() {
            let facts: Vec<String> = self.facts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(f, "machine: {}", facts.join(", "))?;
        }
        if !self.fixes.is_empty() {
            writeln!(f, "fix:")?;
            for x in &self.fixes {
                writeln!(f, "  {x}")?;
            }
        }
        write!(f, "Dockerfiles without RUN (FROM/COPY/ADD/ENV…) build without any of this.")
    }
}

/// Why a combination cannot be used: the `detail` of its [`Attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unusable(String);

impl From<String> for Unusable {
    fn from(s: String) -> Self {
        Unusable(s)
    }
}

impl From<&str> for Unusable {
    fn from(s: &str) -> Self {
        Unusable(s.to_string())
    }
}

/// What decides which combinations can work on this machine.
struct Facts {
    euid: u32,
    kernel: Option<(u32, u32)>,
    host: Option<Arch>,
    target: Arch,
    max_userns: Option<u64>,
    apparmor_restrict: Option<u64>,
    binfmt: std::result::Result<Vec<BinfmtEntry>, Unusable>,
    qemu: Option<(PathBuf, bool)>,
    proot: Option<PathBuf>,
    in_container: bool,
    github: bool,
}

fn read_num(p: &str) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

impl Facts {
    /// Looks at this machine (and `opts.env` for programs on PATH and CI variables).
    fn gather(target: Arch, opts: &Options) -> Facts {
        Facts {
            euid: rustix::process::geteuid().as_raw(),
            kernel: emulation::kernel_version(),
            host: Arch::host(),
            target,
            max_userns: read_num("/proc/sys/user/max_user_namespaces"),
            apparmor_restrict: read_num("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            binfmt: emulation::kernel_binfmt(Path::new("/proc/sys/fs/binfmt_misc"), target)
                .map_err(|e| Unusable(e.to_string())),
            qemu: emulation::find_qemu(target, opts.qemu.as_deref(), &opts.env),
            proot: emulation::find_program("proot", opts.proot.as_deref(), &opts.env),
            in_container: Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists(),
            github: opts.env.is_set("GITHUB_ACTIONS"),
        }
    }

    /// The facts the report shows.
    fn summary(&self) -> Vec<(String, String)> {
        let mut v = vec![("euid".to_string(), self.euid.to_string())];
        if let Some((a, b)) = self.kernel {
            v.push(("kernel".into(), format!("{a}.{b}")));
        }
        v.push(("host".into(), self.host.map(|h| h.qemu).unwrap_or("unknown").into()));
        if let Some(n) = self.max_userns {
            v.push(("user.max_user_namespaces".into(), n.to_string()));
        }
        if let Some(n) = self.apparmor_restrict {
            v.push(("kernel.apparmor_restrict_unprivileged_userns".into(), n.to_string()));
        }
        v
    }
}

/// Finds a working combination for `platform`, trying the rungs `opts.isolation` allows.
pub fn detect(platform: &Platform, opts: &Options) -> Result<Runner, Report> {
    let mut report =
        Report { platform: format!("{}/{}", platform.os, platform.normalized().architecture), ..Default::default() };
    let Some(target) = Arch::of(platform) else {
        report.fixes.push("spxpack runs RUN steps for linux/arm64 and linux/amd64 only".into());
        return Err(report);
    };
    let helper = match &opts.helper {
        Some(h) => h.clone(),
        None => match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                report.fixes.push(format!("cannot find the spxpack executable: {e}"));
                return Err(report);
            }
        },
    };
    let facts = Facts::gather(target, opts);
    report.facts = facts.summary();
    let native = facts.host == Some(target);
    for sb in rungs(opts.isolation) {
        let Some(warnings) = rung_usable(sb, &facts, &helper, opts, &mut report) else { continue };
        for emu in emulations(sb, native) {
            let runner = Runner {
                sandbox: sb,
                emulation: emu,
                platform: platform.clone(),
                qemu: facts.qemu.as_ref().map(|q| q.0.clone()),
                proot: facts.proot.clone(),
                helper: helper.clone(),
                report: Report::default(),
                warnings: warnings.clone(),
            };
            let tried = precheck(&facts, emu).and_then(|()| probe(&runner, opts));
            let ok = tried.is_ok();
            let detail = tried.err().map_or_else(|| "probe ran".to_string(), |w| w.0);
            report.attempts.push(Attempt { sandbox: sb, emulation: Some(emu), ok, detail });
            if ok {
                return Ok(Runner { report, ..runner });
            }
        }
    }
    report.fixes = fixes(&facts, &report, native);
    Err(report)
}

/// The sandboxes `isolation` allows, in the order they are tried.
fn rungs(isolation: Isolation) -> Vec<Sandbox> {
    match isolation {
        Isolation::Auto => vec![Sandbox::Root, Sandbox::Userns, Sandbox::Proot],
        Isolation::Root => vec![Sandbox::Root],
        Isolation::Userns => vec![Sandbox::Userns],
        Isolation::Proot => vec![Sandbox::Proot],
    }
}

/// The emulations that can run a foreign (or the native) architecture in sandbox `sb`.
fn emulations(sb: Sandbox, native: bool) -> Vec<Emulation> {
    if native {
        vec![Emulation::Native]
    } else if sb == Sandbox::Proot {
        vec![Emulation::ProotQemu]
    } else {
        vec![Emulation::KernelBinfmt, Emulation::PrivateBinfmt]
    }
}

/// Whether sandbox `sb` is worth probing, with its warnings; `None` (and an attempt in the
/// report) when it is not.
fn rung_usable(sb: Sandbox, f: &Facts, helper: &Path, opts: &Options, report: &mut Report) -> Option<Vec<String>> {
    let mut refuse = |detail: String| {
        report.attempts.push(Attempt { sandbox: sb, emulation: None, ok: false, detail });
        None
    };
    let mut warnings = Vec::new();
    match sb {
        Sandbox::Root if f.euid != 0 => return refuse(format!("not running as root (euid {})", f.euid)),
        Sandbox::Proot => {
            let Some(proot) = &f.proot else {
                return refuse(match &opts.proot {
                    Some(p) => format!("{} does not exist", p.display()),
                    None => "proot not found on PATH".into(),
                });
            };
            if f.euid == 0 {
                warnings.push(
                    "proot runs the steps as the real root with the host's /proc, /sys and /dev; prefer --isolation root"
                        .to_string(),
                );
            }
            if let Err(why) = proot_statx_ok(proot, helper, opts) {
                // a forced proot is used anyway, with the warning
                if opts.isolation == Isolation::Auto {
                    return refuse(why.0);
                }
                warnings.push(why.0);
            }
        }
        _ => {}
    }
    Some(warnings)
}

fn precheck(f: &Facts, emu: Emulation) -> std::result::Result<(), Unusable> {
    match emu {
        Emulation::Native => Ok(()),
        Emulation::KernelBinfmt => match &f.binfmt {
            Err(e) => Err(e.clone()),
            Ok(v) if v.is_empty() => {
                Err(format!("no qemu-{} handler in /proc/sys/fs/binfmt_misc", f.target.qemu).into())
            }
            Ok(v) => {
                if v.iter().any(|e| e.enabled && e.has_flag('F')) {
                    Ok(())
                } else if let Some(e) = v.iter().find(|e| e.enabled) {
                    Err(format!(
                        "handler {} has no F flag (its interpreter would have to be inside the rootfs)",
                        e.name
                    )
                    .into())
                } else {
                    Err(format!("handler {} is disabled", v[0].name).into())
                }
            }
        },
        Emulation::PrivateBinfmt => {
            match f.kernel {
                Some(k) if k >= (6, 7) => {}
                Some((a, b)) => return Err(format!("needs Linux 6.7 or later (this is {a}.{b})").into()),
                None => return Err("unknown kernel version".into()),
            }
            match &f.qemu {
                Some((_, true)) => Ok(()),
                Some((p, false)) => Err(format!("{} is not statically linked", p.display()).into()),
                None => Err(format!("qemu-{0}-static not found", f.target.qemu).into()),
            }
        }
        Emulation::ProotQemu => match &f.qemu {
            Some(_) => Ok(()),
            None => Err(format!("qemu-{0}-static not found", f.target.qemu).into()),
        },
    }
}

/// Runs the probe program in a throw-away rootfs.
fn probe(runner: &Runner, opts: &Options) -> std::result::Result<(), Unusable> {
    let scratch = opts.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let work = WorkDir::new_in(&scratch, ".spxpack-probe-").map_err(|e| Unusable(e.to_string()))?;
    let root = work.path().join("rootfs");
    let arch = Arch::of(&runner.platform).ok_or("unknown architecture")?;
    let make = || -> std::io::Result<()> {
        for d in ["proc", "sys", "dev", "etc", "tmp"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        std::fs::write(root.join("etc/resolv.conf"), b"")?;
        std::fs::write(root.join("etc/hosts"), b"")?;
        std::fs::write(root.join("probe"), arch.probe_elf())?;
        std::fs::set_permissions(root.join("probe"), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        std::fs::set_permissions(work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
    };
    make().map_err(|e| format!("cannot create a probe rootfs in {}: {e}", scratch.display()))?;
    let rootfs = Rootfs::probe(work, root, runner.ownership());
    let spec = RunSpec { argv: vec!["/probe".into()], workdir: "/".into(), ..Default::default() };
    let out = runner.run(&rootfs, &spec, &mut |_| {}).map_err(|e| {
        let m = e.message().to_string();
        // "the root + binfmt (kernel) sandbox failed: X" → "X"
        Unusable(m.split_once(" sandbox failed: ").map(|(_, r)| r.to_string()).unwrap_or(m))
    })?;
    match out.code {
        42 => Ok(()),
        c => {
            Err(format!("probe exited with {c}{}", out.tail.last().map(|l| format!(": {l}")).unwrap_or_default())
                .into())
        }
    }
}

/// proot < 5.3 does not translate `statx`: a guest `stat` then reports the host's file. Checks
/// by running the helper under proot with a bind that exists only in the guest view.
fn proot_statx_ok(proot: &Path, helper: &Path, opts: &Options) -> std::result::Result<(), Unusable> {
    let scratch = opts.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let dir =
        tempfile::Builder::new().prefix(".spxpack-statx-").tempdir_in(&scratch).map_err(|e| Unusable(e.to_string()))?;
    let f = dir.path().join("file");
    std::fs::write(&f, b"12345").map_err(|e| Unusable(e.to_string()))?;
    let version = Command::new(proot)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let s = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
            // "proot 5.4.0" or an ASCII-art banner ending in "5.1.0"
            s.split_whitespace()
                .find(|w| w.split('.').count() == 3 && w.split('.').all(|p| p.parse::<u32>().is_ok()))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "(unknown version)".into());
    let guest = "/.spxpack-statx-probe";
    let out = Command::new(proot)
        .arg("-b")
        .arg(format!("{}:{guest}", f.display()))
        .arg(helper)
        .arg("__sandbox-statx")
        .arg(guest)
        .arg("5")
        .output()
        .map_err(|e| Unusable(format!("cannot run {}: {e}", proot.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "proot {version} does not translate statx (stat in the guest sees host files; need proot 5.3 or later)"
        )
        .into())
    }
}

/// `spxpack __sandbox-statx PATH SIZE`: exits 0 when `statx(PATH)` reports SIZE bytes.
pub fn statx_main(args: &[String]) -> ! {
    let ok = match (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok())) {
        (Some(p), Some(size)) => {
            rustix::fs::statx(rustix::fs::CWD, p.as_str(), rustix::fs::AtFlags::empty(), rustix::fs::StatxFlags::SIZE)
                .is_ok_and(|s| s.stx_size == size)
        }
        _ => false,
    };
    std::process::exit(if ok { 0 } else { 1 })
}

fn fixes(f: &Facts, report: &Report, native: bool) -> Vec<String> {
    let mut v = Vec::new();
    let tried = |sb: Sandbox| report.attempts.iter().any(|a| a.sandbox == sb);
    let denied = report.attempts.iter().any(|a| {
        a.sandbox != Sandbox::Proot
            && (a.detail.contains("operation not permitted") || a.detail.contains("permission denied"))
    });
    if tried(Sandbox::Userns) {
        if f.apparmor_restrict == Some(1) {
            v.push("allow unprivileged user namespaces (Ubuntu 23.10+/24.04 AppArmor restriction):".to_string());
            v.push("    sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0".to_string());
        }
        if f.max_userns == Some(0) {
            v.push("enable user namespaces:  sudo sysctl -w user.max_user_namespaces=15000".to_string());
        }
        if f.in_container && denied {
            v.push("spxpack runs in a container: give it --security-opt seccomp=unconfined --security-opt apparmor=unconfined (or --privileged)".to_string());
        }
    }
    if !native {
        if f.qemu.is_none() {
            v.push(format!(
                "install qemu-user:  sudo apt-get install qemu-user-static   (or pass --qemu PATH to a static qemu-{})",
                f.target.qemu
            ));
        } else if matches!(&f.binfmt, Ok(e) if e.is_empty()) && f.kernel.is_some_and(|k| k < (6, 7)) {
            v.push("register qemu with binfmt_misc:  sudo apt-get install qemu-user-static binfmt-support".to_string());
        }
    }
    if tried(Sandbox::Proot) && f.proot.is_none() {
        v.push("or install proot 5.3 or later (e.g. termux/proot) and pass --proot PATH".to_string());
    }
    if f.euid != 0 {
        v.push("or run the build as root (sudo), which needs no user namespaces".to_string());
    }
    if f.github && !native {
        v.push("on GitHub Actions, `runs-on: ubuntu-24.04-arm` needs no emulation at all".to_string());
    }
    v
}

impl Rootfs {
    /// A bare rootfs for probes (no cache, no side table).
    pub(crate) fn probe(work: WorkDir, root: PathBuf, ownership: Ownership) -> Rootfs {
        Rootfs::from_parts(work, root, ownership)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::emulation::{AARCH64, X86_64};

    /// An unprivileged x86_64 host on Linux 6.8 building for arm64, with nothing installed.
    fn facts() -> Facts {
        Facts {
            euid: 1000,
            kernel: Some((6, 8)),
            host: Some(X86_64),
            target: AARCH64,
            max_userns: Some(15000),
            apparmor_restrict: None,
            binfmt: Ok(Vec::new()),
            qemu: None,
            proot: None,
            in_container: false,
            github: false,
        }
    }

    fn entry(flags: &str, enabled: bool) -> BinfmtEntry {
        BinfmtEntry {
            name: "qemu-aarch64".into(),
            enabled,
            interpreter: "/usr/bin/qemu-aarch64-static".into(),
            flags: flags.into(),
            offset: 0,
            magic: Vec::new(),
            mask: Vec::new(),
        }
    }

    fn attempt(sandbox: Sandbox, detail: &str) -> Attempt {
        Attempt { sandbox, emulation: None, ok: false, detail: detail.into() }
    }

    #[test]
    fn tries_the_rungs_isolation_allows_in_order() {
        assert_eq!(rungs(Isolation::Auto), vec![Sandbox::Root, Sandbox::Userns, Sandbox::Proot]);
        assert_eq!(rungs(Isolation::Userns), vec![Sandbox::Userns]);
        assert_eq!(emulations(Sandbox::Root, true), vec![Emulation::Native]);
        assert_eq!(emulations(Sandbox::Userns, false), vec![Emulation::KernelBinfmt, Emulation::PrivateBinfmt]);
        assert_eq!(emulations(Sandbox::Proot, false), vec![Emulation::ProotQemu]);
    }

    #[test]
    fn prechecks_explain_why_an_emulation_cannot_work() {
        let why = |f: &Facts, e| precheck(f, e).unwrap_err().0;
        let mut f = facts();
        assert_eq!(precheck(&f, Emulation::Native), Ok(()));
        assert_eq!(why(&f, Emulation::KernelBinfmt), "no qemu-aarch64 handler in /proc/sys/fs/binfmt_misc");
        f.binfmt = Ok(vec![entry("P", true)]);
        assert!(why(&f, Emulation::KernelBinfmt).contains("has no F flag"));
        f.binfmt = Ok(vec![entry("FP", false)]);
        assert!(why(&f, Emulation::KernelBinfmt).contains("is disabled"));
        f.binfmt = Ok(vec![entry("P", true), entry("POF", true)]);
        assert_eq!(precheck(&f, Emulation::KernelBinfmt), Ok(()));
        assert_eq!(why(&f, Emulation::PrivateBinfmt), "qemu-aarch64-static not found");
        f.qemu = Some(("/usr/bin/qemu-aarch64".into(), false));
        assert_eq!(why(&f, Emulation::PrivateBinfmt), "/usr/bin/qemu-aarch64 is not statically linked");
        assert_eq!(precheck(&f, Emulation::ProotQemu), Ok(()));
        f.qemu = Some(("/q".into(), true));
        assert_eq!(precheck(&f, Emulation::PrivateBinfmt), Ok(()));
        f.kernel = Some((6, 1));
        assert_eq!(why(&f, Emulation::PrivateBinfmt), "needs Linux 6.7 or later (this is 6.1)");
    }

    #[test]
    fn fixes_follow_from_the_facts_and_attempts() {
        let mut f = facts();
        let mut report = Report::default();
        report.attempts.push(attempt(Sandbox::Userns, "unshare(CLONE_NEWUSER): operation not permitted"));
        report.attempts.push(attempt(Sandbox::Proot, "proot not found on PATH"));
        let v = fixes(&f, &report, false);
        assert!(v[0].starts_with("install qemu-user"), "{v:?}");
        assert!(v.iter().any(|x| x.contains("install proot")), "{v:?}");
        assert!(v.iter().any(|x| x.contains("run the build as root")), "{v:?}");
        assert!(!v.iter().any(|x| x.contains("GitHub") || x.contains("apparmor") || x.contains("container")));
        f.apparmor_restrict = Some(1);
        f.in_container = true;
        f.github = true;
        f.euid = 0;
        f.qemu = Some(("/q".into(), true));
        let v = fixes(&f, &report, false);
        assert!(v.iter().any(|x| x.contains("apparmor_restrict_unprivileged_userns=0")), "{v:?}");
        assert!(v.iter().any(|x| x.contains("seccomp=unconfined")), "{v:?}");
        assert!(v.iter().any(|x| x.contains("ubuntu-24.04-arm")), "{v:?}");
        assert!(!v.iter().any(|x| x.contains("as root") || x.contains("install qemu-user")), "{v:?}");
        assert!(fixes(&f, &Report::default(), true).iter().all(|x| !x.contains("qemu") && !x.contains("GitHub")));
    }

    #[test]
    fn github_actions_is_read_from_the_given_environment() {
        let opts = Options { env: HostEnv::from_vars([("GITHUB_ACTIONS", "true")]), ..Default::default() };
        assert!(Facts::gather(AARCH64, &opts).github);
        let opts = Options { qemu: Some("/nonexistent/qemu".into()), ..Default::default() };
        let f = Facts::gather(AARCH64, &opts);
        assert!(!f.github && f.qemu.is_none() && f.proot.is_none(), "an empty environment finds nothing on PATH");
    }
}
