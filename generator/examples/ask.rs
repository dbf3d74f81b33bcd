//! `cargo run --release -p engram-generator --example ask -- "question"`: one streamed answer.
use std::io::Write;
use std::ops::ControlFlow;

use engram_generator::{
    ChatMessage, GenerationOptions, GenerationRequest, GgufChatModel, LanguageModel,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let question = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "What is the capital of France?".into());
    let model = GgufChatModel::load_default()?;
    let messages = [ChatMessage::user(question)];
    let options = GenerationOptions::default();
    let request = GenerationRequest {
        messages: &messages,
        options: &options,
        adapter: None,
        interrupt: None,
    };
    let g = model.generate(&request, &mut |piece| {
        print!("{piece}");
        let _ = std::io::stdout().flush();
        ControlFlow::Continue(())
    })?;
    println!(
        "\n{}",
        serde_json::to_string(&(&g.finish_reason, &g.usage, &g.timing))?
    );
    Ok(())
}
