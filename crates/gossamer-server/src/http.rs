//! The HTTP surface (axum): routes, request bodies, SSE streams, errors.
//!
//! Handlers never compute: they map the request, submit it to the engine (its own thread)
//! and relay events. A streaming answer is a stream that owns its [`Generation`]; when the
//! client goes away hyper drops the stream, which drops the engine ticket, and the engine
//! frees the slot before its next step.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use gossamer_engine::{Engine, SamplingParams};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};

use crate::chat::{chat_options, chat_prompt};
use crate::chat_output::ChatBuilder;
use crate::error::ApiError;
use crate::generation::{self, Generation, GenerationSpec, Progress};
use crate::params;
use crate::responses::{self, ResponseBuilder, ResponseMeta, ResponsesRequest};
use crate::store::{ResponseStore, StoredResponse};

/// Largest request body: a full 131k-token conversation is well under this.
const MAX_BODY_BYTES: usize = 32 << 20;

/// Everything the handlers share.
pub struct AppState {
    pub engine: Engine,
    /// The id clients pass as `model` (the one `/v1/models` lists).
    pub model_id: String,
    /// Other names accepted for it (the reference it was started with, such as
    /// `openai/gpt-oss-20b` when the id is `gpt-oss-20b`).
    pub aliases: Vec<String>,
    pub created: u64,
    pub metrics: PrometheusHandle,
    /// Stored responses (`store: true`), for `previous_response_id` and `GET`.
    pub store: Arc<ResponseStore>,
}

pub type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/responses", post(responses))
        .route(
            "/v1/responses/{id}",
            get(get_response).delete(delete_response),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = (status, Json(self.body())).into_response();
        if self.status == 429 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// The response of a handler's result, counted for `/metrics` by endpoint and status.
fn counted(endpoint: &'static str, result: Result<Response, ApiError>) -> Response {
    let status = match &result {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.status,
    };
    count(endpoint, status);
    tracing::debug!(endpoint, status, "request answered");
    result.unwrap_or_else(IntoResponse::into_response)
}

fn count(endpoint: &'static str, status: u16) {
    metrics::counter!("gossamer_http_requests_total", "endpoint" => endpoint, "status" => status.to_string())
        .increment(1);
}

/// The body as JSON, or an OpenAI-shaped 400 (413 when too large).
pub fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| ApiError {
        status: e.status().as_u16(),
        message: format!("cannot read the request body: {e}"),
        kind: "invalid_request_error",
        param: None,
        code: None,
    })?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError {
        status: 400,
        message: format!("the body is not valid JSON: {e}"),
        kind: "invalid_request_error",
        param: None,
        code: Some("invalid_json"),
    })?;
    if !v.is_object() {
        return Err(ApiError {
            status: 400,
            message: "the body must be a JSON object".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_json"),
        });
    }
    Ok(v)
}

impl AppState {
    /// 404 `model_not_found` unless `model` is the served one.
    pub fn check_model(&self, model: &str) -> Result<(), ApiError> {
        if model == self.model_id || self.aliases.iter().any(|a| a == model) {
            return Ok(());
        }
        Err(ApiError {
            status: 404,
            message: format!(
                "the model `{model}` does not exist; this server serves `{}`",
                self.model_id
            ),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
        })
    }
}

async fn not_found() -> ApiError {
    ApiError {
        status: 404,
        message: "no such route; see /v1/chat/completions, /v1/responses, /v1/models".into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("unknown_url"),
    }
}

async fn health(State(s): State<Shared>) -> Json<Value> {
    let stats = s.engine.stats();
    use std::sync::atomic::Ordering::Relaxed;
    Json(json!({
        "status": "ok",
        "model": s.model_id,
        "waiting": stats.waiting.load(Relaxed),
        "active": stats.active.load(Relaxed),
        "steps": stats.steps.load(Relaxed),
    }))
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

fn model_card(s: &AppState) -> Value {
    json!({"id": s.model_id, "object": "model", "created": s.created, "owned_by": "gossamer",
           "max_model_len": s.engine.config().context})
}

async fn models(State(s): State<Shared>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_card(&s)]}))
}

async fn model(State(s): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    s.check_model(&id)?;
    Ok(Json(model_card(&s)))
}

/// An SSE stream that ends with `data: [DONE]`, as OpenAI's chat streams do.
fn sse<S>(events: S) -> Response
where
    S: Stream<Item = Value> + Send + 'static,
{
    let events = events
        .map(|v| Ok::<_, Infallible>(SseEvent::default().data(v.to_string())))
        .chain(stream::once(async {
            Ok(SseEvent::default().data("[DONE]"))
        }));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn chat_completions(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    counted("chat_completions", chat_completions_inner(s, body).await)
}

async fn chat_completions_inner(
    s: Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    let opts = chat_options(&body)?;
    s.check_model(&opts.model)?;
    let prompt = chat_prompt(&body)?;
    let spec = GenerationSpec {
        conversation: prompt.conversation,
        tool_choice: prompt.tool_choice,
        tool_names: prompt.tools.iter().map(|t| t.name.clone()).collect(),
        max_tokens: opts.max_tokens,
        sampling: opts.sampling,
        stop: opts.stop,
        logprobs: opts.logprobs,
    };
    let gen = generation::start(&s.engine, spec)?;
    let mut builder =
        ChatBuilder::new(&s.model_id, opts.include_reasoning, opts.logprobs.is_some());
    if !opts.stream {
        let outcome = gen.complete().await.map_err(server_error)?;
        return Ok(Json(builder.completion(&outcome)).into_response());
    }
    let include_usage = opts.include_usage;
    let first = builder.first_chunk();
    let chunks = stream::unfold(
        (Some(gen), builder),
        move |(gen, mut builder): (Option<Generation>, ChatBuilder)| async move {
            let mut gen = gen?;
            let out = match gen.next().await {
                Progress::Events(events) => (builder.chunks(&events), Some(gen)),
                Progress::Done(events, outcome) => {
                    let mut out = builder.chunks(&events);
                    out.extend(builder.last_chunks(&outcome, include_usage));
                    (out, None)
                }
                Progress::Failed(e) => (vec![server_error(e).body()], None),
            };
            Some((stream::iter(out.0), (out.1, builder)))
        },
    )
    .flatten();
    Ok(sse(stream::once(async { first }).chain(chunks)))
}

/// A failure after the request was accepted (a model error): 500 with the engine's words.
pub fn server_error(message: String) -> ApiError {
    tracing::error!("generation failed: {message}");
    ApiError {
        status: 500,
        message: format!("the generation failed: {message}"),
        kind: "server_error",
        param: None,
        code: None,
    }
}

/// Runs a store call on a blocking thread (SQLite blocks); its failure is a 500.
async fn with_store<T: Send + 'static>(
    store: &Arc<ResponseStore>,
    f: impl FnOnce(&ResponseStore) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| server_error(format!("the response store task failed: {e}")))?
        .map_err(|e| server_error(e.to_string()))
}

