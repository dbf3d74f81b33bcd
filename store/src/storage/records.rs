//! The binary encodings of the store's records and keys: vector records, keyword
//! postings and stats, and the per-collection key prefix.

use crate::error::{Error, Result};

/// One stored chunk vector and the document it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRecord {
    pub doc_id: String,
    pub chunk_index: u32,
    pub start: u32,
    pub end: u32,
    pub vector: Vec<f32>,
    /// Version of the corpus context the vector was embedded with (0: none).
    pub context: u64,
}

/// Set in a record's id-length field when a context version follows the header.
/// Records written before versions existed lack it and read as version 0.
const HAS_CONTEXT: u32 = 1 << 31;

impl VectorRecord {
    /// The records of one document's embedded chunks, in order, tagged with the
    /// context version they were embedded under: one shape for every path that
    /// stores vectors (writes, context builds, re-embedding at apply).
    pub(crate) fn of_chunks(
        doc_id: &str,
        chunks: Vec<engram_embedder::Chunk>,
        context: u64,
    ) -> Vec<VectorRecord> {
        chunks
            .into_iter()
            .map(|c| VectorRecord {
                doc_id: doc_id.to_string(),
                chunk_index: c.index as u32,
                start: c.start as u32,
                end: c.end as u32,
                vector: c.vector,
                context,
            })
            .collect()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let id = self.doc_id.as_bytes();
        let mut out = Vec::with_capacity(24 + id.len() + 4 * self.vector.len());
        out.extend_from_slice(&(id.len() as u32 | HAS_CONTEXT).to_le_bytes());
        out.extend_from_slice(id);
        for x in [self.chunk_index, self.start, self.end] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&self.context.to_le_bytes());
        for x in &self.vector {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || Error::Corrupt("vector record is truncated".into());
        let u32_at = |at: usize| -> Result<u32> {
            let b = bytes.get(at..at + 4).ok_or_else(corrupt)?;
            Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        let header = u32_at(0)?;
        let id_len = (header & !HAS_CONTEXT) as usize;
        let id = bytes.get(4..4 + id_len).ok_or_else(corrupt)?;
        let doc_id = String::from_utf8(id.to_vec())
            .map_err(|_| Error::Corrupt("vector record has a non-UTF-8 document id".into()))?;
        let mut at = 4 + id_len;
        let (chunk_index, start, end) = (u32_at(at)?, u32_at(at + 4)?, u32_at(at + 8)?);
        at += 12;
        let mut context = 0;
        if header & HAS_CONTEXT != 0 {
            let b = bytes.get(at..at + 8).ok_or_else(corrupt)?;
            context = u64::from_le_bytes(b.try_into().expect("8 bytes"));
            at += 8;
        }
        let floats = &bytes[at..];
        if !floats.len().is_multiple_of(4) {
            return Err(corrupt());
        }
        let vector = floats
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        Ok(VectorRecord {
            doc_id,
            chunk_index,
            start,
            end,
            vector,
            context,
        })
    }
}

/// Tags of the three kinds of keyword records (they sort 'n' < 'p' < 's', so a
/// scan sees every document length before any posting).
const KW_LENGTH: u8 = b'n';
const KW_POSTING: u8 = b'p';
pub(super) const KW_STATS: u8 = b's';

/// A collection's keyword-index totals, the N and average length of BM25.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeywordStats {
    pub documents: u64,
    pub total_terms: u64,
}

impl KeywordStats {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&self.documents.to_le_bytes());
        v.extend_from_slice(&self.total_terms.to_le_bytes());
        v
    }

    pub(super) fn decode(value: &[u8]) -> Result<Self> {
        let (a, b) = value
            .split_at_checked(8)
            .filter(|(_, b)| b.len() == 8)
            .ok_or_else(|| Error::Corrupt("keyword stats are not 16 bytes".into()))?;
        Ok(KeywordStats {
            documents: u64::from_le_bytes(a.try_into().expect("8 bytes")),
            total_terms: u64::from_le_bytes(b.try_into().expect("8 bytes")),
        })
    }
}

/// One record of a collection's keyword index, as scanned at start-up.
#[derive(Debug, Clone, PartialEq)]
pub enum KeywordRecord {
    Length { doc: String, terms: u32 },
    Posting { term: String, doc: String, tf: u32 },
    Stats(KeywordStats),
}

pub(super) fn posting_key(coll: &str, term: &str, doc: &str) -> Vec<u8> {
    let mut rest = Vec::with_capacity(2 + term.len() + doc.len());
    rest.push(KW_POSTING);
    rest.extend_from_slice(term.as_bytes());
    rest.push(0);
    rest.extend_from_slice(doc.as_bytes());
    key(coll, &rest)
}

pub(super) fn length_key(coll: &str, doc: &str) -> Vec<u8> {
    let mut rest = Vec::with_capacity(1 + doc.len());
    rest.push(KW_LENGTH);
    rest.extend_from_slice(doc.as_bytes());
    key(coll, &rest)
}

fn u32_value(v: &[u8]) -> Result<u32> {
    let b: [u8; 4] = v
        .try_into()
        .map_err(|_| Error::Corrupt("keyword record value is not 4 bytes".into()))?;
    Ok(u32::from_le_bytes(b))
}

impl KeywordRecord {
    /// Parses a key (after the collection prefix) and its value.
    pub(super) fn decode(rest: &[u8], value: &[u8]) -> Result<Self> {
        let utf8 = |b: &[u8]| {
            String::from_utf8(b.to_vec())
                .map_err(|_| Error::Corrupt("keyword record is not UTF-8".into()))
        };
        match rest.split_first() {
            Some((&KW_LENGTH, doc)) => Ok(KeywordRecord::Length {
                doc: utf8(doc)?,
                terms: u32_value(value)?,
            }),
            Some((&KW_POSTING, term_doc)) => {
                let at = term_doc
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| Error::Corrupt("posting key has no separator".into()))?;
                Ok(KeywordRecord::Posting {
                    term: utf8(&term_doc[..at])?,
                    doc: utf8(&term_doc[at + 1..])?,
                    tf: u32_value(value)?,
                })
            }
            Some((&KW_STATS, [])) => Ok(KeywordRecord::Stats(KeywordStats::decode(value)?)),
            _ => Err(Error::Corrupt("unknown keyword record".into())),
        }
    }
}

/// Key of a record inside a collection: the name, a NUL, then the record key.
/// Collection names never contain NUL, so prefixes never collide.
pub(super) fn key(collection: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(collection.len() + 1 + rest.len());
    k.extend_from_slice(collection.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

/// [start, end) covering every key of one collection.
pub(super) fn collection_range(collection: &str) -> (Vec<u8>, Vec<u8>) {
    let start = key(collection, b"");
    let mut end = collection.as_bytes().to_vec();
    end.push(1);
    (start, end)
}
