//! The whole promotion on real data: the first N Quoref passages as a collection, their
//! gold questions as the held-out set, other passages as replay and as forgetting text.
//!
//! cargo run --release -p engram-trainer --example promote_quoref -- WORK_DIR [DOCS] [STEPS] [STRATEGIES]
//! (STRATEGIES: comma-separated, e.g. cloze,self_qa,rephrase)

use std::ops::ControlFlow;
use std::path::PathBuf;

use engram_generator::GgufChatModel;
use engram_trainer::promote::{self, Models, PromoteEvent, PromoteOptions};
use engram_trainer::synth::{Document, Strategy, SynthConfig};
use engram_trainer::{
    AdapterRegistry, GateConfig, HeldOutQuestion, LoraConfig, TrainConfig, TrainableModel,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let work = PathBuf::from(
        args.get(1)
            .ok_or("usage: promote_quoref WORK_DIR [DOCS] [STEPS] [STRATEGIES]")?,
    );
    let n_docs: usize = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let steps: usize = args.get(3).map_or(Ok(20), |s| s.parse())?;
    let strategies: Vec<Strategy> = args
        .get(4)
        .map_or("cloze,self_qa", |s| s.as_str())
        .split(',')
        .map(|s| Strategy::parse(s).ok_or(format!("unknown strategy {s}")))
        .collect::<Result<_, _>>()?;
    let data = format!(
        "{}/.cache/engram/data/quoref.jsonl",
        std::env::var("HOME").unwrap_or_default()
    );
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&data)?
        .lines()
        .take(300)
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let text = |v: &serde_json::Value| v["text"].as_str().unwrap_or_default().to_string();
    let docs: Vec<Document> = rows[..n_docs]
        .iter()
        .map(|v| Document {
            id: v["id"].as_str().unwrap_or_default().into(),
            text: text(v),
        })
        .collect();
    let held_out: Vec<HeldOutQuestion> = rows[..n_docs]
        .iter()
        .flat_map(|v| v["questions"].as_array().cloned().unwrap_or_default())
        .map(|q| HeldOutQuestion {
            question: q["question"].as_str().unwrap_or_default().into(),
            answers: q["answers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    let replay_texts: Vec<String> = rows[100..108].iter().map(text).collect();
    let eval_texts: Vec<String> = rows[200..204].iter().map(text).collect();

    let t0 = std::time::Instant::now();
    let chat = GgufChatModel::load_default()?;
    let tm = TrainableModel::load_default()?;
    eprintln!("models loaded in {:.1} s", t0.elapsed().as_secs_f64());
    let registry = AdapterRegistry::open(&work.join("registry"), tm.llama().config())?
        .with_base_sha256(tm.base_sha256());
    let options = PromoteOptions {
        collection: "quoref".into(),
        cluster: None,
        synth: SynthConfig {
            strategies,
            self_qa_rounds: 2,
            cloze_per_doc: 10,
            ..Default::default()
        },
        train: TrainConfig {
            lora: LoraConfig {
                rank: 16,
                alpha: 32.0,
                dropout: 0.05,
                ..Default::default()
            },
            learning_rate: 1e-3,
            warmup_steps: 2,
            steps,
            grad_accum: 4,
            replay_ratio: 0.2,
            checkpoint_every: 5,
            ..Default::default()
        },
        gate: GateConfig::default(),
        work_dir: work.join("work"),
        replay_texts,
        eval_texts,
        eval_max_tokens: 32,
    };
    let report = promote::run(
        &docs,
        &held_out,
        Models {
            chat: &chat,
            trainable: &tm,
        },
        &registry,
        &options,
        &mut |e| {
            match e {
                PromoteEvent::Synth(p) => eprintln!(
                    "synth {}/{} {} {:?}: kept {}",
                    p.done, p.total, p.doc_id, p.strategy, p.kept
                ),
                PromoteEvent::Train(p) => eprintln!(
                    "train {}/{} loss {:.4} lr {:.2e} {:.1} tokens/s",
                    p.step, p.total_steps, p.loss, p.lr, p.tokens_per_s
                ),
                PromoteEvent::Evaluated { which, report } => {
                    eprintln!("evaluated {which}: {report:?}")
                }
            }
            ControlFlow::Continue(())
        },
    )?;
    println!("{}", report.summary_table());
    println!(
        "{} held-out questions; total {:.0} s",
        held_out.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
