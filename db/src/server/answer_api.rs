//! `/collections/{name}/answer`: one question, answered in the mode the caller picks,
//! and the generation plumbing `/v1/chat/completions` shares: admission through the
//! model's gate (a full queue is a 429 with `Retry-After`), the blocking run, and
//! cancellation when the client goes away, streamed or not.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Serialize;

use super::auth::{Caller, Scope};
use super::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use super::extract::{blocking, ApiJson, Path};
use super::AppState;
use crate::answer::admission::{Admission, Busy, GateStats};
use crate::answer::PreparedAnswer;
use crate::api_types::{AnswerRequest, AnswerResponse};

/// Answer a question from the collection: `context` (every document in the prompt),
/// `rag` (the top-k passages, cited), `weights` (the active adapter, no context),
/// `auto` (weights if there is an adapter, else rag) or `none` (the bare model).
/// With `"stream": true` the answer arrives as server-sent events: `token` events
/// `{"text"}`, then a `done` event with this response (or an `error` event).
#[utoipa::path(post, path = "/collections/{name}/answer", request_body = AnswerRequest,
    params(("name" = String, Path)),
    responses((status = 200, description = "JSON, or server-sent events when stream is true",
            content((AnswerResponse = "application/json"), (super::schemas::AnswerEvent = "text/event-stream"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "weights mode and no active adapter"),
        (status = 422, body = ErrorBody, description = "context mode and the collection does not fit the window"),
        (status = 429, body = ErrorBody, description = "the model is busy (queue full): retry after the Retry-After header's seconds"),
        (status = 504, body = ErrorBody, description = "the deadline passed before the first token")))]
pub async fn answer(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<AnswerRequest>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let (stream, scores) = (req.stream, caller.scores);
    let prepared = blocking(&state, move |e| e.prepare_answer(&name, &req)).await?;
    let admission = match admit(&state).await {
        Ok(admission) => admission,
        Err(busy) => return Ok(busy),
    };
    if !stream {
        let response = generate_once(admission, prepared).await?;
        return Ok(scores.respond(response, "sources"));
    }
    let events = stream_events(
        admission,
        prepared,
        |piece| {
            Event::default()
                .event("token")
                .json_data(TokenEvent { text: piece })
        },
        move |response| {
            let mut done = serde_json::to_value(response).unwrap_or_default();
            scores.shape(&mut done, "sources");
            Event::default()
                .event("done")
                .json_data(done)
                .into_iter()
                .collect()
        },
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Serialize)]
struct TokenEvent<'a> {
    text: &'a str,
}

fn worker_failed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request's worker failed; see the server log",
    )
}

/// Waits (asynchronously) for a slot of the model's gate. Refused: the response to send,
/// 429 with the usual error body and a `Retry-After` header.
pub async fn admit(state: &AppState) -> Result<Admission, Response> {
    state
        .engine
        .generation_gate()
        .admit()
        .await
        .map_err(busy_response)
}

fn busy_response(busy: Busy) -> Response {
    let retry_after = HeaderValue::from(busy.retry_after_s);
    let mut response = ApiError::from(crate::error::Error::Busy(busy.to_string())).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after);
    response
}

/// The gate's state for `/metrics`: (name, help, labels, value) like the store's gauges.
pub fn generation_gauges(s: &GateStats) -> Vec<(&'static str, &'static str, String, f64)> {
    let mut gauges = vec![
        (
            "engram_generation_running",
            "Generations running now.",
            String::new(),
            s.running as f64,
        ),
        (
            "engram_generation_waiting",
            "Generation requests waiting for a slot now.",
            String::new(),
            s.waiting as f64,
        ),
    ];
    for (outcome, n) in [
        ("admitted", s.admitted),
        ("rejected", s.rejected),
        ("completed", s.completed),
        ("cancelled", s.cancelled),
        ("deadline", s.deadline),
        ("failed", s.failed),
    ] {
        gauges.push((
            "engram_generation_requests",
            "Generation requests since start, by outcome (admitted, then how admitted ones ended; rejected never ran).",
            format!("{{outcome=\"{outcome}\"}}"),
            n as f64,
        ));
    }
    gauges
}

/// Runs `prepared` in its admitted slot on the blocking pool and returns the answer.
/// If the client goes away first, this future is dropped, which cancels the generation
/// (it stops within a token) and frees the slot.
pub async fn generate_once(
    mut admission: Admission,
    prepared: PreparedAnswer,
) -> ApiResult<AnswerResponse> {
    let _cancel = admission.cancel_on_drop();
    let response = tokio::task::spawn_blocking(move || {
        prepared.generate_admitted(&mut admission, &mut |_| ControlFlow::Continue(()))
    })
    .await
    .map_err(|_| worker_failed())??;
    Ok(response)
}

/// Runs `prepared` in its admitted slot on the blocking pool and streams what it writes
/// as events: one per piece of text (`piece`), then the events `done` makes of the
/// finished response, or an `error` event with the usual error body. A client that goes
/// away drops the stream, which cancels the generation (and a failed send stops it too).
pub fn stream_events<P, D>(
    mut admission: Admission,
    prepared: PreparedAnswer,
    piece: P,
    done: D,
) -> impl Stream<Item = Result<Event, Infallible>>
where
    P: Fn(&str) -> Result<Event, axum::Error> + Send + 'static,
    D: FnOnce(&AnswerResponse) -> Vec<Event> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let cancel = admission.cancel_on_drop();
    tokio::task::spawn_blocking(move || {
        let result = prepared.generate_admitted(&mut admission, &mut |text| match piece(text)
            .map(|event| tx.blocking_send(event))
        {
            Ok(Ok(())) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(()),
        });
        let last = match result {
            Ok(response) => done(&response),
            Err(e) => {
                let e = ApiError::from(e);
                let body = ErrorBody {
                    error: ErrorDetail {
                        code: e.code.to_string(),
                        message: e.message,
                    },
                };
                Event::default()
                    .event("error")
                    .json_data(body)
                    .into_iter()
                    .collect()
            }
        };
        // The slot is free before the last events are sent.
        drop(admission);
        for event in last {
            if tx.blocking_send(event).is_err() {
                break;
            }
        }
    });
    futures_util::stream::unfold((rx, cancel), |(mut rx, cancel)| async move {
        rx.recv().await.map(|event| (Ok(event), (rx, cancel)))
    })
}
