//! The HTTP endpoints.

use std::{sync::Arc, time::Duration};

use axum::{
    body::{to_bytes, Body},
    extract::{FromRequest, Multipart, Query, Request},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use catdog_infer::{ClassifyError, Prediction, Tta};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::{batcher::Batcher, card::ModelCard, metrics::Metrics};

/// The drag-and-drop page: one file, no external resources.
const PAGE: &str = include_str!("page.html");

#[derive(Clone)]
pub struct State {
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub card: Arc<ModelCard>,
    pub max_body_bytes: usize,
    pub read_timeout: Duration,
    /// For a request without `?tta=`.
    pub tta: Tta,
    /// KiB of request bodies held at once, across all requests.
    pub body_budget: Arc<tokio::sync::Semaphore>,
}

pub fn router(state: State) -> Router {
    // The multipart reader's own limit (axum's default is 2 MB) is the server's body limit.
    let limit = axum::extract::DefaultBodyLimit::max(state.max_body_bytes);
    Router::new()
        .route("/", get(page))
        .route("/ping", get(ping))
        .route("/model", get(model))
        .route("/metrics", get(metrics))
        .route("/predictions", post(predictions))
        .route("/predictions/{model}", post(predictions))
        .fallback(not_found)
        .layer(limit)
        .with_state(state)
}

/// An error answer: a status and `{"error": message, "kind": kind}`.
struct Failure {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Failure {
            status,
            kind,
            message: message.into(),
        }
    }

    fn into_response(self, metrics: &Metrics) -> Response {
        metrics.error(self.kind);
        let mut response = (
            self.status,
            Json(json!({ "error": self.message, "kind": self.kind })),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

async fn page(axum::extract::State(s): axum::extract::State<State>) -> Html<&'static str> {
    s.metrics.request("page", Duration::ZERO);
    Html(PAGE)
}

async fn ping(axum::extract::State(s): axum::extract::State<State>) -> Json<Value> {
    s.metrics.request("ping", Duration::ZERO);
    Json(json!({ "status": "Healthy" }))
}

async fn model(axum::extract::State(s): axum::extract::State<State>) -> Json<ModelCard> {
    s.metrics.request("model", Duration::ZERO);
    Json((*s.card).clone())
}

async fn metrics(axum::extract::State(s): axum::extract::State<State>) -> Response {
    s.metrics.request("metrics", Duration::ZERO);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn not_found(axum::extract::State(s): axum::extract::State<State>) -> Response {
    Failure::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint: see GET / , POST /predictions, GET /ping, /model, /metrics",
    )
    .into_response(&s.metrics)
}

#[derive(Debug, Deserialize)]
struct PredictQuery {
    /// `0` for one forward pass, `1` for flip TTA; the server's default when absent.
    #[serde(default)]
    tta: Option<String>,
}

/// One image's answer.
#[derive(Debug, Serialize)]
struct Answer {
    class: String,
    index: usize,
    probabilities: Map<String, Value>,
    logits: Map<String, Value>,
    temperature: f32,
    /// Whether the logits are flip TTA's mean (the default) or one forward pass (`?tta=0`).
    tta: bool,
}

impl Answer {
    fn new(p: Prediction, classes: &[String], tta: Tta) -> Self {
        let per_class = |values: &[f32]| {
            classes
                .iter()
                .zip(values)
                .map(|(c, v)| (c.clone(), json!(v)))
                .collect()
        };
        Answer {
            probabilities: per_class(&p.probabilities),
            logits: per_class(&p.logits),
            class: p.class,
            index: p.index,
            temperature: p.temperature,
            tta: tta == Tta::Flip,
        }
    }
}

/// `POST /predictions`: one image as the body, or several as `multipart/form-data`.
async fn predictions(
    axum::extract::State(s): axum::extract::State<State>,
    query: Query<PredictQuery>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let tta = match query.tta.as_deref() {
        None => s.tta,
        Some("0") | Some("false") => Tta::Off,
        Some("1") | Some("true") => Tta::Flip,
        Some(other) => {
            return Failure::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("tta={other}: use tta=1 or tta=0"),
            )
            .into_response(&s.metrics)
        }
    };
    let response = match answer(&s, tta, request).await {
        Ok(value) => Json(value).into_response(),
        Err(f) => f.into_response(&s.metrics),
    };
    s.metrics.request("predictions", started.elapsed());
    response
}

async fn answer(s: &State, tta: Tta, request: Request) -> Result<Value, Failure> {
    let (parts, body) = request.into_parts();
    // Held until the answer: bodies in memory never exceed the budget, however many clients.
    let _permit = reserve(s, &parts.headers)?;
    let body = read_body(s, &parts.headers, body).await?;
    let multipart = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        if body.is_empty() {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "send an image as the request body, or several as multipart/form-data",
            ));
        }
        let p = classify(s, body, tta).await?;
        return Ok(json!(Answer::new(p, &s.card.classes, tta)));
    }
    let request = Request::from_parts(parts, Body::from(body));
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    // Every part is queued before any answer is awaited, so that they share batches.
    let mut pending = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let filename = field.file_name().map(str::to_string);
        let bytes = field
            .bytes()
            .await
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
        let answer = s.batcher.submit(bytes.to_vec(), tta);
        pending.push((name, filename, answer));
    }
    if pending.is_empty() {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the multipart body has no parts: send one image per part",
        ));
    }
    let mut answers = Vec::new();
    for (name, filename, answer) in pending {
        let mut item = match wait(answer).await {
            Ok(p) => json!(Answer::new(p, &s.card.classes, tta)),
            Err(f) => {
                s.metrics.error(f.kind);
                json!({ "error": f.message, "kind": f.kind })
            }
        };
        item["name"] = json!(name);
        if let Some(f) = filename {
            item["filename"] = json!(f);
        }
        answers.push(item);
    }
    Ok(Value::Array(answers))
}

