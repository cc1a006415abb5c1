use super::*;
use crate::testkit::{Spec, assemble, file_layer};

/// The first 20 bytes of an ELF file: class 64, `data` (1 LE, 2 BE), `e_type`, `e_machine`.
pub(crate) fn elf(data: u8, e_type: u16, machine: u16) -> Vec<u8> {
    let mut h = vec![0x7f, b'E', b'L', b'F', 2, data, 1, 0];
    h.resize(16, 0);
    let w = |v: u16| if data == 2 { v.to_be_bytes() } else { v.to_le_bytes() };
    h.extend_from_slice(&w(e_type));
    h.extend_from_slice(&w(machine));
    h.extend_from_slice(&[0u8; 44]);
    h
}

#[test]
fn elf_headers_are_read_from_their_first_20_bytes() {
    assert_eq!(elf_machine(&elf(1, 2, 62)), Some(62), "x86-64 executable");
    assert_eq!(elf_machine(&elf(1, 3, 183)), Some(183), "aarch64 shared object or PIE");
    assert_eq!(elf_machine(&elf(2, 2, 22)), Some(22), "big-endian s390x");
    assert_eq!(elf_machine(&elf(1, 1, 62)), None, "a relocatable object is not run");
    assert_eq!(elf_machine(&elf(1, 2, 62)[..19]), None, "too short");
    assert_eq!(elf_machine(b"#!/bin/sh\necho not an elf\n"), None);
}

fn arm64(layers: Vec<Vec<(&str, &[u8])>>) -> Image {
    let layers = layers.iter().map(|l| file_layer(l)).collect();
    assemble(&Spec::new(7).platform("linux/arm64"), layers).image
}

#[test]
fn wrong_architecture_elf_files_in_the_final_filesystem_are_reported() {
    let x86 = elf(1, 2, 62);
    let arm = elf(1, 3, 183);
    let arm32 = elf(1, 2, 40);
    let base: Vec<(&str, &[u8])> = vec![
        ("usr/bin/tool", &x86),
        ("usr/lib/libok.so", &arm),
        ("usr/lib/arm32", &arm32),
        ("usr/bin/script", b"#!/bin/sh\n"),
    ];
    let (w, hint) = check_image(&arm64(vec![base.clone()])).unwrap().expect("a warning");
    assert!(
        w.ends_with(": an image for linux/arm64/v8 holds 1 x86-64 ELF file that cannot run on it: /usr/bin/tool"),
        "{w}"
    );
    assert!(hint.contains("--strict"));

    // deleted by a whiteout, by an opaque directory, or replaced by a script: nothing to report
    for top in [
        vec![("usr/bin/.wh.tool", &b""[..])],
        vec![("usr/bin/.wh..wh..opq", &b""[..])],
        vec![("usr/.wh.bin", &b""[..])],
        vec![("usr/bin/tool", &b"#!/bin/sh\n"[..])],
    ] {
        assert_eq!(check_image(&arm64(vec![base.clone(), top.clone()])).unwrap(), None, "{top:?}");
    }
    // an opaque directory hides the lower layers only, not its own layer's files
    let again = vec![("usr/bin/.wh..wh..opq", &b""[..]), ("usr/bin/tool", &x86[..])];
    assert!(check_image(&arm64(vec![base.clone(), again])).unwrap().is_some());

    // hard links count, and long lists are capped
    let names: Vec<String> = (0..8).map(|i| format!("opt/x{i}")).collect();
    let mut many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &x86[..])).collect();
    many.push(("opt/linked", b"link:opt/x0"));
    let (w, _) = check_image(&arm64(vec![many])).unwrap().unwrap();
    assert!(w.contains("holds 9 x86-64 ELF files that cannot run on it: /opt/linked, /opt/x0, /opt/x1, /opt/x2, /opt/x3, … and 4 more"), "{w}");
}
