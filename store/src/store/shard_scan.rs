//! A collection's documents listed shard by shard where each shard's records are
//! kept: the jobs that read a whole collection (`promote --all`'s documents, an
//! audit's sample) go through [`Store::each_document`], which reads the shards this
//! node's graph holds from its own records and asks a replica of every other shard
//! for its documents page by page ([`Store::shard_documents`] there); the
//! collection's counts (`GET /collections/NAME`) are summed the same way
//! ([`Store::collection_info_all_shards`]). Why: a node need not keep the records of
//! shards placed elsewhere; the same paged read is what a node newly placed on a
//! shard can copy it with.

use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::Store;
use crate::api::CollectionInfo;
use crate::collection::{shard_mask, shard_of, Collection, DocumentRecord};
use crate::error::{Error, Result};
use crate::shard_scope::ShardScope;

/// A page of one shard's documents, asked of a node that keeps them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardScan {
    pub collection: String,
    pub shard: u32,
    /// Resume after this id (the previous page's `next`); None: from the first.
    pub after: Option<String>,
}

/// Documents of one shard in id order, as many as one answer holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardPage {
    pub documents: Vec<(String, DocumentRecord)>,
    /// Where the next page starts (ask again with it as `after`); None: the last page.
    pub next: Option<String>,
}

/// What some shards of a collection hold.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardCounts {
    pub documents: u64,
    /// Live chunks (vectors).
    pub vectors: u64,
    /// Documents with text (in the keyword index).
    pub keyword_documents: u64,
}

impl ShardCounts {
    fn add(&mut self, other: &ShardCounts) {
        self.documents += other.documents;
        self.vectors += other.vectors;
        self.keyword_documents += other.keyword_documents;
    }
}

impl Store {
    /// What `shards` of collection `name` hold here (one pass over its documents and
    /// chunks).
    pub fn shard_counts(&self, name: &str, shards: &[u32]) -> Result<ShardCounts> {
        let coll = self.collection(name)?;
        self.counts_in(&coll, shards)
    }

    fn counts_in(&self, coll: &Collection, shards: &[u32]) -> Result<ShardCounts> {
        let count = coll.config.shards;
        let only = shard_mask(&coll.config.name, count, shards.iter().copied())?;
        let documents = coll.with_documents(|docs| {
            docs.keys()
                .filter(|id| only[shard_of(id, count) as usize])
                .count() as u64
        });
        // A chunk's shard is its id modulo the shard count (`Store::shard_chunk_id`).
        let vectors = coll.with_chunks(|chunks| {
            chunks
                .keys()
                .filter(|&&c| only[(c % u64::from(count.max(1))) as usize])
                .count() as u64
        });
        let keyword_documents = coll.keywords().term_stats("", Some(&only)).documents;
        Ok(ShardCounts {
            documents,
            vectors,
            keyword_documents,
        })
    }

    /// [`Store::collection_info`] with the whole collection's counts: in cluster mode,
    /// the shards this node's graph does not hold are counted by one of their
    /// replicas. What `GET /collections/NAME` shows.
    pub fn collection_info_all_shards(&self, name: &str) -> Result<CollectionInfo> {
        let coll = self.collection(name)?;
        self.info_all_shards(&coll)
    }

    /// Every collection's [`Store::collection_info_all_shards`], by name.
    pub fn list_collections_all_shards(&self) -> Result<Vec<CollectionInfo>> {
        let mut collections = self.all_collections();
        collections.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        collections
            .iter()
            .map(|c| self.info_all_shards(c))
            // Deleted meanwhile (here, or on the replica asked for its counts).
            .filter(|r| !matches!(r, Err(Error::CollectionNotFound(_))))
            .collect()
    }

    fn info_all_shards(&self, coll: &Collection) -> Result<CollectionInfo> {
        let mut info = self.info(coll);
        let (Some(scatter), ShardScope::Only(held)) = (self.scatter(), coll.scope()) else {
            return Ok(info);
        };
        let name = &coll.config.name;
        let held: Vec<u32> = held.into_iter().collect();
        let mut total = self.counts_in(coll, &held)?;
        for shard in (0..coll.config.shards).filter(|s| !held.contains(s)) {
            total.add(&scatter.shard_counts(name, shard)?);
        }
        info.documents = total.documents as usize;
        info.vectors = total.vectors as usize;
        info.keyword_documents = total.keyword_documents as usize;
        Ok(info)
    }

