//! Request and response types of the store's operations. They are the JSON of
//! the REST API (with OpenAPI schemas) and the arguments of the library calls
//! the CLI makes, so both speak the same language.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::collection::{CollectionConfig, ContextSettings, Durability};
use crate::context_build::ContextBuild;
use crate::fusion::Fusion;
use crate::index::{IndexParams, Metric};

/// `PUT /collections/{name}`. With no fields, a text collection embedded by
/// MiniLM. Give `dimension` (and no embedder) for a bring-your-own-vector one.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// Text encoder: "minilm" (default unless `dimension` is given), "contextual"
    /// (MiniLM conditioned on this collection's corpus; see `context`) or
    /// "contextual-<variant>" (learned, the default; or the training-free center,
    /// whiten, idf, idf-center, idf-whiten).
    #[schema(value_type = Option<EncoderName>)]
    pub embedder: Option<String>,
    /// Vector dimension of a bring-your-own-vector collection (at most
    /// `limits.max_dimension`, 4,096 by default).
    #[schema(minimum = 1, maximum = 4096)]
    pub dimension: Option<usize>,
    /// cosine (default), dot or euclidean.
    pub distance: Option<Metric>,
    /// sync (default) or fast.
    pub durability: Option<Durability>,
    /// Graph settings: {"m": 16, "ef_construction": 200, "quantization": "int8"} by
    /// default; "quantization": "none" walks the f32 vectors (less memory, slower).
    pub hnsw: Option<IndexParams>,
    /// Default search breadth of queries (at most `limits.max_ef`, 10,000 by default).
    #[schema(minimum = 1, maximum = 10000)]
    pub ef_search: Option<usize>,
    /// Text collections: {"tokens": 64, "overlap": 16} by default; tokens at most 256.
    #[schema(value_type = Option<Object>)]
    pub chunking: Option<engram_embedder::Chunking>,
    /// Contextual collections: {"min_documents": 100, "sample": 2000} by default.
    pub context: Option<ContextSettings>,
    /// Log the questions asked of the collection (text queries, answers, chat) with
    /// the documents they retrieved: true by default; false keeps none.
    pub log_questions: Option<bool>,
    /// How many of the newest questions the log keeps (default 1,000, at most 10,000).
    #[schema(minimum = 1, maximum = 10000)]
    pub question_log_size: Option<usize>,
    /// Shards (default 8, at most 256), fixed at creation: in cluster mode each is
    /// written and ordered on its own, so writes to different shards do not wait
    /// for each other. One machine ignores them.
    #[schema(minimum = 1, maximum = 256)]
    pub shards: Option<u32>,
    /// Replicas of each shard in cluster mode (default 3, at most 16; placed on that
    /// many live nodes, all of them while fewer are alive). One machine ignores it.
    #[schema(minimum = 1, maximum = 16)]
    pub replication: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CollectionInfo {
    #[serde(flatten)]
    pub config: CollectionConfig,
    pub documents: usize,
    /// Stored vectors (chunks), live ones only.
    pub vectors: usize,
    /// Live vectors in this node's graph: all of them on one machine; in cluster mode
    /// those of the shards placed on the node (`indexed_shards`).
    pub indexed_vectors: usize,
    /// Cluster mode: the shards whose vectors this node's graph holds, when not all.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub indexed_shards: Option<Vec<u32>>,
    /// Cluster mode with `--shard-records placed`: the shards whose records (documents,
    /// vectors, keyword postings) this node keeps, when not all.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub record_shards: Option<Vec<u32>>,
    /// Bytes of raw f32 vector data held by the index.
    pub vector_bytes: usize,
    /// Memory of the index per vector: the f32 vector, its int8 codes (when
    /// quantized) and its graph links.
    pub index_bytes_per_vector: f64,
    /// Whether searches walk int8 codes now (`hnsw.quantization: "int8"` and at
    /// least 1,000 vectors).
    pub quantized: bool,
    /// Documents in the BM25 keyword index (those with text).
    pub keyword_documents: usize,
    /// Contextual collections: which corpus context embeds their text now.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub corpus_context: Option<ContextInfo>,
    /// Warns about settings that trade safety for speed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The corpus context of a contextual collection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContextInfo {
    /// Version every vector is tagged with; 0 until the first context is built
    /// (documents are then embedded by plain MiniLM).
    pub version: u64,
    /// Documents the context was computed from, and distinct tokens seen in them.
    pub sampled_documents: usize,
    pub vocabulary: usize,
    /// The variant embedding the collection now (`stage-one` when its self-check
    /// kept plain MiniLM); absent before the first context.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
    /// The latest context's self-check: nDCG@10 of stage one and of each candidate
    /// on pseudo-queries from the sample, each variant's paired gain and its lower
    /// confidence bound, the chosen variant and why.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<Object>)]
    pub self_check: Option<engram_embedder::SelfCheck>,
    /// The latest build since the server started: state and progress.
    pub job: Option<ContextBuild>,
}

/// One document to insert or replace. Text collections take `text`;
/// bring-your-own-vector collections take `vector` (and may keep a `text` too).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    /// Generated (UUID v4) when absent. An existing id is replaced. No control
    /// characters; at most `limits.max_id_bytes` (512) bytes.
    #[schema(
        min_length = 1,
        max_length = 512,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub id: Option<String>,
    /// Text collections: the document's text (visible characters; no control
    /// characters but tab and newlines).
    #[schema(value_type = Option<VisibleText>)]
    pub text: Option<String>,
    pub vector: Option<Vec<f32>>,
    /// A JSON object, filterable at query time.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertRequest {
    /// One to `limits.max_batch` (1,000) documents, written atomically.
    #[schema(min_items = 1, max_items = 1000)]
    pub documents: Vec<DocumentInput>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct UpsertResponse {
    /// The ids of the documents, in request order.
    pub ids: Vec<String>,
    /// The sequence number of this write; later writes have larger ones.
    pub seq: u64,
    /// False for `durability: fast` collections: acknowledged before the disk sync.
    pub synced: bool,
}

