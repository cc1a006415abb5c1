//! Writing a planned build: resolve and fetch the images, plan each generated image archive's
//! exact size with a dry run (layer bytes replaced by zeros: stored deflate blocks cost the same
//! whatever their content, so only metadata is compressed twice), then stream everything once
//! into the atomically written SPX — the archive's layers go into stored blocks of the outer
//! gzip, never through a temporary file and never recompressed — and re-read the result before
//! it is renamed into place.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::model::{ArchiveKind, ArchiveSummary, ImageFrom, PackSummary, Plan, PushedImage};
use super::options::{PackOptions, VerifyLevel};
use crate::atomic::AtomicFile;
use crate::blob_cache::BlobCache;
use crate::compress::GzipWriter;
use crate::docker_archive::ArchiveImage;
use crate::docker_archive::write::{WriteOptions, write_to};
use crate::error::{Error, Result};
use crate::image::{BlobReader, BlobSource, Descriptor, Image, media};
use crate::ops::pull;
use crate::ops::verify::{VerifyOptions, verify_stream};
use crate::progress::Reporter;
use crate::source::Resolver;
use crate::spx::writer::{self, Body};
use crate::tar::{Plain, Sink};

/// Writes the planned build; see the module docs.
pub fn emit(opts: &PackOptions, mut plan: Plan, reporter: &dyn Reporter) -> Result<PackSummary> {
    let images = resolve_images(opts, &plan, reporter)?;
    let groups = group_by_archive(&plan, &images);
    let archive_lists: Vec<Vec<ArchiveImage>> = groups
        .iter()
        .map(|g| g.iter().map(|(i, tags)| ArchiveImage { image: &images[*i], tags: tags.clone() }).collect())
        .collect();
    let wopts = write_options(opts, &plan);
    let sizes = plan_sizes(&mut plan, &archive_lists, &wopts)?;
    // the image archives dominate the SPX and their sizes are exact now: refuse a disk that
    // clearly cannot hold them before writing anything
    crate::atomic::require_space(&plan.output, sizes.iter().sum())?;

    let started = std::time::Instant::now();
    let out_name = plan.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut out = AtomicFile::create(&plan.output)?;
    let mut tee = match &plan.tee {
        Some((index, path)) => {
            let mut file = AtomicFile::create(path)?;
            let w = BufWriter::with_capacity(1 << 20, file.take_file());
            Some(Tee { index: *index, file, w })
        }
        None => None,
    };
    let file = write_spx(opts, &plan, out.take_file(), tee.as_mut(), &archive_lists, &wopts, reporter)?;
    tracing::debug!("wrote {out_name} in {:.2}s", started.elapsed().as_secs_f32());
    if opts.verify != VerifyLevel::Off {
        verify_written(opts, &plan, &file, &out_name, reporter)?;
    }
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    out.commit_file(file)?;
    let image_archive = match tee {
        Some(Tee { file: f, w, .. }) => {
            let path = f.dest().to_path_buf();
            let file = w.into_inner().map_err(|e| Error::io("cannot write", &path, e.into_error()))?;
            f.commit_file(file)?;
            Some(path)
        }
        None => None,
    };
    let mut summary = summary(&plan, &groups, &sizes, image_archive, size);
    if let Some(upload) = &opts.push_images {
        summary.pushed = push_images(opts, &plan, &images, upload, reporter)?;
    }
    Ok(summary)
}

