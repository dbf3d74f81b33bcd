//! Model-written data: question-answer pairs and restatements of a document, the
//! document in the prompt (the model studies it "open book" so it can later answer
//! "closed book" from the adapter).

use engram_generator::{ChatMessage, GenerationOptions, GenerationRequest, LanguageModel};

use super::Content;
use crate::error::Result;

fn ask(
    model: &dyn LanguageModel,
    prompt: String,
    max_tokens: usize,
    temperature: f64,
    seed: u64,
) -> Result<String> {
    let messages = [ChatMessage::user(prompt)];
    let options = GenerationOptions {
        max_tokens,
        temperature,
        top_p: 0.95,
        seed,
    };
    let request = GenerationRequest {
        messages: &messages,
        options: &options,
        adapter: None,
        interrupt: None,
    };
    Ok(model.complete(&request)?.text)
}

/// Pairs in `Question: ...` / `Answer: ...` form (one per line, any case, numbered or
/// not); lines that do not pair up are ignored.
pub fn parse_pairs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut question: Option<String> = None;
    for line in text.lines() {
        let line = line
            .trim()
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ')')
            .trim();
        let lower = line.to_lowercase();
        let after = |prefix: &str| {
            line[prefix.len()..]
                .trim()
                .trim_matches('"')
                .trim()
                .to_string()
        };
        if lower.starts_with("question:") || lower.starts_with("q:") {
            let p = if lower.starts_with("q:") {
                "q:"
            } else {
                "question:"
            };
            question = Some(after(p)).filter(|q| !q.is_empty());
        } else if lower.starts_with("answer:") || lower.starts_with("a:") {
            let p = if lower.starts_with("a:") {
                "a:"
            } else {
                "answer:"
            };
            if let Some(q) = question.take() {
                let a = after(p);
                let a = a.trim_end_matches('.').to_string();
                if !a.is_empty() {
                    out.push((q, a));
                }
            }
        }
    }
    out
}

/// `rounds` model calls, each asking for three pairs about `document`.
pub fn self_qa(
    model: &dyn LanguageModel,
    document: &str,
    rounds: usize,
    temperature: f64,
    seed: u64,
) -> Result<Vec<Content>> {
    let mut out = Vec::new();
    for round in 0..rounds {
        let prompt = format!(
            "{document}\n\nWrite three questions about facts in the text above, each followed by its short answer copied from the text. Use this format:\nQuestion: ...\nAnswer: ..."
        );
        let text = ask(
            model,
            prompt,
            200,
            temperature,
            seed.wrapping_add(round as u64),
        )?;
        out.extend(
            parse_pairs(&text)
                .into_iter()
                .map(|(question, answer)| Content::Qa { question, answer }),
        );
    }
    Ok(out)
}

/// `count` restatements of `document`.
pub fn rephrase(
    model: &dyn LanguageModel,
    document: &str,
    count: usize,
    temperature: f64,
    seed: u64,
) -> Result<Vec<Content>> {
    let mut out = Vec::new();
    for i in 0..count {
        let prompt = format!(
            "Rewrite the following text in your own words. Keep every name, number and date.\n\n{document}"
        );
        let text = ask(model, prompt, 400, temperature, seed.wrapping_add(i as u64))?;
        out.push(Content::Text {
            text: text.trim().to_string(),
        });
    }
    Ok(out)
}
