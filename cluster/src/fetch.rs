//! Reads of a shard's records by a node placed on it, on subject
//! `engram.f.NAME.SHARD` (a queue group subscribed with the shard's queries by
//! `scatter::serve`): a scattered query's fetch phase (the k winners of shards this
//! node does not serve, `Store::fetch_hits`), `GET` of one document
//! (`Store::get_document_here`), a job's read of a document's record
//! (`Store::document_record`) or of a chunk's text span (`Store::chunk_span`), a page of the shard's documents for a job that reads
//! the whole collection (`Store::shard_documents`), the shard's counts
//! (`Store::shard_counts`) and a keyword query's first round, the shard's BM25
//! counts for the query's terms (`Store::term_stats`, summed by [`term_stats`]), and
//! a whole shard's copy for a node newly placed on it (`crate::shard_move`). So
//! hits, documents and counts come from a node that keeps the shard's records. An
//! answer is one message: a replica reads as many hits (or documents) as fit under
//! the servers' `max_payload` and the asking node asks again for the rest.

use std::sync::atomic::Ordering;

use engram_store::api::{Document, Hit};
use engram_store::collection::DocumentRecord;
use engram_store::keyword::TermStats;
use engram_store::{FetchedHits, HitFetch, ShardCounts, ShardPage, ShardScan};
use serde::{Deserialize, Serialize};

use crate::reply::{ask_replica, ShardRequest};
use crate::scatter::SHARD_WAIT;
use crate::{nats, Node, Result};

/// Hit-fetch subjects: `engram.f.` and the shard's `NAME.SHARD`.
pub const FETCH_PREFIX: &str = "engram.f.";

/// The subject (and queue group) of a shard's hit fetches.
pub fn subject(collection: &str, shard: u32) -> String {
    format!("{FETCH_PREFIX}{collection}.{shard}")
}

/// What a node asks of a shard's records.
#[derive(Debug, Serialize, Deserialize)]
enum ShardRead {
    Hits(HitFetch),
    Document {
        collection: String,
        id: String,
        with_vectors: bool,
    },
    Record {
        collection: String,
        id: String,
    },
    ChunkSpan {
        collection: String,
        chunk: u64,
    },
    TermStats {
        collection: String,
        shard: u32,
        text: String,
        min_seq: Option<u64>,
    },
    Documents(ShardScan),
    Counts {
        collection: String,
        shard: u32,
    },
    /// The whole shard, copied into the object store (`crate::shard_move`).
    Export {
        collection: String,
        shard: u32,
        min_seq: u64,
    },
}

/// Its answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ShardRecords {
    Hits(FetchedHits),
    Document(Document),
    Record(Option<DocumentRecord>),
    ChunkSpan(Option<(u32, u32)>),
    TermStats(TermStats),
    Documents(ShardPage),
    Counts(ShardCounts),
    Exported(crate::shard_move::Exported),
}

