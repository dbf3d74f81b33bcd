//! Answering from a collection in the three paradigms: full context, rag and weights.
//!
//! Answering is two steps so that a streaming client gets request errors (unknown
//! collection, a corpus too big for the window, no adapter) as a plain 4xx before any
//! event is sent: [`Engine::prepare_answer`] (or [`Engine::prepare_chat`]) checks the
//! request, retrieves and builds the prompt; [`PreparedAnswer::generate`] runs the
//! model, streaming text through a callback. The answer endpoint, the OpenAI-compatible
//! `/v1/chat/completions`, `engram ask` and the benchmark all go through these. The
//! server runs generations through the model's admission [`Gate`] (`admission.rs`):
//! bounded concurrency and queue, a deadline, cancellation.

pub mod admission;
pub mod prompt;
mod routing;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use engram_generator::{
    ChatMessage, FinishReason, Generation, GenerationOptions, GenerationRequest, GgufChatModel,
    Interrupt, LanguageModel, LoraAdapter, Role,
};

use self::admission::{Admission, Gate, GenerationLimits};

use crate::api_types::{
    AdapterRef, AnswerMode, AnswerRequest, AnswerResponse, AnswerSource, AnswerTiming, AnswerUsage,
    Include, QueryMode, QueryRequest,
};
use crate::engine::Engine;
use crate::error::{Error, Result};
use engram_store::collection::DocumentRecord;
use engram_store::validate;

/// Passages a rag answer gets when the request does not say.
pub const DEFAULT_K: usize = 3;
/// Most passages one rag answer may ask for: 16 passages of ~1,500 characters are
/// about 6,000 tokens, most of SmolLM2's 8,192-token window.
pub const MAX_K: usize = 16;
/// Tokens an answer may take when the request does not say: answers are short.
pub const DEFAULT_MAX_TOKENS: usize = 128;
/// Bytes of a document a rag passage shows around its best chunk.
pub const PASSAGE_BYTES: usize = 1_500;

/// Loads the language model on first use.
pub type ModelLoader = dyn Fn() -> engram_generator::Result<Arc<dyn LanguageModel>> + Send + Sync;

/// The process's language model: loaded on the first answer (or by `serve`'s warm-up),
/// then shared by every request and every collection; adapters are applied per call.
/// Its admission [`Gate`] bounds how many generations run and wait on it.
pub struct ModelSlot {
    model: Mutex<Option<Arc<dyn LanguageModel>>>,
    loader: Box<ModelLoader>,
    gate: Arc<Gate>,
}

impl ModelSlot {
    /// SmolLM2-135M-Instruct from the model cache (fetched on first use).
    pub fn smollm2() -> Self {
        Self::with_loader(Box::new(|| {
            Ok(Arc::new(GgufChatModel::load_default()?) as Arc<dyn LanguageModel>)
        }))
    }

    /// Any model (tests use tiny ones).
    pub fn with_loader(loader: Box<ModelLoader>) -> Self {
        ModelSlot {
            model: Mutex::new(None),
            loader,
            gate: Arc::new(Gate::new(GenerationLimits::default())),
        }
    }

    /// Concurrency, queue, deadline and token cap of this model's generations
    /// (`[generation]` of the server's configuration).
    pub fn with_limits(mut self, limits: GenerationLimits) -> Self {
        self.gate = Arc::new(Gate::new(limits));
        self
    }

    /// The admission gate of this model.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The model, loading it if this is the first call. Concurrent first calls wait
    /// for one load rather than loading twice.
    pub fn get(&self) -> Result<Arc<dyn LanguageModel>> {
        let mut slot = self.model.lock().expect("lock");
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        let started = Instant::now();
        let model = (self.loader)()?;
        tracing::info!(
            model = %model.info().name,
            seconds = started.elapsed().as_secs_f64(),
            "language model loaded"
        );
        *slot = Some(model.clone());
        Ok(model)
    }
}

/// Where answers find a collection's active adapter: the generator's adapter registry
/// in the server. A trait so the answer path does not depend on how adapters are
/// stored, and tests can register one directly.
pub trait AdapterSource: Send + Sync {
    /// The active adapter of `collection`, if it has one. Returns an `Arc` so a swap
    /// while a request runs leaves that request with the adapter it started with.
    fn active(&self, collection: &str) -> Option<(AdapterRef, Arc<LoraAdapter>)>;

    /// The documents version `version` of `collection`'s adapters learned, with their
    /// write sequences then (empty: not recorded, so its staleness is unknown).
    fn learned(&self, collection: &str, version: u32) -> BTreeMap<String, u64> {
        let _ = (collection, version);
        BTreeMap::new()
    }
}

