//! `gossamer serve`: load the model, start the batching engine, serve the OpenAI API.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use gossamer_engine::{Engine, EngineConfig};
use gossamer_model::Precision;
use gossamer_server::store::ResponseStore;
use gossamer_server::AppState;

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long, help = crate::models::MODEL_HELP, default_value = "gpt-oss-20b")]
    model: String,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The model id clients pass as `model` (default: the folder's name, or the repository's
    /// without its owner, e.g. `gpt-oss-20b`).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Requests generating at once (they share every forward step).
    #[arg(long, default_value_t = 16)]
    max_concurrency: usize,
    /// Requests waiting for a slot; beyond this the server answers 429.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Positions per request, prompt and answer together (default: 8192, or the model's
    /// limit if smaller). The key/value cache grows with what is used, up to this.
    #[arg(long)]
    context: Option<usize>,
    /// Tokens per forward step: every generating request's one token, then prompt chunks.
    #[arg(long, default_value_t = 512)]
    max_batch_tokens: usize,
    /// The SQLite file that keeps stored Responses (`previous_response_id` works across
    /// restarts). Default: `$XDG_DATA_HOME/gossamer/responses.sqlite3` (or under
    /// `~/.local/share`); `:memory:` keeps them only while the server runs.
    #[arg(long)]
    responses_db: Option<PathBuf>,
}

/// Where stored responses live by default (the XDG data folder).
fn default_responses_db() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --responses-db")?)
                .join(".local/share")
        }
    };
    Ok(base.join("gossamer/responses.sqlite3"))
}

pub fn run(a: ServeArgs, precision: Precision, yes: bool) -> Result<()> {
    let resolved = crate::models::resolve(&a.model, yes)?;
    let ck = crate::open(&resolved.dir)?;
    let mut model = crate::device::load_model(&ck)?;
    model.set_precision(precision);
    // Every answer is the same whatever else shares its steps (on the CPU; the CUDA
    // kernels differ with the step's size, docs/cuda.md).
    model.set_batch_invariant(true);
    if model.device() != "cpu" {
        tracing::warn!(
            device = %model.device(),
            "answers on the GPU may differ in the last bits with what shares their steps"
        );
    }
    let model_max = model.config().max_position_embeddings;
    let context = a.context.unwrap_or(8192).min(model_max);
    let model_id = a.served_model_name.unwrap_or(resolved.name);
    let store = match a.responses_db {
        Some(p) if p.as_os_str() == ":memory:" => ResponseStore::in_memory()?,
        Some(p) => ResponseStore::open(&p)?,
        None => ResponseStore::open(&default_responses_db()?)?,
    };
    let metrics = gossamer_server::metrics_handle();
    let engine = Engine::start(
        Arc::new(model),
        EngineConfig {
            max_concurrency: a.max_concurrency,
            max_queue: a.max_queue,
            max_batch_tokens: a.max_batch_tokens,
            context,
        },
    );
    let state = Arc::new(AppState {
        engine,
        model_id: model_id.clone(),
        aliases: vec![a.model.clone()],
        created: gossamer_server::chat_output::unix_now(),
        metrics,
        store: Arc::new(store),
    });

    // Two async workers are plenty: handlers only map JSON and relay tokens; the model
    // computes on the engine's own threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let addr = format!("{}:{}", a.host, a.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        eprintln!(
            "gossamer serve: {model_id} on http://{local}/v1 ({} slots, queue {}, context {context})",
            a.max_concurrency, a.max_queue
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("gossamer serve: shutting down");
        };
        gossamer_server::serve(listener, state, shutdown)
            .await
            .context("the server failed")
    })
}
