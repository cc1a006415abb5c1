//! Running one stage: the base (scratch, an earlier stage, or an image with its ONBUILD
//! triggers), then each instruction with BuildKit's variable rules (ENV wins over ARG, a stage
//! sees only the ARGs it declares) and the classic builder's results: metadata instructions
//! edit the config and add an `empty_layer` history entry; COPY, ADD and WORKDIR plan a layer,
//! look it up in the build cache and write it only when it is new.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::StageResult;
use super::config::{Config, DEFAULT_PATH, PROXY_ARGS, check_signal, parse_ports, quoted};
use super::copy::{self, CopyRequest, Plan, PlanEntry, Source};
use super::ctx::{Ctx, FromUse};
use super::executor::{RootLayer, RunRequest, run_unsupported};
use super::fsview::{FsView, LayerEntry, Node, normalize};
use super::instructions::{CmdLine, Instr, Loc, Op, Src};
use super::layer;
use super::lex::{KeyValue, Lex};
use super::tree::Tree;
use crate::error::Result;
use crate::image::{Descriptor, Image, media};
use crate::platform::Platform;

pub(super) struct State<'c> {
    pub ctx: &'c Ctx<'c>,
    pub name: String,
    pub platform: Platform,
    pub config: Config,
    pub changed: bool,
    pub base: Option<Image>,
    pub layers: Vec<RootLayer>,
    pub view: Option<Arc<FsView>>,
    /// Declared ARGs with values, in order.
    pub args: Vec<(String, String)>,
    /// Name → index of its last entry in `args`.
    pub arg_index: HashMap<String, usize>,
    /// Bytes assigned by this stage's ARG and ENV instructions so far (capped at
    /// [`MAX_STAGE_VARS`]).
    pub var_bytes: usize,
    pub cmd_set: bool,
    pub docker_style: bool,
}

impl<'c> State<'c> {
    pub fn lookup(&self, k: &str) -> Option<String> {
        self.config.env_get(k).or_else(|| self.arg_index.get(k).map(|&i| self.args[i].1.clone()))
    }

    fn word(&self, s: &str, loc: &Loc) -> Result<String> {
        Lex::new(self.ctx.escape).word(s, &|k| self.lookup(k)).map_err(|e| lex_error(loc, e))
    }

    /// Expands the value of variable `name` set by `instr` (ARG, ENV) and counts it against
    /// the stage's [`MAX_STAGE_VARS`]; errors name the variable.
    fn var_word(&mut self, instr: &str, name: &str, s: &str, loc: &Loc) -> Result<String> {
        let v = Lex::new(self.ctx.escape).word(s, &|k| self.lookup(k)).map_err(|e| var_error(loc, instr, name, e))?;
        self.count_var(instr, name, v.len(), loc)?;
        Ok(v)
    }

    fn count_var(&mut self, instr: &str, name: &str, len: usize, loc: &Loc) -> Result<()> {
        self.var_bytes = self.var_bytes.saturating_add(name.len() + len);
        if self.var_bytes > MAX_STAGE_VARS {
            return Err(loc
                .error(format!(
                    "{instr} {name}: this stage's ARG and ENV values add up to more than {} MiB",
                    MAX_STAGE_VARS >> 20
                ))
                .with_hint(TOO_LONG_HINT));
        }
        Ok(())
    }

    fn words(&self, s: &str, loc: &Loc) -> Result<Vec<String>> {
        Lex::new(self.ctx.escape).words(s, &|k| self.lookup(k)).map_err(|e| lex_error(loc, e))
    }

    fn commit(&mut self, created_by: &str, layer: Option<&crate::digest::Digest>) {
        self.config.commit(&self.ctx.created, created_by, layer);
        self.changed = true;
    }

    pub fn view(&mut self) -> Result<Arc<FsView>> {
        if self.view.is_none() {
            self.view = Some(Arc::new(self.ctx.build_view(&self.layers)?));
        }
        Ok(self.view.clone().expect("set"))
    }

    pub fn workdir(&self) -> String {
        let w = self.config.string("WorkingDir");
        if w.is_empty() { "/".into() } else { w }
    }

    fn shell(&self) -> Vec<String> {
        let s = self.config.strings("Shell");
        if s.is_empty() { vec!["/bin/sh".into(), "-c".into()] } else { s }
    }

    fn argv(&self, c: &CmdLine) -> Vec<String> {
        match c {
            CmdLine::Exec(v) => v.clone(),
            CmdLine::Shell(s) => {
                let mut v = self.shell();
                v.push(s.clone());
                v
            }
        }
    }

