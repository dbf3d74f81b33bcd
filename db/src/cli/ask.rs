//! `engram ask`: one question to a collection, the answer streamed to the terminal.

use std::io::Write;

use serde_json::json;

use super::client::Client;
use super::AskArgs;
use crate::api_types::AnswerResponse;

pub fn run(client: &Client, args: &AskArgs) -> anyhow::Result<()> {
    let body = json!({
        "question": args.question,
        "mode": args.mode,
        "k": args.k,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "stream": !args.no_stream && !args.json,
    });
    let path = format!("/collections/{}/answer", args.collection);
    if args.no_stream || args.json {
        let response: AnswerResponse = client.call("POST", &path, Some(&body))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&response)?);
        } else {
            println!("{}", response.answer);
            print_details(&response);
        }
        return Ok(());
    }
    let mut out = std::io::stdout();
    let mut finished = None;
    client.stream_events(&path, &body, |event, data| {
        match event {
            "token" => {
                let piece: serde_json::Value = serde_json::from_str(data)?;
                write!(out, "{}", piece["text"].as_str().unwrap_or_default())?;
                out.flush()?;
            }
            "done" => finished = Some(serde_json::from_str::<AnswerResponse>(data)?),
            "error" => {
                let e: serde_json::Value = serde_json::from_str(data)?;
                anyhow::bail!(
                    "the answer failed: {}",
                    e["error"]["message"].as_str().unwrap_or(data)
                );
            }
            _ => {}
        }
        Ok(())
    })?;
    println!();
    match finished {
        Some(response) => {
            print_details(&response);
            Ok(())
        }
        None => anyhow::bail!("the server closed the stream before the answer was complete"),
    }
}

/// Sources, counts and timing under the answer, on stderr so stdout stays the answer.
fn print_details(r: &AnswerResponse) {
    eprintln!();
    eprintln!("mode: {}   model: {}", r.mode_used.as_str(), r.model);
    if let Some(a) = &r.adapter {
        eprintln!("adapter: {} v{}", a.name, a.version);
    }
    for (i, s) in r.sources.iter().enumerate() {
        let snippet: String = s.text.chars().take(100).collect();
        eprintln!(
            "[{}] {} (score {:.3}): {}...",
            i + 1,
            s.id,
            s.score,
            snippet
        );
    }
    eprintln!(
        "tokens: {} prompt + {} answer   time: retrieve {:.0} ms, prefill {:.0} ms, decode {:.0} ms ({:.1} tokens/s)",
        r.usage.prompt_tokens,
        r.usage.completion_tokens,
        r.timing.retrieve_ms,
        r.timing.prefill_ms,
        r.timing.decode_ms,
        r.timing.decode_tokens_per_s
    );
}
