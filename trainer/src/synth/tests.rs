use std::sync::atomic::Ordering;

use super::*;
use crate::testing::Scripted;

const DOC: &str = "The earthquake swarm was noted on October 12, 2007 in the Prince George Citizen by staff. \
Scientists mentioned in the report were John Cassidy of Natural Resources Canada and Catherine Hickson. \
The swarm had 3,500 small events over 40 days. Hickson said in 1998 the volcano was dormant.";

fn docs() -> Vec<Document> {
    vec![
        Document {
            id: "d1".into(),
            text: DOC.into(),
            seq: 0,
        },
        Document {
            id: "d2".into(),
            text: DOC.replace("Hickson", "Moreau"),
            seq: 0,
        },
    ]
}

#[test]
fn cloze_blanks_dates_numbers_and_names_deterministically() {
    let qs = cloze_questions(DOC, 20, 1);
    let answers: Vec<String> = qs
        .iter()
        .map(|c| match c {
            Content::Qa { answer, .. } => answer.clone(),
            _ => unreachable!(),
        })
        .collect();
    for expected in ["October 12, 2007", "3,500", "1998"] {
        assert!(
            answers.iter().any(|a| a == expected),
            "{expected} in {answers:?}"
        );
    }
    assert!(
        answers
            .iter()
            .any(|a| a.contains("Cassidy") || a.contains("Prince George")),
        "{answers:?}"
    );
    for c in &qs {
        let Content::Qa { question, answer } = c else {
            unreachable!()
        };
        assert!(question.starts_with("Fill in the blank: ") && question.contains("____"));
        assert!(supported(answer, DOC));
    }
    assert_eq!(qs, cloze_questions(DOC, 20, 1), "same seed, same questions");
    assert_eq!(cloze_questions(DOC, 2, 1).len(), 2);
    assert!(cloze_questions("", 5, 1).is_empty());
    let s = super::cloze::sentences(
        "Ash rose like the 1980 Mount St. Helens eruption. Dr. Hickson said so. It ended.",
    );
    assert_eq!(
        s,
        vec![
            "Ash rose like the 1980 Mount St. Helens eruption.",
            "Dr. Hickson said so.",
            "It ended."
        ]
    );
}

#[test]
fn parsing_and_the_support_filter() {
    let text = "Question: When was the swarm noted?\nAnswer: October 12, 2007.\n2. Question: Who wrote it?\nAnswer: Mr. Nobody\nQuestion: dangling";
    let pairs = parse_pairs(text);
    assert_eq!(pairs.len(), 2);
    assert_eq!(
        pairs[0],
        (
            "When was the swarm noted?".into(),
            "October 12, 2007".into()
        )
    );
    assert!(supported("October 12, 2007", DOC));
    assert!(!supported("Mr. Nobody", DOC));
    assert!(!supported("...", DOC));
}

#[test]
fn synthesis_filters_appends_and_resumes() {
    let reply = "Question: When was the swarm noted?\nAnswer: October 12, 2007\nQuestion: Who is the president?\nAnswer: Abraham Lincoln";
    let model = Scripted::new(reply).expecting("Prince George");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth.jsonl");
    let cfg = SynthConfig {
        strategies: vec![Strategy::SelfQa, Strategy::Cloze],
        self_qa_rounds: 1,
        cloze_per_doc: 3,
        ..Default::default()
    };
    // Stop after the first block, as if interrupted.
    let first = synthesize(&docs(), &model, &cfg, &out, &mut |_| ControlFlow::Break(())).unwrap();
    assert_eq!(first.items.len(), 1, "the made-up answer is filtered out");
    assert_eq!(
        first.counts["self_qa"],
        StrategyCounts {
            generated: 2,
            kept: 1
        }
    );
    assert_eq!(model.calls.load(Ordering::SeqCst), 1);
    // A torn line from a crash mid-write is cut away.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&out)
        .unwrap()
        .write_all(b"{\"type\":\"item\",\"doc_")
        .unwrap();

    let mut seen = Vec::new();
    let all = synthesize(&docs(), &model, &cfg, &out, &mut |p| {
        seen.push((p.done, p.total));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(all.resumed_blocks, 1);
    assert_eq!(
        model.calls.load(Ordering::SeqCst),
        2,
        "d1's self-QA was not redone"
    );
    assert_eq!(seen, vec![(2, 4), (3, 4), (4, 4)]);
    assert_eq!(all.counts["cloze"].kept, 6);
    assert_eq!(all.items.len(), 1 + 3 + 1 + 3);
    // A third run does nothing new and returns the same items.
    let again = synthesize(&docs(), &model, &cfg, &out, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(again.items, all.items);
    let mut shown = super::read_journal(&out).unwrap();
    shown.sort_by(|a, b| (&a.doc_id, a.strategy).cmp(&(&b.doc_id, b.strategy)));
    let mut expected = all.items.clone();
    expected.sort_by(|a, b| (&a.doc_id, a.strategy).cmp(&(&b.doc_id, b.strategy)));
    assert_eq!(shown, expected, "synth show reads what training uses");
    assert_eq!(again.resumed_blocks, 4);
    assert_eq!(model.calls.load(Ordering::SeqCst), 2);
    let err = synthesize(
        &docs(),
        &model,
        &SynthConfig {
            strategies: vec![],
            ..cfg
        },
        &out,
        &mut |_| ControlFlow::Continue(()),
    );
    assert!(err.is_err());
}