    /// Starts from `FROM` with the default PATH added when the base has none.
    pub fn begin(&mut self) {
        if self.config.env_get("PATH").is_none() {
            self.config.set_env("PATH", DEFAULT_PATH);
        }
    }

    pub fn finish(self) -> StageResult {
        StageResult {
            name: self.name,
            platform: self.platform,
            config: self.config,
            changed: self.changed,
            base: self.base,
            layers: self.layers,
            view: self.view,
            docker_style: self.docker_style,
        }
    }

    /// Runs one instruction. `stages` are the stages finished so far (for COPY --from).
    pub fn dispatch(&mut self, ins: &Instr, stages: &[Option<StageResult>], index: usize) -> Result<()> {
        let loc = &ins.loc;
        match &ins.op {
            Op::Arg(list) => self.arg_step(list, loc)?,
            Op::Env(kvs) => self.env_step(kvs, loc)?,
            Op::Label(kvs) => {
                let mut msg = Vec::new();
                for kv in kvs {
                    let (k, v) = (self.word(&kv.key, loc)?, self.word(&kv.value, loc)?);
                    self.config.map_insert("Labels", &k, json!(v));
                    msg.push(format!("{k}={v}"));
                }
                self.commit(&format!("LABEL {}", msg.join(" ")), None);
            }
            Op::Maintainer(m) => {
                self.config.set_top("author", json!(m));
                self.commit(&format!("MAINTAINER {m}"), None);
            }
            Op::User(u) => {
                let u = self.word(u, loc)?;
                self.config.set("User", json!(u));
                self.commit(&format!("USER {u}"), None);
            }
            Op::Expose(list) => self.expose_step(list, loc)?,
            Op::Volume(list) => self.volume_step(list, loc)?,
            Op::Cmd(c) => {
                let argv = self.argv(c);
                self.config.set("Cmd", json!(argv));
                self.cmd_set = true;
                self.commit(&format!("CMD {}", quoted(&argv)), None);
            }
            Op::Entrypoint(c) => self.entrypoint_step(c),
            Op::Shell(s) => {
                self.config.set("Shell", json!(s));
                self.commit(&format!("SHELL [{}]", s.join(" ")), None);
            }
            Op::StopSignal(s) => {
                let s = self.word(s, loc)?;
                check_signal(&s)
                    .map_err(|e| loc.error(e).with_hint("use a signal name such as SIGTERM or a number"))?;
                self.config.set("StopSignal", json!(s));
                self.commit(&format!("STOPSIGNAL {s}"), None);
            }
            Op::Healthcheck(h) => {
                self.config.set_health(h.as_ref());
                let shown = match h {
                    None => "NONE".to_string(),
                    Some(h) => h.test.join(" "),
                };
                self.commit(&format!("HEALTHCHECK {shown}"), None);
            }
            Op::Onbuild(expr) => {
                let mut list = self.config.strings("OnBuild");
                list.push(expr.clone());
                self.config.set("OnBuild", json!(list));
                self.changed = true;
            }
            Op::Workdir(w) => self.workdir_step(w, loc)?,
            Op::Copy(c) => self.copy_step(ins, c, stages, index)?,
            Op::Run(run) => self.run_step(run, loc, stages, index)?,
        }
        Ok(())
    }

    /// `ARG`: the build arg, else the default, else the global arg of the same name.
    fn arg_step(&mut self, list: &[(String, Option<String>)], loc: &Loc) -> Result<()> {
        let mut parts = Vec::new();
        for (k, default) in list {
            let value = match (self.ctx.build_arg(k), default) {
                (Some(v), _) => Some(v),
                (None, Some(d)) => Some(self.var_word("ARG", k, d, loc)?),
                (None, None) => self.ctx.global_arg(k),
            };
            if let Some(v) = &value {
                self.count_var("ARG", k, v.len(), loc)?;
            }
            parts.push(match &value {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            });
            if let Some(v) = value {
                self.arg_index.insert(k.clone(), self.args.len());
                self.args.push((k.clone(), v));
            }
        }
        self.commit(&format!("ARG {}", parts.join(" ")), None);
        Ok(())
    }

    fn env_step(&mut self, kvs: &[KeyValue], loc: &Loc) -> Result<()> {
        let mut done = Vec::new();
        for kv in kvs {
            let k = self.word(&kv.key, loc)?;
            let v = self.var_word("ENV", &k, &kv.value, loc)?;
            done.push((k, v));
        }
        for (k, v) in &done {
            self.config.set_env(k, v);
        }
        let msg: Vec<String> = done.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.commit(&format!("ENV {}", msg.join(" ")), None);
        Ok(())
    }

