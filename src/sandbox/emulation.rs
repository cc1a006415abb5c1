//! Foreign-architecture execution: which architectures the host runs natively, the qemu-user
//! binary for a target, the kernel's binfmt_misc entries, the registration string for a private
//! binfmt_misc instance, and tiny static probe programs (exit code 42) for each architecture.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::host_env::HostEnv;
use crate::platform::Platform;

/// How a step's binaries get executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Emulation {
    /// The host runs the target architecture.
    Native,
    /// A qemu handler registered in the kernel's global binfmt_misc with the F flag.
    KernelBinfmt,
    /// qemu registered (flags `FP`) in a binfmt_misc instance private to the sandbox's user
    /// namespace (Linux ≥ 6.7); nothing global changes.
    PrivateBinfmt,
    /// proot `-q qemu-…` inserts qemu in front of every execve (ptrace).
    ProotQemu,
}

impl Emulation {
    pub fn name(self) -> &'static str {
        match self {
            Emulation::Native => "native",
            Emulation::KernelBinfmt => "binfmt (kernel)",
            Emulation::PrivateBinfmt => "binfmt (private)",
            Emulation::ProotQemu => "proot -q",
        }
    }
}

/// ELF identification of an architecture: qemu's name, e_machine, and the binfmt magic/mask
/// qemu's own registration uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    /// `uname -m` / qemu suffix: `aarch64`, `x86_64`.
    pub qemu: &'static str,
    pub e_machine: u16,
}

pub const AARCH64: Arch = Arch { qemu: "aarch64", e_machine: 0xb7 };
pub const X86_64: Arch = Arch { qemu: "x86_64", e_machine: 0x3e };

impl Arch {
    /// The architecture of an OCI platform (`linux/arm64`, `linux/amd64`).
    pub fn of(p: &Platform) -> Option<Arch> {
        match p.normalized().architecture.as_str() {
            "arm64" => Some(AARCH64),
            "amd64" => Some(X86_64),
            _ => None,
        }
    }
    /// The architecture this process runs on.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "aarch64" => Some(AARCH64),
            "x86_64" => Some(X86_64),
            _ => None,
        }
    }
    /// binfmt_misc magic (first 20 bytes of the ELF header) and mask, as qemu registers them:
    /// ELF64, little endian, version 1, e_type EXEC or DYN, this e_machine.
    pub fn binfmt_magic_mask(self) -> ([u8; 20], [u8; 20]) {
        let mut magic = [0u8; 20];
        magic[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1]);
        magic[16] = 2;
        magic[18..20].copy_from_slice(&self.e_machine.to_le_bytes());
        let mut mask = [0xffu8; 20];
        mask[7] = 0;
        mask[16] = 0xfe;
        (magic, mask)
    }
    /// The line to write to a binfmt_misc `register` file for `interpreter` with `flags`.
    pub fn binfmt_register_line(self, name: &str, interpreter: &str, flags: &str) -> Vec<u8> {
        let (magic, mask) = self.binfmt_magic_mask();
        let esc = |b: &[u8]| b.iter().map(|x| format!("\\x{x:02x}")).collect::<String>();
        format!(":{name}:M::{}:{}:{interpreter}:{flags}", esc(&magic), esc(&mask)).into_bytes()
    }
    /// A minimal static ELF executable for this architecture that exits with status 42.
    pub fn probe_elf(self) -> Vec<u8> {
        let code: Vec<u8> = match self.e_machine {
            // movz x0, #42; movz x8, #93 (exit); svc #0
            0xb7 => [0xd280_0540u32, 0xd280_0ba8, 0xd400_0001].iter().flat_map(|i| i.to_le_bytes()).collect(),
            // mov edi, 42; mov eax, 60 (exit); syscall
            _ => vec![0xbf, 42, 0, 0, 0, 0xb8, 60, 0, 0, 0, 0x0f, 0x05],
        };
        let base: u64 = 0x40_0000;
        let entry = base + 64 + 56;
        let total = (64 + 56 + code.len()) as u64;
        let mut v = Vec::with_capacity(total as usize);
        v.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        v.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        v.extend_from_slice(&self.e_machine.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&entry.to_le_bytes());
        v.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
        v.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        v.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        v.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
        v.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
        v.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
        v.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
        v.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        v.extend_from_slice(&5u32.to_le_bytes()); // R+X
        v.extend_from_slice(&0u64.to_le_bytes()); // p_offset
        v.extend_from_slice(&base.to_le_bytes()); // p_vaddr
        v.extend_from_slice(&base.to_le_bytes()); // p_paddr
        v.extend_from_slice(&total.to_le_bytes()); // p_filesz
        v.extend_from_slice(&total.to_le_bytes()); // p_memsz
        v.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
        v.extend_from_slice(&code);
        v
    }
    /// Whether an ELF header's first 20 bytes match this architecture's binfmt magic/mask.
    pub fn matches(self, magic: &[u8], mask: &[u8]) -> bool {
        // an entry matches us if it accepts our probe's header
        let probe = self.probe_elf();
        if magic.len() > probe.len() || magic.len() != mask.len() {
            return false;
        }
        magic.iter().zip(mask).zip(&probe).all(|((mg, mk), p)| p & mk == mg & mk)
    }
}

/// A kernel binfmt_misc entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinfmtEntry {
    pub name: String,
    pub enabled: bool,
    pub interpreter: String,
    pub flags: String,
    pub offset: usize,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
}

