//! `gossamer`: run gpt-oss models. The logic lives in the library crates; this file parses
//! arguments, prints results and turns errors into one clear line.

mod chat;
mod device;
mod harmony_cmd;
mod models;
mod serve;

use std::io::Write;
use std::path::{Path, PathBuf};

use models::MODEL_HELP;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use gossamer_checkpoint::synth::{self, Preset, SynthOptions};
use gossamer_checkpoint::{Checkpoint, ExpertFormat, Layout};
use gossamer_engine::{GenerateOptions, SamplingParams, ASSISTANT_STOP_TOKENS};
use gossamer_harmony::Tokenizer;
use gossamer_model::{GptOss, Logits, OpTimes, Precision};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "gossamer",
    version,
    about = "Run OpenAI's gpt-oss models on your own machine"
)]
struct Cli {
    /// Compute threads (default: every core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Bind each compute thread to its own core.
    #[arg(long, global = true)]
    pin_threads: bool,
    /// Arithmetic of prefill products: `exact` (f32 activations everywhere) or `fast` (bf16
    /// activations in batched products where the CPU multiplies bf16 natively). Default: exact
    /// for `score`, fast for the rest.
    #[arg(long, global = true, value_name = "exact|fast")]
    precision: Option<Precision>,
    /// Download a model that is not in the cache without asking.
    #[arg(long, short = 'y', global = true)]
    yes: bool,
    /// Where the model runs: `cpu`, or `cuda[:N]` in builds with the `cuda` feature.
    #[arg(
        long,
        global = true,
        default_value = "cpu",
        value_name = "cpu|cuda[:N]"
    )]
    device: device::Device,
    /// GiB of GPU memory for the KV cache (default: half of what the weights leave free,
    /// at most 64).
    #[arg(long, global = true, value_name = "GIB")]
    kv_cache_gb: Option<f64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a model folder: config, layout, tensors, parameter and byte counts.
    Inspect(InspectArgs),
    /// Print the top next-token logits at every position of a token sequence.
    Score(ScoreArgs),
    /// Render conversations to tokens and parse tokens to messages (JSON).
    #[command(subcommand)]
    Harmony(harmony_cmd::HarmonyCommand),
    /// Chat with a model in the harmony format (interactive, or lines on standard input).
    Chat(ChatArgs),
    /// Generate tokens from a prompt (token ids or plain text).
    Generate(GenerateArgs),
    /// Prefill and decode tokens/s, like llama-bench (pp / tg), with bandwidth achieved.
    Bench(BenchArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (Chat Completions, Responses).
    Serve(serve::ServeArgs),
    /// Download a model from the Hugging Face Hub into the shared Hugging Face cache.
    Pull(models::PullArgs),
    /// List the models in the Hugging Face cache, with their sizes.
    List(models::ListArgs),
    /// Remove a model (or one revision of it) from the Hugging Face cache.
    Rm(models::RmArgs),
    /// Write a seeded random checkpoint in the official layout (for tests and benchmarks).
    RandomCheckpoint(RandomCheckpointArgs),
}

#[derive(Args)]
struct InspectArgs {
    #[arg(long, help = MODEL_HELP)]
    model: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ScoreArgs {
    #[arg(long, help = MODEL_HELP)]
    model: String,
    /// Comma-separated token ids.
    #[arg(long, value_delimiter = ',', required = true)]
    tokens: Vec<u32>,
    /// How many of the highest logits to print per position.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    #[arg(long)]
    json: bool,
}

/// Sampling flags shared by `generate` and `chat`.
#[derive(Args)]
struct SamplingArgs {
    /// OpenAI's recommendation for gpt-oss is 1.0; 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// 0 disables top-k.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            seed: self.seed,
        }
    }
}