    fn expose_step(&mut self, list: &[String], loc: &Loc) -> Result<()> {
        let mut ports = Vec::new();
        for p in list {
            for w in self.words(p, loc)? {
                ports.extend(parse_ports(&w).map_err(|e| {
                    loc.error(e).with_hint("EXPOSE takes PORT, PORT/PROTO or FROM-TO[/PROTO], e.g. 8080 or 53/udp")
                })?);
            }
        }
        for p in &ports {
            self.config.map_insert("ExposedPorts", p, json!({}));
        }
        self.commit(&format!("EXPOSE [{}]", ports.join(" ")), None);
        Ok(())
    }

    fn volume_step(&mut self, list: &[String], loc: &Loc) -> Result<()> {
        let mut vols = Vec::new();
        for v in list {
            let v = self.word(v, loc)?;
            if v.trim().is_empty() {
                return Err(loc.error("VOLUME specified can not be an empty string"));
            }
            self.config.map_insert("Volumes", &v, json!({}));
            vols.push(v);
        }
        self.commit(&format!("VOLUME [{}]", vols.join(" ")), None);
        Ok(())
    }

    /// `ENTRYPOINT`: an empty exec form clears it; a CMD of the base image is dropped.
    fn entrypoint_step(&mut self, c: &CmdLine) {
        let argv = match c {
            CmdLine::Exec(v) if v.is_empty() => Value::Null,
            _ => json!(self.argv(c)),
        };
        self.config.set("Entrypoint", argv.clone());
        if !self.cmd_set {
            self.config.remove("Cmd");
        }
        let shown: Vec<String> = argv
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        self.commit(&format!("ENTRYPOINT {}", quoted(&shown)), None);
    }