fn response_not_found(id: &str, param: Option<&str>) -> ApiError {
    ApiError {
        status: 404,
        message: format!("no stored response has id `{id}`"),
        kind: "invalid_request_error",
        param: param.map(str::to_string),
        code: Some("response_not_found"),
    }
}

async fn get_response(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    let result = with_store(&s.store, move |st| st.get(&key)).await;
    let result = match result {
        Ok(Some(stored)) => Ok(Json(stored.response).into_response()),
        Ok(None) => Err(response_not_found(&id, None)),
        Err(e) => Err(e),
    };
    counted("responses_get", result)
}

async fn delete_response(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    let result = match with_store(&s.store, move |st| st.delete(&key)).await {
        Ok(true) => Ok(Json(
            json!({"id": id, "object": "response.deleted", "deleted": true}),
        )),
        Ok(false) => Err(response_not_found(&id, None)),
        Err(e) => Err(e),
    };
    counted("responses_delete", result.map(IntoResponse::into_response))
}

async fn responses(State(s): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    counted("responses", responses_inner(s, body).await)
}

/// What a finished response leaves behind: the object, stored with the context a
/// follow-up continues from, when the request asked for storing.
async fn keep(s: &Shared, req: &ResponsesRequest, response: &Value) -> Result<(), ApiError> {
    if !req.store {
        return Ok(());
    }
    let output = response
        .get("output")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let context = responses::next_context(&req.context, &output);
    let id = response
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let response = response.clone();
    with_store(&s.store, move |st| st.put(&id, &response, &context)).await
}

async fn responses_inner(
    s: Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    let model = params::opt_str(&body, "model")?
        .ok_or_else(|| ApiError::invalid("model", "`model` is required"))?;
    s.check_model(model)?;
    let previous = match params::opt_str(&body, "previous_response_id")? {
        None => None,
        Some(id) => {
            let key = id.to_string();
            let found: Option<StoredResponse> =
                with_store(&s.store, move |st| st.get(&key)).await?;
            Some(found.ok_or_else(|| response_not_found(id, Some("previous_response_id")))?)
        }
    };
    let req = responses::parse_request(&body, previous.as_ref().map(|p| &p.context[..]))?;
    let spec = GenerationSpec {
        conversation: req.conversation.clone(),
        tool_choice: req.tool_choice.clone(),
        tool_names: req.tools.iter().map(|t| t.name.clone()).collect(),
        max_tokens: req.max_output_tokens,
        sampling: SamplingParams {
            temperature: req.temperature.unwrap_or(1.0),
            top_p: req.top_p.unwrap_or(1.0),
            top_k: 0,
            seed: params::fresh_seed(),
        },
        stop: Vec::new(),
        logprobs: None,
    };
    let gen = generation::start(&s.engine, spec)?;
    let mut builder = ResponseBuilder::new(ResponseMeta::new(s.model_id.clone(), req.echo()));
    if !req.stream {
        let outcome = gen.complete().await.map_err(server_error)?;
        let (_, response) = builder.finish(&outcome);
        keep(&s, &req, &response).await?;
        return Ok(Json(response).into_response());
    }
    let first = builder.start();
    let state = (Some(gen), builder, s, req);
    let events = stream::unfold(state, |(gen, mut builder, s, req)| async move {
        let mut gen = gen?;
        let (events, gen) = match gen.next().await {
            Progress::Events(events) => (
                events
                    .iter()
                    .flat_map(|e| builder.on(e))
                    .collect::<Vec<_>>(),
                Some(gen),
            ),
            Progress::Done(events, outcome) => {
                let mut out: Vec<Value> = events.iter().flat_map(|e| builder.on(e)).collect();
                let (last, response) = builder.finish(&outcome);
                // Stored before the client hears it is done, so a follow-up finds it.
                if let Err(e) = keep(&s, &req, &response).await {
                    tracing::error!("cannot store response: {}", e.message);
                }
                out.extend(last);
                (out, None)
            }
            Progress::Failed(e) => (builder.failed(&e).0, None),
        };
        Some((stream::iter(events), (gen, builder, s, req)))
    })
    .flatten();
    let events = stream::iter(first).chain(events).map(|v| {
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_string();
        Ok::<_, Infallible>(SseEvent::default().event(kind).data(v.to_string()))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
