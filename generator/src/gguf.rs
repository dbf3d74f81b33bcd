//! Reading GGUF files, and the requantized copy that makes the CPU fast.
//!
//! Why requantize: the pinned SmolLM2 file stores its matrices as Q4_1, for which candle
//! 0.11.1 has no SIMD kernel (~1.7 tokens/s). Its Q8_0 kernels are SIMD (AVX2/AVX-512 and
//! NEON), so the matrices are converted once (Q4_1 -> F32 -> Q8_0; Q8_0 represents every
//! Q4_1 value to within 1/254 of its block's range, so the model is practically
//! unchanged) and the result is cached as a GGUF file next to the original,
//! `<name>.<format>.gguf`, written to a temporary file and renamed into place so a crash
//! never leaves a truncated copy. Later loads read the copy directly (a second or less).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

use crate::error::{Error, Result};

/// A GGUF file read into memory: its metadata and every tensor.
pub struct GgufFile {
    /// Where it was read from (for error messages).
    pub path: PathBuf,
    /// All metadata (architecture, tokenizer, chat template...).
    pub metadata: HashMap<String, gguf_file::Value>,
    /// Tensors by name.
    pub tensors: HashMap<String, QTensor>,
}

impl GgufFile {
    /// Reads the whole file (no mmap: the cache may be replaced while a server runs).
    pub fn read(path: &Path, device: &Device) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let content = gguf_file::Content::read(&mut reader)
            .map_err(|e| Error::invalid(path, format!("GGUF header: {e}")))?;
        let mut tensors = HashMap::with_capacity(content.tensor_infos.len());
        for name in content.tensor_infos.keys() {
            let t = content
                .tensor(&mut reader, name, device)
                .map_err(|e| Error::invalid(path, format!("tensor {name}: {e}")))?;
            tensors.insert(name.clone(), t);
        }
        Ok(Self {
            path: path.to_path_buf(),
            metadata: content.metadata,
            tensors,
        })
    }

    /// Reads only the header (metadata and tensor shapes), for the tokenizer and config.
    pub fn read_content(path: &Path) -> Result<gguf_file::Content> {
        let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
        gguf_file::Content::read(&mut BufReader::new(file))
            .map_err(|e| Error::invalid(path, format!("GGUF header: {e}")))
    }

    /// Converts every matrix stored in a type other than `format` to `format`; vectors
    /// (norm weights) stay F32. Matrices whose rows do not split into `format`'s blocks
    /// are left as they are.
    pub fn requantize(&mut self, format: GgmlDType, device: &Device) -> Result<()> {
        for (name, tensor) in self.tensors.iter_mut() {
            let dims = tensor.shape().dims();
            let row = *dims.last().unwrap_or(&0);
            if dims.len() < 2 || tensor.dtype() == format || row % format.block_size() != 0 {
                continue;
            }
            let values = tensor.dequantize(device)?;
            *tensor = QTensor::quantize(&values, format)
                .map_err(|e| Error::invalid(&self.path, format!("requantizing {name}: {e}")))?;
        }
        Ok(())
    }

    /// Writes the file as GGUF to `path`, atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".requantize-")
            .tempfile_in(dir)
            .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
        {
            let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
            let mut metadata: Vec<(&str, &gguf_file::Value)> =
                self.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
            metadata.sort_by_key(|(k, _)| *k);
            let mut tensors: Vec<(&str, &QTensor)> =
                self.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
            tensors.sort_by_key(|(k, _)| *k);
            gguf_file::write(&mut w, &metadata, &tensors)
                .map_err(|e| Error::invalid(path, format!("writing GGUF: {e}")))?;
            w.flush().map_err(|e| Error::io("writing", tmp.path(), e))?;
        }
        // Temporary files are private (0600); the cache is as readable as the original.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(|e| Error::io("setting permissions of", tmp.path(), e))?;
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io("syncing", tmp.path(), e))?;
        tmp.persist(path)
            .map_err(|e| Error::io("moving the requantized model to", path, e.error))?;
        Ok(())
    }
}

/// The path of `source`'s copy in `format`: `dir/<stem>.<format>.gguf`.
pub fn requantized_path(source: &Path, format: GgmlDType) -> PathBuf {
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    source.with_file_name(format!("{stem}.{}.gguf", format_name(format)))
}

/// Lower-case name of a GGUF type, as used in file names and reports ("q8_0").
pub fn format_name(format: GgmlDType) -> String {
    format!("{format:?}").to_lowercase()
}

/// Reads `source` in `format`, making and caching the converted copy on first use.
pub fn read_as(source: &Path, format: GgmlDType, device: &Device) -> Result<GgufFile> {
    let cached = requantized_path(source, format);
    if cached.is_file() {
        return GgufFile::read(&cached, device);
    }
    let mut file = GgufFile::read(source, device)?;
    let needs_work = file
        .tensors
        .values()
        .any(|t| t.rank() >= 2 && t.dtype() != format);
    if !needs_work {
        return Ok(file);
    }
    tracing::info!(
        "converting {} to {} once (cached as {})",
        source.display(),
        format_name(format),
        cached.display()
    );
    file.requantize(format, device)?;
    file.write(&cached)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use candle_core::Tensor;

    use super::*;

    #[test]
    fn conversion_is_cached_next_to_the_file_and_keeps_metadata_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let matrix = Tensor::randn(0f32, 1.0, (4, 64), &dev).unwrap();
        let source = GgufFile {
            path: dir.path().join("m.Q4_1.gguf"),
            metadata: HashMap::from([(
                "general.name".to_string(),
                gguf_file::Value::String("tiny".into()),
            )]),
            tensors: HashMap::from([
                (
                    "w".to_string(),
                    QTensor::quantize(&matrix, GgmlDType::Q4_1).unwrap(),
                ),
                (
                    "norm".to_string(),
                    QTensor::quantize(
                        &Tensor::ones(64, candle_core::DType::F32, &dev).unwrap(),
                        GgmlDType::F32,
                    )
                    .unwrap(),
                ),
            ]),
        };
        source.write(&source.path).unwrap();

        let converted = read_as(&source.path, GgmlDType::Q8_0, &dev).unwrap();
        let cached = dir.path().join("m.Q4_1.q8_0.gguf");
        assert_eq!(requantized_path(&source.path, GgmlDType::Q8_0), cached);
        assert!(cached.is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cached).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        assert_eq!(converted.tensors["w"].dtype(), GgmlDType::Q8_0);
        assert_eq!(converted.tensors["norm"].dtype(), GgmlDType::F32);
        let reread = GgufFile::read(&cached, &dev).unwrap();
        assert_eq!(reread.metadata["general.name"].to_string().unwrap(), "tiny");
        let q4 = source.tensors["w"].dequantize(&dev).unwrap();
        let q8 = reread.tensors["w"].dequantize(&dev).unwrap();
        let diff = crate::testing::max_diff(&q4, &q8);
        assert!(diff < 0.05, "Q8_0 holds the Q4_1 values to within {diff}");
        // A temporary file is never left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
