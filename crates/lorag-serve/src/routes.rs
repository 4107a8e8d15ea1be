//! The HTTP routes. Every error leaves in OpenAI's shape (a middleware rewrites the few that
//! axum itself produces: unknown route, wrong method, body too large).

use crate::error::ApiError;
use crate::{adapters_for, App, Loaded};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use lorag_llm::{FinishReason, Generator, Message, Role, SamplingParams};
use lorag_store::Store;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

type ApiResult<T> = std::result::Result<T, ApiError>;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub(crate) fn router(app: Arc<App>) -> Router {
    let max_body = app.config.max_body;
    Router::new()
        .route("/", get(page_index))
        .route("/app.js", get(|| page_asset(Path("app.js".to_string()))))
        .route("/app.css", get(|| page_asset(Path("app.css".to_string()))))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/me", get(me))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/kb/{name}/search", post(kb_search))
        .route(
            "/v1/kb/{name}/documents",
            get(kb_documents).post(kb_upload),
        )
        .route("/v1/kb/{name}/documents/{source}", delete(kb_delete))
        .route("/v1/kb/{name}/documents/{source}/file", get(kb_file))
        .fallback(|| async {
            ApiError::not_found("no such route; see /v1/models, /v1/chat/completions, /v1/embeddings, /v1/kb/{name}/...", None)
        })
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// Count every request by route and status, time it, add the security headers, and put
/// non-JSON errors (axum's own 405/413/415 texts) into OpenAI's shape.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let mut res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() >= 400 && !is_json {
        let body = axum::body::to_bytes(std::mem::take(res.body_mut()), 64 * 1024)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body).trim().to_string();
        let (kind, msg) = match status {
            StatusCode::PAYLOAD_TOO_LARGE => (
                "invalid_request_error",
                format!(
                    "the request body is larger than this server's limit of {} bytes (--max-body)",
                    app.config.max_body
                ),
            ),
            StatusCode::METHOD_NOT_ALLOWED => (
                "invalid_request_error",
                format!(
                    "method not allowed on this route{}",
                    if text.is_empty() {
                        String::new()
                    } else {
                        format!(": {text}")
                    }
                ),
            ),
            _ => (
                "invalid_request_error",
                if text.is_empty() {
                    status.to_string()
                } else {
                    text
                },
            ),
        };
        let mut e = ApiError::new(status, kind, msg);
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            e.code = Some("request_too_large");
        }
        let headers = res.headers().clone();
        res = e.into_response();
        if let Some(v) = headers.get(header::ALLOW) {
            res.headers_mut().insert(header::ALLOW, v.clone());
        }
    }
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if route != "/metrics" {
        app.metrics
            .request(&route, res.status().as_u16(), t0.elapsed().as_secs_f64());
    }
    res
}

// ---------------------------------------------------------------------------------------------
// Auth

/// Who is asking: `None` when the server runs without keys.
#[derive(Clone)]
struct Caller(Option<crate::keys::KeyRecord>);

impl Caller {
    fn may_read(&self, kb: &str) -> bool {
        self.0.as_ref().is_none_or(|k| k.may_read(kb))
    }
    fn may_ingest(&self, kb: &str) -> bool {
        self.0.as_ref().is_none_or(|k| k.ingest && k.may_read(kb))
    }
}

