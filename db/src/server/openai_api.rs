//! OpenAI-compatible endpoints, so an application written against the official
//! `openai` client uses Engram by changing its base URL:
//!
//! - `GET /v1/models`: the base chat model, `engram/COLLECTION` (auto mode) and
//!   `engram/COLLECTION/MODE` for every collection, and the embedding models.
//! - `POST /v1/chat/completions`: the model name picks the collection and the mode;
//!   the last user message is the question (and the rag query).
//! - `POST /v1/embeddings`: `minilm`, or `engram/COLLECTION` to embed with a
//!   collection's own (contextual) encoder, as its documents were.
//!
//! Only the translation lives here; answering is `Engine::prepare_chat`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use engram_generator::{ChatMessage, Role};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::answer_api::{admit, generate_once, stream_events};
use super::auth::{Caller, Scope};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{blocking, ApiJson};
use super::AppState;
use crate::answer::{generation_options, Grounding};
use crate::api_types::{AnswerMode, AnswerResponse};
use engram_store::DEFAULT_EMBEDDER;

/// The model id of the plain chat model (no collection, no adapter).
pub const BASE_CHAT_MODEL: &str = "smollm2-135m-instruct";
/// Prefix of the model ids that name a collection.
const COLLECTION_PREFIX: &str = "engram/";

#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelList {
    object: &'static str,
    data: Vec<ModelCard>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelCard {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

/// The models `/v1/chat/completions` and `/v1/embeddings` accept.
#[utoipa::path(get, path = "/v1/models", responses((status = 200, body = ModelList)))]
pub async fn models(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<ModelList>> {
    caller.require(Scope::Read)?;
    let card = |id: String| ModelCard {
        id,
        object: "model",
        created: 0,
        owned_by: "engram",
    };
    let mut data = vec![card(BASE_CHAT_MODEL.into()), card(DEFAULT_EMBEDDER.into())];
    for c in state.engine.store().list_collections() {
        data.push(card(format!("{COLLECTION_PREFIX}{}", c.config.name)));
        for mode in [
            AnswerMode::Rag,
            AnswerMode::Context,
            AnswerMode::Weights,
            AnswerMode::WeightsRag,
            AnswerMode::None,
        ] {
            data.push(card(format!(
                "{COLLECTION_PREFIX}{}/{}",
                c.config.name,
                mode.as_str()
            )));
        }
    }
    Ok(Json(ModelList {
        object: "list",
        data,
    }))
}

/// `POST /v1/chat/completions`. Unknown fields are ignored, as OpenAI-compatible
/// servers do, because clients send many optional ones.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatCompletionRequest {
    /// `smollm2-135m-instruct`, `engram/COLLECTION` or `engram/COLLECTION/MODE`.
    #[schema(min_length = 1)]
    model: String,
    /// The conversation; the last user message is the question.
    #[schema(value_type = Vec<super::schemas::ChatMessageSchema>, min_items = 1)]
    messages: Vec<OpenAiMessage>,
    #[schema(minimum = 1, maximum = 2048)]
    max_tokens: Option<usize>,
    #[schema(minimum = 1, maximum = 2048)]
    max_completion_tokens: Option<usize>,
    #[schema(minimum = 0, maximum = 2)]
    temperature: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    top_p: Option<f64>,
    #[serde(default, deserialize_with = "crate::api_types::int64_seed")]
    seed: Option<u64>,
    /// Engram generates one choice per request.
    #[schema(minimum = 1, maximum = 1)]
    n: Option<usize>,
    #[serde(default)]
    stream: bool,
}

#[derive(Debug, Deserialize)]
struct OpenAiMessage {
    role: String,
    /// A string, or a list of parts of which the text ones are used.
    #[serde(default)]
    content: Value,
}

impl OpenAiMessage {
    fn to_chat(&self, index: usize) -> Result<ChatMessage, ApiError> {
        let role = match self.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(bad_request(format!(
                "messages[{index}].role '{other}' is not supported; use system, user or assistant"
            )))
            }
        };
        let content = match &self.content {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            Value::Null => String::new(),
            _ => {
                return Err(bad_request(format!(
                    "messages[{index}].content must be a string or a list of text parts"
                )))
            }
        };
        Ok(ChatMessage { role, content })
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
}

/// What a chat model id means.
fn grounding_of(model: &str) -> Result<Option<Grounding>, ApiError> {
    if model == BASE_CHAT_MODEL {
        return Ok(None);
    }
    let Some(rest) = model.strip_prefix(COLLECTION_PREFIX) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("model '{model}' does not exist; use '{BASE_CHAT_MODEL}', 'engram/COLLECTION' or 'engram/COLLECTION/MODE' (GET /v1/models lists them)"),
        ));
    };
    let (collection, mode) = match rest.split_once('/') {
        Some((c, m)) => (c, AnswerMode::parse(m).map_err(bad_request)?),
        None => (rest, AnswerMode::Auto),
    };
    Ok(Some(Grounding {
        collection: collection.to_string(),
        mode,
        k: None,
        retrieval: None,
    }))
}

#[derive(Serialize)]
struct ChatCompletion {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    choices: Vec<Choice>,
    usage: OpenAiUsage,
    /// Engram's own account of the answer (mode, sources, timing; an
    /// `AnswerResponse`, its scores as the caller's key shows them); clients ignore it.
    engram: Value,
}

#[derive(Serialize)]
struct Choice {
    index: usize,
    message: AssistantMessage,
    finish_reason: String,
}

#[derive(Serialize)]
struct AssistantMessage {
    role: &'static str,
    content: String,
}