impl BinfmtEntry {
    /// Parses the text of `/proc/sys/fs/binfmt_misc/NAME`.
    pub fn parse(name: &str, text: &str) -> Option<Self> {
        let mut e = BinfmtEntry {
            name: name.to_string(),
            enabled: false,
            interpreter: String::new(),
            flags: String::new(),
            offset: 0,
            magic: Vec::new(),
            mask: Vec::new(),
        };
        let mut is_magic = false;
        for line in text.lines() {
            let line = line.trim();
            if line == "enabled" {
                e.enabled = true;
            } else if let Some(v) = line.strip_prefix("interpreter ") {
                e.interpreter = v.to_string();
            } else if let Some(v) = line.strip_prefix("flags:") {
                e.flags = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("offset ") {
                e.offset = v.trim().parse().ok()?;
            } else if let Some(v) = line.strip_prefix("magic ") {
                e.magic = hex::decode(v.trim()).ok()?;
                is_magic = true;
            } else if let Some(v) = line.strip_prefix("mask ") {
                e.mask = hex::decode(v.trim()).ok()?;
            }
        }
        if !is_magic {
            return None;
        }
        if e.mask.is_empty() {
            e.mask = vec![0xff; e.magic.len()];
        }
        Some(e)
    }
    pub fn has_flag(&self, f: char) -> bool {
        self.flags.contains(f)
    }
    pub fn matches(&self, arch: Arch) -> bool {
        self.offset == 0 && arch.matches(&self.magic, &self.mask)
    }
}

/// The kernel entries (in the binfmt_misc mounted at `dir`, normally
/// `/proc/sys/fs/binfmt_misc`) that would run `arch` binaries. `Err` explains why none can be
/// read (not mounted).
pub fn kernel_binfmt(dir: &Path, arch: Arch) -> Result<Vec<BinfmtEntry>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::unsupported(format!("cannot read {}: {e}", dir.display())))?;
    if !dir.join("register").exists() {
        return Err(Error::unsupported(format!("binfmt_misc is not mounted at {}", dir.display())));
    }
    let mut out = Vec::new();
    let mut names: Vec<String> = rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for n in names {
        if n == "register" || n == "status" {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(dir.join(&n))
            && let Some(e) = BinfmtEntry::parse(&n, &text)
            && e.matches(arch)
        {
            out.push(e);
        }
    }
    Ok(out)
}

/// Finds qemu-user for `arch`: the explicit path, else `qemu-ARCH-static`, then `qemu-ARCH` on
/// PATH. Returns the path and whether it is statically linked (needed for a private binfmt
/// registration, whose interpreter runs inside the guest root).
pub fn find_qemu(arch: Arch, explicit: Option<&Path>, env: &HostEnv) -> Option<(PathBuf, bool)> {
    let found = match explicit {
        Some(p) => p.is_file().then(|| p.to_path_buf()),
        None => [format!("qemu-{}-static", arch.qemu), format!("qemu-{}", arch.qemu)].iter().find_map(|n| env.which(n)),
    }?;
    let is_static = elf_is_static(&found).unwrap_or(false);
    Some((found, is_static))
}

/// Finds a program on `env`'s PATH (or checks an explicit path).
pub fn find_program(name: &str, explicit: Option<&Path>, env: &HostEnv) -> Option<PathBuf> {
    match explicit {
        Some(p) => p.is_file().then(|| p.to_path_buf()),
        None => env.which(name),
    }
}

/// Whether an ELF file has no program interpreter (PT_INTERP), i.e. is statically linked.
pub fn elf_is_static(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = vec![0u8; 64];
    f.read_exact(&mut h)?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return Ok(false);
    }
    let phoff = u64::from_le_bytes(h[32..40].try_into().expect("8 bytes")) as usize;
    let phentsize = u16::from_le_bytes([h[54], h[55]]) as usize;
    let phnum = u16::from_le_bytes([h[56], h[57]]) as usize;
    let mut rest = Vec::new();
    f.read_to_end(&mut rest)?;
    let mut all = h;
    all.extend_from_slice(&rest);
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > all.len() {
            break;
        }
        if u32::from_le_bytes(all[o..o + 4].try_into().expect("4 bytes")) == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The running kernel's (major, minor) version.
pub fn kernel_version() -> Option<(u32, u32)> {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut it = r.trim().split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_debian_qemu_entry_and_matches_arm64_only() {
        let text = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        let e = BinfmtEntry::parse("qemu-aarch64", text).unwrap();
        assert!(e.enabled && e.has_flag('F') && e.has_flag('P'));
        assert!(e.matches(AARCH64));
        assert!(!e.matches(X86_64));
        // our own registration line carries the same magic and mask
        let line = String::from_utf8(AARCH64.binfmt_register_line("q", "/q", "FP")).unwrap();
        assert!(line.starts_with(":q:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00"), "{line}");
        assert!(line.ends_with(":/q:FP"));
        let (m, k) = AARCH64.binfmt_magic_mask();
        assert_eq!(hex::encode(m), "7f454c460201010000000000000000000200b700");
        assert_eq!(hex::encode(k), "ffffffffffffff00fffffffffffffffffeffffff");
        assert!(BinfmtEntry::parse("status", "enabled\n").is_none());
    }

    #[test]
    fn native_probe_runs_and_exits_42() {
        let host = Arch::host().unwrap();
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("probe");
        std::fs::write(&p, host.probe_elf()).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let st = std::process::Command::new(&p).status().unwrap();
        assert_eq!(st.code(), Some(42));
        assert!(elf_is_static(&p).unwrap());
    }
}