    /// A page of `scan`'s shard: its documents after `scan.after`, in id order, as
    /// many as `max_bytes` (as JSON) holds, at least one.
    pub fn shard_documents(&self, scan: &ShardScan, max_bytes: usize) -> Result<ShardPage> {
        let coll = self.collection(&scan.collection)?;
        let shards = coll.config.shards;
        shard_mask(&scan.collection, shards, [scan.shard])?;
        let mut page = ShardPage::default();
        let mut bytes = 0;
        self.storage.scan_documents_after::<DocumentRecord>(
            &scan.collection,
            scan.after.as_deref(),
            |id, rec| {
                if shard_of(&id, shards) != scan.shard {
                    return Ok(ControlFlow::Continue(()));
                }
                // Its id and record, with room for the JSON around them.
                let size = id.len() + serde_json::to_vec(&rec).map_or(0, |b| b.len()) + 8;
                if !page.documents.is_empty() && bytes + size > max_bytes {
                    page.next = page.documents.last().map(|(id, _)| id.clone());
                    return Ok(ControlFlow::Break(()));
                }
                bytes += size;
                page.documents.push((id, rec));
                Ok(ControlFlow::Continue(()))
            },
        )?;
        Ok(page)
    }

    /// Every document of collection `name` with its record, shard by shard: those of
    /// the shards this node's graph holds from its own records, each other shard's
    /// read from one of its replicas (cluster mode), page by page.
    pub fn each_document(
        &self,
        name: &str,
        mut each: impl FnMut(String, DocumentRecord) -> Result<()>,
    ) -> Result<()> {
        let coll = self.collection(name)?;
        let shards = coll.config.shards;
        let scope = coll.scope();
        let scatter = self.scatter();
        // Without a cluster, or holding every shard, this node's records are the list.
        let here = |shard: u32| scatter.is_none() || scope.holds_shard(shard);
        self.storage
            .scan_documents::<DocumentRecord>(name, |id, rec| {
                if here(shard_of(&id, shards)) {
                    each(id, rec)?;
                }
                Ok(())
            })?;
        let Some(scatter) = scatter else {
            return Ok(());
        };
        for shard in (0..shards).filter(|&s| !here(s)) {
            let mut scan = ShardScan {
                collection: name.to_string(),
                shard,
                after: None,
            };
            loop {
                let page = scatter.shard_documents(&scan)?;
                let last = page.documents.last().map(|(id, _)| id.clone());
                for (id, rec) in page.documents {
                    each(id, rec)?;
                }
                match page.next {
                    Some(next) if Some(&next) == last.as_ref() => scan.after = Some(next),
                    Some(_) => {
                        return Err(Error::Unavailable(format!(
                            "shard {shard} of collection '{name}' answered a page that does not end where it says; retry"
                        )))
                    }
                    None => break,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CreateCollection, DocumentInput};

    #[test]
    fn a_shard_is_listed_page_by_page_in_id_order_and_its_pages_make_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = super::super::replicated_tests::open(dir.path());
        let shards = 4;
        let req = CreateCollection {
            dimension: Some(2),
            shards: Some(shards),
            ..Default::default()
        };
        s.create_collection("c", req).unwrap();
        let docs: Vec<DocumentInput> = (0..40u32)
            .map(|i| DocumentInput {
                id: Some(format!("d{i}")),
                text: Some(format!("text of {i}")),
                vector: Some(vec![1.0, i as f32]),
                ..Default::default()
            })
            .collect();
        s.upsert("c", docs).unwrap();
        let mut whole = Vec::new();
        s.each_document("c", |id, _| {
            whole.push(id);
            Ok(())
        })
        .unwrap();
        assert_eq!(whole.len(), 40);
        let mut paged = Vec::new();
        for shard in 0..shards {
            let mut scan = ShardScan {
                collection: "c".into(),
                shard,
                after: None,
            };
            let mut pages = 0;
            loop {
                // A small budget: one or two documents a page.
                let page = s.shard_documents(&scan, 150).unwrap();
                assert!(!page.documents.is_empty());
                assert!(page
                    .documents
                    .iter()
                    .all(|(id, _)| shard_of(id, shards) == shard));
                assert!(page.documents.windows(2).all(|w| w[0].0 < w[1].0));
                paged.extend(page.documents.iter().map(|(id, _)| id.clone()));
                pages += 1;
                match page.next {
                    Some(n) => scan.after = Some(n),
                    None => break,
                }
            }
            assert!(pages > 1, "shard {shard} in one page");
        }
        paged.sort();
        whole.sort();
        assert_eq!(paged, whole);
        let bad = ShardScan {
            collection: "c".into(),
            shard: 4,
            after: None,
        };
        assert!(matches!(
            s.shard_documents(&bad, 1 << 20),
            Err(Error::InvalidInput { .. })
        ));
    }
}
