//! The slot beam (`slot_beam.rs`, `structured.rs`) on the real MiniLM: planted
//! secrets that a greedy edit-by-edit search (width 1) leaves unfinished and a
//! beam of the same budget recovers, every filling scored by the cosine of the
//! whole sentence to the original's embedding.

use engram_embedder::TextEncoder;
use engram_inverter::lexicon::Lexicon;
use engram_inverter::metrics::cosine;
use engram_inverter::piece_rank::PieceRanker;
use engram_inverter::spelling::Speller;
use engram_inverter::structured::Slots;
use engram_inverter::Probe;

/// The best sentence the slot beams reach from `hypothesis` towards the embedding
/// of `original`, at `width` and `budget`.
fn best_after_slots(original: &str, hypothesis: &str, width: usize, budget: usize) -> String {
    let enc = engram_embedder::shared_minilm().unwrap();
    let lex = Lexicon::shared_minilm(enc.as_ref()).unwrap();
    let probe = Probe::bundled().unwrap();
    let ranker = PieceRanker::new(enc.as_ref());
    let open = |w: &str| probe.word_index(w).is_none();
    let sp = Speller {
        lex: &lex,
        ranker: &ranker,
        open: &open,
        lacking: &|_: &str| false,
    };
    let words: Vec<String> = hypothesis.split(' ').map(String::from).collect();
    let v = enc.embed(&[original, hypothesis]).unwrap();
    let (target, start) = (&v[0], &v[1]);
    let residual: Vec<f32> = target.iter().zip(start).map(|(t, h)| t - h).collect();
    let base = cosine(start, target);
    let mut best = (base, hypothesis.to_string());
    let mut score = |cands: Vec<Vec<String>>| -> engram_embedder::Result<Vec<f32>> {
        let texts: Vec<String> = cands.iter().map(|c| c.join(" ")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let scores: Vec<f32> = enc
            .embed(&refs)?
            .iter()
            .map(|v| cosine(v, target))
            .collect();
        for (t, &s) in texts.iter().zip(&scores) {
            if s > best.0 {
                best = (s, t.clone());
            }
        }
        Ok(scores)
    };
    let slots = Slots {
        sp: &sp,
        width,
        budget,
    };
    let order: Vec<usize> = (0..words.len()).collect();
    slots
        .run(&words, base, &residual, &order, &mut score)
        .unwrap();
    best.1
}

/// Whether the best sentence holds `secret` as one of its words.
fn holds(sentence: &str, secret: &str) -> bool {
    sentence.split(' ').any(|w| w == secret)
}

#[test]
fn a_beam_spells_a_planted_domain_the_greedy_chain_misses() {
    // Written for this test: no name, number or domain of the PII benchmark's
    // tuning or held-out texts (inverter/data/pii_*.jsonl).
    let original = "Refund approved for account 58204719, holder Orla Brennick, \
                    contact orla_brennick@cloudtip.org.";
    // The names and the local part are right; the domain's label lacks its last
    // piece (`cloud` + `##tip`) and the top-level domain is wrong.
    let hypothesis =
        "refund approved for account holder orla brennick contact orla_brennick@cloud.com";
    let secret = "orla_brennick@cloudtip.org";
    let greedy = best_after_slots(original, hypothesis, 1, 192);
    let beam = best_after_slots(original, hypothesis, 4, 192);
    println!("greedy: {greedy}\nbeam:   {beam}");
    assert!(!holds(&greedy, secret), "{greedy}");
    assert!(holds(&beam, secret), "{beam}");
}
