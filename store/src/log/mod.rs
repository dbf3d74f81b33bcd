//! The write log: the one narrow seam every write of the store goes through.
//!
//! Why a seam: a store on one machine makes a write durable with RocksDB's synced
//! WAL; a store in a cluster makes it durable by a quorum of a replicated log and
//! applies it on every replica. Everything above this module builds a [`Batch`] of
//! record operations and calls [`WriteLog::append`]; which log makes it durable is
//! chosen when the store opens, so a second implementation needs no change above.
//!
//! A batch holds plain record operations (put, delete, delete a key range) on named
//! record families, so it can be encoded, sent and applied elsewhere, and replayed
//! from [`WriteLog::read_from`].

pub mod embedded;

pub use embedded::EmbeddedLog;

use crate::error::{Error, Result};

/// A family of records (one RocksDB column family each in the embedded log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Family {
    Collections = 0,
    Documents = 1,
    Vectors = 2,
    Meta = 3,
    Keywords = 4,
}

impl Family {
    pub const ALL: [Family; 5] = [
        Family::Collections,
        Family::Documents,
        Family::Vectors,
        Family::Meta,
        Family::Keywords,
    ];

    /// The column family's name in RocksDB.
    pub fn name(self) -> &'static str {
        match self {
            Family::Collections => "collections",
            Family::Documents => "documents",
            Family::Vectors => "vectors",
            Family::Meta => "meta",
            Family::Keywords => "keywords",
        }
    }

    fn from_tag(tag: u8) -> Result<Self> {
        Family::ALL
            .into_iter()
            .find(|f| *f as u8 == tag)
            .ok_or_else(|| Error::Corrupt(format!("unknown record family {tag} in a log entry")))
    }
}

/// One record operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        family: Family,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        family: Family,
        key: Vec<u8>,
    },
    /// Every key in `[start, end)`.
    DeleteRange {
        family: Family,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// Operations applied together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
}

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_DELETE_RANGE: u8 = 3;

impl Batch {
    pub fn put(&mut self, family: Family, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put {
            family,
            key: key.into(),
            value: value.into(),
        });
    }

    pub fn delete(&mut self, family: Family, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete {
            family,
            key: key.into(),
        });
    }

    pub fn delete_range(
        &mut self,
        family: Family,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
    ) {
        self.ops.push(Op::DeleteRange {
            family,
            start: start.into(),
            end: end.into(),
        });
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The batch as bytes: per operation a tag, the family, then length-prefixed
    /// (u32 LE) byte strings.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let bytes = |b: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        };
        for op in &self.ops {
            match op {
                Op::Put { family, key, value } => {
                    out.extend_from_slice(&[TAG_PUT, *family as u8]);
                    bytes(key, &mut out);
                    bytes(value, &mut out);
                }
                Op::Delete { family, key } => {
                    out.extend_from_slice(&[TAG_DELETE, *family as u8]);
                    bytes(key, &mut out);
                }
                Op::DeleteRange { family, start, end } => {
                    out.extend_from_slice(&[TAG_DELETE_RANGE, *family as u8]);
                    bytes(start, &mut out);
                    bytes(end, &mut out);
                }
            }
        }
        out
    }

    pub fn decode(mut bytes: &[u8]) -> Result<Self> {
        let mut batch = Batch::default();
        while let Some((&tag, rest)) = bytes.split_first() {
            let (&family, rest) = rest.split_first().ok_or_else(truncated)?;
            bytes = rest;
            let family = Family::from_tag(family)?;
            match tag {
                TAG_PUT => {
                    let key = take_string(&mut bytes)?;
                    batch.put(family, key, take_string(&mut bytes)?);
                }
                TAG_DELETE => batch.delete(family, take_string(&mut bytes)?),
                TAG_DELETE_RANGE => {
                    let start = take_string(&mut bytes)?;
                    batch.delete_range(family, start, take_string(&mut bytes)?);
                }
                _ => return Err(Error::Corrupt(format!("unknown log operation {tag}"))),
            }
        }
        Ok(batch)
    }
}

fn truncated() -> Error {
    Error::Corrupt("log entry is truncated".into())
}

/// Takes one length-prefixed byte string off the front of `bytes`.
fn take_string(bytes: &mut &[u8]) -> Result<Vec<u8>> {
    let (len, rest) = bytes.split_at_checked(4).ok_or_else(truncated)?;
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    let (string, rest) = rest.split_at_checked(len).ok_or_else(truncated)?;
    *bytes = rest;
    Ok(string.to_vec())
}

/// Makes batches durable and applies them to the local records.
pub trait WriteLog: Send + Sync {
    /// Makes `batch` durable (synced to disk first when `sync`), applies it to the
    /// local records atomically, and returns its sequence number in the log. When
    /// this returns the write is acknowledged: it survives a crash.
    fn append(&self, batch: Batch, sync: bool) -> Result<u64>;

    /// The batches with a sequence number above `seq`, in order, as far as the log
    /// still holds them (see each implementation's retention); the first returned
    /// number tells whether anything was trimmed away.
    fn read_from(&self, seq: u64) -> Result<Vec<(u64, Batch)>>;

    /// The sequence number of the last batch appended.
    fn last_seq(&self) -> u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_through_bytes() {
        let mut b = Batch::default();
        b.put(Family::Vectors, b"k1".to_vec(), vec![0u8; 300]);
        b.delete(Family::Documents, b"coll\0doc".to_vec());
        b.delete_range(Family::Meta, b"a".to_vec(), b"b".to_vec());
        b.put(Family::Collections, b"".to_vec(), b"".to_vec());
        assert_eq!(Batch::decode(&b.encode()).unwrap(), b);
        assert_eq!(Batch::decode(&[]).unwrap(), Batch::default());
    }

    #[test]
    fn a_truncated_or_unknown_entry_is_corrupt_not_a_panic() {
        let mut b = Batch::default();
        b.put(Family::Vectors, b"key".to_vec(), b"value".to_vec());
        let bytes = b.encode();
        for cut in 1..bytes.len() {
            assert!(Batch::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Batch::decode(&[9, 0]).is_err());
        assert!(Batch::decode(&[TAG_PUT, 42, 0, 0, 0, 0]).is_err());
    }
}