#[derive(Args)]
struct GenerateArgs {
    #[arg(long, help = MODEL_HELP)]
    model: String,
    /// Comma-separated prompt token ids.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "prompt",
        required_unless_present = "prompt"
    )]
    tokens: Option<Vec<u32>>,
    /// Prompt text, encoded with o200k_harmony as plain text (no chat template).
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ChatArgs {
    #[arg(long, help = MODEL_HELP, default_value = "gpt-oss-20b")]
    model: String,
    /// How long the model thinks before answering: low, medium or high.
    #[arg(long, default_value = "medium")]
    reasoning_effort: gossamer_harmony::conversation::ReasoningEffort,
    /// Instructions for the model (sent as the harmony developer message).
    #[arg(long)]
    developer: Option<String>,
    /// Show the model's reasoning, dimmed, before the answer (`--show-reasoning false` hides it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    show_reasoning: bool,
    /// Same as `--show-reasoning false`.
    #[arg(long, conflicts_with = "show_reasoning")]
    hide_reasoning: bool,
    /// The `Current date:` of the system message (default: today, UTC); `none` omits it.
    #[arg(long)]
    date: Option<String>,
    /// Token budget per answer (reasoning included).
    #[arg(long, default_value_t = 4096)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Print JSON lines (prompt tokens, parser events, turn summaries) instead of text.
    #[arg(long)]
    events: bool,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long, help = MODEL_HELP)]
    model: String,
    /// Prompt tokens for the prefill test (0 skips it).
    #[arg(short = 'p', long = "prompt-tokens", default_value_t = 512)]
    prompt_tokens: usize,
    /// Decode steps for the generation test (0 skips it).
    #[arg(short = 'n', long = "decode-tokens", default_value_t = 128)]
    decode_tokens: usize,
    /// Tokens already in the KV cache before each test.
    #[arg(short = 'd', long, default_value_t = 0)]
    depth: usize,
    /// Compute threads (same as the global --threads).
    #[arg(short = 't', long = "bench-threads")]
    threads: Option<usize>,
    /// Timed repeats of each test (after one warm-up).
    #[arg(short = 'r', long, default_value_t = 5)]
    repeats: usize,
    /// Also print where the time goes: milliseconds per token for each kind of operation.
    #[arg(long)]
    profile: bool,
    /// Also measure the machine's read bandwidth with the same threads (1 GiB read five
    /// times, before and after the tests) and print decode as a share of that ceiling.
    #[arg(long)]
    ceiling: bool,
    /// Instead of pp/tg: serve this many requests at once through the continuous-batching
    /// engine (a comma list, e.g. 1,4,16), each with a -p token prompt generating -n tokens,
    /// and report the aggregate decode rate.
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<usize>,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExpertsArg {
    Mxfp4,
    Bf16,
}

#[derive(Clone, Copy, ValueEnum)]
enum LayoutArg {
    Hf,
    Original,
}

#[derive(Args)]
struct RandomCheckpointArgs {
    /// tiny | small-vocab | 20b
    #[arg(long)]
    preset: Preset,
    #[arg(long)]
    seed: u64,
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
    /// Override the number of layers.
    #[arg(long)]
    layers: Option<usize>,
    /// Override the sliding window.
    #[arg(long)]
    sliding_window: Option<usize>,
    #[arg(long, value_enum, default_value = "mxfp4")]
    experts: ExpertsArg,
    #[arg(long, value_enum, default_value = "hf")]
    layout: LayoutArg,
    /// Start a new shard file past this size.
    #[arg(long, default_value_t = 5_000_000_000)]
    max_shard_bytes: u64,
}