    fn run_step(
        &mut self,
        run: &super::instructions::Run,
        loc: &Loc,
        stages: &[Option<StageResult>],
        index: usize,
    ) -> Result<()> {
        let Some(exec) = self.ctx.opts.executor.clone() else { return Err(run_unsupported(loc)) };
        let workdir = self.workdir();
        let flags = super::run_flags::parse(&run.flags, &workdir, loc, &|v| self.word(v, loc))?;
        let ctx = self.ctx;
        let binds = super::bind_plan::plan(ctx, &flags.mounts, stages, index, &self.platform, loc)?;
        let source_of = |d: &crate::digest::Digest| ctx.source_of(d);
        let mut env: Vec<String> = self.config.strings("Env");
        for (k, v) in &self.args {
            if self.config.env_get(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        // Docker's predefined proxy args reach RUN without an ARG (and stay out of the history)
        for k in PROXY_ARGS {
            if let Some(v) = self.ctx.build_arg(k)
                && !env.iter().any(|e| e.split_once('=').is_some_and(|(n, _)| n == k))
            {
                env.push(format!("{k}={v}"));
            }
        }
        let argv = self.argv(&run.cmd);
        let base_layers = self.base.as_ref().map(|b| b.manifest.layers.len()).unwrap_or(0).min(self.layers.len());
        let req = RunRequest {
            loc,
            shell_form: matches!(run.cmd, CmdLine::Shell(_)),
            argv,
            heredocs: &run.heredocs,
            flags,
            binds,
            staging: &ctx.staging,
            source_of: &source_of,
            env,
            user: self.config.string("User"),
            workdir,
            platform: &self.platform,
            layers: &self.layers,
            base_layers,
            layer_options: &self.ctx.layer_opts,
            cache: &self.ctx.cache,
            no_cache: self.ctx.opts.no_cache,
            reporter: self.ctx.reporter,
        };
        let created_by = self.run_created_by(&req.effective_argv()?);
        let out = exec.run(&req)?;
        drop(req);
        {
            let mut stats = self.ctx.stats.lock().expect("poisoned");
            if out.cached {
                stats.cached += 1;
            } else if out.layer.is_some() {
                stats.built += 1;
            }
        }
        match &out.layer {
            Some(l) => {
                self.push_layer(l);
                if let Some(v) = &self.view {
                    let top = self.layers.last().expect("pushed");
                    let entries = super::layer_reader::entries(&self.ctx.cache, top.source.as_ref(), &top.desc)?;
                    let mut v = (**v).clone();
                    v.apply(&entries);
                    self.view = Some(Arc::new(v));
                }
                self.commit(&created_by, Some(&l.diff_id));
            }
            None => self.commit(&created_by, None),
        }
        self.ctx.report_step(&self.name, loc, &created_by, &out.how);
        Ok(())
    }

    /// BuildKit's history line: `RUN |2 A=1 B=2 /bin/sh -c make` (the stage's ARGs first).
    fn run_created_by(&self, argv: &[String]) -> String {
        let mut args: Vec<(String, String)> = Vec::new();
        for (k, _) in &self.args {
            let v = self.lookup(k).unwrap_or_default();
            match args.iter_mut().find(|(n, _)| n == k) {
                Some(e) => e.1 = v,
                None => args.push((k.clone(), v)),
            }
        }
        let mut s = String::from("RUN ");
        if !args.is_empty() {
            s.push_str(&format!("|{} ", args.len()));
            for (k, v) in &args {
                s.push_str(&format!("{k}={v} "));
            }
        }
        s.push_str(&argv.join(" "));
        s
    }

    fn workdir_step(&mut self, w: &str, loc: &Loc) -> Result<()> {
        let w = self.word(w, loc)?;
        let abs = if w.starts_with('/') { w.clone() } else { format!("{}/{w}", self.workdir()) };
        let wd = format!("/{}", normalize(&abs));
        self.config.set("WorkingDir", json!(wd));
        let view = self.view()?;
        let target = view.resolve(&wd, true).path;
        let mut plan = Plan::default();
        let mut missing = Vec::new();
        let mut cur = Some(target.as_str());
        while let Some(d) = cur.filter(|d| !d.is_empty()) {
            match view.get(d) {
                Some(n) if n.is_dir() => break,
                Some(_) => return Err(loc.error(format!("WORKDIR {wd}: /{d} exists and is not a directory"))),
                None => missing.push(d.to_string()),
            }
            cur = super::fsview::parent(d);
        }
        for d in missing {
            plan.entries.insert(
                super::fsview::PathKey(d),
                PlanEntry { node: Node::dir(0o755, 0, 0, 0), hardlink: None, implied: true },
            );
        }
        self.layer_step(plan, &format!("WORKDIR {wd}"), loc)
    }

    fn push_layer(&mut self, l: &layer::Layer) {
        let mt = if self.docker_style { media::DOCKER_LAYER_GZIP } else { media::OCI_LAYER_GZIP };
        let desc = Descriptor::new(mt, l.digest.clone(), l.size);
        let source = self.ctx.cache_source();
        self.ctx.register(&desc, source.clone());
        self.layers.push(RootLayer { desc, diff_id: l.diff_id.to_string(), source });
    }

    /// Commits a planned layer: from the build cache when possible, else written now.
    fn layer_step(&mut self, plan: Plan, created_by: &str, loc: &Loc) -> Result<()> {
        if plan.is_empty() {
            self.commit(created_by, None);
            self.ctx.report_step(&self.name, loc, created_by, "no changes");
            return Ok(());
        }
        let key = layer::key(&plan, &self.ctx.layer_opts);
        let cached = if self.ctx.opts.no_cache { None } else { layer::lookup(&self.ctx.cache, &key) };
        let (l, how) = match cached {
            Some(l) => {
                self.ctx.stats.lock().expect("poisoned").cached += 1;
                (l, "CACHED".to_string())
            }
            None => {
                let started = std::time::Instant::now();
                layer::stage_contents(&plan, &self.ctx.staging, &|d| self.ctx.source_of(d))?;
                let l = layer::write(&plan, &self.ctx.layer_opts, &self.ctx.cache, &self.ctx.staging)?;
                layer::remember(&self.ctx.cache, &key, &l)?;
                self.ctx.stats.lock().expect("poisoned").built += 1;
                let how = format!(
                    "layer {} ({}) in {:.2}s",
                    l.digest.short(),
                    crate::progress::human_size(l.size),
                    started.elapsed().as_secs_f64()
                );
                (l, how)
            }
        };
        let entries: Vec<LayerEntry> = plan
            .entries
            .into_iter()
            .map(|(k, e)| LayerEntry { path: k.0, node: Some(e.node), hardlink: e.hardlink })
            .collect();
        let mut v = (*self.view()?).clone();
        v.apply(&entries);
        self.view = Some(Arc::new(v));
        self.push_layer(&l);
        self.commit(created_by, Some(&l.diff_id));
        self.ctx.report_step(&self.name, loc, created_by, &how);
        Ok(())
    }

    fn copy_step(
        &mut self,
        ins: &Instr,
        c: &super::instructions::Copy,
        stages: &[Option<StageResult>],
        index: usize,
    ) -> Result<()> {
        let loc = &ins.loc;
        let name = if c.add { "ADD" } else { "COPY" };
        let mut sources = Vec::new();
        let mut shown = Vec::new();
        for s in &c.srcs {
            match s {
                Src::Path(p) => {
                    let p = self.word(p, loc)?;
                    shown.push(p.clone());
                    if c.add && super::fetch::is_url(&p) {
                        sources.push(Source::Url(p));
                    } else {
                        if !c.add && super::fetch::is_url(&p) {
                            return Err(loc.error("source can't be a URL for COPY").with_hint("use ADD for URLs"));
                        }
                        sources.push(Source::Path(p));
                    }
                }
                Src::Heredoc { name: n, body, expand } => {
                    let body = if *expand {
                        Lex { escape: '\\', skip_quotes: true }
                            .word(body, &|k| self.lookup(k))
                            .map_err(|e| loc.error(e))?
                    } else {
                        body.clone()
                    };
                    shown.push(format!("<<{n}"));
                    sources.push(Source::Inline { name: n.clone(), body: body.into_bytes() });
                }
            }
        }
        let dest = self.word(&c.dest, loc)?;
        let chown = match &c.chown {
            Some(s) => Some(self.word(s, loc)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some((s, floc)) => Some(copy::parse_chmod(&self.word(s, floc)?, floc)?),
            None => None,
        };
        let view = self.view()?;
        let owner = match &chown {
            None => (0, 0),
            Some(spec) => {
                let names = spec.contains(|c: char| !c.is_ascii_digit() && c != ':');
                let read = |p: &str| if names { self.ctx.read_text(&view, p) } else { Ok(None) };
                let (passwd, group) = (read("/etc/passwd")?, read("/etc/group")?);
                copy::parse_chown(spec, passwd.as_deref(), group.as_deref())
                    .map_err(|e| {
                        loc.error(format!("{name} --chown={spec}: {e}")).with_hint(
                            "use numeric ids (--chown=1000:1000), or add the user and group to /etc/passwd and /etc/group in an earlier step",
                        )
                    })?
            }
        };
        let tree: Arc<dyn Tree> = match &c.from {
            None => self.ctx.context.clone(),
            Some((from, floc)) => self.ctx.copy_source(from, FromUse::Copy, floc, stages, index, &self.platform)?,
        };
        let workdir = self.workdir();
        let req = CopyRequest {
            name,
            loc,
            sources,
            dest: dest.clone(),
            workdir: &workdir,
            owner,
            keep_owners: false,
            chmod,
            unpack: c.add.then_some(self.ctx.opts.limits),
            timeouts: self.ctx.timeouts(),
        };
        let empty = FsView::new();
        let target_view: &FsView = if c.link { &empty } else { &view };
        let started = std::time::Instant::now();
        let plan = copy::plan(&req, target_view, tree.as_ref(), &self.ctx.staging)?;
        tracing::info!("{loc}: planned {} entries in {:.2}s", plan.entries.len(), started.elapsed().as_secs_f64());
        let plan = if c.link { drop_existing_parents(plan, &view) } else { plan };
        let mut created_by = name.to_string();
        if let Some(s) = &chown {
            created_by.push_str(&format!(" --chown={s}"));
        }
        if let Some((s, _)) = &c.chmod {
            created_by.push_str(&format!(" --chmod={s}"));
        }
        if let Some((f, _)) = &c.from {
            created_by.push_str(&format!(" --from={f}"));
        }
        if c.link {
            created_by.push_str(" --link");
        }
        created_by.push_str(&format!(" {} {dest}", shown.join(" ")));
        self.layer_step(plan, &created_by, loc)
    }
}

/// Bytes one stage's ARG and ENV instructions may assign in total.
pub(super) const MAX_STAGE_VARS: usize = 16 << 20;

pub(super) const TOO_LONG_HINT: &str = "a value this long is almost always a variable built from itself (A2=${A1}${A1}…); keep ARG and ENV values small and put large data in a file that COPY adds";

/// A variable-substitution error at `loc`.
pub(super) fn lex_error(loc: &Loc, e: super::lex::LexError) -> crate::error::Error {
    let hint = if e.is_too_long() {
        TOO_LONG_HINT
    } else {
        "check the quotes and the ${VAR}, ${VAR:-default}, ${VAR:?message} forms on that line"
    };
    loc.error(e).with_hint(hint)
}

/// A substitution error in the value `instr` (ARG, ENV) assigns to `name`.
pub(super) fn var_error(loc: &Loc, instr: &str, name: &str, e: super::lex::LexError) -> crate::error::Error {
    lex_error(loc, super::lex::LexError(format!("{instr} {name}: {e}")))
}

/// `--link` plans against an empty filesystem; directories it only had to create that
/// already exist in the image are not rewritten (their modes and owners stay as they are).
fn drop_existing_parents(mut plan: Plan, view: &FsView) -> Plan {
    plan.entries.retain(|k, e| !(e.implied && view.is_dir(&k.0)));
    plan
}
