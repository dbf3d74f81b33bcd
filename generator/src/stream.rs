//! Turning generated tokens into text pieces that are always valid UTF-8.
//!
//! Why: byte-level BPE tokens are byte strings, and one character (an accent, an emoji,
//! a CJK character) is often split across two or three tokens. Streaming each token's
//! bytes as it comes would send broken characters; holding back only the incomplete
//! tail of a character sends every piece as soon as it is whole. The concatenated
//! pieces equal the lossy UTF-8 decoding of all the bytes, so streaming and
//! non-streaming answers are the same text.

/// Accumulates token bytes and releases the longest complete UTF-8 prefix.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds `bytes` and returns the text that is now complete (possibly empty).
    /// Bytes that can never become valid UTF-8 come out as U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Releases whatever is left at the end of generation (an unfinished character
    /// becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_pushes_come_out_whole() {
        let text = "Zürich 東京 🚀!";
        let bytes = text.as_bytes();
        for split in [1, 2, 3] {
            let mut stream = Utf8Stream::default();
            let mut out = String::new();
            for chunk in bytes.chunks(split) {
                let piece = stream.push(chunk);
                assert!(!piece.contains(char::REPLACEMENT_CHARACTER), "{piece:?}");
                out.push_str(&piece);
            }
            out.push_str(&stream.finish());
            assert_eq!(out, text);
        }
    }

    #[test]
    fn invalid_bytes_are_replaced_like_lossy_decoding() {
        let bytes: &[u8] = b"ab\xffcd\xe6\x9d";
        let mut stream = Utf8Stream::default();
        let mut out = stream.push(bytes);
        out.push_str(&stream.finish());
        assert_eq!(out, String::from_utf8_lossy(bytes));
    }
}
