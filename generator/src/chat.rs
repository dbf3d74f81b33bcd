//! Chat messages and the ChatML prompt the model was tuned on.
//!
//! SmolLM2's GGUF carries this Jinja template (`tokenizer.chat_template`):
//!
//! ```text
//! {% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}
//! {{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}
//! {% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}
//! {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
//! ```
//!
//! Rather than embed a Jinja engine for one template, [`ChatTemplate`] renders exactly
//! this ChatML shape in Rust, with the default system prompt read out of the template
//! text; a GGUF whose template is not ChatML is refused at load. The prompt is built as
//! token ids: the `<|im_start|>`/`<|im_end|>` markers are inserted as ids and message
//! text is tokenized with special-token text treated as plain text, so a user cannot
//! close their turn and speak as the system by typing `<|im_end|>`. For ordinary text
//! the ids equal those of tokenizing the rendered string (tested).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::tokenizer::GgufTokenizer;

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person asking.
    User,
    /// The model's earlier answers.
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";

/// The ChatML renderer with the model's default system prompt.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    default_system: Option<String>,
    im_start: u32,
    im_end: u32,
}

impl ChatTemplate {
    /// Reads the template text of a GGUF file. Errors are plain strings that the caller
    /// wraps with the file they came from.
    pub fn from_template(
        template: &str,
        tokenizer: &GgufTokenizer,
    ) -> std::result::Result<Self, String> {
        let not_chatml = || {
            format!("the chat template is not ChatML ({IM_START}role ... {IM_END}), which is the only one supported: {template:.200}")
        };
        if !template.contains(IM_START)
            || !template.contains(IM_END)
            || !template.contains("add_generation_prompt")
        {
            return Err(not_chatml());
        }
        // The newline after "system" is a real one or a Jinja escape, depending on how
        // the template was written into the file.
        let default_system = ["\n", "\\n"].iter().find_map(|newline| {
            let marker = format!("{IM_START}system{newline}");
            let start = template.find(&marker)? + marker.len();
            let rest = &template[start..];
            Some(rest[..rest.find(IM_END)?].replace("\\n", "\n"))
        });
        let id = |t: &str| {
            tokenizer
                .special(t)
                .ok_or_else(|| format!("the vocabulary has no {t} token"))
        };
        Ok(Self {
            default_system,
            im_start: id(IM_START)?,
            im_end: id(IM_END)?,
        })
    }

    /// The system prompt used when a conversation has none.
    pub fn default_system(&self) -> Option<&str> {
        self.default_system.as_deref()
    }

    /// The messages the template renders: the default system message first when the
    /// conversation does not start with one.
    fn with_system<'a>(&'a self, messages: &'a [ChatMessage]) -> Vec<(Role, &'a str)> {
        let mut out = Vec::with_capacity(messages.len() + 1);
        if let (Some(system), Some(false)) = (
            &self.default_system,
            messages.first().map(|m| m.role == Role::System),
        ) {
            out.push((Role::System, system.as_str()));
        }
        out.extend(messages.iter().map(|m| (m.role, m.content.as_str())));
        out
    }

    /// The prompt as text, exactly as the Jinja template renders it with
    /// `add_generation_prompt = true` (for logs and tests).
    pub fn render(&self, messages: &[ChatMessage]) -> String {
        let mut text = String::new();
        for (role, content) in self.with_system(messages) {
            text.push_str(&format!("{IM_START}{}\n{content}{IM_END}\n", role.as_str()));
        }
        text.push_str(&format!("{IM_START}assistant\n"));
        text
    }

    /// The prompt as token ids, ready for the model (ends with the assistant's header).
    pub fn encode(&self, messages: &[ChatMessage], tokenizer: &GgufTokenizer) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for (role, content) in self.with_system(messages) {
            ids.push(self.im_start);
            ids.extend(tokenizer.encode(&format!("{}\n{content}", role.as_str()))?);
            ids.push(self.im_end);
            ids.extend(tokenizer.encode("\n")?);
        }
        ids.push(self.im_start);
        ids.extend(tokenizer.encode("assistant\n")?);
        Ok(ids)
    }
}
