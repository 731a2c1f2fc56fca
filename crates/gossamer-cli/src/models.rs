//! Models by name: `--model` resolution (a folder, a Hub repository or an alias, pulled first
//! when it is not cached), and `gossamer pull`, `list`, `rm`. The protocol and the cache live
//! in `gossamer-hub`; this file asks, shows progress and prints.

use std::collections::HashMap;
use std::fmt::Write as FmtWrite;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use gossamer_hub::{
    human_bytes, pull, HubCache, HubSettings, Lookup, ModelRef, PullEvent, PullOptions,
    PullProgress, Pulled, RepoRef,
};
use indicatif::{
    HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressState, ProgressStyle,
};
use serde_json::json;

/// The `--model` help every command shares.
pub const MODEL_HELP: &str = "A model folder, a Hub repository (owner/name[@revision]) or an \
    alias (gpt-oss-20b, gpt-oss-120b); a repository that is not in the cache is downloaded \
    first (after asking, or with --yes)";

#[derive(Args)]
pub struct PullArgs {
    /// A Hub repository (owner/name[@revision]) or an alias (gpt-oss-20b, gpt-oss-120b).
    #[arg(default_value = "gpt-oss-20b")]
    model: String,
    /// Also fetch `original/` (OpenAI's reference layout, which gossamer also reads).
    #[arg(long)]
    include_original: bool,
    /// Files downloaded at once.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
}

#[derive(Args)]
pub struct ListArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RmArgs {
    /// A cached repository or alias; with @revision only that revision goes.
    model: String,
}

/// A `--model` turned into a folder, with the name a server calls it by.
pub struct Resolved {
    pub dir: PathBuf,
    pub name: String,
}

/// Resolves `--model`: folders as they are; repositories from the cache, pulling them first
/// when needed (with `yes`, or after asking on a terminal).
pub fn resolve(model: &str, yes: bool) -> Result<Resolved> {
    let r = match ModelRef::parse(model)? {
        ModelRef::Folder(dir) => {
            let name = dir
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "gpt-oss".into());
            return Ok(Resolved { dir, name });
        }
        ModelRef::Repo(r) => r,
    };
    let settings = HubSettings::from_env()?;
    let cache = HubCache::new(&settings.cache_dir);
    let dir = match cache.lookup(&r) {
        Lookup::Ready { dir, .. } => dir,
        lookup => {
            // Offline, `pull` answers from the cache or says why it cannot.
            if !settings.offline {
                ask_to_download(&r, &lookup, yes, &settings)?;
            }
            run_pull(&settings, &r, &PullOptions::default())?.dir
        }
    };
    Ok(Resolved {
        dir,
        name: r.name().to_string(),
    })
}

fn ask_to_download(r: &RepoRef, lookup: &Lookup, yes: bool, settings: &HubSettings) -> Result<()> {
    if yes {
        return Ok(());
    }
    let state = match lookup {
        Lookup::Partial { missing, .. } => format!(
            "is only partly downloaded ({} of its files missing)",
            missing.len()
        ),
        _ => "is not downloaded yet".to_string(),
    };
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        bail!("{r} {state}: run `gossamer pull {r}` first, or pass --yes to download it now");
    }
    eprint!(
        "{r} {state} (cache: {}). Download it now? [y/N] ",
        settings.cache_dir.display()
    );
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        bail!("{r} {state}; not downloading it")
    }
}

/// Pulls with progress on standard error; ends with one summary line.
fn run_pull(settings: &HubSettings, r: &RepoRef, opts: &PullOptions) -> Result<Pulled> {
    let display = Display::new(r);
    let result = pull(settings, r, opts, &display);
    display.finish();
    let pulled = result?;
    let short = &pulled.commit[..pulled.commit.len().min(7)];
    if pulled.files.is_empty() {
        eprintln!(
            "{r}: in the cache at commit {short} (HF_HUB_OFFLINE is set: not checked against the Hub)"
        );
    } else {
        let size: u64 = pulled.files.iter().map(|f| f.size).sum();
        let fetched = if pulled.downloaded == 0 {
            "all in the cache, verified".to_string()
        } else {
            format!("{} downloaded", human_bytes(pulled.downloaded))
        };
        eprintln!(
            "{r}: {} files, {} at commit {short} ({fetched})",
            pulled.files.len(),
            human_bytes(size)
        );
    }
    Ok(pulled)
}