#[derive(Serialize)]
struct OpenAiUsage {
    prompt_tokens: usize,
    completion_tokens: usize,
    total_tokens: usize,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChunkChoice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OpenAiUsage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: usize,
    delta: Delta<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// OpenAI's finish reasons: "stop" or "length" (a cancelled answer never reaches a
/// client; one cut at its deadline is, like one cut at `max_tokens`, "length", and its
/// `engram.finish_reason` says "deadline").
fn openai_finish(reason: &str) -> &str {
    if reason == "length" || reason == "deadline" {
        "length"
    } else {
        "stop"
    }
}

/// Chat with the base model, or answer from a collection in a mode named by the model id.
#[utoipa::path(post, path = "/v1/chat/completions", request_body = ChatCompletionRequest,
    responses((status = 200, description = "an OpenAI chat.completion, or chunks as server-sent events"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    if req.n.unwrap_or(1) != 1 {
        return Err(bad_request(
            "n must be 1: Engram generates one choice per request".into(),
        ));
    }
    let grounding = grounding_of(&req.model)?;
    let messages = req
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| m.to_chat(i))
        .collect::<Result<Vec<_>, _>>()?;
    let options = generation_options(
        req.max_completion_tokens.or(req.max_tokens),
        req.temperature,
        req.top_p,
        req.seed,
    )?;
    let prepared = blocking(&state, move |e| {
        e.prepare_chat(grounding.as_ref(), &messages, options)
    })
    .await?;
    let admission = match admit(&state).await {
        Ok(admission) => admission,
        Err(busy) => return Ok(busy),
    };
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let (created, model) = (engram_store::clock::unix_now(), req.model);
    if !req.stream {
        let response = generate_once(admission, prepared).await?;
        let usage = usage_of(&response);
        let mut engram = serde_json::to_value(&response).unwrap_or_default();
        caller.scores.shape(&mut engram, "sources");
        return Ok(Json(ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model,
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: response.answer.clone(),
                },
                finish_reason: openai_finish(&response.finish_reason).to_string(),
            }],
            usage,
            engram,
        })
        .into_response());
    }
    let chunk = {
        let (id, model) = (id.clone(), model.clone());
        move |delta: Delta<'_>, finish_reason: Option<&str>, usage: Option<OpenAiUsage>| {
            Event::default().json_data(ChatChunk {
                id: &id,
                object: "chat.completion.chunk",
                created,
                model: &model,
                choices: [ChunkChoice {
                    index: 0,
                    delta,
                    finish_reason,
                }],
                usage,
            })
        }
    };
    let piece = {
        let chunk = chunk.clone();
        move |text: &str| {
            chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(text),
                },
                None,
                None,
            )
        }
    };
    let done = move |response: &AnswerResponse| {
        let last = chunk(
            Delta {
                role: None,
                content: None,
            },
            Some(openai_finish(&response.finish_reason)),
            Some(usage_of(response)),
        );
        last.into_iter()
            .chain(std::iter::once(Event::default().data("[DONE]")))
            .collect()
    };
    Ok(Sse::new(stream_events(admission, prepared, piece, done))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn usage_of(r: &AnswerResponse) -> OpenAiUsage {
    OpenAiUsage {
        prompt_tokens: r.usage.prompt_tokens,
        completion_tokens: r.usage.completion_tokens,
        total_tokens: r.usage.prompt_tokens + r.usage.completion_tokens,
    }
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingsRequest {
    /// A string or a list of strings (token-id inputs are not supported).
    #[schema(value_type = super::schemas::EmbeddingInput)]
    input: Value,
    /// `minilm`, or `engram/COLLECTION` for that collection's encoder.
    #[schema(pattern = "^(minilm|engram/.+)$")]
    model: String,
    /// "float" (default) or "base64" (little-endian f32, what the openai client asks for).
    #[schema(pattern = "^(float|base64)$")]
    encoding_format: Option<String>,
    /// Must equal the model's dimension if given (no truncation): 384, every
    /// encoder's here.
    #[schema(minimum = 384, maximum = 384)]
    dimensions: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EmbeddingList {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: String,
    #[schema(value_type = Object)]
    usage: Value,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EmbeddingItem {
    object: &'static str,
    index: usize,
    /// A list of floats, or a base64 string of little-endian f32.
    #[schema(value_type = super::schemas::EmbeddingVector)]
    embedding: Value,
}

/// Embed texts with MiniLM or a collection's own encoder.
#[utoipa::path(post, path = "/v1/embeddings", request_body = EmbeddingsRequest,
    responses((status = 200, body = EmbeddingList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> ApiResult<Json<EmbeddingList>> {
    caller.require(Scope::Read)?;
    let texts: Vec<String> =
        match &req.input {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => return Err(bad_request(
                "input must be a string or a list of strings (token-id inputs are not supported)"
                    .into(),
            )),
        };
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(bad_request(format!(
                "encoding_format '{other}' is not supported; use float or base64"
            )))
        }
    };
    let model = req.model.clone();
    let collection = model.strip_prefix(COLLECTION_PREFIX).map(str::to_string);
    let vectors = blocking(&state, move |e| match collection {
        Some(c) => e.store().embed_with_collection(&c, &texts),
        None => e
            .store()
            .embed(&crate::api_types::EmbedRequest {
                texts,
                model: Some(model),
            })
            .map(|r| r.vectors),
    })
    .await?;
    if let (Some(want), Some(first)) = (req.dimensions, vectors.first()) {
        if want != first.len() {
            return Err(bad_request(format!(
                "dimensions {want} is not available: this model makes {} dimensions",
                first.len()
            )));
        }
    }
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingItem {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::json!(v)
            },
        })
        .collect();
    Ok(Json(EmbeddingList {
        object: "list",
        data,
        model: req.model,
        usage: serde_json::json!({"prompt_tokens": 0, "total_tokens": 0}),
    }))
}
