//! The real all-MiniLM-L6-v2 against sentence-transformers' documented values, plus
//! chunking, padding and throughput checks. Fetches the model into the cache on first
//! use (`engram_models::ensure`). Run with `--release` (debug candle is ~150x slower) and
//! `--nocapture` to see the measured cosines and throughput.

use std::sync::{Mutex, MutexGuard, OnceLock};

use engram_embedder::{encoder_by_name, Chunking, Error, MiniLm, TextEncoder};

/// The model, loaded once; the guard runs the tests one at a time so the throughput
/// measurement has both cores to itself.
fn model() -> (&'static MiniLm, MutexGuard<'static, ()>) {
    static MODEL: OnceLock<MiniLm> = OnceLock::new();
    let guard = serial();
    (
        MODEL.get_or_init(|| MiniLm::load_default().expect("load all-MiniLM-L6-v2")),
        guard,
    )
}

/// Runs this binary's tests one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A long, varied English text (roughly `sentences` * 14 tokens).
fn long_text(sentences: usize) -> String {
    let topics = [
        "rivers",
        "castles",
        "engines",
        "gardens",
        "markets",
        "comets",
        "libraries",
    ];
    let verbs = [
        "describes",
        "questions",
        "celebrates",
        "measures",
        "remembers",
    ];
    (0..sentences)
        .map(|i| {
            format!(
                "Paragraph {i} {} how the {} of the old town changed after the year {}. ",
                verbs[i % verbs.len()],
                topics[(i * 3) % topics.len()],
                1800 + i
            )
        })
        .collect()
}

#[test]
fn reference_cosines() {
    let (enc, _g) = model();
    assert_eq!(
        (enc.name(), enc.dim(), enc.max_tokens()),
        ("minilm", 384, 256)
    );
    let pairs = [
        (
            "The new movie is awesome",
            "The new movie is so great",
            0.8939,
        ),
        (
            "The cat sits outside",
            "The dog plays in the garden",
            0.2838,
        ),
        ("A man is playing guitar", "A woman watches TV", -0.0327),
        (
            "A man is eating food.",
            "A man is eating a piece of bread.",
            0.7553,
        ),
    ];
    for (a, b, expected) in pairs {
        let v = enc.embed(&[a, b]).unwrap();
        let cos = dot(&v[0], &v[1]);
        println!("cos({a:?}, {b:?}) = {cos:.4} (reference {expected:.4})");
        assert!(
            (cos - expected).abs() < 0.002,
            "{a:?}/{b:?}: {cos} vs {expected}"
        );
    }
}

#[test]
fn long_text_chunks_overlap_and_cover_it() {
    let (enc, _g) = model();
    let text = format!("  {}\n", long_text(80));
    let chunks = enc
        .embed_chunked(&[&text], Chunking::WIDEST)
        .unwrap()
        .remove(0);
    println!("{} bytes -> {} chunks", text.len(), chunks.len());
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert_eq!(chunks[0].start, 2, "first chunk starts at the first word");
    assert_eq!(
        chunks.last().unwrap().end,
        text.trim_end().len(),
        "last chunk ends at the last word"
    );
    for (i, pair) in chunks.windows(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!((a.index, b.index), (i, i + 1));
        assert!(
            a.start < b.start && a.end < b.end,
            "offsets increase: {a:?} {b:?}"
        );
        assert!(
            b.start < a.end,
            "consecutive chunks overlap: {}..{} {}..{}",
            a.start,
            a.end,
            b.start,
            b.end
        );
    }
    for c in &chunks {
        assert!(text.is_char_boundary(c.start) && text.is_char_boundary(c.end));
        assert_eq!(c.vector.len(), 384);
        let norm = dot(&c.vector, &c.vector).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    // The first chunk is the truncated text that `embed` sees.
    assert!(max_diff(&chunks[0].vector, &enc.embed(&[&text]).unwrap()[0]) < 1e-5);
}

#[test]
fn short_text_is_one_chunk_equal_to_embed() {
    let (enc, _g) = model();
    let text = "Engram stores vectors; naïve café owners love it.";
    let chunks = enc
        .embed_chunked(&[text], Chunking::WIDEST)
        .unwrap()
        .remove(0);
    assert_eq!(chunks.len(), 1);
    assert_eq!((chunks[0].start, chunks[0].end), (0, text.len()));
    let d = max_diff(&chunks[0].vector, &enc.embed(&[text]).unwrap()[0]);
    assert!(d < 1e-5, "max |diff| {d}");
}

#[test]
fn empty_text_is_an_error() {
    let (enc, _g) = model();
    for bad in ["", " \n\t "] {
        assert!(matches!(
            enc.embed(&["fine", bad]),
            Err(Error::EmptyText { index: 1 })
        ));
        assert!(matches!(
            enc.embed_chunked(&[bad], Chunking::WIDEST),
            Err(Error::EmptyText { index: 0 })
        ));
    }
}

#[test]
fn batch_equals_one_by_one() {
    let (enc, _g) = model();
    let long = long_text(30);
    let texts = [
        "A man is eating food.",
        "Hi",
        &long,
        "The cat sits outside on the warm stone wall all day",
    ];
    let batch = enc.embed(&texts).unwrap();
    let chunked = enc.embed_chunked(&texts, Chunking::WIDEST).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let alone = enc.embed(&[t]).unwrap().remove(0);
        let d = max_diff(&batch[i], &alone);
        assert!(d < 1e-5, "text {i}: max |diff| {d}");
        let alone_chunks = enc.embed_chunked(&[t], Chunking::WIDEST).unwrap().remove(0);
        assert_eq!(alone_chunks.len(), chunked[i].len());
        for (a, b) in alone_chunks.iter().zip(&chunked[i]) {
            assert_eq!((a.start, a.end), (b.start, b.end));
            assert!(max_diff(&a.vector, &b.vector) < 1e-5);
        }
    }
}

#[test]
fn unknown_encoder_name_is_a_clear_error() {
    let err = encoder_by_name("word2vec")
        .err()
        .expect("unknown name must fail");
    assert!(matches!(err, Error::UnsupportedModel(_)));
    assert!(err.to_string().contains("minilm"), "{err}");
}