pub fn pull_cmd(a: PullArgs) -> Result<()> {
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let r = repo_only(&a.model, "pull")?;
    let settings = HubSettings::from_env()?;
    let opts = PullOptions {
        include_original: a.include_original,
        jobs: a.jobs,
        ..PullOptions::default()
    };
    let pulled = run_pull(&settings, &r, &opts)?;
    // The snapshot folder on standard output, for scripts: `--model "$(gossamer pull x)"`.
    println!("{}", pulled.dir.display());
    Ok(())
}

fn repo_only(model: &str, command: &str) -> Result<RepoRef> {
    match ModelRef::parse(model)? {
        ModelRef::Repo(r) => Ok(r),
        ModelRef::Folder(dir) => bail!(
            "`{}` is a folder; gossamer {command} takes a Hub repository (owner/name[@revision]) or an alias",
            dir.display()
        ),
    }
}

pub fn list_cmd(a: ListArgs) -> Result<()> {
    let settings = HubSettings::from_env()?;
    let cache = HubCache::new(&settings.cache_dir);
    let repos = cache.list()?;
    if a.json {
        let models: Vec<_> = repos
            .iter()
            .map(|r| {
                json!({
                    "model": r.repo_id,
                    "size": r.size,
                    "partial_bytes": r.partial_bytes,
                    "ready": r.snapshots.iter().any(|s| s.ready),
                    "refs": r.refs.iter().map(|(name, commit)| json!({"name": name, "commit": commit})).collect::<Vec<_>>(),
                    "snapshots": r.snapshots,
                    "path": r.dir,
                })
            })
            .collect();
        println!("{}", json!({"cache": cache.root(), "models": models}));
        return Ok(());
    }
    if repos.is_empty() {
        eprintln!("no models in {}", cache.root().display());
        return Ok(());
    }
    let rows: Vec<[String; 4]> = repos
        .iter()
        .map(|r| {
            let mut revisions: Vec<String> = r
                .refs
                .iter()
                .map(|(name, commit)| format!("{name} ({})", &commit[..7]))
                .collect();
            revisions.extend(
                r.snapshots
                    .iter()
                    .filter(|s| r.refs.iter().all(|(_, c)| *c != s.commit))
                    .map(|s| s.commit[..s.commit.len().min(7)].to_string()),
            );
            let status = match (r.snapshots.iter().any(|s| s.ready), r.partial_bytes) {
                (true, 0) => "ready".to_string(),
                (true, p) => format!("ready (+{} partial)", human_bytes(p)),
                (false, p) => format!("incomplete ({} partial)", human_bytes(p)),
            };
            [
                r.repo_id.clone(),
                human_bytes(r.size),
                revisions.join(", "),
                status,
            ]
        })
        .collect();
    let header = ["MODEL", "SIZE", "REVISIONS", "STATUS"];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 4]| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
    eprintln!("cache: {}", cache.root().display());
    Ok(())
}

pub fn rm_cmd(a: RmArgs) -> Result<()> {
    let r = RepoRef::parse(&a.model)?;
    let settings = HubSettings::from_env()?;
    let removed = HubCache::new(&settings.cache_dir).remove(&r)?;
    let what = if removed.repo_removed {
        r.repo_id.clone()
    } else {
        r.to_string()
    };
    eprintln!("removed {what} ({} freed)", human_bytes(removed.freed));
    Ok(())
}

/// Progress of a pull: on a terminal, one bar per file in flight and a total (bytes, rate,
/// ETA); elsewhere, a line per file.
struct Display {
    repo: String,
    multi: Option<MultiProgress>,
    total: ProgressBar,
    files: Mutex<HashMap<String, ProgressBar>>,
}

impl Display {
    fn new(r: &RepoRef) -> Display {
        let tty = std::io::stderr().is_terminal();
        let multi = tty.then(MultiProgress::new);
        let total = match &multi {
            Some(m) => m.add(ProgressBar::new(0).with_prefix("total")),
            None => ProgressBar::hidden(),
        };
        Display {
            repo: r.to_string(),
            multi,
            total,
            files: Mutex::new(HashMap::new()),
        }
    }

    fn finish(&self) {
        for (_, bar) in self.files.lock().expect("bars").drain() {
            bar.finish_and_clear();
        }
        self.total.finish_and_clear();
    }