/// Which knowledge a chat is grounded in: a collection in a mode, or nothing (the
/// plain model, `/v1/chat/completions` with the base model's name).
#[derive(Debug, Clone)]
pub struct Grounding {
    pub collection: String,
    pub mode: AnswerMode,
    /// Rag: passages to retrieve (default [`DEFAULT_K`]).
    pub k: Option<usize>,
    /// Rag: how to retrieve (default hybrid).
    pub retrieval: Option<QueryMode>,
}

/// A checked request with its prompt built: all that is left is to run the model.
pub struct PreparedAnswer {
    pub mode_used: AnswerMode,
    model: Arc<dyn LanguageModel>,
    messages: Vec<ChatMessage>,
    options: GenerationOptions,
    sources: Vec<AnswerSource>,
    adapter: Option<(AdapterRef, Arc<LoraAdapter>)>,
    retrieve_ms: f64,
    /// `auto`: why it answered in `mode_used`.
    mode_reason: Option<String>,
}

impl PreparedAnswer {
    /// The model's name.
    pub fn model_name(&self) -> &str {
        &self.model.info().name
    }

    /// Runs the model; `on_text` receives each new piece of the answer and may stop
    /// generation by returning `Break` (a streaming client went away).
    pub fn generate(
        &self,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<AnswerResponse> {
        let generation = self.run(None, on_text)?;
        Ok(self.respond(generation))
    }

    /// Runs the model in an admitted slot: it stops at the admission's deadline (the
    /// answer so far, finish reason `deadline`; [`Error::DeadlineExceeded`] if not one
    /// token was generated) or when the admission is cancelled, and records how it
    /// ended in the gate's counters.
    pub fn generate_admitted(
        &self,
        admission: &mut Admission,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<AnswerResponse> {
        let generation = self.run(Some(admission.interrupt()), on_text);
        admission.record(generation.as_ref().ok().map(|g| g.finish_reason));
        let generation = generation?;
        if generation.finish_reason == FinishReason::Deadline
            && generation.usage.completion_tokens == 0
        {
            return Err(Error::DeadlineExceeded {
                deadline_s: admission.deadline_s(),
                prompt_tokens: generation.usage.prompt_tokens,
            });
        }
        Ok(self.respond(generation))
    }

    fn run(
        &self,
        interrupt: Option<&Interrupt>,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let request = GenerationRequest {
            messages: &self.messages,
            options: &self.options,
            adapter: self.adapter.as_ref().map(|(_, a)| a.as_ref()),
            interrupt,
        };
        Ok(self.model.generate(&request, on_text)?)
    }

    fn respond(&self, generation: Generation) -> AnswerResponse {
        let finish_reason = serde_json::to_value(generation.finish_reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        AnswerResponse {
            answer: generation.text.trim().to_string(),
            mode_used: self.mode_used,
            model: self.model.info().name.clone(),
            sources: self.sources.clone(),
            adapter: self.adapter.as_ref().map(|(r, _)| r.clone()),
            mode_reason: self.mode_reason.clone(),
            finish_reason,
            usage: AnswerUsage {
                prompt_tokens: generation.usage.prompt_tokens,
                completion_tokens: generation.usage.completion_tokens,
            },
            timing: AnswerTiming {
                retrieve_ms: self.retrieve_ms,
                prefill_ms: generation.timing.prefill_ms,
                decode_ms: generation.timing.decode_ms,
                decode_tokens_per_s: generation.timing.decode_tokens_per_s,
            },
        }
    }
}

/// Generation options from a request's optional fields, checked.
pub fn generation_options(
    max_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
) -> Result<GenerationOptions> {
    let options = GenerationOptions {
        max_tokens: max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        temperature: temperature.unwrap_or(0.0),
        top_p: top_p.unwrap_or(1.0),
        seed: seed.unwrap_or(0),
    };
    options.validate()?;
    Ok(options)
}

impl Engine {
    /// The language model, loaded on first use.
    pub fn language_model(&self) -> Result<Arc<dyn LanguageModel>> {
        self.model_slot().get()
    }

    /// The admission gate of the language model's generations.
    pub fn generation_gate(&self) -> &Arc<Gate> {
        self.model_slot().gate()
    }

    /// Answers a question from a collection (no streaming).
    pub fn answer(&self, name: &str, req: &AnswerRequest) -> Result<AnswerResponse> {
        self.prepare_answer(name, req)?
            .generate(&mut |_| ControlFlow::Continue(()))
    }

    /// Checks an answer request and builds its prompt (see the module doc).
    pub fn prepare_answer(&self, name: &str, req: &AnswerRequest) -> Result<PreparedAnswer> {
        validate::text("question", &req.question, self.limits())?;
        let options = generation_options(req.max_tokens, req.temperature, req.top_p, req.seed)?;
        let grounding = Grounding {
            collection: name.to_string(),
            mode: req.mode,
            k: req.k,
            retrieval: req.retrieval,
        };
        let conversation = [ChatMessage::user(req.question.trim())];
        self.prepare_chat(Some(&grounding), &conversation, options)
    }

    /// Checks a conversation and builds its prompt: grounded in a collection (its last
    /// user turn is the question) or, with `grounding` None, the plain model.
    pub fn prepare_chat(
        &self,
        grounding: Option<&Grounding>,
        conversation: &[ChatMessage],
        options: GenerationOptions,
    ) -> Result<PreparedAnswer> {
        options.validate()?;
        let cap = self.generation_gate().limits().max_tokens;
        if options.max_tokens > cap {
            return Err(Error::invalid(
                "max_tokens",
                format!(
                    "max_tokens {} is above this server's cap of {cap} tokens per answer; ask for fewer, or raise [generation] max_tokens in the server's configuration",
                    options.max_tokens
                ),
            ));
        }
        let question = conversation
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .ok_or_else(|| Error::invalid("messages", "send at least one user message"))?;
        validate::text("question", question, self.limits())?;
        let model = self.language_model()?;
        let started = Instant::now();
        let Some(g) = grounding else {
            return self.prepared(
                model,
                AnswerMode::None,
                conversation.to_vec(),
                options,
                vec![],
                None,
                0.0,
            );
        };
        // Unknown collections fail here whatever the mode.
        self.store().collection_info(&g.collection)?;
        let adapter = self.active_adapter(&g.collection);
        let route = self.route(g, question, adapter.as_ref().map(|(r, _)| r))?;
        let mode = route.mode;
        if route.sources.is_none() && !matches!(mode, AnswerMode::Rag | AnswerMode::WeightsRag) {
            // Nothing is retrieved, so no query logs the question: log it here.
            self.store().log_question(&g.collection, question, &[])?;
        }
        let mut prepared = match mode {
            AnswerMode::Weights => {
                let adapter = adapter.ok_or_else(|| Error::NoAdapter(g.collection.clone()))?;
                let messages = prompt::grounded(conversation, &[]);
                let retrieve_ms = route.sources.map_or(0.0, |_| ms_since(started));
                self.prepared(
                    model,
                    mode,
                    messages,
                    options,
                    vec![],
                    Some(adapter),
                    retrieve_ms,
                )
            }
            AnswerMode::None | AnswerMode::Auto => {
                let messages = prompt::grounded(conversation, &[]);
                self.prepared(
                    model,
                    AnswerMode::None,
                    messages,
                    options,
                    vec![],
                    None,
                    0.0,
                )
            }
            AnswerMode::Rag | AnswerMode::WeightsRag => {
                let adapter = match mode {
                    AnswerMode::WeightsRag => {
                        Some(adapter.ok_or_else(|| Error::NoAdapter(g.collection.clone()))?)
                    }
                    _ => None,
                };
                let sources = match route.sources {
                    Some(sources) => sources,
                    None => self.retrieve_passages(g, question)?,
                };
                let passages: Vec<_> = sources
                    .iter()
                    .map(|s| prompt::Passage { text: &s.text })
                    .collect();
                let messages = prompt::grounded(conversation, &passages);
                let retrieve_ms = ms_since(started);
                self.prepared(
                    model,
                    mode,
                    messages,
                    options,
                    sources,
                    adapter,
                    retrieve_ms,
                )
            }
            AnswerMode::Context => {
                let window = model.info().context_window;
                let texts = self.corpus_texts(&g.collection, window)?;
                let passages: Vec<_> = texts
                    .texts
                    .iter()
                    .map(|t| prompt::Passage { text: t })
                    .collect();
                let messages = prompt::grounded(conversation, &passages);
                let tokens = model.prompt_tokens(&messages)?;
                if texts.truncated || tokens >= window {
                    return Err(Error::ContextTooLong {
                        collection: g.collection.clone(),
                        documents: texts.documents,
                        tokens,
                        window,
                    });
                }
                let retrieve_ms = ms_since(started);
                self.prepared(model, mode, messages, options, vec![], None, retrieve_ms)
            }
        }?;
        prepared.mode_reason = route.reason;
        Ok(prepared)
    }

    #[allow(clippy::too_many_arguments)]
    fn prepared(
        &self,
        model: Arc<dyn LanguageModel>,
        mode_used: AnswerMode,
        messages: Vec<ChatMessage>,
        options: GenerationOptions,
        sources: Vec<AnswerSource>,
        adapter: Option<(AdapterRef, Arc<LoraAdapter>)>,
        retrieve_ms: f64,
    ) -> Result<PreparedAnswer> {
        // A prefix adapter's positions come before the prompt in the same window.
        let prefix = adapter.as_ref().map_or(0, |(_, a)| a.prefix_len());
        let tokens = model.prompt_tokens(&messages)? + prefix;
        let window = model.info().context_window;
        if tokens >= window {
            return Err(engram_generator::Error::PromptTooLong {
                prompt_tokens: tokens,
                context_window: window,
            }
            .into());
        }
        Ok(PreparedAnswer {
            mode_used,
            model,
            messages,
            options,
            sources,
            adapter,
            retrieve_ms,
            mode_reason: None,
        })
    }

    /// The collection's active adapter, which `weights` and `auto` answer with.
    ///
    /// Adapters are trained and registered by `engram promote` (into the generator's
    /// registry); until a collection has been promoted it has none.
    pub fn active_adapter(&self, name: &str) -> Option<(AdapterRef, Arc<LoraAdapter>)> {
        self.adapters()?.active(name)
    }

    /// The rag passages for `question`: the top-k documents, each shown as its best
    /// chunk widened to [`PASSAGE_BYTES`].
    pub(crate) fn retrieve_passages(
        &self,
        g: &Grounding,
        question: &str,
    ) -> Result<Vec<AnswerSource>> {
        let k = g.k.unwrap_or(DEFAULT_K);
        if !(1..=MAX_K).contains(&k) {
            return Err(Error::invalid(
                "k",
                format!("k must be between 1 and {MAX_K} passages for an answer, got {k}"),
            ));
        }
        let hits = self
            .store()
            .query(
                &g.collection,
                &QueryRequest {
                    text: Some(question.to_string()),
                    vector: None,
                    mode: Some(g.retrieval.unwrap_or(QueryMode::Hybrid)),
                    fusion: None,
                    k: Some(k),
                    filter: None,
                    include: Some(vec![Include::Text]),
                    ef: None,
                    min_seq: None,
                },
            )?
            .hits;
        Ok(hits
            .into_iter()
            .filter_map(|h| {
                let text = h.text?;
                let passage = prompt::window(
                    &text,
                    h.chunk.start as usize,
                    h.chunk.end as usize,
                    PASSAGE_BYTES,
                );
                Some(AnswerSource {
                    id: h.id,
                    score: h.score,
                    text: passage.to_string(),
                })
            })
            .collect())
    }

    /// Every document text of a collection in insertion order, for full-context
    /// answers. Stops reading once the texts are certainly longer than `window` tokens
    /// (a token is never more than 8 bytes of English), so a large collection is refused
    /// without reading it all.
    fn corpus_texts(&self, name: &str, window: usize) -> Result<CorpusTexts> {
        let coll = self.store().collection(name)?;
        let ids: Vec<Arc<str>> = coll.with_documents(|docs| docs.keys().cloned().collect());
        // (batch seq, first chunk id): chunk ids are given in the order documents came
        // within a batch, so the prompt follows insertion order, never a hash map's.
        let mut records: Vec<((u64, u64), String)> = Vec::new();
        let (mut bytes, mut truncated) = (0usize, false);
        for id in &ids {
            let Some(rec) = self
                .store()
                .storage()
                .get_document::<DocumentRecord>(name, id)?
            else {
                continue;
            };
            if let Some(text) = rec.text {
                bytes += text.len();
                let first_chunk = rec.chunks.first().copied().unwrap_or(0);
                records.push(((rec.seq, first_chunk), text));
            }
            if bytes > window * 8 {
                truncated = true;
                break;
            }
        }
        if records.is_empty() {
            return Err(Error::invalid(
                "collection",
                format!("collection '{name}' holds no document texts to answer from; insert documents with \"text\""),
            ));
        }
        records.sort_by_key(|(order, _)| *order);
        Ok(CorpusTexts {
            documents: ids.len(),
            texts: records.into_iter().map(|(_, t)| t).collect(),
            truncated,
        })
    }
}

/// Milliseconds since `t`.
fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

struct CorpusTexts {
    /// Documents in the collection.
    documents: usize,
    /// Texts read, in insertion order.
    texts: Vec<String>,
    /// Reading stopped early: the corpus certainly does not fit.
    truncated: bool,
}