/// `--push-images`: every bundled image whose compose name names a registry host, pushed under
/// that name (others are left alone: `app:1.0` would mean Docker Hub).
fn push_images(
    opts: &PackOptions,
    plan: &Plan,
    images: &[Image],
    upload: &crate::ops::push::UploadOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<PushedImage>> {
    let resolver = Resolver::new(BlobCache::open(opts.cache_dir.clone(), false)?, opts.client.clone());
    let mut out: Vec<PushedImage> = Vec::new();
    for (req, image) in plan.images.iter().zip(images) {
        let first = req.tag.split('/').next().unwrap_or("");
        let names_registry = req.tag.contains('/') && (first.contains(['.', ':']) || first == "localhost");
        if !names_registry {
            reporter.message(&format!("not pushing {}: its name names no registry", req.tag));
            continue;
        }
        if out.iter().any(|p| p.image == req.tag) {
            continue;
        }
        let dest = crate::ops::push::destination(&req.tag)?;
        let s = crate::ops::push::push_image(&resolver, image, &dest, upload, reporter)?;
        reporter.message(&format!("pushed {}@{}", req.tag, s.digest));
        out.push(PushedImage {
            image: req.tag.clone(),
            digest: s.digest.to_string(),
            uploaded: s.stats.uploaded,
            mounted: s.stats.mounted,
            existing: s.stats.existing,
            bytes_uploaded: s.stats.bytes_uploaded,
        });
    }
    Ok(out)
}

/// The SDK `--image-archive` copy being written: which archive it copies, and where.
struct Tee {
    index: usize,
    file: AtomicFile,
    w: BufWriter<File>,
}

/// Every image of the plan, pulled or read for the plan's platform, or built; then every blob
/// fetched into the cache.
fn resolve_images(opts: &PackOptions, plan: &Plan, reporter: &dyn Reporter) -> Result<Vec<Image>> {
    if plan.images.is_empty() {
        return Ok(Vec::new());
    }
    let cache = BlobCache::open(opts.cache_dir.clone(), opts.offline)?;
    let resolver = Resolver::new(cache, opts.client.clone()).with_limits(opts.limits);
    let mut images = Vec::with_capacity(plan.images.len());
    // one executor for every image: its sandbox is detected once
    let executor = Arc::new(crate::dockerfile::run::SandboxExecutor::new(opts.run.clone()));
    for req in &plan.images {
        let image = match &req.from {
            ImageFrom::Source(src) => {
                pull::resolve_all(&resolver, std::slice::from_ref(src), &plan.platform, reporter)?.remove(0)
            }
            ImageFrom::Build(b) => {
                let mut bo = crate::dockerfile::BuildOptions::new(b.dockerfile.clone(), &b.context);
                bo.platform = plan.platform.clone();
                bo.build_args = b.args.clone();
                bo.target = b.target.clone();
                bo.epoch = opts.epoch;
                bo.compression_level = opts.level;
                bo.jobs = opts.jobs;
                bo.limits = opts.limits;
                bo.executor = Some(executor.clone());
                let img =
                    crate::dockerfile::build_image(&bo, &resolver, reporter).map_err(|e| e.context(&req.shown))?;
                pull::check_images(std::slice::from_ref(&img), &plan.platform)?;
                img
            }
        };
        images.push(image);
    }
    pull::prefetch(&images, opts.jobs, reporter)?;
    crate::image::arch_lint::lint(&images, opts.strict, reporter)?;
    Ok(images)
}

/// Per archive, its images with their tags: (index in `images`, tags); images resolving to the
/// same manifest share one item.
fn group_by_archive(plan: &Plan, images: &[Image]) -> Vec<Vec<(usize, Vec<String>)>> {
    let mut groups: Vec<Vec<(usize, Vec<String>)>> = vec![Vec::new(); plan.archives.len()];
    for (i, req) in plan.images.iter().enumerate() {
        let group = &mut groups[req.archive];
        let digest = images[i].manifest_digest();
        match group.iter_mut().find(|(j, _)| images[*j].manifest_digest() == digest) {
            Some((_, tags)) => tags.push(req.tag.clone()),
            None => group.push((i, vec![req.tag.clone()])),
        }
    }
    groups
}

/// The docker-archive writer's options per archive (gzip'd by its name).
fn write_options(opts: &PackOptions, plan: &Plan) -> Vec<WriteOptions> {
    plan.archives
        .iter()
        .map(|a| {
            let mut w = WriteOptions::for_path(std::path::Path::new(&a.name), opts.epoch);
            w.level = opts.level;
            w
        })
        .collect()
}

/// Plans the exact size of every generated archive and records it in its entry.
fn plan_sizes(plan: &mut Plan, lists: &[Vec<ArchiveImage>], wopts: &[WriteOptions]) -> Result<Vec<u64>> {
    let mut sizes = vec![0u64; plan.archives.len()];
    for (i, a) in plan.archives.iter().enumerate() {
        if matches!(a.kind, ArchiveKind::Generated { .. }) {
            let t = std::time::Instant::now();
            sizes[i] = planned_size(&lists[i], &wopts[i])?;
            tracing::debug!("planned {} ({} bytes) in {:.2}s", a.name, sizes[i], t.elapsed().as_secs_f32());
        }
    }
    for e in &mut plan.entries {
        if let Body::Archive { index, size } = &mut e.body {
            *size = sizes[*index];
        }
    }
    Ok(sizes)
}

/// Streams every entry into `file` through one gzip stream (and the `--image-archive` archive
/// into its copy); returns the file, flushed.
fn write_spx(
    opts: &PackOptions,
    plan: &Plan,
    file: File,
    mut tee: Option<&mut Tee>,
    lists: &[Vec<ArchiveImage>],
    wopts: &[WriteOptions],
    reporter: &dyn Reporter,
) -> Result<File> {
    let buffered = BufWriter::with_capacity(1 << 20, file);
    let threads = crate::compress::default_threads();
    let werr = |e: io::Error| Error::io("cannot write", &plan.output, e);
    let mut gz = GzipWriter::new(buffered, opts.level, threads).map_err(werr)?;
    let progress = |n: u64| reporter.bytes(n);
    let mut produce = |index: usize, sink: &mut dyn Sink| -> Result<u64> {
        let tee_w: Option<&mut dyn Write> = match &mut tee {
            Some(t) if t.index == index => Some(&mut t.w),
            _ => None,
        };
        write_archive(sink, tee_w, &lists[index], &wopts[index], &progress)
            .map_err(|e| e.context(format!("image archive {}", plan.archives[index].name)))
    };
    writer::write_tar(&mut gz, &plan.entries, opts.epoch, &mut produce, &progress)?;
    let buffered = gz.finish().map_err(werr)?;
    let mut file = buffered.into_inner().map_err(|e| werr(e.into_error()))?;
    file.flush().map_err(werr)?;
    Ok(file)
}

/// Re-reads the SPX just written with `verify`'s checks; a problem is a bug (or a prebuilt
/// archive that changed while building).
fn verify_written(opts: &PackOptions, plan: &Plan, file: &File, out_name: &str, reporter: &dyn Reporter) -> Result<()> {
    let started = std::time::Instant::now();
    reporter.message(&format!("checking {out_name}"));
    let mut reader = file.try_clone().map_err(|e| Error::io("cannot write", &plan.output, e))?;
    let vopts = VerifyOptions {
        full: opts.verify == VerifyLevel::Full,
        platform: Some(plan.platform.clone()),
        limits: crate::compress::Limits::NONE,
    };
    let report = verify_stream(&mut reader, out_name, &vopts)?;
    if let Some(e) = report.findings.into_error() {
        return Err(Error::internal(format!("the SPX just written does not pass verify: {}", e.message()))
            .with_hint("this is a bug in spxpack (or a prebuilt archive changed while building); please report it"));
    }
    tracing::debug!("checked {out_name} in {:.2}s", started.elapsed().as_secs_f32());
    Ok(())
}

fn summary(
    plan: &Plan,
    groups: &[Vec<(usize, Vec<String>)>],
    sizes: &[u64],
    image_archive: Option<PathBuf>,
    size: u64,
) -> PackSummary {
    let archives = plan
        .archives
        .iter()
        .enumerate()
        .map(|(i, a)| match &a.kind {
            ArchiveKind::Generated { .. } => ArchiveSummary {
                name: a.name.clone(),
                size: sizes[i],
                tags: groups[i].iter().flat_map(|(_, t)| t.clone()).collect(),
                prebuilt: false,
            },
            ArchiveKind::Prebuilt { size, info, .. } => ArchiveSummary {
                name: a.name.clone(),
                size: *size,
                tags: info.tags().cloned().collect(),
                prebuilt: true,
            },
        })
        .collect();
    PackSummary {
        output: plan.output.clone(),
        extension_name: plan.extension_name.clone(),
        target: plan.target,
        platform: plan.platform.normalized().to_string(),
        entries: plan.entries.iter().map(|e| e.name.clone()).collect(),
        archives,
        manifest_added: plan.manifest_added.clone(),
        image_archive,
        size,
        pushed: Vec::new(),
    }
}

/// Writes a docker archive into the SPX sink: a gzip'd archive entirely as stored data (it is
/// compressed already), a plain one with its metadata compressible and its layers stored.
fn write_archive<'a>(
    sink: &'a mut dyn Sink,
    tee: Option<&'a mut dyn Write>,
    images: &[ArchiveImage],
    wopts: &WriteOptions,
    progress: &dyn Fn(u64),
) -> Result<u64> {
    let io_err = |e: io::Error| Error::from_io("cannot write", "the image archive", e);
    let mut to = Forward { outer: sink, tee, n: 0 };
    if wopts.gzip {
        let gz = GzipWriter::new(Stored(&mut to), wopts.level, wopts.threads).map_err(io_err)?;
        let (_, gz) = write_to(gz, images, wopts, progress)?;
        gz.finish().map_err(io_err)?;
    } else {
        write_to(&mut to, images, wopts, progress)?;
    }
    Ok(to.n)
}

