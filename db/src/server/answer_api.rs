//! `/collections/{name}/answer`: one question, answered in the mode the caller picks.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::Stream;
use serde::Serialize;

use super::auth::{Caller, Scope};
use super::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use super::extract::{blocking, ApiJson, Path};
use super::AppState;
use crate::answer::PreparedAnswer;
use crate::api_types::{AnswerRequest, AnswerResponse};

/// Answer a question from the collection: `context` (every document in the prompt),
/// `rag` (the top-k passages, cited), `weights` (the active adapter, no context),
/// `auto` (weights if there is an adapter, else rag) or `none` (the bare model).
/// With `"stream": true` the answer arrives as server-sent events: `token` events
/// `{"text"}`, then a `done` event with this response (or an `error` event).
#[utoipa::path(post, path = "/collections/{name}/answer", request_body = AnswerRequest,
    params(("name" = String, Path)),
    responses((status = 200, body = AnswerResponse, description = "JSON, or text/event-stream when stream is true"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "weights mode and no active adapter"),
        (status = 422, body = ErrorBody, description = "context mode and the collection does not fit the window")))]
pub async fn answer(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<AnswerRequest>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let stream = req.stream;
    let prepared = blocking(&state, move |e| e.prepare_answer(&name, &req)).await?;
    if !stream {
        let response = tokio::task::spawn_blocking(move || {
            prepared.generate(&mut |_| ControlFlow::Continue(()))
        })
        .await
        .map_err(|_| worker_failed())??;
        return Ok(Json(response).into_response());
    }
    let events = stream_events(
        prepared,
        |piece| {
            Event::default()
                .event("token")
                .json_data(TokenEvent { text: piece })
        },
        |response| {
            Event::default()
                .event("done")
                .json_data(response)
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

/// Runs `prepared` on the blocking pool and streams what it writes as events: one per
/// piece of text (`piece`), then the events `done` makes of the finished response, or
/// an `error` event
/// with the usual error body. A client that goes away stops the generation.
pub fn stream_events<P, D>(
    prepared: PreparedAnswer,
    piece: P,
    done: D,
) -> impl Stream<Item = Result<Event, Infallible>>
where
    P: Fn(&str) -> Result<Event, axum::Error> + Send + 'static,
    D: FnOnce(&AnswerResponse) -> Vec<Event> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::task::spawn_blocking(move || {
        let result = prepared.generate(&mut |text| match piece(text)
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
        for event in last {
            if tx.blocking_send(event).is_err() {
                break;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    })
}