/// Reads what one request asks for here (a replica's side of [`fetch`] and
/// [`document`]), as much as one answer holds.
pub(crate) fn read(node: &Node, payload: &[u8]) -> engram_store::Result<ShardRecords> {
    let asked = serde_json::from_slice::<ShardRead>(payload).map_err(|e| {
        engram_store::Error::invalid("shard read", format!("not a shard read: {e}"))
    })?;
    let room = crate::message_room(&node.client);
    let store = node.store.store();
    let answer = match asked {
        ShardRead::Hits(f) => ShardRecords::Hits(store.fetch_hits(&f, room)?),
        ShardRead::Document {
            collection,
            id,
            with_vectors,
        } => {
            let doc = store.get_document_here(&collection, &id, with_vectors)?;
            let size = serde_json::to_vec(&doc).map_or(0, |b| b.len());
            if size > room {
                return Err(engram_store::Error::invalid(
                    "with_vectors",
                    format!("document '{id}' with its vectors takes {size} bytes, more than one message between nodes holds ({room}): read it without vectors, or raise the NATS servers' max_payload"),
                ));
            }
            ShardRecords::Document(doc)
        }
        ShardRead::Record { collection, id } => {
            // A record with no vectors is smaller than the write that stored it,
            // which fitted one message.
            ShardRecords::Record(store.storage().get_document(&collection, &id)?)
        }
        ShardRead::ChunkSpan { collection, chunk } => {
            ShardRecords::ChunkSpan(store.chunk_span_here(&collection, chunk)?)
        }
        ShardRead::TermStats {
            collection,
            shard,
            text,
            min_seq,
        } => ShardRecords::TermStats(store.term_stats(&collection, &text, &[shard], min_seq)?),
        ShardRead::Documents(scan) => ShardRecords::Documents(store.shard_documents(&scan, room)?),
        ShardRead::Counts { collection, shard } => {
            ShardRecords::Counts(store.shard_counts(&collection, &[shard])?)
        }
        ShardRead::Export {
            collection,
            shard,
            min_seq,
        } => ShardRecords::Exported(crate::shard_move::export(
            node,
            &collection,
            shard,
            min_seq,
        )?),
    };
    node.fetches.taken.fetch_add(1, Ordering::Relaxed);
    Ok(answer)
}

/// Asks one replica of `collection`'s `shard` to read `what`; `pick` takes the
/// answer of the kind asked (another kind is a 503, retry).
async fn ask<T>(
    node: &Node,
    collection: &str,
    shard: u32,
    what: &ShardRead,
    pick: impl FnOnce(ShardRecords) -> Option<T>,
) -> Result<T> {
    ask_within(node, collection, shard, what, SHARD_WAIT, pick).await
}

/// [`ask`], waiting up to `wait` for the answer.
async fn ask_within<T>(
    node: &Node,
    collection: &str,
    shard: u32,
    what: &ShardRead,
    wait: std::time::Duration,
    pick: impl FnOnce(ShardRecords) -> Option<T>,
) -> Result<T> {
    let request = ShardRequest {
        collection,
        shard,
        what: "shard read",
        wait,
        on_timeout: "",
    };
    let payload = bytes::Bytes::from(serde_json::to_vec(what).map_err(nats)?);
    let answer = ask_replica(node, subject(collection, shard), payload, &request).await?;
    node.fetches.sent.fetch_add(1, Ordering::Relaxed);
    pick(answer).ok_or_else(|| unexpected(collection, shard))
}

/// Document `id` of `collection`'s `shard`, read by one replica of the shard.
pub(crate) async fn document(
    node: &Node,
    collection: &str,
    shard: u32,
    id: &str,
    with_vectors: bool,
) -> Result<Document> {
    let what = ShardRead::Document {
        collection: collection.to_string(),
        id: id.to_string(),
        with_vectors,
    };
    ask(node, collection, shard, &what, |r| match r {
        ShardRecords::Document(doc) => Some(doc),
        _ => None,
    })
    .await
}

/// The record of document `id` of `collection`'s `shard`, read by one replica of the
/// shard (None: not there).
pub(crate) async fn record(
    node: &Node,
    collection: &str,
    shard: u32,
    id: &str,
) -> Result<Option<DocumentRecord>> {
    let what = ShardRead::Record {
        collection: collection.to_string(),
        id: id.to_string(),
    };
    ask(node, collection, shard, &what, |r| match r {
        ShardRecords::Record(rec) => Some(rec),
        _ => None,
    })
    .await
}

/// The span of chunk `chunk` of `collection`'s `shard`, read by one replica of the
/// shard (None: not there).
pub(crate) async fn chunk_span(
    node: &Node,
    collection: &str,
    shard: u32,
    chunk: u64,
) -> Result<Option<(u32, u32)>> {
    let what = ShardRead::ChunkSpan {
        collection: collection.to_string(),
        chunk,
    };
    ask(node, collection, shard, &what, |r| match r {
        ShardRecords::ChunkSpan(span) => Some(span),
        _ => None,
    })
    .await
}

