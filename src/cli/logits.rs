//! `deltaguard logits`: next-token logits at every position.

use super::input::{ModelArgs, PromptArgs};
use super::CliResult;

/// Print the model's next-token logits at every position of a prompt.
///
/// With --json: `{"input_ids": [...], "logits": [[...], ...]}` (one row per
/// position), or with --top-k N `{"input_ids": [...], "top_k": [[{"id", "token",
/// "logit"}, ...], ...]}` best first.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    prompt: PromptArgs,
    /// Only the N highest logits per position.
    #[arg(long)]
    top_k: Option<usize>,
    /// Print JSON (the default is a short table of the top 5 per position).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CliResult {
    let m = args.model.load()?;
    let ids = args.prompt.token_ids(&m)?;
    let logits = m.model.logits(&ids)?;
    let [_, seq, vocab] = logits.dims();
    let values: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| format!("{e:?}"))?;
    if let Some(i) = values.iter().position(|x| !x.is_finite()) {
        return Err(format!(
            "the model's logits are not finite: position {}, token {} has logit {} \
             (JSON would print it as null); the weights are broken",
            i / vocab,
            i % vocab,
            values[i]
        )
        .into());
    }
    let rows: Vec<&[f32]> = values.chunks(vocab).take(seq).collect();

    let top = |row: &[f32], k: usize| -> Vec<(u32, f32)> {
        let mut idx: Vec<u32> = (0..row.len() as u32).collect();
        // Highest logit first; ties by lower id, so output is deterministic.
        idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
        idx.into_iter()
            .take(k)
            .map(|i| (i, row[i as usize]))
            .collect()
    };
    let token_str = |id: u32| m.tokenizer.id_to_token(id).unwrap_or_default();

    if args.json {
        let json = match args.top_k {
            None => serde_json::json!({ "input_ids": ids, "logits": rows }),
            Some(k) => {
                let top_k: Vec<Vec<serde_json::Value>> = rows
                    .iter()
                    .map(|r| {
                        top(r, k)
                            .into_iter()
                            .map(|(id, logit)| serde_json::json!({"id": id, "token": token_str(id), "logit": logit}))
                            .collect()
                    })
                    .collect();
                serde_json::json!({ "input_ids": ids, "top_k": top_k })
            }
        };
        println!("{}", serde_json::to_string(&json)?);
        return Ok(());
    }
    let k = args.top_k.unwrap_or(5);
    println!("{}", m.description);
    for (pos, (row, id)) in rows.iter().zip(&ids).enumerate() {
        let best: Vec<String> = top(row, k)
            .into_iter()
            .map(|(i, l)| format!("{:?} {l:.3}", token_str(i)))
            .collect();
        println!(
            "{pos:>4} {:>16} -> {}",
            format!("{:?}", token_str(*id)),
            best.join("  ")
        );
    }
    Ok(())
}