fn caller(app: &App, headers: &HeaderMap) -> ApiResult<Caller> {
    let Some(keys) = &app.keys else {
        return Ok(Caller(None));
    };
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "this server needs an API key: send the header `Authorization: Bearer KEY`",
        ));
    };
    let v = v.to_str().unwrap_or("");
    let key = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .unwrap_or("")
        .trim();
    if key.is_empty() {
        return Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer KEY`",
        ));
    }
    match keys.lookup(key) {
        Some(rec) => Ok(Caller(Some(rec))),
        None => Err(ApiError::unauthorized(
            "the API key is not valid (unknown or revoked)",
        )),
    }
}

fn ready(app: &App) -> ApiResult<Arc<Loaded>> {
    app.loaded().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "the model is still loading; retry in a moment (GET /health says when it is ready)",
        )
    })
}

fn kb_for<'a>(l: &'a Loaded, who: &Caller, name: &str) -> ApiResult<&'a crate::Kb> {
    let Some(kb) = l.kbs.get(name) else {
        return Err(ApiError::not_found(
            format!("no knowledge base named {name:?} on this server"),
            Some("kb"),
        ));
    };
    if !who.may_read(name) {
        return Err(ApiError::forbidden(format!(
            "this API key may not read the knowledge base {name:?}"
        )));
    }
    Ok(kb)
}

// ---------------------------------------------------------------------------------------------
// Page, health, metrics, models

async fn page_index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../assets/index.html"),
    )
        .into_response()
}

async fn page_asset(Path(file): Path<String>) -> Response {
    let (body, ty): (&'static str, &str) = match file.as_str() {
        "app.js" => (
            include_str!("../assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "app.css" => (include_str!("../assets/app.css"), "text/css; charset=utf-8"),
        _ => return ApiError::not_found(format!("no asset {file:?}"), None).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn health(State(app): State<Arc<App>>) -> Response {
    if app.loaded().is_some() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        )
            .into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let live = app.loaded().map(|l| {
        let s = l.engine.stats();
        crate::metrics::Live {
            queue_depth: s.queued.load(Ordering::Relaxed),
            busy_slots: s.busy_slots.load(Ordering::Relaxed),
            slots: l.engine.n_slots(),
            prompt_tokens: s.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: s.completion_tokens.load(Ordering::Relaxed),
            decode_calls: s.decode_calls.load(Ordering::Relaxed),
            cancelled: s.cancelled.load(Ordering::Relaxed),
        }
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(live.as_ref()),
    )
        .into_response()
}

fn created() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn models(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    let who = caller(&app, &headers)?;
    let l = ready(&app)?;
    let t = app.started.elapsed().as_secs();
    let now = created().saturating_sub(t);
    let mut data = vec![
        json!({"id": l.service.model_name(), "object": "model", "created": now, "owned_by": "lorag"}),
    ];
    for n in l.service.adapter_names() {
        data.push(json!({"id": n, "object": "model", "created": now, "owned_by": "lorag", "parent": l.service.model_name()}));
    }
    for n in l.kbs.keys().filter(|n| who.may_read(n)) {
        data.push(json!({"id": format!("kb:{n}"), "object": "model", "created": now, "owned_by": "lorag", "parent": l.service.model_name()}));
    }
    data.push(
        json!({"id": l.embedder_name, "object": "model", "created": now, "owned_by": "lorag"}),
    );
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

async fn me(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    let who = caller(&app, &headers)?;
    let l = ready(&app)?;
    let kbs: Vec<Value> = l
        .kbs
        .keys()
        .filter(|n| who.may_read(n))
        .map(|n| json!({"name": n, "may_ingest": who.may_ingest(n)}))
        .collect();
    Ok(Json(json!({
        "model": l.service.model_name(),
        "auth": app.keys.is_some(),
        "key": who.0.as_ref().map(|k| k.name.clone()),
        "kbs": kbs,
        "adapters": l.service.adapter_names().collect::<Vec<_>>(),
        "default_adapter": l.service.grounded_adapter_name(),
    }))
    .into_response())
}

// ---------------------------------------------------------------------------------------------
// Request parsing

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("the body is not valid JSON: {inner}"), None)
        } else if path == "." || path.is_empty() {
            ApiError::bad_request(format!("invalid request: {inner}"), None)
        } else {
            ApiError::bad_request(format!("invalid field `{path}`: {inner}"), Some(&path))
        }
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FilterField {
    Map(serde_json::Map<String, Value>),
    List(Vec<String>),
    One(String),
}

#[derive(Deserialize)]
struct LoraRef {
    name: String,
    #[serde(default = "one")]
    scale: f32,
}

fn one() -> f32 {
    1.0
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<i64>,
    stop: Option<OneOrMany>,
    n: Option<u32>,
    kb: Option<String>,
    k: Option<usize>,
    mode: Option<String>,
    filter: Option<FilterField>,
    lora: Option<Vec<LoraRef>>,
}

fn parse_filters(f: Option<FilterField>) -> ApiResult<Vec<lorag_store::Filter>> {
    let specs: Vec<String> = match f {
        None => Vec::new(),
        Some(FilterField::One(s)) => vec![s],
        Some(FilterField::List(v)) => v,
        Some(FilterField::Map(m)) => m
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect(),
    };
    specs
        .iter()
        .map(|s| {
            lorag_store::Filter::parse(s)
                .map_err(|e| ApiError::bad_request(e.to_string(), Some("filter")))
        })
        .collect()
}

fn parse_mode(m: Option<&str>) -> ApiResult<lorag_kb::Mode> {
    m.unwrap_or("hybrid")
        .parse()
        .map_err(|e: String| ApiError::bad_request(e, Some("mode")))
}

fn messages_of(req: &[InMessage]) -> ApiResult<Vec<Message>> {
    if req.is_empty() {
        return Err(ApiError::bad_request(
            "`messages` must hold at least one message",
            Some("messages"),
        ));
    }
    req.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(ApiError::bad_request(
                        format!("messages[{i}].role: {other:?} is not one of system, user, assistant"),
                        Some(&format!("messages[{i}].role")),
                    ))
                }
            };
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(s)) => s.clone(),
                Some(Content::Parts(p)) => {
                    let mut s = String::new();
                    for (j, part) in p.iter().enumerate() {
                        if part.kind != "text" {
                            return Err(ApiError::bad_request(
                                format!("messages[{i}].content[{j}]: only text parts are supported, not {:?}", part.kind),
                                Some(&format!("messages[{i}].content[{j}].type")),
                            ));
                        }
                        s.push_str(part.text.as_deref().unwrap_or(""));
                    }
                    s
                }
            };
            if content.contains('\0') {
                return Err(ApiError::bad_request(
                    format!("messages[{i}].content holds a NUL character"),
                    Some(&format!("messages[{i}].content")),
                ));
            }
            Ok(Message { role, content })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Chat completions

/// What the generation worker sends to the handler.
enum Msg {
    Text(String),
    Done(ApiResult<Box<Final>>),
}

struct Final {
    text: String,
    finish: FinishReason,
    prompt_tokens: usize,
    completion_tokens: usize,
    rag: Option<lorag_rag::Answer>,
}

fn finish_str(f: FinishReason, timed_out: bool) -> &'static str {
    match f {
        FinishReason::Length | FinishReason::ContextFull => "length",
        FinishReason::Cancelled if timed_out => "length",
        _ => "stop",
    }
}

fn rag_fields(a: &lorag_rag::Answer) -> serde_json::Map<String, Value> {
    let quote = |c: &lorag_rag::Citation| -> Value {
        // The sentence of the chunk that best matches the answer's claims citing it.
        let claims: Vec<&str> = a
            .sentences
            .iter()
            .filter(|s| s.cites.contains(&c.n))
            .map(|s| s.text.as_str())
            .collect();
        match lorag_rag::best_span(&c.text, &claims) {
            Some(q) => Value::String(q.to_string()),
            None => Value::Null,
        }
    };
    let cite = |c: &lorag_rag::Citation| -> Value {
        json!({"n": c.n, "source": c.source, "title": c.title, "section": c.section, "page": c.page,
               "start": c.start, "end": c.end, "text": c.text, "score": c.score, "quote": quote(c)})
    };
    let mut m = serde_json::Map::new();
    m.insert("citations".into(), a.citations.iter().map(cite).collect());
    m.insert("sources".into(), a.sources.iter().map(cite).collect());
    m.insert("refused".into(), json!(a.refused));
    m.insert("unsupported".into(), json!(a.unsupported));
    m.insert(
        "lorag".into(),
        json!({"retrieval_ms": round2(a.retrieval_ms), "ttft_ms": round2(a.ttft_ms), "total_ms": round2(a.total_ms),
               "query": a.query, "invalid_citations": a.invalid_citations, "evidence": a.evidence}),
    );
    m
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

async fn chat_completions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let t0 = Instant::now();
    let who = caller(&app, &headers)?;
    let l = ready(&app)?;
    let req: ChatRequest = parse_json(&body)?;
    if let Some(n) = req.n {
        if n != 1 {
            return Err(ApiError::bad_request(
                format!("n = {n}: this server returns one choice per request (n must be 1)"),
                Some("n"),
            ));
        }
    }
    let msgs = messages_of(&req.messages)?;
    // Which model: the base, an adapter by name, or kb:NAME.
    let model = req
        .model
        .clone()
        .unwrap_or_else(|| l.service.model_name().to_string());
    let mut kb_name = req.kb.clone();
    let mut lora_names: Vec<(String, f32)> = Vec::new();
    if let Some(k) = model.strip_prefix("kb:") {
        kb_name.get_or_insert_with(|| k.to_string());
    } else if let Some((_, scale)) = l.service.adapter(&model) {
        lora_names.push((model.clone(), scale));
    } else if model != l.service.model_name() {
        return Err(ApiError::not_found(
            format!("no model {model:?} on this server (GET /v1/models lists them)"),
            Some("model"),
        )
        .with_code("model_not_found"));
    }
    if let Some(ls) = &req.lora {
        for r in ls {
            if !r.scale.is_finite() {
                return Err(ApiError::bad_request(
                    "lora scale must be a number",
                    Some("lora"),
                ));
            }
            lora_names.push((r.name.clone(), r.scale));
        }
    }
    let mut adapters = adapters_for(&l, &lora_names)?;
    let kb = match &kb_name {
        Some(n) => {
            kb_for(&l, &who, n)?;
            Some(n.clone())
        }
        None => None,
    };
    // A grounded answer that names no adapter uses the one shipped for the model (if any).
    if kb.is_some() && lora_names.is_empty() {
        adapters = l.service.grounded_adapters();
    }
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(if kb.is_some() { 256 } else { 512 });
    // Temperature 0 is greedy; absent, grounded answers are greedy and plain chat samples with
    // the CLI's defaults (0.7, top-p 0.95).
    let mut params = match req.temperature {
        Some(t) if t <= 0.0 => SamplingParams::greedy(max_tokens),
        None if kb.is_some() => SamplingParams::greedy(max_tokens),
        t => SamplingParams {
            temperature: t.unwrap_or(0.7),
            top_p: req.top_p.unwrap_or(0.95),
            seed: req.seed.map(|s| s as u32),
            max_tokens,
            ..SamplingParams::default()
        },
    };
    if let Some(s) = req.stop {
        params.stop = s.into_vec();
    }
    params
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string(), None))?;
    let filters = parse_filters(req.filter)?;
    // "mode": "quote" answers with the best evidence sentence, verbatim (hybrid retrieval).
    let quote = req.mode.as_deref() == Some("quote");
    let mode = parse_mode(if quote { None } else { req.mode.as_deref() })?;
    let k = req.k.unwrap_or(4);
    if k == 0 || k > 50 {
        return Err(ApiError::bad_request(
            "k must be between 1 and 50",
            Some("k"),
        ));
    }

    let permit = app
        .admission
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::busy())?;
    let cancel = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    {
        let cancel = cancel.clone();
        let timed_out = timed_out.clone();
        let timeout = app.config.timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            timed_out.store(true, Ordering::SeqCst);
            cancel.store(true, Ordering::SeqCst);
        });
    }
    let worker = {
        let l = l.clone();
        let cancel = cancel.clone();
        let tx = tx.clone();
        move || {
            let _permit = permit;
            let mut client = l.engine.client();
            client.set_adapters(adapters);
            client.set_cancel(cancel.clone());
            let send = |m: Msg| {
                if tx.send(m).is_err() {
                    cancel.store(true, Ordering::SeqCst);
                }
            };
            let result = match kb {
                None => {
                    let r = client.chat(&msgs, &params, &mut |t| {
                        send(Msg::Text(t.to_string()));
                        true
                    });
                    r.map_err(ApiError::from).map(|g| {
                        Box::new(Final {
                            text: g.text,
                            finish: g.finish_reason,
                            prompt_tokens: g.prompt_tokens,
                            completion_tokens: g.completion_tokens,
                            rag: None,
                        })
                    })
                }
                Some(name) => {
                    let kbh = &l.kbs[&name];
                    // The last user message is the question; earlier turns are the history.
                    let qi = msgs.iter().rposition(|m| m.role == Role::User);
                    match qi {
                        None => Err(ApiError::bad_request(
                            "with a knowledge base, `messages` must end with a user question",
                            Some("messages"),
                        )),
                        Some(qi) => {
                            let history: Vec<Message> = msgs[..qi]
                                .iter()
                                .filter(|m| m.role != Role::System)
                                .cloned()
                                .collect();
                            let question = msgs[qi].content.clone();
                            let opts = lorag_rag::RagOptions {
                                k,
                                mode,
                                filters,
                                answer_tokens: max_tokens,
                                sampling: params,
                                quote,
                                ..lorag_rag::RagOptions::default()
                            };
                            let kbv = lorag_rag::Kb {
                                store: kbh.store.as_ref(),
                                embedder: l.embedder.as_ref(),
                            };
                            let mut finish = FinishReason::Stop;
                            let r = lorag_rag::ask(
                                &mut client,
                                Some(&kbv),
                                &history,
                                &question,
                                &opts,
                                &mut |t| send(Msg::Text(t.to_string())),
                            );
                            if cancel.load(Ordering::SeqCst) {
                                finish = FinishReason::Cancelled;
                            }
                            r.map_err(ApiError::from).map(|a| {
                                if a.completion_tokens >= max_tokens {
                                    finish = FinishReason::Length;
                                }
                                Box::new(Final {
                                    text: a.answer.clone(),
                                    finish,
                                    prompt_tokens: a.prompt_tokens,
                                    completion_tokens: a.completion_tokens,
                                    rag: Some(a),
                                })
                            })
                        }
                    }
                }
            };
            let _ = tx.send(Msg::Done(result));
        }
    };
    tokio::task::spawn_blocking(worker);
    drop(tx);

    let id = format!("chatcmpl-{}", hex_id());
    let created = created();
    // Wait for the first message: an error before any text is an HTTP error, not a stream.
    let first = rx.recv().await;
    let first = match first {
        None => return Err(ApiError::internal("the generation worker stopped")),
        Some(Msg::Done(Err(e))) => return Err(e),
        Some(m) => m,
    };
    app.metrics.ttft(t0.elapsed().as_secs_f64());
    let model_id = model.clone();

    if !req.stream {
        let mut text = String::new();
        let mut msg = Some(first);
        let fin = loop {
            let m = match msg.take() {
                Some(m) => m,
                None => match rx.recv().await {
                    Some(m) => m,
                    None => return Err(ApiError::internal("the generation worker stopped")),
                },
            };
            match m {
                Msg::Text(t) => text.push_str(&t),
                Msg::Done(r) => break r?,
            }
        };
        let timed = timed_out.load(Ordering::SeqCst);
        let mut out = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model_id,
            "system_fingerprint": "lorag",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": fin.text},
                          "logprobs": null, "finish_reason": finish_str(fin.finish, timed)}],
            "usage": {"prompt_tokens": fin.prompt_tokens, "completion_tokens": fin.completion_tokens,
                      "total_tokens": fin.prompt_tokens + fin.completion_tokens},
        });
        if let Some(a) = &fin.rag {
            let obj = out.as_object_mut().expect("object");
            obj.extend(rag_fields(a));
        }
        return Ok(Json(out).into_response());
    }

    let include_usage = req.stream_options.unwrap_or_default().include_usage;
    let chunk = move |delta: Value, finish: Option<&str>| -> Value {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model_id,
               "system_fingerprint": "lorag",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let (etx, erx) = mpsc::channel::<Result<SseEvent, std::convert::Infallible>>(64);
    tokio::spawn(async move {
        let ev = |v: &Value| Ok(SseEvent::default().data(v.to_string()));
        let mut send_ok = etx
            .send(ev(&chunk(
                json!({"role": "assistant", "content": ""}),
                None,
            )))
            .await
            .is_ok();
        let mut msg = Some(first);
        while send_ok {
            let m = match msg.take() {
                Some(m) => m,
                None => match rx.recv().await {
                    Some(m) => m,
                    None => break,
                },
            };
            match m {
                Msg::Text(t) => {
                    send_ok = etx
                        .send(ev(&chunk(json!({"content": t}), None)))
                        .await
                        .is_ok();
                }
                Msg::Done(Err(e)) => {
                    let _ = etx.send(ev(&e.body())).await;
                    break;
                }
                Msg::Done(Ok(fin)) => {
                    let timed = timed_out.load(Ordering::SeqCst);
                    let mut last = chunk(json!({}), Some(finish_str(fin.finish, timed)));
                    if let Some(a) = &fin.rag {
                        last.as_object_mut().expect("object").extend(rag_fields(a));
                    }
                    let _ = etx.send(ev(&last)).await;
                    if include_usage {
                        let mut u = chunk(json!({}), None);
                        let o = u.as_object_mut().expect("object");
                        o.insert("choices".into(), json!([]));
                        o.insert("usage".into(), json!({"prompt_tokens": fin.prompt_tokens, "completion_tokens": fin.completion_tokens, "total_tokens": fin.prompt_tokens + fin.completion_tokens}));
                        let _ = etx.send(ev(&u)).await;
                    }
                    let _ = etx.send(Ok(SseEvent::default().data("[DONE]"))).await;
                    break;
                }
            }
        }
        if !send_ok {
            // The client went away: stop generating.
            cancel.store(true, Ordering::SeqCst);
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(erx);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn hex_id() -> String {
    let mut b = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    hex::encode(b)
}

// ---------------------------------------------------------------------------------------------
// Embeddings

#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: OneOrMany,
    model: Option<String>,
    encoding_format: Option<String>,
}

async fn embeddings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    caller(&app, &headers)?;
    let l = ready(&app)?;
    let req: EmbeddingsRequest = parse_json(&body)?;
    if let Some(m) = &req.model {
        if m != &l.embedder_name {
            return Err(ApiError::not_found(
                format!(
                    "no embedding model {m:?}; this server embeds with {:?}",
                    l.embedder_name
                ),
                Some("model"),
            )
            .with_code("model_not_found"));
        }
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(o) => {
            return Err(ApiError::bad_request(
                format!("encoding_format {o:?}: use \"float\" or \"base64\""),
                Some("encoding_format"),
            ))
        }
    };
    let inputs = req.input.into_vec();
    if inputs.is_empty() || inputs.len() > 2048 {
        return Err(ApiError::bad_request(
            "input must hold 1 to 2048 strings",
            Some("input"),
        ));
    }
    let permit = app
        .admission
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::busy())?;
    let emb = l.embedder.clone();
    let texts = inputs.clone();
    let (vecs, tokens) = tokio::task::spawn_blocking(move || {
        let _p = permit;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let tokens: usize = refs.iter().map(|t| emb.count_tokens(t)).sum();
        emb.embed(&refs).map(|v| (v, tokens))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("embedding: {e}")))?;
    let data: Vec<Value> = vecs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let emb = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": emb})
        })
        .collect();
    Ok(Json(json!({
        "object": "list", "data": data, "model": l.embedder_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response())
}

// ---------------------------------------------------------------------------------------------
// Knowledge bases

#[derive(Deserialize)]
struct SearchRequest {
    query: String,
    k: Option<usize>,
    mode: Option<String>,
    filter: Option<FilterField>,
}

async fn kb_search(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = caller(&app, &headers)?;
    let l = ready(&app)?;
    kb_for(&l, &who, &name)?;
    let req: SearchRequest = parse_json(&body)?;
    let opts = lorag_kb::SearchOptions {
        k: req.k.unwrap_or(5).clamp(1, 100),
        mode: parse_mode(req.mode.as_deref())?,
        filters: parse_filters(req.filter)?,
        ..lorag_kb::SearchOptions::default()
    };
    let l2 = l.clone();
    let hits = tokio::task::spawn_blocking(move || {
        let kb = &l2.kbs[&name];
        lorag_kb::search(kb.store.as_ref(), l2.embedder.as_ref(), &req.query, &opts)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let results: Vec<Value> = hits
        .iter()
        .map(|h| {
            json!({"rank": h.rank, "score": h.score, "similarity": h.similarity, "source": h.chunk.source,
                   "title": h.chunk.title, "section": h.chunk.section, "page": h.chunk.page,
                   "start": h.chunk.start, "end": h.chunk.end, "text": h.chunk.text, "metadata": h.chunk.metadata})
        })
        .collect();
    Ok(Json(json!({"object": "list", "results": results})).into_response())
}

async fn kb_documents(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let who = caller(&app, &headers)?;
    let l = ready(&app)?;
    kb_for(&l, &who, &name)?;
    let l2 = l.clone();
    let docs = tokio::task::spawn_blocking(move || l2.kbs[&name].store.documents())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let data: Vec<Value> = docs
        .iter()
        .map(|d| {
            json!({"source": d.source, "kind": d.kind, "chunks": d.chunks, "ingested_at": d.ingested_at, "size": d.size})
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

/// A file name safe to create inside the uploads folder.
fn safe_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next()?.trim();
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.').to_string();
    (!clean.is_empty() && clean.len() <= 200).then_some(clean)
}

async fn kb_upload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    mut multipart: Multipart,
) -> ApiResult<Response> {
    let who = caller(&app, &headers)?;
    let l = ready(&app)?;
    let kb = kb_for(&l, &who, &name)?;
    if !who.may_ingest(&name) {
        return Err(ApiError::forbidden(format!(
            "this API key may not add documents to {name:?} (make it with `lorag keys add NAME --kb {name} --ingest`)"
        )));
    }
    let uploads = kb.uploads.clone();
    std::fs::create_dir_all(&uploads)
        .map_err(|e| ApiError::internal(format!("{}: {e}", uploads.display())))?;
    let mut files: Vec<(String, Option<std::path::PathBuf>, Option<String>)> = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                let status = e.status();
                return Err(ApiError::new(
                    status,
                    "invalid_request_error",
                    format!("multipart body: {}", e.body_text()),
                ));
            }
        };
        if field.name() != Some("file") {
            continue;
        }
        let orig = field.file_name().unwrap_or("upload").to_string();
        let data = match field.bytes().await {
            Ok(d) => d,
            Err(e) => {
                let status = e.status();
                return Err(ApiError::new(
                    status,
                    "invalid_request_error",
                    format!("multipart body: {}", e.body_text()),
                ));
            }
        };
        let Some(safe) = safe_name(&orig) else {
            files.push((orig, None, Some("not a usable file name".into())));
            continue;
        };
        // Write whole, then rename: a half-uploaded file is never ingested.
        let dest = uploads.join(&safe);
        let tmp = uploads.join(format!(".{safe}.{}.part", hex_id()));
        let w = std::fs::write(&tmp, &data).and_then(|_| std::fs::rename(&tmp, &dest));
        match w {
            Ok(()) => files.push((safe, Some(dest), None)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                files.push((safe, None, Some(format!("could not store the upload: {e}"))));
            }
        }
    }
    if files.is_empty() {
        return Err(ApiError::bad_request(
            "no files: send multipart/form-data with one or more fields named \"file\"",
            Some("file"),
        ));
    }
    let _guard = kb.write.lock().await;
    let l2 = l.clone();
    let location = kb.location.clone();
    let report = tokio::task::spawn_blocking(move || {
        let mut total = json!({"added": 0, "updated": 0, "unchanged": 0, "removed": 0, "failed": [], "chunks": 0, "files": []});
        let t0 = Instant::now();
        for (name, path, err) in files {
            let mut row = json!({"name": name});
            match (path, err) {
                (_, Some(e)) => {
                    row["status"] = json!("failed");
                    row["error"] = json!(e);
                    total["failed"].as_array_mut().expect("array").push(json!({"source": name, "error": e}));
                }
                (Some(p), None) => {
                    let spec = p.to_string_lossy().to_string();
                    let r = lorag_kb::ingest(
                        &location,
                        std::slice::from_ref(&spec),
                        l2.embedder.as_ref(),
                        &lorag_kb::IngestOptions::default(),
                    );
                    match r {
                        Ok(r) => {
                            for (k, v) in [("added", r.added), ("updated", r.updated), ("unchanged", r.unchanged)] {
                                total[k] = json!(total[k].as_u64().unwrap_or(0) + v as u64);
                            }
                            total["chunks"] = json!(total["chunks"].as_u64().unwrap_or(0) + r.chunks as u64);
                            let failure = r.failed.first().or(r.skipped.first()).map(|f| f.error.clone());
                            if let Some(e) = failure {
                                let _ = std::fs::remove_file(&p);
                                row["status"] = json!("failed");
                                row["error"] = json!(e);
                                total["failed"].as_array_mut().expect("array").push(json!({"source": name, "error": e}));
                            } else {
                                row["status"] = json!(if r.added > 0 { "added" } else if r.updated > 0 { "updated" } else { "unchanged" });
                                row["chunks"] = json!(r.chunks);
                                row["source"] = json!(spec);
                            }
                        }
                        Err(e) => {
                            row["status"] = json!("failed");
                            row["error"] = json!(e.to_string());
                            total["failed"].as_array_mut().expect("array").push(json!({"source": name, "error": e.to_string()}));
                        }
                    }
                }
                (None, None) => {}
            }
            total["files"].as_array_mut().expect("array").push(row);
        }
        total["seconds"] = json!(round2(t0.elapsed().as_secs_f64()));
        total
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(report).into_response())
}

async fn kb_delete(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((name, source)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = caller(&app, &headers)?;
    let l = ready(&app)?;
    let kb = kb_for(&l, &who, &name)?;
    if !who.may_ingest(&name) {
        return Err(ApiError::forbidden(format!(
            "this API key may not remove documents from {name:?}"
        )));
    }
    let _guard = kb.write.lock().await;
    let location = kb.location.clone();
    let src = source.clone();
    let existed = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        let w = lorag_service::open_kb_writer(&location)?;
        let existed = w.remove_source(&src)?;
        w.flush()?;
        Ok(existed)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    if !existed {
        return Err(ApiError::not_found(
            format!("no document {source:?} in {name:?}"),
            Some("source"),
        ));
    }
    // An uploaded file goes with its document.
    let up = kb.uploads.clone();
    let p = std::path::Path::new(&source);
    if p.parent().is_some_and(|d| d == up) {
        let _ = std::fs::remove_file(p);
    }
    Ok(Json(json!({"deleted": true, "source": source})).into_response())
}

async fn kb_file(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((name, source)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = caller(&app, &headers)?;
    let l = ready(&app)?;
    let kb = kb_for(&l, &who, &name)?;
    // Only a file that is a source of this KB can be downloaded (no path of one's choosing).
    let store = kb.store.clone();
    let src = source.clone();
    let known = tokio::task::spawn_blocking(move || store.sources())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?
        .contains(&src);
    if !known {
        return Err(ApiError::not_found(
            format!("no document {source:?} in {name:?}"),
            Some("source"),
        ));
    }
    let path = std::path::Path::new(&source);
    let data = tokio::fs::read(path).await.map_err(|e| {
        ApiError::not_found(
            format!(
                "the document {source:?} is in the knowledge base but its file cannot be read: {e}"
            ),
            Some("source"),
        )
    })?;
    let fname = path
        .file_name()
        .map(|f| f.to_string_lossy().replace('"', "_"))
        .unwrap_or_else(|| "document".into());
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{fname}\""),
            ),
        ],
        Body::from(data),
    )
        .into_response())
}
