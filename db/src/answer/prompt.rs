//! The prompts of the three paradigms: what the model is shown in each mode.
//!
//! One place, so the answer endpoint, `/v1/chat/completions` and the benchmark send
//! exactly the same words. The documents go into the last user turn, right before the
//! question, under a plain "Context:" heading: with numbered "Passage N:" labels and a
//! "reply with a few words" instruction, SmolLM2-135M picked the wrong passage or
//! echoed the instruction on a three-fact test that this wording answers right.

use engram_generator::{ChatMessage, Role};

/// Instructions shared by the grounded modes (context and rag).
const GROUNDED_INSTRUCTIONS: &str = "Answer the question using the context above.";

/// Instructions of the ungrounded modes (weights and none).
const CLOSED_BOOK_INSTRUCTIONS: &str = "Reply with the answer only: a few words.";

/// One passage of a grounded prompt.
pub struct Passage<'a> {
    pub text: &'a str,
}

/// `conversation` with its last user turn rewritten to carry `passages` (in order)
/// and the answer instructions. With no passages the turn only gets the
/// closed-book instructions.
pub fn grounded(conversation: &[ChatMessage], passages: &[Passage<'_>]) -> Vec<ChatMessage> {
    let mut messages = conversation.to_vec();
    let Some(last) = messages.iter_mut().rev().find(|m| m.role == Role::User) else {
        return messages;
    };
    let question = last.content.trim().to_string();
    last.content = if passages.is_empty() {
        format!("{question}\n\n{CLOSED_BOOK_INSTRUCTIONS}")
    } else {
        let mut body = String::from("Context:\n");
        for p in passages {
            body.push_str(p.text.trim());
            body.push_str("\n\n");
        }
        format!("{body}{GROUNDED_INSTRUCTIONS}\nQuestion: {question}")
    };
    messages
}

/// The part of `text` a rag prompt shows for a hit whose best chunk is
/// `start..end`: the whole text when it is short, else about `width` bytes centred on
/// the chunk, cut at whitespace (and char boundaries), so a passage holds the chunk's
/// surroundings (who "she" is) without flooding the window.
pub fn window(text: &str, start: usize, end: usize, width: usize) -> &str {
    if text.len() <= width {
        return text;
    }
    let (start, end) = (start.min(text.len()), end.min(text.len()).max(start));
    let pad = width.saturating_sub(end - start) / 2;
    let mut lo = start.saturating_sub(pad);
    let mut hi = (end + pad).min(text.len());
    // Spend what one side could not use on the other.
    if lo == 0 {
        hi = width.min(text.len());
    } else if hi == text.len() {
        lo = text.len().saturating_sub(width);
    }
    while !text.is_char_boundary(lo) {
        lo += 1;
    }
    while !text.is_char_boundary(hi) {
        hi -= 1;
    }
    let mut slice = &text[lo..hi];
    if lo > 0 {
        if let Some(cut) = slice.find(char::is_whitespace) {
            slice = &slice[cut..];
        }
    }
    if hi < text.len() {
        if let Some(cut) = slice.rfind(char::is_whitespace) {
            slice = &slice[..cut];
        }
    }
    slice.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passages_go_before_the_question_in_the_last_user_turn() {
        let conversation = vec![
            ChatMessage::user("hello"),
            ChatMessage::assistant("hi"),
            ChatMessage::user("Who wrote it? "),
        ];
        let out = grounded(
            &conversation,
            &[
                Passage {
                    text: "A wrote it.",
                },
                Passage { text: "B read it." },
            ],
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].content, "hello");
        let last = &out[2].content;
        assert!(
            last.starts_with("Context:\nA wrote it.\n\nB read it.\n\n"),
            "{last}"
        );
        assert!(last.ends_with("\nQuestion: Who wrote it?"), "{last}");
        let closed = grounded(&conversation, &[]);
        assert!(closed[2]
            .content
            .starts_with("Who wrote it?\n\nReply with the answer only"));
    }

    #[test]
    fn window_keeps_the_chunk_and_cuts_at_words() {
        let text = "alpha beta gamma delta epsilon zeta eta theta iota kappa";
        assert_eq!(window(text, 0, 5, 1000), text);
        let chunk = text.find("eta theta").unwrap();
        let w = window(text, chunk, chunk + 9, 24);
        assert!(w.contains("eta theta"), "{w}");
        assert!(w.len() <= 24, "{w}");
        assert!(!w.starts_with(' ') && !w.ends_with(' '));
        // Every word is whole.
        for word in w.split(' ') {
            assert!(text.split(' ').any(|t| t == word), "{word} in {w}");
        }
        // A chunk at the very start still gets the full width.
        let w = window(text, 0, 5, 24);
        assert!(w.starts_with("alpha") && w.len() > 15, "{w}");
        // Multi-byte text never splits a character.
        let text = "é".repeat(100);
        let w = window(&text, 50, 60, 21);
        assert!(w.chars().all(|c| c == 'é'));
    }
}
