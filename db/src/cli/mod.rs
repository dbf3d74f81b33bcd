//! The `engram` command line: `serve` runs the server; the other commands are
//! clients of a running server, except `restore` and `models`, which work on
//! local files.

mod ask;
mod client;
mod cluster;
mod commands;
mod contextual;
mod eval;
mod inversion;
mod promote;

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use commands::run;

use crate::api_types::{AnswerMode, QueryMode};
use crate::eval::weights::ScoredRows;
use crate::eval::Dataset;
use engram_store::fusion::Fusion;
use engram_store::index::Quantization;

#[derive(Parser, Debug)]
#[command(
    name = "engram",
    version,
    about = "Engram: a vector database for RAG, with server-side embeddings"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where a running server is, for client commands.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// Base URL of the Engram server.
    #[arg(long, env = "ENGRAM_URL", default_value = "http://127.0.0.1:6363")]
    pub url: String,
    /// API key (needed when the server has keys configured).
    #[arg(long, env = "ENGRAM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (fetches the embedding model into the cache on first use).
    Serve(ServeArgs),
    /// Manage collections on a running server.
    Collections {
        #[command(subcommand)]
        action: CollectionsAction,
        #[command(flatten)]
        remote: Remote,
    },
    /// Insert documents from a JSONL file (one {"id"?, "text" | "vector", "metadata"?} per line).
    Import {
        collection: String,
        file: PathBuf,
        /// Documents per request.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Create the collection (MiniLM text collection) if it does not exist.
        #[arg(long)]
        create: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Query a collection with a text.
    Query {
        collection: String,
        text: String,
        #[arg(short, long, default_value_t = 5)]
        k: usize,
        /// A metadata filter as JSON, e.g. '{"key":"lang","eq":"en"}'.
        #[arg(long)]
        filter: Option<String>,
        /// vector (embeddings), keyword (BM25) or hybrid (both, fused).
        #[arg(long, default_value = "vector")]
        mode: QueryMode,
        #[command(flatten)]
        fusion: FusionArgs,
        #[command(flatten)]
        remote: Remote,
    },
    /// Ask a question of a collection; the answer streams as it is generated, then its
    /// sources, token counts and timing.
    Ask(AskArgs),
    /// Which topic clusters of a collection queries hit most (the candidates to
    /// promote into an adapter).
    Hot {
        collection: String,
        /// Number of clusters [default: about sqrt(documents / 2)].
        #[arg(long)]
        k: Option<usize>,
        /// Documents shown per cluster.
        #[arg(long, default_value_t = 3)]
        top: usize,
        #[command(flatten)]
        remote: Remote,
    },
    /// Measure quality on local data (no server needed).
    Eval {
        #[command(subcommand)]
        action: EvalAction,
    },
    /// Take a consistent online backup into DIR (a path on the server's machine).
    Backup {
        dir: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Restore a backup into a data directory (the server must be stopped). All or
    /// nothing: the backup is copied beside the target and verified before it
    /// replaces anything.
    Restore {
        dir: PathBuf,
        #[arg(long, env = "ENGRAM_DATA_DIR", default_value = "./engram-data")]
        data_dir: PathBuf,
        /// Replace an existing data directory (it is moved aside, not deleted).
        #[arg(long)]
        force: bool,
    },
    /// Leakage audit of a collection: invert a sample of its vectors, compare
    /// defences, write an HTML report (admin).
    Audit(inversion::AuditArgs),
    /// Turn a collection's hot cluster into a LoRA adapter: synthetic data, training,
    /// the learn/forget gate, registration (admin; runs on the server).
    Promote(promote::PromoteArgs),
    /// A collection's adapter versions: list, activate, rollback, deactivate, delete.
    Adapters {
        #[command(subcommand)]
        action: promote::AdaptersAction,
    },
    /// Inspect the synthetic training data of a promotion.
    Synth {
        #[command(subcommand)]
        action: promote::SynthAction,
    },
    /// Train a model the project ships (the inverter's probe, the learned contextual stage two).
    Train {
        #[command(subcommand)]
        what: inversion::TrainWhat,
    },
    /// A cluster's nodes, shards and replicas with their lag (`GET /cluster`).
    Cluster {
        #[command(subcommand)]
        action: cluster::ClusterAction,
    },
    /// Manage the model cache.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
}

#[derive(Args, Debug)]
pub struct AskArgs {
    pub collection: String,
    pub question: String,
    /// context (every document in the prompt), rag (top-k passages), weights (the
    /// collection's adapter), auto (weights if there is one, else rag), none (bare model).
    #[arg(long, default_value = "auto")]
    pub mode: AnswerMode,
    /// Rag: passages in the prompt.
    #[arg(short, long)]
    pub k: Option<usize>,
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// 0 is greedy (deterministic).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Print the whole answer at the end instead of streaming it.
    #[arg(long)]
    pub no_stream: bool,
    /// Print the response as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Optional TOML config file; flags and environment override it.
    #[arg(long, env = "ENGRAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the database lives [default: ./engram-data].
    #[arg(long, env = "ENGRAM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to bind [default: 127.0.0.1]. Without API keys only loopback is allowed.
    #[arg(long, env = "ENGRAM_HOST")]
    pub host: Option<IpAddr>,
    /// Port [default: 6363].
    #[arg(long, env = "ENGRAM_PORT")]
    pub port: Option<u16>,
    /// API keys as KEY:SCOPE,KEY:SCOPE with scopes read, write, admin.
    #[arg(long, env = "ENGRAM_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// Do not load the models at start-up (the embedding and language models then load on first use).
    #[arg(long)]
    pub lazy_models: bool,
    /// Cluster mode: the NATS JetStream servers, nats://h1:4222,h2:4222,h3:4222
    /// (README "Cluster mode"). Without it the database is this machine's alone.
    #[arg(long, env = "ENGRAM_CLUSTER")]
    pub cluster: Option<String>,
    /// This node's id in the cluster (unique per node; needed with --cluster).
    #[arg(long, env = "ENGRAM_NODE_ID")]
    pub node_id: Option<u32>,
    /// Cluster mode: snapshot after this many stream messages since the newest
    /// snapshot, then trim the stream (0: never by count) [default: 100000].
    #[arg(long, env = "ENGRAM_SNAPSHOT_EVERY_WRITES")]
    pub snapshot_every_writes: Option<u64>,
    /// Cluster mode: snapshot after this many seconds if anything was written (0:
    /// never by time) [default: 3600].
    #[arg(long, env = "ENGRAM_SNAPSHOT_EVERY_SECS")]
    pub snapshot_every_secs: Option<u64>,
    /// Cluster mode: which shards' records this node keeps: placed (only the shards
    /// placed on it: disk and applied writes scale out; shards are copied in as
    /// placement moves) or all (every shard's, so every node applies every write and
    /// any node's snapshot holds the whole database) [default: placed].
    #[arg(long, env = "ENGRAM_SHARD_RECORDS", value_parser = ["all", "placed"])]
    pub shard_records: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum CollectionsAction {
    List,
    Info {
        name: String,
    },
    /// Create a collection: a MiniLM text collection unless --dimension is given.
    Create {
        name: String,
        #[arg(long)]
        dimension: Option<usize>,
        /// cosine, dot or euclidean.
        #[arg(long)]
        distance: Option<String>,
        /// sync (default) or fast.
        #[arg(long)]
        durability: Option<String>,
        /// minilm (default), contextual, or contextual-<variant>.
        #[arg(long)]
        embedder: Option<String>,
    },
    Delete {
        name: String,
    },
    /// Rebuild a contextual collection's corpus context and re-embed it (queries keep
    /// working on the old vectors until the swap); shows progress until it is done.
    Recontextualize {
        name: String,
        /// Return at once instead of following the progress.
        #[arg(long)]
        no_wait: bool,
    },
}

/// How hybrid queries merge the vector and keyword rankings.
#[derive(Args, Debug, Clone)]
pub struct FusionArgs {
    /// Fusion of hybrid queries: weighted (normalised scores) or rrf (reciprocal rank).
    #[arg(long, value_enum, default_value_t = FusionMethod::Weighted)]
    pub fusion: FusionMethod,
    /// Weighted fusion: the vector score's weight, in [0, 1].
    #[arg(long, default_value_t = engram_store::fusion::DEFAULT_VECTOR_WEIGHT)]
    pub vector_weight: f32,
    /// RRF's k: larger values flatten the lead of the first ranks.
    #[arg(long, default_value_t = engram_store::fusion::DEFAULT_RRF_K)]
    pub rrf_k: f32,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusionMethod {
    Rrf,
    Weighted,
}

impl FusionArgs {
    pub fn fusion(&self) -> Fusion {
        match self.fusion {
            FusionMethod::Rrf => Fusion::Rrf { k: self.rrf_k },
            FusionMethod::Weighted => Fusion::Weighted {
                vector_weight: self.vector_weight,
            },
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum EvalAction {
    /// Retrieval quality on Quoref or DROP: every passage is inserted into a
    /// temporary collection and every question asked; a question's own passage
    /// is its relevant document. Prints nDCG@10, recall@1, recall@10, MRR@10.
    Retrieval(EvalRetrievalArgs),
    /// The three paradigms on Quoref: accuracy (EM, token F1) and latency of answers
    /// with no context, the full context (collections of --group passages) and rag at
    /// each k; optionally the cost curve of a growing context, as JSON and an SVG chart.
    Answers(EvalAnswersArgs),
    /// Embedding inversion on 200 held-out 32-token Quoref texts: token F1, BLEU,
    /// exact match, cosine and seconds per text for the probe alone, its ordered
    /// hypothesis, and hypothesis + correction at several step budgets.
    Inversion(inversion::EvalInversionArgs),
    /// Graduating to weights on Quoref: promote the first passages into a LoRA adapter
    /// (half of their gold questions trained on, half held out), then answer the
    /// held-out questions with no context, rag, weights and weights + rag; prints
    /// accuracy, latency, forgetting and training throughput.
    Weights(EvalWeightsArgs),
    /// Contextual embeddings on a whole dataset: MiniLM, every training-free variant
    /// and the learned stage two in one table (one stage-one pass, exact search).
    Contextual(contextual::EvalContextualArgs),
    /// Contextual embeddings by collection size: MiniLM, every variant and the
    /// self-checked default on collections of 50 to 3,000 documents of each corpus.
    ContextualSizes(contextual::EvalContextualSizesArgs),
}

#[derive(Args, Debug)]
pub struct EvalWeightsArgs {
    /// The Quoref file [default: ~/.cache/engram/data/quoref.jsonl].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Passages promoted (the first N).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Synthetic-data strategies, comma-separated: cloze, person_qa, self_qa, rephrase.
    #[arg(long, default_value = "cloze,person_qa,self_qa", value_delimiter = ',')]
    pub strategy: Vec<String>,
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    #[arg(long, default_value_t = 60)]
    pub steps: usize,
    /// Rag passages for rag and weights + rag.
    #[arg(short, long, default_value_t = 1)]
    pub k: usize,
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on synthetic data only: the even-numbered gold questions are not used
    /// (the held-out half stays the same).
    #[arg(long)]
    pub synthetic_only: bool,
    /// Context distillation instead of gold pairs, with this loss (kl, next-token or
    /// kl+next-token): the even-numbered questions are asked through rag (logged), their
    /// gold answers never used; the gate holds out a seeded fifth of them.
    #[arg(long)]
    pub distill: Option<String>,
    /// With --distill: also self-study questions written by these strategies
    /// (comma-separated, e.g. self_qa), answered by the teacher from their document.
    #[arg(long, value_delimiter = ',')]
    pub self_study: Vec<String>,
    /// The answer modes scored: all; adapter (weights and weights + rag: the base
    /// model's rows do not depend on the adapter, take them from another run with the
    /// same passages and seed); weights (a lever sweep's one figure, at a quarter of
    /// the answering time).
    #[arg(long, value_enum, default_value_t = ScoredRows::All)]
    pub rows: ScoredRows,
    /// Also score full context (every passage in the prompt, 422 past the model's
    /// window): latency of weights vs rag vs full context on the same collection.
    /// Needs every row (`--rows all`).
    #[arg(long)]
    pub full_context: bool,
    /// With --distill: train on no logged question (the gate keeps its fifth), only
    /// on the --self-study questions.
    #[arg(long)]
    pub logged_gate_only: bool,
    /// With --distill: answers the teacher samples per question [default: 1].
    #[arg(long)]
    pub teacher_samples: Option<usize>,
    /// With --distill: the teacher's sampling temperature [default: 0.3].
    #[arg(long)]
    pub teacher_temperature: Option<f64>,
    /// With --distill: how the loss weighs the teacher answer's tokens: uniform, or
    /// context-gain (each token by how much the passages raised its probability)
    /// [default: uniform].
    #[arg(long, value_parser = ["uniform", "context-gain"])]
    pub token_weights: Option<String>,
    /// Peak learning rate [default: 1e-3].
    #[arg(long)]
    pub lr: Option<f64>,
    /// self_qa model calls per passage, three questions each [default: 2].
    #[arg(long)]
    pub self_study_rounds: Option<usize>,
    /// Share of training micro-batches drawn from general text, to limit forgetting,
    /// 0 to 1 [default: 0.2].
    #[arg(long)]
    pub replay_ratio: Option<f64>,
    /// What replayed general text is trained towards: the base model's own
    /// distributions on it (KL, as distillation does) or its tokens
    /// [default: base-kl, as promotions do].
    #[arg(long, value_parser = ["base-kl", "text"])]
    pub replay: Option<String>,
    /// Promote a lora or a prefix adapter [default: lora].
    #[arg(long, value_parser = ["lora", "prefix"])]
    pub adapter: Option<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Copy the training loss chart (SVG) here.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EvalAnswersArgs {
    #[arg(long, value_enum, default_value = "quoref")]
    pub dataset: Dataset,
    /// The dataset file [default: ~/.cache/engram/data/DATASET.jsonl].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Passages to use (the first N); rag searches all of them.
    #[arg(long, default_value_t = 60)]
    pub limit: usize,
    /// Passages per full-context collection (6 Quoref passages are ~3,000 tokens).
    #[arg(long, default_value_t = 6)]
    pub group: usize,
    /// Questions to ask (the first N of those passages).
    #[arg(long, default_value_t = 60)]
    pub questions: usize,
    /// Rag runs, comma-separated k values.
    #[arg(long, default_value = "1,3,5", value_delimiter = ',')]
    pub rag_k: Vec<usize>,
    /// Skip the full-context run (the slowest).
    #[arg(long)]
    pub no_context: bool,
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Also measure the cost curve at these prompt sizes (tokens, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub cost_curve: Vec<usize>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the cost-curve chart (SVG) here.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EvalRetrievalArgs {
    #[arg(long, value_enum)]
    pub dataset: Dataset,
    /// The dataset file [default: ~/.cache/engram/data/DATASET.jsonl, written by scripts/extract_quoref.py].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Text encoder of the collection (see `engram_embedder::ENCODER_NAMES`).
    #[arg(long, default_value = engram_store::DEFAULT_EMBEDDER)]
    pub encoder: String,
    /// vector, keyword, hybrid, or all (the three, one after the other).
    #[arg(long, default_value = "all", value_parser = parse_modes)]
    pub mode: ModeList,
    #[command(flatten)]
    pub fusion: FusionArgs,
    /// Use only the first N passages (and their questions).
    #[arg(long)]
    pub limit: Option<usize>,
    /// The graph walk of the collection: int8 (the default) or none (f32).
    #[arg(long, default_value = "int8", value_parser = parse_quantization)]
    pub quantization: Quantization,
    /// Also compare fusion settings for hybrid mode (weighted w = 0.1 ... 0.9,
    /// RRF k = 1, 10, 60) from one pass of vector and keyword queries.
    #[arg(long)]
    pub sweep: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The query modes an evaluation runs.
#[derive(Debug, Clone)]
pub struct ModeList(pub Vec<QueryMode>);

fn parse_quantization(s: &str) -> Result<Quantization, String> {
    serde_json::from_value(serde_json::Value::from(s))
        .map_err(|_| format!("unknown quantization {s:?}: int8 or none"))
}

fn parse_modes(s: &str) -> Result<ModeList, String> {
    if s == "all" {
        return Ok(ModeList(QueryMode::ALL.to_vec()));
    }
    s.split(',')
        .map(|m| m.trim().parse::<QueryMode>())
        .collect::<Result<_, _>>()
        .map(ModeList)
        .map_err(|e| format!("{e} (or all)"))
}

#[derive(Subcommand, Debug)]
pub enum ModelsAction {
    /// Download the pinned models into the cache (~/.cache/engram/models or $ENGRAM_MODELS).
    Fetch,
}