/// Extra fields a hit or a document may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Include {
    Text,
    Metadata,
    /// Raw vectors: only for keys with the write or admin scope, since vectors leak text.
    Vector,
}

/// Which index answers a query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueryMode {
    /// Nearest chunks by embedding (the default): finds paraphrases.
    #[default]
    Vector,
    /// BM25 over the documents' texts: finds exact names, numbers and rare words.
    Keyword,
    /// Both, merged by `fusion` (weighted normalised scores by default).
    Hybrid,
}

impl QueryMode {
    /// Every mode, in the order `engram eval retrieval --mode all` runs them.
    pub const ALL: [QueryMode; 3] = [QueryMode::Vector, QueryMode::Keyword, QueryMode::Hybrid];

    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryMode::Vector => "vector",
            QueryMode::Keyword => "keyword",
            QueryMode::Hybrid => "hybrid",
        }
    }
}

impl std::str::FromStr for QueryMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        QueryMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown mode '{s}'; use vector, keyword or hybrid"))
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// A text query: embedded for vector search (text collections), tokenised
    /// for keyword search. Required by the keyword and hybrid modes.
    #[schema(value_type = Option<VisibleText>)]
    pub text: Option<String>,
    /// A vector query; its dimension must match the collection. In hybrid mode
    /// a collection without an embedder takes `vector` and `text` together.
    pub vector: Option<Vec<f32>>,
    /// vector (default), keyword or hybrid.
    pub mode: Option<QueryMode>,
    /// Hybrid mode only: {"method": "weighted", "vector_weight": 0.4} (the
    /// default) or {"method": "rrf", "k": 60}.
    pub fusion: Option<Fusion>,
    /// Number of documents to return (default 10; at most `limits.max_k`, 1,000).
    #[schema(minimum = 1, maximum = 1000)]
    pub k: Option<usize>,
    /// Metadata filter: {"key","eq"} | {"key","in"} | {"key","range"} | {"and"|"or": [...]} | {"not": ...}
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// Fields to return; default text and metadata.
    pub include: Option<Vec<Include>>,
    /// Search breadth of the vector index; higher is more accurate and slower
    /// (at most `limits.max_ef`, 10,000).
    #[schema(minimum = 1, maximum = 10000)]
    pub ef: Option<usize>,
    /// Read your own writes: answer only once this node has applied the write with
    /// this sequence number (the `seq` of a write's answer). In cluster mode a node
    /// behind waits up to 10 s, then answers 503; on one machine every acknowledged
    /// write is already applied, and a sequence no write reached is a 409.
    pub min_seq: Option<u64>,
}

impl QueryRequest {
    pub fn includes(&self, what: Include) -> bool {
        match &self.include {
            Some(list) => list.contains(&what),
            None => matches!(what, Include::Text | Include::Metadata),
        }
    }
}

/// Where in its document a hit's best chunk lies (byte offsets).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct ChunkSpan {
    pub index: u32,
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct Hit {
    pub id: String,
    /// Vector mode: cosine similarity or dot product (higher is nearer), or
    /// euclidean distance (lower is nearer). Keyword mode: the BM25 score.
    /// Hybrid mode: the fused score (higher is better).
    pub score: f32,
    /// Vector and hybrid modes: the chunk nearest the query vector; keyword
    /// mode (and documents only keyword search found): the chunk with the most
    /// query terms.
    pub chunk: ChunkSpan,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// The best chunk's vector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct QueryResponse {
    pub hits: Vec<Hit>,
    pub took_ms: f64,
    /// False when a vector search may have missed documents (see `warning`): a
    /// filtered walk stopped at its work limit before it found `ef` matching chunks,
    /// or a walk ran out of reachable nodes before `ef` while some were never visited,
    /// and scoring every match directly was too large.
    #[serde(default = "yes")]
    pub exhaustive: bool,
    /// Why the result may be incomplete, and what to do about it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub warning: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Document {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub metadata: Value,
    pub chunks: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vectors: Option<Vec<Vec<f32>>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    /// One to `limits.max_batch` (1,000) texts.
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<VisibleText>)]
    pub texts: Vec<String>,
    /// Encoder name: "minilm" (the default and, outside a collection, the only
    /// one: contextual encoders embed with a collection's corpus context).
    #[schema(value_type = Option<String>, pattern = "^minilm$")]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct EmbedResponse {
    pub model: String,
    pub dimension: usize,
    pub vectors: Vec<Vec<f32>>,
}

/// Text as every endpoint takes it (`validate::text`): at least one visible
/// character, no control characters but tab, CR and LF, at most
/// `limits.max_text_bytes` (1 MiB) of UTF-8. A schema only, for the fields that hold
/// such text.
pub struct VisibleText;

/// [`VisibleText`]'s rule as a JSON-schema (ECMA) pattern.
const VISIBLE_TEXT: &str = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*\
[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$";

impl utoipa::PartialSchema for VisibleText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .pattern(Some(VISIBLE_TEXT))
            .description(Some(
                "At least one visible character; no control characters but tab, CR and LF.",
            ))
            .into()
    }
}

impl ToSchema for VisibleText {}

/// The name of a text encoder the server knows (`engram_embedder::ENCODER_NAMES`).
/// A schema only.
pub struct EncoderName;

impl utoipa::PartialSchema for EncoderName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(engram_embedder::ENCODER_NAMES.iter().copied()))
            .into()
    }
}

impl ToSchema for EncoderName {}
