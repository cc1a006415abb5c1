//! Dockerfiles that cost more than their size: variables that double on every line (item 12 of
//! the hardening issue: `ARG A1=${A0}${A0}` chained 40 times would build a 1 TiB value) and
//! very long Dockerfiles (item 13: the build is linear in the number of instructions). Each
//! run is bounded in time and memory (`support::bounded`): the child is killed and the test
//! fails past the limits.

use std::path::Path;
use std::time::Duration;

use crate::support::Scratch;
use crate::support::bounded::{one_error_with_hint, run_bounded, spx_command};

const LIMIT: Duration = Duration::from_secs(20);
const MAX_RSS_MIB: u64 = 256;

/// `head`, then `instr A0=x` and `instr An=${An-1}${An-1}` for n up to 40.
fn doubling(head: &str, instr: &str) -> String {
    let mut df = format!("{head}{instr} A0=x\n");
    for n in 1..=40 {
        df.push_str(&format!("{instr} A{n}=${{A{}}}${{A{}}}\n", n - 1, n - 1));
    }
    df
}

fn build(s: &Scratch, dockerfile: &str) -> crate::support::bounded::Bounded {
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let df = ctx.join("Dockerfile");
    std::fs::write(&df, dockerfile).unwrap();
    let out = s.path("out.tar");
    let args = ["image", "build", "-f", df.to_str().unwrap(), "-o", out.to_str().unwrap(), ctx.to_str().unwrap()];
    run_bounded(spx_command(s, &args), LIMIT, MAX_RSS_MIB)
}

#[test]
fn variable_expansion_is_capped_per_value_and_per_stage() {
    // A20 is 1 MiB (allowed); A21 would be 2 MiB: the error names its line and the variable
    for (head, instr, line) in [
        ("FROM scratch\n", "ARG", 23),
        ("FROM scratch\n", "ENV", 23),
        ("", "ARG", 22), // global ARGs, before the first FROM
    ] {
        let mut df = doubling(head, instr);
        if head.is_empty() {
            df.push_str("FROM scratch\n");
        }
        let s = Scratch::new();
        let b = build(&s, &df);
        assert_eq!(b.run.code, 1, "{instr}: stderr {}", b.run.stderr);
        let (err, hint) = one_error_with_hint(&b.run);
        for needle in [format!("Dockerfile:{line}"), format!("{instr} A21: "), "${A20}".into(), "1 MiB".into()] {
            assert!(err.contains(&needle), "{instr}: {err:?} lacks {needle:?}");
        }
        assert!(hint.contains("built from itself"), "{hint}");
        assert!(b.peak_rss_kib < MAX_RSS_MIB * 1024, "peak RSS {} KiB", b.peak_rss_kib);
        assert!(!Path::new(&s.path("out.tar")).exists());
    }
    // many values under 1 MiB each, but 17 MiB in one stage
    let mut df = String::from("FROM scratch\nARG B0=xxxxxxxxxxxxxxxx\n");
    for n in 1..=16 {
        df.push_str(&format!("ARG B{n}=${{B{}}}${{B{}}}\n", n - 1, n - 1));
    }
    for n in 0..17 {
        df.push_str(&format!("ENV C{n}=${{B16}}\n"));
    }
    let s = Scratch::new();
    let b = build(&s, &df);
    assert_eq!(b.run.code, 1, "stderr {}", b.run.stderr);
    let (err, _) = one_error_with_hint(&b.run);
    assert!(err.contains("ENV C") && err.contains("add up to more than 16 MiB"), "{err}");
}

#[test]
fn a_20000_line_dockerfile_builds() {
    // metadata instructions only: the build is dominated by per-instruction work, which must
    // stay linear (docs/hardening.md records the measured times)
    let mut df = String::from("FROM scratch\n");
    for i in 0..5000 {
        df.push_str(&format!("ARG A{i}=v{i}\nENV E{i}=${{A{i}}}\nLABEL l{i}=x{i}\nWORKDIR /w\n"));
    }
    let s = Scratch::new();
    let b = build(&s, &df);
    assert_eq!(b.run.code, 0, "stderr {}", b.run.stderr);
    assert!(s.path("out.tar").exists());
}