/// Passes archive bytes on to the SPX sink (keeping their kind) and to the optional copy.
struct Forward<'a> {
    outer: &'a mut dyn Sink,
    tee: Option<&'a mut dyn Write>,
    n: u64,
}

impl Forward<'_> {
    fn copy(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(t) = &mut self.tee {
            t.write_all(data)?;
        }
        self.n += data.len() as u64;
        Ok(())
    }
}

impl Sink for &mut Forward<'_> {
    fn meta(&mut self, data: &[u8]) -> io::Result<()> {
        self.outer.meta(data)?;
        self.copy(data)
    }
    fn compressed(&mut self, data: &[u8]) -> io::Result<()> {
        self.outer.compressed(data)?;
        self.copy(data)
    }
}

/// A `Write` whose bytes (a gzip stream) are stored by the SPX's gzip.
struct Stored<'a, 'b>(&'a mut Forward<'b>);

impl Write for Stored<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.outer.compressed(buf)?;
        self.0.copy(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Layer blobs that are compressed are replaced by zeros of the same size: the archive's size
/// does not depend on them (they are stored, not deflated), and nothing is read.
struct Zeros(Arc<dyn BlobSource>);

impl BlobSource for Zeros {
    fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        if media::layer_compression(&desc.media_type) != Some(media::LayerCompression::None) {
            Ok(Box::new(io::Read::take(io::repeat(0), desc.size)))
        } else {
            self.0.open(desc)
        }
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// The exact size `write_archive` will produce for `images`.
fn planned_size(images: &[ArchiveImage], wopts: &WriteOptions) -> Result<u64> {
    let zeroed: Vec<Image> = images
        .iter()
        .map(|ai| {
            let mut i = ai.image.clone();
            i.source = Arc::new(Zeros(ai.image.source.clone()));
            i
        })
        .collect();
    let list: Vec<ArchiveImage> =
        zeroed.iter().zip(images).map(|(i, ai)| ArchiveImage { image: i, tags: ai.tags.clone() }).collect();
    let io_err = |e: io::Error| Error::from_io("cannot plan", "the image archive", e);
    if wopts.gzip {
        let gz = GzipWriter::new(Counter(0), wopts.level, wopts.threads).map_err(io_err)?;
        let (_, gz) = write_to(gz, &list, wopts, &|_| {})?;
        Ok(gz.finish().map_err(io_err)?.0)
    } else {
        let (_, p) = write_to(Plain(Counter(0)), &list, wopts, &|_| {})?;
        Ok(p.0.0)
    }
}
