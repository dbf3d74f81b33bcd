//! The audit's grade, computed so that a weak attack cannot produce a reassuring one.
//!
//! What the attack read back is a lower bound on what leaks: a recovered secret or a
//! high token F1 is evidence, whatever the attack's strength. Low recovery is evidence
//! of safety only when the attack is known to be strong: its measured strength on the
//! project's PII benchmark (`pii.rs`) must come near the published anchor (vec2text,
//! 89% of full names). Otherwise the best grade is C and the verdict says "not shown
//! safe", never "safe".

use serde::{Deserialize, Serialize};

use crate::pii::{PiiRow, ANCHOR};

/// Share of the benchmark's full names the attack must recover exactly before low
/// recovery on a collection counts as evidence of safety (near the anchor's 89%).
pub const STRONG_NAMES: f64 = 0.80;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    pub letter: char,
    pub verdict: String,
    /// Low recovery by an attack measured as strong: the only case where a reader
    /// may take the grade as evidence the vectors are safe to share.
    pub shown_safe: bool,
}

/// Whether `strength` (the benchmark row at the audit's budget) is strong enough for
/// low recovery to mean something.
pub fn strong(strength: Option<&PiiRow>) -> bool {
    strength.is_some_and(|r| r.names.total > 0 && r.names.share() >= STRONG_NAMES)
}

/// The grade of an audit whose undefended reconstructions reach `token_f1` and
/// recover `secrets_recovered` secrets, by an attack of measured `strength`.
pub fn grade(token_f1: f64, secrets_recovered: usize, strength: Option<&PiiRow>) -> Grade {
    let (mut letter, mut said) = match token_f1 {
        f if f < 0.1 => ('A', "The attack recovered almost nothing of the texts."),
        f if f < 0.2 => (
            'B',
            "The attack recovered scattered words, not readable content.",
        ),
        f if f < 0.35 => (
            'C',
            "The attack recovered the topic and some key words of each text.",
        ),
        f if f < 0.5 => (
            'D',
            "The attack recovered about half the words: the gist of each text is exposed.",
        ),
        _ => (
            'F',
            "The attack recovered most of the words: treat the vectors as sensitive as the texts.",
        ),
    };
    if secrets_recovered > 0 && letter < 'D' {
        letter = 'D';
        said = "Secrets (names, numbers or addresses) were recovered from the vectors: treat them as sensitive.";
    }
    let strength_said = strength.map_or_else(
        || format!("This attack's strength on Engram's PII benchmark was not measured; for comparison, {ANCHOR}."),
        PiiRow::sentence,
    );
    let strong = strong(strength);
    if letter <= 'C' && !strong {
        return Grade {
            letter: 'C',
            verdict: format!(
                "Not shown safe. {said} But this attack is weak (it recovers under {:.0}% of \
                 full names on the benchmark), so little recovered here does not mean a \
                 stronger attacker would fail. {strength_said}",
                100.0 * STRONG_NAMES
            ),
            shown_safe: false,
        };
    }
    Grade {
        letter,
        verdict: format!("{said} {strength_said}"),
        shown_safe: strong && letter <= 'B',
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::KindTally;

    fn attack(names_exact: usize) -> PiiRow {
        let tally = |exact| KindTally {
            total: 10,
            exact,
            partly: 0,
        };
        PiiRow {
            steps: 10,
            texts: 10,
            names: tally(names_exact),
            first_names: tally(names_exact),
            emails: tally(0),
            numbers: tally(0),
            seconds_per_text: 5.0,
        }
    }

    #[test]
    fn a_strong_attack_grades_by_f1_and_secrets() {
        let s = attack(9);
        let g = |f1, rec| grade(f1, rec, Some(&s));
        assert_eq!(g(0.05, 0).letter, 'A');
        assert!(g(0.05, 0).shown_safe);
        assert_eq!(g(0.15, 0).letter, 'B');
        assert_eq!(g(0.3, 0).letter, 'C');
        assert!(!g(0.3, 0).shown_safe, "C is not safe");
        assert_eq!(g(0.45, 0).letter, 'D');
        assert_eq!(g(0.7, 0).letter, 'F');
        assert_eq!(g(0.05, 1).letter, 'D', "a recovered secret caps the grade");
        assert!(!g(0.05, 1).shown_safe);
        assert_eq!(g(0.7, 1).letter, 'F');
        assert!(g(0.05, 0).verdict.contains("90% of full names"));
    }

    #[test]
    fn a_weak_attack_never_reads_as_safe() {
        for strength in [Some(attack(2)), Some(attack(7)), None] {
            for f1 in [0.0, 0.05, 0.15, 0.3] {
                let g = grade(f1, 0, strength.as_ref());
                assert_eq!(g.letter, 'C', "{f1} {strength:?}");
                assert!(!g.shown_safe);
                assert!(g.verdict.starts_with("Not shown safe."), "{}", g.verdict);
                assert!(g.verdict.contains("89%"), "the anchor is quoted");
            }
        }
        // Evidence of leakage stands whatever the attack's strength.
        let weak = attack(1);
        assert_eq!(grade(0.05, 2, Some(&weak)).letter, 'D');
        assert_eq!(grade(0.6, 0, Some(&weak)).letter, 'F');
        assert!(!grade(0.6, 0, Some(&weak))
            .verdict
            .contains("Not shown safe"));
        assert!(grade(0.6, 0, Some(&weak))
            .verdict
            .contains("10% of full names"));
    }
}