    /// Shows `bar` above the total, in place of an earlier bar of the same file.
    fn file_bar(&self, path: &str, bar: ProgressBar) -> ProgressBar {
        let Some(multi) = &self.multi else { return bar };
        let bar = multi.insert_before(&self.total, bar);
        if let Some(old) = self
            .files
            .lock()
            .expect("bars")
            .insert(path.to_string(), bar.clone())
        {
            old.finish_and_clear();
        }
        bar
    }

    fn with_bar(&self, path: &str, f: impl FnOnce(&ProgressBar)) {
        if let Some(bar) = self.files.lock().expect("bars").get(path) {
            f(bar)
        }
    }
}

/// A name, then bytes, rate and time left.
const BAR: &str = "{prefix:<34!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {speed:>12} eta {left}";

/// The bar's style. Rate and time left average over this run, from `from` bytes on: bytes
/// that were already on disk (a resumed download) are not this run's speed.
fn bar_style(template: &str, from: u64) -> ProgressStyle {
    let rate = move |s: &ProgressState| {
        let secs = s.elapsed().as_secs_f64();
        if secs < 0.25 {
            0.0
        } else {
            s.pos().saturating_sub(from) as f64 / secs
        }
    };
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
        .with_key("speed", move |s: &ProgressState, w: &mut dyn FmtWrite| {
            let _ = write!(w, "{}/s", HumanBytes(rate(s) as u64));
        })
        .with_key("left", move |s: &ProgressState, w: &mut dyn FmtWrite| {
            let left = s.len().unwrap_or(0).saturating_sub(s.pos());
            let r = rate(s);
            if left == 0 {
                let _ = write!(w, "0s");
            } else if r > 0.0 {
                let _ = write!(
                    w,
                    "{:#}",
                    HumanDuration(Duration::from_secs_f64(left as f64 / r))
                );
            } else {
                let _ = write!(w, "?");
            }
        })
}

impl PullProgress for Display {
    fn event(&self, e: PullEvent<'_>) {
        let tty = self.multi.is_some();
        match e {
            PullEvent::Plan {
                commit,
                files,
                total,
                present,
            } => {
                self.total.set_style(bar_style(
                    &BAR.replace("{bar:30}", "{bar:30.cyan/blue}"),
                    present,
                ));
                self.total.set_length(total);
                self.total.set_position(present);
                self.total.reset_elapsed();
                if !tty {
                    eprintln!(
                        "{}: commit {}, {} files, {} ({} already here)",
                        self.repo,
                        &commit[..7],
                        files.len(),
                        human_bytes(total),
                        human_bytes(present)
                    );
                }
            }
            PullEvent::Verifying { path, size } => {
                if !tty {
                    return;
                }
                let bar = ProgressBar::new_spinner()
                    .with_style(bar_style("{prefix:<34!} {spinner} {msg}", 0))
                    .with_message(format!("verifying {}", human_bytes(size)))
                    .with_prefix(path.to_string());
                self.file_bar(path, bar)
                    .enable_steady_tick(Duration::from_millis(120));
            }
            PullEvent::Downloading { path, size, from } => {
                if tty {
                    let bar = ProgressBar::new(size)
                        .with_style(bar_style(BAR, from))
                        .with_prefix(path.to_string())
                        .with_position(from);
                    self.file_bar(path, bar);
                } else {
                    let resumed = if from > 0 {
                        format!(", resuming at {}", human_bytes(from))
                    } else {
                        String::new()
                    };
                    eprintln!("fetching {path} ({}{resumed})", human_bytes(size));
                }
            }
            PullEvent::Progress { path, bytes } => {
                self.total.inc(bytes);
                self.with_bar(path, |b| b.inc(bytes));
            }
            PullEvent::Discarded { path, bytes } => {
                self.total.dec(bytes);
                self.with_bar(path, |b| b.dec(bytes));
            }
            PullEvent::Ready { path, .. } => {
                if let Some(bar) = self.files.lock().expect("bars").remove(path) {
                    bar.finish_and_clear();
                    if let Some(m) = &self.multi {
                        m.remove(&bar);
                    }
                }
            }
            PullEvent::Note(text) => match &self.multi {
                Some(m) => {
                    let _ = m.println(format!("note: {text}"));
                }
                None => eprintln!("note: {text}"),
            },
        }
    }
}
