//! The append-only JSONL journal of synthesis: item lines, then a `done` line per
//! (document, strategy) block, all of a block in one write and synced.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Strategy, SynthItem};
use crate::error::{Error, Result};

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Item(SynthItem),
    Done {
        doc_id: String,
        strategy: Strategy,
        generated: usize,
        kept: usize,
    },
}

pub(super) struct Journal {
    path: PathBuf,
    file: File,
    finished: HashMap<(String, Strategy), (Vec<SynthItem>, usize)>,
}

impl Journal {
    /// Opens `path` (creating it), reads finished blocks, and cuts a torn last line.
    pub(super) fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("reading", path, e)),
        };
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut finished = HashMap::new();
        let mut pending: Vec<SynthItem> = Vec::new();
        for (n, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let parsed: Line = serde_json::from_slice(line).map_err(|e| {
                Error::corrupt(
                    "synthetic-data journal",
                    path,
                    format!("line {}: {e}", n + 1),
                )
            })?;
            match parsed {
                Line::Item(item) => pending.push(item),
                Line::Done {
                    doc_id,
                    strategy,
                    generated,
                    kept,
                } => {
                    // The block is the last `kept` items of this document and strategy
                    // (earlier ones belong to an attempt that crashed before its marker).
                    let mine: Vec<SynthItem> = pending
                        .iter()
                        .filter(|i| i.doc_id == doc_id && i.strategy == strategy)
                        .cloned()
                        .collect();
                    let block = mine[mine.len().saturating_sub(kept)..].to_vec();
                    pending.retain(|i| !(i.doc_id == doc_id && i.strategy == strategy));
                    finished.insert((doc_id, strategy), (block, generated));
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("opening", path, e))?;
        file.set_len(complete as u64)
            .map_err(|e| Error::io("truncating a torn line of", path, e))?;
        let mut journal = Self {
            path: path.to_path_buf(),
            file,
            finished,
        };
        use std::io::Seek;
        journal
            .file
            .seek(std::io::SeekFrom::End(0))
            .map_err(|e| Error::io("seeking", path, e))?;
        Ok(journal)
    }

    pub(super) fn finished(
        &self,
        doc_id: &str,
        strategy: Strategy,
    ) -> Option<&(Vec<SynthItem>, usize)> {
        self.finished.get(&(doc_id.to_string(), strategy))
    }

    pub(super) fn append_block(
        &mut self,
        doc_id: &str,
        strategy: Strategy,
        items: &[SynthItem],
        generated: usize,
    ) -> Result<()> {
        let mut buf = Vec::new();
        let mut push = |line: &Line| -> Result<()> {
            serde_json::to_writer(&mut buf, line)
                .map_err(|e| Error::corrupt("synthetic item", &self.path, e))?;
            buf.push(b'\n');
            Ok(())
        };
        for item in items {
            push(&Line::Item(item.clone()))?;
        }
        push(&Line::Done {
            doc_id: doc_id.into(),
            strategy,
            generated,
            kept: items.len(),
        })?;
        self.file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::io("appending to", &self.path, e))?;
        self.finished
            .insert((doc_id.into(), strategy), (items.to_vec(), generated));
        Ok(())
    }
}