/// A page of `scan`'s shard, read by one of its replicas.
pub(crate) async fn documents(node: &Node, scan: ShardScan) -> Result<ShardPage> {
    let (collection, shard) = (scan.collection.clone(), scan.shard);
    ask(
        node,
        &collection,
        shard,
        &ShardRead::Documents(scan),
        |r| match r {
            ShardRecords::Documents(page) => Some(page),
            _ => None,
        },
    )
    .await
}

/// How long a replica may take to export a shard and upload the copy.
const EXPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// `collection`'s `shard` copied by one of its replicas into the object store, at a
/// sequence at or after `min_seq`.
pub(crate) async fn export(
    node: &Node,
    collection: &str,
    shard: u32,
    min_seq: u64,
) -> Result<crate::shard_move::Exported> {
    let what = ShardRead::Export {
        collection: collection.to_string(),
        shard,
        min_seq,
    };
    ask_within(node, collection, shard, &what, EXPORT_WAIT, |r| match r {
        ShardRecords::Exported(e) => Some(e),
        _ => None,
    })
    .await
}

/// What `collection`'s `shard` holds, counted by one of its replicas.
pub(crate) async fn counts(node: &Node, collection: &str, shard: u32) -> Result<ShardCounts> {
    let what = ShardRead::Counts {
        collection: collection.to_string(),
        shard,
    };
    ask(node, collection, shard, &what, |r| match r {
        ShardRecords::Counts(counts) => Some(counts),
        _ => None,
    })
    .await
}

/// The collection's BM25 counts for `text`: `local` shards counted here, each of
/// `remote` by one of its replicas, all at once, summed.
pub(crate) async fn term_stats(
    node: &std::sync::Arc<Node>,
    collection: &str,
    text: &str,
    local: Vec<u32>,
    remote: Vec<u32>,
    min_seq: Option<u64>,
) -> Result<TermStats> {
    let asked = futures_util::future::try_join_all(remote.into_iter().map(|shard| async move {
        let what = ShardRead::TermStats {
            collection: collection.to_string(),
            shard,
            text: text.to_string(),
            min_seq,
        };
        ask(node, collection, shard, &what, |r| match r {
            ShardRecords::TermStats(stats) => Some(stats),
            _ => None,
        })
        .await
    }));
    let owner = node.store.clone();
    let (c, t) = (collection.to_string(), text.to_string());
    // Counted here without waiting for `min_seq`: the query waited for it already.
    let here = tokio::task::spawn_blocking(move || owner.store().term_stats(&c, &t, &local, None));
    let (parts, mut sum) = futures_util::future::try_join(asked, async {
        here.await.map_err(nats)?.map_err(crate::Error::from)
    })
    .await?;
    for part in &parts {
        sum.add(part);
    }
    Ok(sum)
}

fn unexpected(collection: &str, shard: u32) -> crate::Error {
    crate::Error::Unavailable(format!(
        "shard {shard} of collection '{collection}' answered another read than asked; retry"
    ))
}

/// The hits of `f` read by one replica of its shard, page by page, in order.
pub(crate) async fn fetch(node: &Node, mut f: HitFetch) -> Result<Vec<Option<Hit>>> {
    let (collection, shard) = (f.collection.clone(), f.shard);
    let mut hits = Vec::with_capacity(f.hits.len());
    while !f.hits.is_empty() {
        let asked = f.hits.len();
        let page = ask(
            node,
            &collection,
            shard,
            &ShardRead::Hits(f.clone()),
            |r| match r {
                ShardRecords::Hits(page) => Some(page.hits),
                _ => None,
            },
        )
        .await?;
        if page.is_empty() || page.len() > asked {
            return Err(crate::Error::Unavailable(format!(
                "shard {shard} of collection '{collection}' answered {} hits for {asked}; retry",
                page.len()
            )));
        }
        f.hits.drain(..page.len());
        hits.extend(page);
    }
    Ok(hits)
}
