//! The shape of a build before it runs: the predefined platform ARGs, what each FROM is based
//! on (scratch, an earlier stage, a named context or an image), which stages the target needs,
//! the ignore file, named contexts, and the RUN check that fails before any work.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::BuildOptions;
use super::ctx::{Ctx, Named};
use super::dockerignore::Matcher;
use super::executor;
use super::instructions::{Dockerfile, Op};
use super::lex::Lex;
use super::run_flags::mount_from;
use super::stage;
use super::tree::DirTree;
use crate::blob_cache::BlobCache;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::source::Source;

/// The base of a stage.
pub(super) enum Base {
    Scratch,
    Stage(usize),
    Image(Source),
}

/// Predefined platform args (available in FROM lines, and in stages that declare them).
pub(super) fn platform_args(target: &Platform, stage: &str) -> Vec<(String, String)> {
    let t = target.normalized();
    let variant = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
        ("arm64", Some("v8")) | (_, None) => String::new(),
        (_, Some(v)) => v.to_string(),
    };
    let fmt = |p: &Platform| {
        let v = variant(p);
        if v.is_empty() { format!("{}/{}", p.os, p.architecture) } else { format!("{}/{}/{v}", p.os, p.architecture) }
    };
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    };
    let b = Platform::new("linux", host_arch, None).normalized();
    vec![
        ("TARGETPLATFORM".into(), fmt(&t)),
        ("TARGETOS".into(), t.os.clone()),
        ("TARGETARCH".into(), t.architecture.clone()),
        ("TARGETVARIANT".into(), variant(&t)),
        ("BUILDPLATFORM".into(), fmt(&b)),
        ("BUILDOS".into(), b.os.clone()),
        ("BUILDARCH".into(), b.architecture.clone()),
        ("BUILDVARIANT".into(), variant(&b)),
        ("TARGETSTAGE".into(), stage.to_string()),
    ]
}

/// `NAME.dockerignore` next to the Dockerfile wins over `.dockerignore` in the context.
pub(crate) fn ignore_file(dockerfile: &Path, context: &Path) -> Result<Matcher> {
    let name = dockerfile.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let specific = dockerfile.with_file_name(format!("{name}.dockerignore"));
    if specific.is_file() {
        return Matcher::from_file(&specific, &specific.display().to_string());
    }
    let f = context.join(".dockerignore");
    Matcher::from_file(&f, ".dockerignore")
}

pub(super) fn parse_named(name: &str, v: &str, cache: &Arc<BlobCache>) -> Result<Named> {
    let bad = |m: String| Error::input(format!("--build-context {name}={v}: {m}"));
    if let Some(r) = v.strip_prefix("docker-image://") {
        return Ok(Named::Image(Source::parse(r).map_err(|e| bad(e.message().to_string()))?));
    }
    if let Some(r) = v.strip_prefix("oci-layout://") {
        return Ok(Named::Image(Source::parse(&format!("oci:{r}")).map_err(|e| bad(e.message().to_string()))?));
    }
    for t in ["oci:", "oci-archive:", "docker-archive:"] {
        if v.starts_with(t) {
            return Ok(Named::Image(Source::parse(v).map_err(|e| bad(e.message().to_string()))?));
        }
    }
    let p = Path::new(v);
    if p.is_dir() {
        let ign = Matcher::from_file(&p.join(".dockerignore"), &format!("{v}/.dockerignore"))?;
        return Ok(Named::Dir(Arc::new(DirTree::open(p, v, ign, Some(&cache.root().join("build/context")))?)));
    }
    Err(bad("not a directory or an image source".into())
        .with_hint("use DIR, docker-image://REF, oci-layout://DIR[:TAG], oci:DIR[:TAG] or docker-archive:FILE"))
}

/// Expands each FROM and decides what it is based on.
pub(super) fn plan_stages(df: &Dockerfile, ctx: &Ctx) -> Result<(Vec<Base>, Vec<Platform>)> {
    let lex = Lex::new(df.escape);
    let mut bases = Vec::new();
    let mut platforms = Vec::new();
    for (i, s) in df.stages.iter().enumerate() {
        let f = &s.from;
        let image = lex.word(&f.image, &|k| ctx.global_arg(k)).map_err(|e| stage::lex_error(&f.loc, e))?;
        if image.is_empty() {
            return Err(f.loc.error(format!("base name ({}) should not be blank", f.image)).with_hint(
                "the variable is not set where FROM reads it: declare it with ARG (and a default) before the first FROM, or pass --build-arg",
            ));
        }
        let platform = match &f.platform {
            None => ctx.opts.platform.clone(),
            Some(p) => {
                let v = lex.word(p, &|k| ctx.global_arg(k)).map_err(|e| stage::lex_error(&f.loc, e))?;
                Platform::parse(&v).map_err(|e| f.loc.error(format!("FROM --platform={p}: {}", e.message())))?
            }
        };
        let lower = image.to_lowercase();
        let base = if let Some(j) = df.stages[..i].iter().position(|x| x.from.name.as_deref() == Some(lower.as_str())) {
            Base::Stage(j)
        } else if let Some(n) = ctx.named.get(&image) {
            match n {
                Named::Image(src) => Base::Image(src.clone()),
                Named::Dir(_) => {
                    return Err(f
                        .loc
                        .error(format!("FROM {image}: build context {image} is a directory"))
                        .with_hint("a directory context can only be used with COPY --from"));
                }
            }
        } else if lower == "scratch" {
            Base::Scratch
        } else {
            Base::Image(Source::parse(&image).map_err(|e| f.loc.error(e.message()))?)
        };
        bases.push(base);
        platforms.push(platform);
    }
    Ok((bases, platforms))
}

/// The stages the target needs (through FROM, COPY --from and RUN --mount from=), sorted.
pub(super) fn reachable(df: &Dockerfile, bases: &[Base], target: usize) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !out.insert(i) {
            continue;
        }
        if let Base::Stage(j) = bases[i] {
            todo.push(j);
        }
        for ins in &df.stages[i].instrs {
            let froms: Vec<String> = match &ins.op {
                Op::Copy(c) => c.from.iter().map(|(f, _)| f.clone()).collect(),
                Op::Run(r) => r.flags.iter().filter(|(n, _)| n == "mount").filter_map(|(_, v)| mount_from(v)).collect(),
                _ => Vec::new(),
            };
            for from in froms {
                let lower = from.to_lowercase();
                let j = df
                    .stages
                    .iter()
                    .position(|s| s.from.name.as_deref() == Some(lower.as_str()))
                    .or_else(|| from.parse().ok());
                if let Some(j) = j.filter(|j| *j < df.stages.len()) {
                    todo.push(j);
                }
            }
        }
    }
    out
}

/// RUN without an executor fails before any work starts.
pub(super) fn check_run(df: &Dockerfile, needed: &BTreeSet<usize>, opts: &BuildOptions) -> Result<()> {
    if opts.executor.is_some() {
        return Ok(());
    }
    for i in needed {
        for ins in &df.stages[*i].instrs {
            if matches!(ins.op, Op::Run(..)) {
                return Err(executor::run_unsupported(&ins.loc));
            }
        }
    }
    Ok(())
}