/// Makes glibc's allocator keep freed memory for reuse instead of handing it back to the
/// kernel. A forward pass allocates activations of megabytes to tens of megabytes per layer
/// (a 512-token prompt's expert inputs are 24 MB); by default glibc serves each from fresh
/// pages (above its mmap threshold) or trims them on free, so every layer paid again for
/// page faults and zeroing: 287 k faults against 54 k for a 4-layer 512-token prefill, and
/// 5 % of its time. Resident memory stays at the largest step's high-water mark, which the
/// next step reuses anyway.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's ceiling for the mmap threshold on 64-bit (half its 64 MiB heap size).
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes the allocator's tuning parameters; it is called
        // before any other thread exists, and both values are in glibc's accepted ranges.
        let ok = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        };
        if !ok {
            tracing::debug!("glibc refused the allocator tuning; keeping its defaults");
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    keep_freed_memory();
    let threads = match &cli.command {
        Command::Bench(b) => b.threads.or(cli.threads),
        _ => cli.threads,
    };
    gossamer_kernels::threads::init(threads, cli.pin_threads);
    let precision = cli.precision;
    let yes = cli.yes;
    device::set(device::DeviceChoice {
        device: cli.device,
        kv_cache_gb: cli.kv_cache_gb,
    });
    let result = match cli.command {
        Command::Inspect(a) => inspect(a, yes),
        Command::Score(a) => score(a, precision.unwrap_or(Precision::Exact), yes),
        Command::Chat(a) => chat(a, precision.unwrap_or(Precision::Fast), yes),
        Command::Bench(a) => bench(a, precision.unwrap_or(Precision::Fast), yes),
        Command::Harmony(c) => harmony_cmd::run(c),
        Command::Generate(a) => generate(a, precision.unwrap_or(Precision::Fast), yes),
        Command::RandomCheckpoint(a) => random_checkpoint(a),
        Command::Serve(a) => serve::run(a, precision.unwrap_or(Precision::Fast), yes),
        Command::Pull(a) => models::pull_cmd(a),
        Command::List(a) => models::list_cmd(a),
        Command::Rm(a) => models::rm_cmd(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn open(dir: &Path) -> Result<Checkpoint> {
    Checkpoint::open(dir).with_context(|| format!("cannot load model {}", dir.display()))
}

/// Opens what `--model` names, pulling it first if it is a repository not in the cache.
fn open_model(model: &str, yes: bool) -> Result<Checkpoint> {
    open(&models::resolve(model, yes)?.dir)
}

fn inspect(a: InspectArgs, yes: bool) -> Result<()> {
    let ck = open_model(&a.model, yes)?;
    let stats = ck.stats();
    let c = &ck.config;
    let report = json!({
        "model": ck.dir,
        "layout": ck.layout,
        "config_file": ck.config_path,
        "files": ck.files,
        "tensor_count": ck.tensor_count,
        "bytes_on_disk": ck.bytes_on_disk,
        "config": c,
        "total_params": stats.total_params,
        "active_params_per_token": stats.active_params,
        "bytes_read_per_token": stats.bytes_per_token,
        "kv_bytes_per_position": stats.kv_bytes_per_position,
    });
    if a.json {
        println!("{report}");
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!("model        {}", ck.dir.display());
    println!(
        "layout       {} ({} files, {} tensors, {:.2} GiB on disk)",
        ck.layout,
        ck.files.len(),
        ck.tensor_count,
        gib(ck.bytes_on_disk)
    );
    println!(
        "shape        {} layers, hidden {}, {} heads / {} kv heads × {}, {} experts (top {}), vocab {}",
        c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
        c.num_local_experts, c.num_experts_per_tok, c.vocab_size
    );
    println!("experts      {:?}", c.expert_format);
    println!(
        "attention    sliding window {} on even layers; context {}",
        c.sliding_window, c.max_position_embeddings
    );
    println!(
        "parameters   {:.3} B total, {:.3} B active per token",
        stats.total_params as f64 / 1e9,
        stats.active_params as f64 / 1e9
    );
    println!(
        "per token    {:.3} GB of weights read; {} KiB of KV cache per position",
        stats.bytes_per_token as f64 / 1e9,
        stats.kv_bytes_per_position / 1024
    );
    Ok(())
}

fn score(a: ScoreArgs, precision: Precision, yes: bool) -> Result<()> {
    if a.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let ck = open_model(&a.model, yes)?;
    let mut model = device::load_model(&ck)?;
    model.set_precision(precision);
    let mut cache = model.new_cache();
    let vocab = model.config().vocab_size;
    // Chunks through the KV cache (identical to one pass, see the model's tests) keep the
    // logits buffer at SCORE_CHUNK × vocab floats however long the sequence.
    const SCORE_CHUNK: usize = 256;
    let mut positions = Vec::with_capacity(a.tokens.len());
    for chunk in a.tokens.chunks(SCORE_CHUNK) {
        let logits = model.forward(chunk, &mut cache, Logits::All)?;
        positions.extend(logits.chunks_exact(vocab).map(|row| {
            let top: Vec<_> = top_k(row, a.top_k)
                .into_iter()
                .map(|(id, logit)| json!({"id": id, "logit": logit}))
                .collect();
            json!({"top": top})
        }));
    }
    if a.json {
        println!("{}", json!({"positions": positions}));
    } else {
        for (i, (p, t)) in positions.iter().zip(&a.tokens).enumerate() {
            let tops: Vec<String> = p["top"]
                .as_array()
                .expect("array")
                .iter()
                .map(|e| format!("{}:{:.4}", e["id"], e["logit"].as_f64().unwrap_or(f64::NAN)))
                .collect();
            println!("{i:5} {t:7} -> {}", tops.join(" "));
        }
    }
    Ok(())
}

/// The `k` highest logits, descending; ties go to the lower id.
fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let k = k.min(row.len());
    let cmp = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
    idx.select_nth_unstable_by(k.saturating_sub(1), cmp);
    idx.truncate(k);
    idx.sort_by(cmp);
    idx.into_iter().map(|i| (i, row[i as usize])).collect()
}

fn generate(a: GenerateArgs, precision: Precision, yes: bool) -> Result<()> {
    let ck = open_model(&a.model, yes)?;
    let mut model = device::load_model(&ck)?;
    model.set_precision(precision);
    let tokenizer = Tokenizer::o200k_harmony();
    let prompt = match (&a.tokens, &a.prompt) {
        (Some(t), _) => t.clone(),
        (None, Some(text)) => tokenizer.encode_ordinary(text),
        (None, None) => bail!("give --tokens or --prompt"),
    };
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        sampling: a.sampling.params(),
        stop_tokens: ASSISTANT_STOP_TOKENS.to_vec(),
        cancel: None,
    };
    let mut cache = model.new_cache();
    let mut stdout = std::io::stdout().lock();
    let json_out = a.json;
    let mut streamed = Vec::new();
    let g = gossamer_engine::generate(&model, &mut cache, &prompt, &opts, |t| {
        if !json_out {
            // Print whole characters as they complete; ids outside the tokenizer (random
            // checkpoints with small vocabularies) print as <id>.
            streamed.push(t);
            if let Ok(bytes) = tokenizer.decode_bytes(&streamed) {
                if let Ok(s) = std::str::from_utf8(&bytes) {
                    let _ = write!(stdout, "{s}");
                    let _ = stdout.flush();
                    streamed.clear();
                }
            } else {
                let _ = write!(stdout, "<{t}>");
                streamed.clear();
            }
        }
    })?;
    let decode_tps = if g.tokens.len() > 1 {
        (g.tokens.len() - 1) as f64 / g.decode_seconds
    } else {
        0.0
    };
    if json_out {
        println!(
            "{}",
            json!({
                "tokens": g.tokens,
                "stop_reason": g.stop.as_str(),
                "prompt_tokens": prompt.len(),
                "prompt_seconds": g.prompt_seconds,
                "prefill_tokens_per_second": prompt.len() as f64 / g.prompt_seconds,
                "decode_seconds": g.decode_seconds,
                "decode_tokens_per_second": decode_tps,
            })
        );
    } else {
        println!();
        eprintln!(
            "[{} prompt tokens at {:.1} tok/s; {} generated at {:.2} tok/s; stop: {}]",
            prompt.len(),
            prompt.len() as f64 / g.prompt_seconds,
            g.tokens.len(),
            decode_tps,
            g.stop.as_str()
        );
    }
    Ok(())
}

fn chat(a: ChatArgs, precision: Precision, yes: bool) -> Result<()> {
    let ck = open_model(&a.model, yes)?;
    let mut model = device::load_model(&ck)?;
    model.set_precision(precision);
    let date = match a.date.as_deref() {
        Some("none") => None,
        Some(d) => Some(d.to_string()),
        None => Some(today_utc()),
    };
    chat::run(
        &model,
        chat::ChatOptions {
            effort: a.reasoning_effort,
            developer: a.developer,
            show_reasoning: a.show_reasoning && !a.hide_reasoning,
            date,
            max_tokens: a.max_tokens,
            sampling: a.sampling.params(),
            events: a.events,
        },
    )
}

/// Today's date as `YYYY-MM-DD` (UTC), from the days since 1970 (civil-from-days algorithm).
fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn bench(a: BenchArgs, precision: Precision, yes: bool) -> Result<()> {
    if a.repeats == 0 {
        bail!("-r must be at least 1");
    }
    let ck = open_model(&a.model, yes)?;
    let (mut model, device_ceiling) = device::load_model_with_probe(&ck)?;
    model.set_precision(precision);
    if !a.concurrency.is_empty() {
        return bench_concurrency(&a, model, precision);
    }
    let stats = ck.stats();
    let params = gossamer_engine::bench::BenchParams {
        prompt_tokens: a.prompt_tokens,
        decode_tokens: a.decode_tokens,
        depth: a.depth,
        repeats: a.repeats,
        seed: 1,
    };
    let gpu = device_ceiling.is_some();
    // On a GPU the CPU threads do not matter: the column names the device instead.
    let threads = if gpu {
        model.device()
    } else {
        rayon::current_num_threads().to_string()
    };
    let quiet = a.json;
    let profile = a.profile.then(|| model.enable_profile());
    // The ceiling is measured on both sides of the tests, the best kept: the host's speed
    // drifts, and a ratio is only fair when both figures come from the same minutes.
    // On a GPU the ceiling is its device-to-device copy bandwidth (bytes read + written).
    let ceiling_pass = || match &device_ceiling {
        Some(probe) => probe(),
        None => Ok(gossamer_kernels::threads::read_bandwidth(1 << 30, 5)),
    };
    let ceiling_before = a.ceiling.then(ceiling_pass).transpose()?;
    let r = gossamer_engine::bench::run(&model, &params, profile.as_deref(), |test, i, tps| {
        if !quiet {
            eprintln!("  {test} repeat {}: {tps:.2} tok/s", i + 1);
        }
    })?;
    let read_gb_s = match ceiling_before {
        Some(b) => Some(b.max(ceiling_pass()?)),
        None => None,
    };
    // Bytes streamed per decoded token: the weights plus the KV cache read at this depth
    // (full layers read every position, sliding layers at most their window).
    let cfg = model.config();
    let kv_row = (2 * cfg.kv_dim() * 4) as u64;
    let mid_depth = (a.depth + a.decode_tokens / 2) as u64;
    let kv_read: u64 = cfg
        .layer_types
        .iter()
        .map(|k| match k {
            gossamer_checkpoint::AttentionKind::Full => mid_depth * kv_row,
            gossamer_checkpoint::AttentionKind::Sliding => {
                mid_depth.min(cfg.sliding_window as u64) * kv_row
            }
        })
        .sum();
    let bytes_per_token = stats.bytes_per_token + kv_read;
    let gb_s = r.decode.map(|d| d.mean * bytes_per_token as f64 / 1e9);
    let ceiling_percent = gb_s.zip(read_gb_s).map(|(g, c)| 100.0 * g / c);
    if a.json {
        println!(
            "{}",
            json!({
                "model": ck.dir,
                "threads": rayon::current_num_threads(),
                "device": model.device(),
                "precision": precision_name(precision),
                "prompt_tokens": a.prompt_tokens,
                "decode_tokens": a.decode_tokens,
                "depth": a.depth,
                "repeats": a.repeats,
                "prefill_tok_s": r.prefill.map(|x| x.mean),
                "prefill_tok_s_stddev": r.prefill.map(|x| x.stddev),
                "decode_tok_s": r.decode.map(|x| x.mean),
                "decode_tok_s_stddev": r.decode.map(|x| x.stddev),
                "bytes_per_token": bytes_per_token,
                "decode_gb_s": gb_s,
                "read_gb_s": read_gb_s,
                "decode_ceiling_percent": ceiling_percent,
                "profile": {
                    "prefill": r.prefill_ops.as_ref().map(|o| profile_json(o, a.prompt_tokens * a.repeats)),
                    "decode": r.decode_ops.as_ref().map(|o| profile_json(o, a.decode_tokens * a.repeats)),
                },
            })
        );
        return Ok(());
    }
    println!("| model | threads | precision | test | t/s | GB/s |");
    println!("|---|---|---|---|---|---|");
    // What the user named (a folder, or a repository rather than its snapshot path).
    let name = &a.model;
    let prec = precision_name(precision);
    let depth = if a.depth > 0 {
        format!(" @ d{}", a.depth)
    } else {
        String::new()
    };
    if let Some(p) = r.prefill {
        println!(
            "| {name} | {threads} | {prec} | pp{}{depth} | {:.2} ± {:.2} | |",
            a.prompt_tokens, p.mean, p.stddev
        );
    }
    if let (Some(d), Some(g)) = (r.decode, gb_s) {
        println!(
            "| {name} | {threads} | {prec} | tg{}{depth} | {:.2} ± {:.2} | {g:.1} ({:.2} GB/token) |",
            a.decode_tokens,
            d.mean,
            d.stddev,
            bytes_per_token as f64 / 1e9
        );
    }
    if let (Some(c), Some(pct)) = (read_gb_s, ceiling_percent) {
        println!();
        println!(
            "{} bandwidth ({threads}{}): {c:.1} GB/s; decode reads at {pct:.0} % of it \
             (ceiling {:.2} tok/s)",
            if gpu { "copy" } else { "read" },
            if gpu { "" } else { " threads" },
            c * 1e9 / bytes_per_token as f64
        );
    }
    if let Some(ops) = &r.prefill_ops {
        print_profile(
            &format!("pp{}", a.prompt_tokens),
            ops,
            a.prompt_tokens * a.repeats,
        );
    }
    if let Some(ops) = &r.decode_ops {
        print_profile(
            &format!("tg{}", a.decode_tokens),
            ops,
            a.decode_tokens * a.repeats,
        );
    }
    Ok(())
}

/// `bench --concurrency`: the engine's aggregate decode rate at each concurrency, with the
/// server's settings (batch-invariant products).
fn bench_concurrency(a: &BenchArgs, mut model: GptOss, precision: Precision) -> Result<()> {
    if a.concurrency.contains(&0) {
        bail!("--concurrency values must be at least 1");
    }
    model.set_batch_invariant(true);
    model.prefault();
    let model = std::sync::Arc::new(model);
    let threads = rayon::current_num_threads();
    let mut rows = Vec::new();
    for &c in &a.concurrency {
        let mut rates = Vec::new();
        let mut first = Vec::new();
        for rep in 0..a.repeats {
            let r = gossamer_engine::bench::run_concurrent(
                model.clone(),
                c,
                a.prompt_tokens,
                a.decode_tokens,
                1 + rep as u64,
            )?;
            if !a.json {
                eprintln!(
                    "  concurrency {c} repeat {}: {:.2} tok/s",
                    rep + 1,
                    r.decode_tok_s
                );
            }
            rates.push(r.decode_tok_s);
            first.push(r.first_token_s);
        }
        let gossamer_engine::bench::Rate { mean, stddev: sd } =
            gossamer_engine::bench::rate(&rates);
        let ttft = first.iter().sum::<f64>() / first.len() as f64;
        rows.push((c, mean, sd, ttft));
    }
    let base = rows.first().map(|r| r.1).unwrap_or(1.0);
    if a.json {
        let out: Vec<_> = rows
            .iter()
            .map(|&(c, mean, sd, ttft)| {
                json!({"concurrency": c, "decode_tok_s": mean, "decode_tok_s_stddev": sd,
                       "per_stream_tok_s": mean / c as f64, "first_token_s": ttft,
                       "speedup": mean / base})
            })
            .collect();
        println!(
            "{}",
            json!({"model": a.model, "threads": threads, "precision": precision_name(precision),
                   "prompt_tokens": a.prompt_tokens, "decode_tokens": a.decode_tokens,
                   "repeats": a.repeats, "concurrency": out})
        );
        return Ok(());
    }
    println!(
        "| model | threads | precision | streams | aggregate decode t/s | per stream t/s | first token s | vs first row |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (c, mean, sd, ttft) in rows {
        println!(
            "| {} | {threads} | {} | {c} | {mean:.2} ± {sd:.2} | {:.2} | {ttft:.2} | {:.2}× |",
            a.model,
            precision_name(precision),
            mean / c as f64,
            mean / base
        );
    }
    Ok(())
}

/// Milliseconds per token and share of the time for each kind of operation.
fn profile_rows(ops: &OpTimes, tokens: usize) -> Vec<(&'static str, f64, f64, f64)> {
    let total = ops.total().as_secs_f64().max(1e-12);
    let tokens = tokens.max(1) as f64;
    ops.rows()
        .map(|(op, time, calls)| {
            let secs = time.as_secs_f64();
            (
                op.name(),
                secs * 1e3 / tokens,
                100.0 * secs / total,
                calls as f64 / tokens,
            )
        })
        .collect()
}

fn profile_json(ops: &OpTimes, tokens: usize) -> serde_json::Value {
    profile_rows(ops, tokens)
        .into_iter()
        .map(|(name, ms, share, calls)| {
            json!({"op": name, "ms_per_token": ms, "percent": share, "calls_per_token": calls})
        })
        .collect()
}

fn print_profile(test: &str, ops: &OpTimes, tokens: usize) {
    println!();
    println!("{test}: time per token by operation");
    println!("| op | ms/token | % | calls/token |");
    println!("|---|---|---|---|");
    for (name, ms, share, calls) in profile_rows(ops, tokens) {
        println!("| {name} | {ms:.3} | {share:.1} | {calls:.2} |");
    }
}

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::Exact => "exact",
        Precision::Fast if gossamer_kernels::gemm::has_bf16_dot() => "fast",
        // Asked for, but this CPU has no bf16 dot product: the products run in f32.
        Precision::Fast => "fast (f32: no AVX512-BF16)",
    }
}

fn random_checkpoint(a: RandomCheckpointArgs) -> Result<()> {
    let mut opts = SynthOptions::new(a.preset, a.seed);
    opts.layers = a.layers;
    opts.sliding_window = a.sliding_window;
    opts.max_shard_bytes = a.max_shard_bytes;
    opts.experts = match a.experts {
        ExpertsArg::Mxfp4 => ExpertFormat::Mxfp4,
        ExpertsArg::Bf16 => ExpertFormat::Bf16,
    };
    opts.layout = match a.layout {
        LayoutArg::Hf => Layout::Hf,
        LayoutArg::Original => Layout::Original,
    };
    if opts.layout == Layout::Original && opts.experts == ExpertFormat::Bf16 {
        bail!("the original layout stores MXFP4 experts only");
    }
    if opts.layers == Some(0) {
        bail!("--layers must be at least 1");
    }
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("writing {}", a.out.display()));
    synth::write_checkpoint(&opts, &a.out, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| format!("cannot write checkpoint to {}", a.out.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} ({} preset, seed {})",
        a.out.display(),
        a.preset.name(),
        a.seed
    );
    Ok(())
}
