//! `gossamer serve`: the OpenAI-compatible HTTP server.
//!
//! - [`chat`], [`chat_output`]: Chat Completions requests onto harmony conversations, and
//!   answers (whole or streamed) back;
//! - [`turn`]: the model's tokens → reasoning, content and tool-call parts (shared by both APIs);
//! - [`generation`]: render, submit to the continuous-batching engine, relay;
//! - [`http`]: the axum routes; [`error`]: errors in OpenAI's shape; [`params`]: typed fields.

pub mod chat;
pub mod chat_output;
pub mod error;
pub mod generation;
pub mod http;
pub mod params;
pub mod responses;
pub mod store;
pub mod turn;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use error::ApiError;
pub use http::{router, AppState};

/// `system_fingerprint` of every answer: the build that produced it.
pub const FINGERPRINT: &str = concat!("gossamer-", env!("CARGO_PKG_VERSION"));

/// The process-wide Prometheus recorder (installed on first use; metrics are global).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ];
            let sizes = [
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Prefix("gossamer_batch".into()), &sizes)
                })
                .expect("non-empty bucket lists");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; ours then stays empty.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Serves `state` on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
