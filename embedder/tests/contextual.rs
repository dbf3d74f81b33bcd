//! The contextual encoder on the real MiniLM: a niche corpus of near-duplicate
//! sub-domains (card networks, Visa vs Mastercard style) separates measurably better
//! with the corpus context than without, and contexts survive serialisation.
//! Run with `--release --nocapture` to see the measured cosines.

use std::sync::{Arc, OnceLock};

use engram_embedder::{
    Chunking, ContextOptions, ContextualEncoder, CorpusContext, MiniLm, TextEncoder, Variant,
};

fn base() -> Arc<MiniLm> {
    static MODEL: OnceLock<Arc<MiniLm>> = OnceLock::new();
    MODEL
        .get_or_init(|| Arc::new(MiniLm::load_default().expect("load all-MiniLM-L6-v2")))
        .clone()
}

/// The context of `variant` fitted on `refs` with the default chunking and options.
fn context(base: &MiniLm, refs: &[&str], variant: Variant) -> CorpusContext {
    CorpusContext::build(
        base,
        refs,
        Chunking::default(),
        variant,
        ContextOptions::default(),
    )
    .unwrap()
}

/// Two card networks described by the same customer-service templates: only the
/// brand and its own terms differ, the situation a general encoder collapses.
fn card_corpus() -> (Vec<String>, Vec<usize>) {
    let brands = [
        ("Visa", "Visa Secure", "Visa Signature", "Visa Direct"),
        (
            "Mastercard",
            "Mastercard Identity Check",
            "World Elite Mastercard",
            "Mastercard Send",
        ),
    ];
    let templates = [
        "To dispute a charge on your {b} credit card, call the number on the back of the card within 60 days of the statement date.",
        "Online purchases with a {b} card may ask you to confirm with {s}, a one-time code sent to your phone.",
        "Travel insurance and airport lounge access come with the {p} tier of the card.",
        "Send money to a friend instantly with {d}, which pushes funds straight to their debit card.",
        "If your {b} card is lost or stolen, freeze it in the banking app and ask for a replacement card.",
        "Foreign transaction fees on {b} purchases abroad are set by the issuing bank, often 3 percent.",
        "Contactless payments with a {b} card are capped at a limit set by the bank in each country.",
        "Merchants pay an interchange fee on every {b} transaction, part of which funds card rewards.",
        "The {p} card offers extended warranty protection on items bought with the card.",
        "Authentication through {s} lowers fraud on card-not-present payments.",
    ];
    let (mut texts, mut labels) = (Vec::new(), Vec::new());
    for (label, (b, s, p, d)) in brands.iter().enumerate() {
        for t in templates {
            texts.push(
                t.replace("{b}", b)
                    .replace("{s}", s)
                    .replace("{p}", p)
                    .replace("{d}", d),
            );
            labels.push(label);
        }
    }
    (texts, labels)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Mean cosine between different documents of the same brand, and across brands.
fn intra_inter(vectors: &[Vec<f32>], labels: &[usize]) -> (f32, f32) {
    let (mut intra, mut inter) = (Vec::new(), Vec::new());
    for i in 0..vectors.len() {
        for j in i + 1..vectors.len() {
            let c = dot(&vectors[i], &vectors[j]);
            if labels[i] == labels[j] {
                intra.push(c)
            } else {
                inter.push(c)
            }
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    (mean(&intra), mean(&inter))
}

#[test]
fn context_separates_near_duplicate_domains() {
    let base = base();
    let (texts, labels) = card_corpus();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let (intra, inter) = intra_inter(&base.embed(&refs).unwrap(), &labels);
    let base_gap = intra - inter;
    eprintln!("minilm: intra {intra:.4} inter {inter:.4} gap {base_gap:.4}");
    let mut gaps = Vec::new();
    for variant in Variant::ALL {
        let context = context(&base, &refs, variant);
        let encoder = ContextualEncoder::new(base.clone(), Arc::new(context));
        let (intra, inter) = intra_inter(&encoder.embed(&refs).unwrap(), &labels);
        let gap = intra - inter;
        eprintln!(
            "{}: intra {intra:.4} inter {inter:.4} gap {gap:.4}",
            encoder.name()
        );
        gaps.push((variant, gap));
    }
    // Centring and whitening remove what every card document shares, so the brand
    // is what is left: the measured gaps are 1.6-1.8x the base one. Idf pooling
    // helps less here: the brand names are in half the documents, the template
    // words in two, so idf weights what pairs across brands share; the idf weights
    // of a 20-document sample are flattened (exponent n / (n + 100)), which keeps
    // the idf-whiten (1.3x) and learned (1.25x, the default) variants above the base.
    for (variant, gap) in gaps {
        let floor = match variant {
            Variant::Idf | Variant::IdfCenter | Variant::StageOne => continue,
            Variant::IdfWhiten | Variant::Learned => 1.1,
            Variant::Center | Variant::Whiten | Variant::Stretch => 1.4,
        };
        assert!(
            gap > base_gap * floor,
            "{}: gap {gap} vs base {base_gap}",
            variant.name()
        );
    }
}

#[test]
fn a_context_round_trips_through_bytes_and_embeds_the_same() {
    let base = base();
    let (texts, _) = card_corpus();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    // Both kinds of spectral matrix: whitening's (idf-whiten) and the stretch's.
    for variant in [Variant::IdfWhiten, Variant::Stretch] {
        let mut context = context(&base, &refs, variant);
        assert!(context.whitening().is_some(), "{}", variant.name());
        context.version = 3;
        let bytes = context.to_bytes().unwrap();
        let back = CorpusContext::from_bytes(&bytes).unwrap();
        assert_eq!(back, context);
        let a = ContextualEncoder::new(base.clone(), Arc::new(context));
        let b = ContextualEncoder::new(base.clone(), Arc::new(back));
        let query = ["Which card tier includes lounge access?"];
        assert_eq!(a.embed(&query).unwrap(), b.embed(&query).unwrap());
        // A document's single chunk and its query-side vector agree (same pipeline).
        let docs = a.embed_chunked(&refs[..1], Chunking::WIDEST).unwrap();
        let q = a.embed(&refs[..1]).unwrap();
        assert!(dot(&docs[0][0].vector, &q[0]) > 0.9999);
        let norm = dot(&q[0], &q[0]).sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}

#[test]
fn the_learned_encoder_matches_its_cached_evaluation_path() {
    use engram_embedder::stage_two_eval::variant_vectors;
    use engram_embedder::states_corpus::StatesCorpus;
    use engram_embedder::StageTwo;
    // `engram eval contextual` pools cached token states; a collection embeds live.
    // Both must give the same vectors, or the evaluation measures something else.
    let base = base();
    let (texts, _) = card_corpus();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let questions = [
        "Which card tier includes lounge access?",
        "How do I freeze a lost card?",
    ];
    let context = context(&base, &refs, Variant::Learned);
    let encoder = ContextualEncoder::new(base.clone(), Arc::new(context));
    assert_eq!(encoder.name(), "contextual-learned");
    let live_docs: Vec<Vec<f32>> = encoder
        .embed_chunked(&refs, Chunking::default())
        .unwrap()
        .into_iter()
        .flatten()
        .map(|c| c.vector)
        .collect();
    let live_queries = encoder.embed(&questions).unwrap();
    let docs = StatesCorpus::embed(&base, &refs, Some(Chunking::default()), &mut |_| {}).unwrap();
    let queries = StatesCorpus::embed(&base, &questions, None, &mut |_| {}).unwrap();
    let net = StageTwo::bundled().unwrap();
    let (cached_docs, cached_queries) =
        variant_vectors(&base, &refs, &docs, &queries, Some(Variant::Learned), &net).unwrap();
    for (live, cached) in [(live_docs, cached_docs), (live_queries, cached_queries)] {
        assert_eq!(live.len(), cached.len());
        for (a, b) in live.iter().zip(&cached) {
            assert!(dot(a, b) > 0.9999, "cosine {}", dot(a, b));
        }
    }
}
