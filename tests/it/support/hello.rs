//! The generator of the bundled example `examples/hello-extension/`: a static aarch64 ELF
//! written byte by byte (`write(1, msg, len); exit(0)`, no libc, 201 bytes), layered into
//! an OCI image layout (uncompressed layer, so the bytes do not depend on a zlib version), and a
//! 64×64 PNG icon (stored deflate blocks). Everything is a pure function of this file, so the
//! committed example can be checked byte for byte (`spx_example` tests) and regenerated with
//! `SPXPACK_REGENERATE_EXAMPLE=1 cargo test --test it spx_example`.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::Digest as _;

/// What the program prints.
pub const MESSAGE: &str = "Hello from a Spot Extension packaged by spxpack!\n";
/// The tag of the image in the layout and in the example's compose file.
pub const TAG: &str = "1.0.0";

const BASE: u64 = 0x40_0000;
const EHDR: usize = 64;
const PHDR: usize = 56;

/// A static little-endian AArch64 executable printing [`MESSAGE`].
pub fn elf() -> Vec<u8> {
    let msg = MESSAGE.as_bytes();
    let movz = |rd: u32, imm: u32| 0xd280_0000u32 | (imm << 5) | rd; // MOVZ Xd, #imm
    let svc0 = 0xd400_0001u32;
    let code_len = 8 * 4;
    // ADR x1, msg: msg starts right after the code; ADR is instruction 1 (offset 4)
    let adr_offset = (code_len - 4) as u32;
    let adr = 0x1000_0000u32 | ((adr_offset & 3) << 29) | ((adr_offset >> 2) << 5) | 1;
    let code = [
        movz(0, 1),                // x0 = 1 (stdout)
        adr,                       // x1 = msg
        movz(2, msg.len() as u32), // x2 = len
        movz(8, 64),               // x8 = __NR_write
        svc0,
        movz(0, 0),  // x0 = 0
        movz(8, 93), // x8 = __NR_exit
        svc0,
    ];
    let total = (EHDR + PHDR + code_len + msg.len()) as u64;
    let mut b = Vec::with_capacity(total as usize);
    // ELF header
    b.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"); // 64-bit, LE, v1, SYSV
    b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b.extend_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(BASE + (EHDR + PHDR) as u64).to_le_bytes()); // e_entry
    b.extend_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    b.extend_from_slice(&(EHDR as u16).to_le_bytes());
    b.extend_from_slice(&(PHDR as u16).to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    b.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    // one PT_LOAD, R+X, the whole file
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&5u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&BASE.to_le_bytes());
    b.extend_from_slice(&BASE.to_le_bytes());
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(&0x1_0000u64.to_le_bytes()); // 64 KiB pages work everywhere
    for insn in code {
        b.extend_from_slice(&insn.to_le_bytes());
    }
    b.extend_from_slice(msg);
    assert_eq!(b.len() as u64, total);
    b
}

/// A 64×64 RGBA PNG: a Spot-yellow disc on a transparent background.
pub fn icon_png() -> Vec<u8> {
    let (w, h) = (64u32, 64u32);
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            let (dx, dy) = (x as i32 * 2 - 63, y as i32 * 2 - 63);
            let inside = dx * dx + dy * dy <= 60 * 60;
            raw.extend_from_slice(if inside { &[0xff, 0xcc, 0x00, 0xff] } else { &[0, 0, 0, 0] });
        }
    }
    // zlib stream of stored blocks
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, blk) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = blk.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(blk);
    }
    let (mut a, mut bsum) = (1u32, 0u32);
    for byte in &raw {
        a = (a + u32::from(*byte)) % 65521;
        bsum = (bsum + a) % 65521;
    }
    z.extend_from_slice(&((bsum << 16) | a).to_be_bytes());
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    };
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &z);
    chunk(&mut png, b"IEND", &[]);
    png
}

fn sha(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Every file of the OCI layout, by path relative to the layout directory.
pub fn layout_files() -> BTreeMap<String, Vec<u8>> {
    let program = elf();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("hello").unwrap();
    h.set_size(program.len() as u64);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append(&h, &program[..]).unwrap();
    let layer = tar.into_inner().unwrap();
    let diff = sha(&layer);
    let config = format!(
        concat!(
            r#"{{"architecture":"arm64","variant":"v8","os":"linux","created":"1970-01-01T00:00:00Z","#,
            r#""config":{{"Entrypoint":["/hello"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}},"#,
            r#""history":[{{"created":"1970-01-01T00:00:00Z","created_by":"spxpack: tests/it/support/hello.rs"}}]}}"#
        ),
        diff
    );
    let manifest = format!(
        concat!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
            r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{}}},"#,
            r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{}","size":{}}}]}}"#
        ),
        sha(config.as_bytes()),
        config.len(),
        diff,
        layer.len()
    );
    let index = format!(
        concat!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"#,
            r#""mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":{},"#,
            r#""platform":{{"architecture":"arm64","os":"linux","variant":"v8"}},"#,
            r#""annotations":{{"org.opencontainers.image.ref.name":"{}"}}}}]}}"#,
            "\n"
        ),
        sha(manifest.as_bytes()),
        manifest.len(),
        TAG
    );
    let mut files = BTreeMap::new();
    files.insert("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
    files.insert("index.json".to_string(), index.into_bytes());
    for blob in [layer, config.into_bytes(), manifest.into_bytes()] {
        files.insert(format!("blobs/sha256/{}", sha(&blob)), blob);
    }
    files
}

/// Writes the layout into `dir` (which is created).
pub fn write_layout(dir: &Path) {
    for (p, data) in layout_files() {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}
