//! A prior on the e-mail addresses the slot beam (`structured.rs`) may grow: the
//! shape real addresses have, applied as a filter before any filling is scored.
//!
//! Scored by the encoder's cosine alone, the beam grew domains into long strings
//! MiniLM places near the original but no one registers
//! ("dodson.samuelsson@librariesweinetrestslernetfactoryoshgao...org" for
//! slarsson@googlemail.com on the tuning set): a longer, stranger label kept
//! winning. Real addresses are narrower. A domain is a known mail provider, or one
//! or two short labels before a real top-level domain, each label one or two
//! dictionary words or encoder pieces ("blue" + "bird", "google" + "mail"). A local
//! part is made of the person's names: a name, two names joined by `.`, `_` or
//! nothing, or an initial and a name, possibly followed by digits. The names are
//! the ones the hypothesis already holds, so the beam only spends its budget on
//! addresses a person could have.

use crate::lexicon::Lexicon;

/// Public suffixes a registrable domain may end in, two-label ones first (the
/// longest match wins): the common generic top-level domains and a few country
/// codes. Fixed, not learnt from any benchmark.
const SUFFIXES: [&str; 27] = [
    "co.uk", "org.uk", "ac.uk", "com.au", "co.nz", "com", "org", "net", "io", "co", "info", "biz",
    "edu", "gov", "me", "eu", "uk", "us", "ca", "au", "de", "fr", "it", "es", "nl", "ch", "at",
];
/// Labels before the suffix at most (`mail.example.com`).
const MAX_LABELS: usize = 2;
/// Characters of one label at most.
const MAX_LABEL_LEN: usize = 15;

/// What the prior asks of a vocabulary: the lexicon in the search, a word list in
/// the unit tests.
pub trait Spellings {
    /// `s` is a dictionary word or one of the encoder's pieces.
    fn is_unit(&self, s: &str) -> bool;
    /// `domain` is in the mail-provider dictionary.
    fn is_known_domain(&self, domain: &str) -> bool;
}

impl Spellings for Lexicon {
    fn is_unit(&self, s: &str) -> bool {
        self.knows(s) || self.is_piece(s)
    }

    fn is_known_domain(&self, domain: &str) -> bool {
        self.knows_domain(domain)
    }
}

/// `address` has the shape of a real one: its local part built from `names` and a
/// registrable domain.
pub fn plausible_address(vocab: &dyn Spellings, names: &[&str], address: &str) -> bool {
    address.split_once('@').is_some_and(|(local, domain)| {
        name_built_local(local, names) && registrable_domain(vocab, domain)
    })
}

/// A known mail provider, or at most [`MAX_LABELS`] plausible labels before one
/// of [`SUFFIXES`].
pub fn registrable_domain(vocab: &dyn Spellings, domain: &str) -> bool {
    if vocab.is_known_domain(domain) {
        return true;
    }
    let Some(labels) = before_suffix(domain) else {
        return false;
    };
    let labels: Vec<&str> = labels.split('.').collect();
    labels.len() <= MAX_LABELS && labels.iter().all(|l| plausible_label(vocab, l))
}

/// `domain` without its longest matching suffix and the dot before it; `None`
/// without one of [`SUFFIXES`] or with nothing before it.
fn before_suffix(domain: &str) -> Option<&str> {
    SUFFIXES
        .iter()
        .filter_map(|s| domain.strip_suffix(s)?.strip_suffix('.'))
        .find(|rest| !rest.is_empty())
}

/// One label: lowercase letters or digits, at most [`MAX_LABEL_LEN`] of them, and
/// one unit of the vocabulary or two joined (`bluebird` = `blue` + `bird`).
fn plausible_label(vocab: &dyn Spellings, label: &str) -> bool {
    let shaped = !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    shaped
        && (vocab.is_unit(label)
            || (1..label.len()).any(|k| vocab.is_unit(&label[..k]) && vocab.is_unit(&label[k..])))
}

/// A local part made of `names`: a name, two different names joined by `.`, `_`
/// or nothing, or the first's initial and the second joined the same ways, each
/// possibly followed by digits.
pub fn name_built_local(local: &str, names: &[&str]) -> bool {
    let stem = local.trim_end_matches(|c: char| c.is_ascii_digit());
    if stem.is_empty() {
        return false;
    }
    names.contains(&stem)
        || names.iter().any(|a| {
            names
                .iter()
                .any(|b| a != b && name_forms(a, b).iter().any(|f| f == stem))
        })
}

/// The ways `first` and `last` make a local part: `first.last`, `first_last`,
/// `firstlast`, and the same with the first's initial.
fn name_forms(first: &str, last: &str) -> Vec<String> {
    let initial: String = first.chars().take(1).collect();
    let mut out = Vec::new();
    for head in [first, initial.as_str()] {
        for sep in [".", "_", ""] {
            out.push(format!("{head}{sep}{last}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Dictionary words and pieces as one set, and a mail-provider list.
    struct Words(HashSet<&'static str>, HashSet<&'static str>);

    impl Spellings for Words {
        fn is_unit(&self, s: &str) -> bool {
            self.0.contains(s)
        }
        fn is_known_domain(&self, domain: &str) -> bool {
            self.1.contains(domain)
        }
    }

    fn vocab() -> Words {
        Words(
            [
                "blue",
                "bird",
                "google",
                "mail",
                "libraries",
                "wei",
                "net",
                "rest",
                "sl",
                "factory",
                "slogan",
                "cp",
                "qual",
                "rdy",
                "sun",
                "field",
                "1958",
            ]
            .into(),
            ["club-internet.fr"].into(),
        )
    }

    #[test]
    fn a_registrable_domain_is_accepted() {
        let v = vocab();
        for d in [
            "bluebird.org",
            "googlemail.com",
            "google.co.uk",
            "mail.sunfield.de",
            "1958.com",
            "club-internet.fr",
        ] {
            assert!(registrable_domain(&v, d), "{d}");
        }
    }

    #[test]
    fn the_long_garbage_domain_is_rejected() {
        let v = vocab();
        for d in [
            "librariesweinetrestslernetfactoryoshgaogotaszmanars.org",
            "slogancpqualrdy.co",   // 15 letters, but four units
            "bluebird.xyz",         // no known suffix
            "com",                  // a suffix alone
            "a.b.blue.com",         // too many labels
            "bluebird",             // no suffix at all
            "blue-bird.com",        // not letters or digits
            "librariesfactory.com", // two units, 16 letters
        ] {
            assert!(!registrable_domain(&v, d), "{d}");
        }
    }

    #[test]
    fn a_local_part_from_name_words_is_accepted() {
        let names = ["sven", "larsson"];
        for l in [
            "slarsson",
            "sven.larsson",
            "sven_larsson",
            "larssonsven",
            "s.larsson",
            "sven",
            "sven.larsson84",
        ] {
            assert!(name_built_local(l, &names), "{l}");
        }
        for l in [
            "dodson.samuelsson",
            "svensven",
            "84",
            "",
            "sven.",
            "xlarsson",
        ] {
            assert!(!name_built_local(l, &names), "{l}");
        }
    }

    #[test]
    fn an_address_needs_both_parts() {
        let (v, names) = (vocab(), ["sven", "larsson"]);
        assert!(plausible_address(&v, &names, "slarsson@googlemail.com"));
        assert!(!plausible_address(
            &v,
            &names,
            "slarsson@librariesweinetrestslernetfactoryoshgao.org"
        ));
        assert!(!plausible_address(&v, &names, "dodson@googlemail.com"));
        assert!(!plausible_address(&v, &names, "slarsson"));
    }
}
