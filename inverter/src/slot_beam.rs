//! A beam over the spellings of one word of a hypothesis: the non-greedy search for
//! the structured secrets (digit strings, e-mail addresses, spelled names).
//!
//! The main search (`search.rs`) changes one piece or one part of a word per step,
//! so a word grows only along edits that raise the cosine on their own. Where the
//! right next piece is not the best one alone (after "276" of "2762230128916" it
//! ranks 17th of 76; an address whose local part is right but whose domain is wrong
//! may score below a wrong local part), that greedy growth never reaches it. The
//! slot beam keeps the `width` best fillings of the word (scored by the whole
//! candidate sentence: the caller's `score`), expands each by its successors (the
//! caller's `expand`: pieces appended, a part swapped), and repeats until its budget
//! of scored sentences is spent or no successor enters the beam. Every filling it
//! scored comes back, so the caller can keep the best sentences it saw.
//!
//! Width 1 is the greedy search; with a width and budget covering every filling
//! it is exhaustive (the unit tests hold it to both).

use std::collections::HashMap;

/// Beam over the fillings of one slot, from `seeds` (fillings with their known
/// scores): at most `budget` new fillings are scored in all (`score` gets each
/// level's in one batch and returns one score each, higher better). Returns every
/// filling it scored, with its score, best first (the seeds are not among them).
pub fn search<E>(
    seeds: &[(String, f32)],
    width: usize,
    budget: usize,
    mut expand: impl FnMut(&str) -> Vec<String>,
    mut score: impl FnMut(&[String]) -> Result<Vec<f32>, E>,
) -> Result<Vec<(String, f32)>, E> {
    let mut scored: HashMap<String, f32> = seeds.iter().cloned().collect();
    let by_score = |scored: &HashMap<String, f32>, a: &String, b: &String| {
        scored[b].total_cmp(&scored[a]).then_with(|| a.cmp(b))
    };
    let mut frontier: Vec<String> = scored.keys().cloned().collect();
    frontier.sort_by(|a, b| by_score(&scored, a, b));
    frontier.truncate(width);
    let mut left = budget;
    let mut out: Vec<(String, f32)> = Vec::new();
    while left > 0 && !frontier.is_empty() {
        // Each beam member's successors in turn, so a member with many cannot crowd
        // out the others when the budget is short.
        let lists: Vec<Vec<String>> = frontier.iter().map(|s| expand(s)).collect();
        let mut fresh: Vec<String> = Vec::new();
        let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
        'fill: for k in 0..longest {
            for list in &lists {
                if fresh.len() >= left {
                    break 'fill;
                }
                if let Some(s) = list.get(k) {
                    if !scored.contains_key(s) && !fresh.contains(s) {
                        fresh.push(s.clone());
                    }
                }
            }
        }
        if fresh.is_empty() {
            break;
        }
        left -= fresh.len();
        let scores = score(&fresh)?;
        for (f, v) in fresh.iter().zip(scores) {
            scored.insert(f.clone(), v);
            out.push((f.clone(), v));
        }
        let mut next: Vec<String> = frontier.iter().chain(&fresh).cloned().collect();
        next.sort_by(|a, b| by_score(&scored, a, b));
        next.truncate(width);
        if next == frontier {
            break;
        }
        frontier = next;
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    const ALPHABET: [&str; 4] = ["a", "b", "c", "d"];

    /// Strings up to 4 letters of `ALPHABET`, one appended per expansion.
    fn grow(s: &str) -> Vec<String> {
        if s.len() >= 4 {
            return Vec::new();
        }
        ALPHABET.iter().map(|p| format!("{s}{p}")).collect()
    }

    /// A trap for greedy search: "xb" is the best first step, but nothing after it
    /// scores; the best filling is "xcad", below "xb" until it is whole.
    fn trap(s: &str) -> f32 {
        match s {
            "xcad" => 10.0,
            "xb" => 1.0,
            "xca" => 0.9,
            "xc" => 0.8,
            _ if s.starts_with("xb") => 0.2,
            _ => 0.0,
        }
    }

    fn run(width: usize, budget: usize, calls: &mut usize) -> Vec<(String, f32)> {
        search(
            &[("x".to_string(), 0.0)],
            width,
            budget,
            grow,
            |batch: &[String]| {
                *calls += batch.len();
                Ok::<_, Infallible>(batch.iter().map(|s| trap(s)).collect())
            },
        )
        .unwrap()
    }

    /// Every string `grow` reaches from `seed`, scored: the simple reference.
    fn exhaustive(seed: &str) -> (String, f32) {
        let mut all = vec![seed.to_string()];
        let mut i = 0;
        while i < all.len() {
            let more = grow(&all[i]);
            all.extend(more);
            i += 1;
        }
        let best = all
            .iter()
            .max_by(|a, b| trap(a).total_cmp(&trap(b)))
            .unwrap();
        (best.clone(), trap(best))
    }

    #[test]
    fn greedy_is_trapped_and_a_beam_is_not() {
        let mut calls = 0;
        let greedy = run(1, 1000, &mut calls);
        assert_eq!(greedy[0].0, "xb");
        let beam = run(2, 1000, &mut calls);
        assert_eq!(beam[0].0, "xcad");
    }

    #[test]
    fn a_wide_unbounded_beam_matches_exhaustive_search() {
        let mut calls = 0;
        let (best, score) = exhaustive("x");
        let beam = run(1000, 100_000, &mut calls);
        assert_eq!((beam[0].0.clone(), beam[0].1), (best, score));
        // 4 + 16 + 64 strings of up to 4 letters after the seed "x", each scored once.
        assert_eq!(calls, 84);
    }

    #[test]
    fn the_budget_bounds_the_scored_fillings() {
        for budget in [1, 5, 17, 40] {
            let mut calls = 0;
            let out = run(3, budget, &mut calls);
            assert!(calls <= budget, "{calls} > {budget}");
            assert_eq!(out.len(), calls, "each filling scored once");
        }
    }

    #[test]
    fn a_beam_that_finds_nothing_better_stops() {
        let mut calls = 0;
        let out = search(
            &[("x".to_string(), 0.0)],
            2,
            1000,
            |s| vec![format!("{s}y")],
            |batch: &[String]| {
                calls += 1;
                Ok::<_, Infallible>(batch.iter().map(|s| -(s.len() as f32)).collect())
            },
        )
        .unwrap();
        // "xy" enters the beam (second place), "xyy" does not.
        assert_eq!(calls, 2);
        assert_eq!(out[0].0, "xy");
    }
}