/// The body's share of the memory budget (its declared length, else the largest body allowed);
/// 503 when the budget is spent.
fn reserve(s: &State, headers: &HeaderMap) -> Result<tokio::sync::OwnedSemaphorePermit, Failure> {
    let declared = declared_length(headers)
        .unwrap_or(s.max_body_bytes as u64)
        .min(s.max_body_bytes as u64);
    let kib = u32::try_from(declared.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    s.body_budget
        .clone()
        .try_acquire_many_owned(kib)
        .map_err(|_| {
            Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_full",
                "the server is busy: try again in a second",
            )
        })
}

/// The body length a request declares (`Content-Length`), if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The whole body, within the size limit and the read timeout.
async fn read_body(s: &State, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Failure> {
    let too_large = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body is over the limit of {} bytes",
                s.max_body_bytes
            ),
        )
    };
    if declared_length(headers).is_some_and(|n| n > s.max_body_bytes as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(s.read_timeout, to_bytes(body, s.max_body_bytes)).await {
        Err(_) => Err(Failure::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request body did not arrive within {} s",
                s.read_timeout.as_secs_f64()
            ),
        )),
        Ok(Err(e)) if format!("{e:?}").contains("LengthLimit") => Err(too_large()),
        Ok(Err(e)) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("cannot read the request body: {e}"),
        )),
        Ok(Ok(bytes)) => Ok(bytes.to_vec()),
    }
}

/// One image through the batcher.
async fn classify(s: &State, image: Vec<u8>, tta: Tta) -> Result<Prediction, Failure> {
    let answer = s.batcher.submit(image, tta);
    wait(answer).await
}

async fn wait(
    answer: Option<tokio::sync::oneshot::Receiver<crate::batcher::Reply>>,
) -> Result<Prediction, Failure> {
    let Some(answer) = answer else {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_full",
            "the server is busy: try again in a second",
        ));
    };
    match answer.await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(ClassifyError::Decode(e))) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "not_an_image",
            e.to_string(),
        )),
        Ok(Err(e)) => Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
        Err(_) => Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the batch worker stopped",
        )),
    }
}
