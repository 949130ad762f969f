//! llama-model's model behind safety-eval's model traits. The glue lives here,
//! in the facade that depends on both, so neither crate depends on the other.

use crate::model_io::LoadedModel;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use llama_model::{ChatMessage, ForwardOptions, GenerateConfig, LogitsMode};
use safety_eval::{
    ChatModel, GenerationSettings, LogLikelihoodModel, Loglikelihood, LoglikelihoodRequest,
    Message, ModelError, RollingLoglikelihood, Sampling,
};

/// A loaded Llama as a [`ChatModel`] and a [`LogLikelihoodModel`].
pub struct LlamaEvalModel<'a, B: Backend> {
    pub loaded: &'a LoadedModel<B>,
    /// Sequences per forward pass when scoring log-likelihoods.
    pub batch_size: usize,
}

impl<'a, B: Backend> LlamaEvalModel<'a, B> {
    pub fn new(loaded: &'a LoadedModel<B>) -> Self {
        LlamaEvalModel {
            loaded,
            batch_size: 8,
        }
    }

    /// Render a chat with the model's template, assistant turn opened.
    pub fn chat_ids(&self, chat: &[Message]) -> Result<Vec<u32>, ModelError> {
        let messages: Vec<ChatMessage> = chat
            .iter()
            .map(|m| ChatMessage::new(m.role.clone(), m.content.clone()))
            .collect();
        let text = self.loaded.chat_template.render(&messages, true)?;
        Ok(self.loaded.tokenizer.encode(&text, false)?)
    }

    /// Score token sequences: for sequence `i`, every position `p` from
    /// `first_scored[i]` (at least 1) gets the log-probability of its token given
    /// the tokens before it, and whether that token was the argmax. Sequences
    /// are batched `batch_size` at a time with left padding.
    pub fn score_tokens(
        &self,
        seqs: &[Vec<u32>],
        first_scored: &[usize],
    ) -> Result<Vec<Vec<(f64, bool)>>, ModelError> {
        let device = self.loaded.model.device();
        // Checked before any batch is built: an over-long sequence would ask
        // for a causal mask of len² entries (issue 14: a 10 MB answer choice).
        for s in seqs {
            self.loaded
                .model
                .check_tokens(s)
                .map_err(|e| ModelError::from(format!("scoring a sequence: {e}")))?;
        }
        let mut results = Vec::with_capacity(seqs.len());
        for (chunk, firsts) in seqs
            .chunks(self.batch_size.max(1))
            .zip(first_scored.chunks(self.batch_size.max(1)))
        {
            let len = chunk.iter().map(Vec::len).max().unwrap_or(0);
            let pad = self
                .loaded
                .tokenizer
                .pad_id()
                .or(self.loaded.tokenizer.eos_id())
                .unwrap_or(0);
            // Left padding with an attention mask, as generation does.
            let (mut ids, mut mask) = (
                Vec::with_capacity(chunk.len() * len),
                Vec::with_capacity(chunk.len() * len),
            );
            for s in chunk {
                for _ in s.len()..len {
                    ids.push(pad as i64);
                    mask.push(0i64);
                }
                ids.extend(s.iter().map(|&t| t as i64));
                mask.extend(std::iter::repeat_n(1i64, s.len()));
            }
            let b = chunk.len();
            let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, len]), &device);
            let mask = Tensor::<B, 2, Int>::from_data(TensorData::new(mask, [b, len]), &device);
            let out = self.loaded.model.forward_with(
                tokens,
                ForwardOptions {
                    attention_mask: Some(mask),
                    capture_hidden: false,
                    logits: LogitsMode::All,
                },
                None,
            );
            let vocab = out.logits.dims()[2];
            let logp: Vec<f32> = log_softmax(out.logits, 2)
                .into_data()
                .convert::<f32>()
                .to_vec()
                .map_err(|e| format!("{e:?}"))?;
            for (row, (s, &first)) in chunk.iter().zip(firsts).enumerate() {
                let offset = len - s.len();
                let mut scored = Vec::new();
                for (p, &token) in s.iter().enumerate().skip(first.max(1)) {
                    // logits at position p-1 predict token p
                    let at = (row * len + offset + p - 1) * vocab;
                    let dist = &logp[at..at + vocab];
                    if let Some(bad) = dist.iter().position(|x| !x.is_finite()) {
                        return Err(format!(
                            "the model's logits are not finite (log-probability of token {bad} \
                             is {} at position {}); refusing to score it",
                            dist[bad],
                            p - 1
                        )
                        .into());
                    }
                    let target = token as usize;
                    let best = dist
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(i, _)| i);
                    scored.push((dist[target] as f64, best == Some(target)));
                }
                results.push(scored);
            }
        }
        Ok(results)
    }
}

impl<B: Backend> ChatModel for LlamaEvalModel<'_, B> {
    fn name(&self) -> String {
        self.loaded.description.clone()
    }

    fn generate(
        &mut self,
        chats: &[Vec<Message>],
        settings: &GenerationSettings,
    ) -> Result<Vec<String>, ModelError> {
        let mut prompts = chats
            .iter()
            .map(|c| self.chat_ids(c))
            .collect::<Result<Vec<_>, _>>()?;
        // lm-eval's `generate_until`: a prompt that leaves no room for
        // `max_new_tokens` keeps its last `max_position_embeddings -
        // max_new_tokens` tokens. A budget that fills the whole context is left
        // to `generate`, which refuses it naming both numbers.
        let context = self.loaded.model.config().max_position_embeddings;
        let keep = context.saturating_sub(settings.max_new_tokens);
        if keep > 0 {
            let cut = truncate_left(&mut prompts, keep);
            if cut > 0 {
                eprintln!(
                    "warning: {cut} of {} prompts were longer than {keep} tokens \
                     (max_position_embeddings {context} - max_new_tokens {}); \
                     their beginnings were dropped, as lm-eval does",
                    prompts.len(),
                    settings.max_new_tokens
                );
            }
        }
        let config = match settings.sampling {
            Sampling::Greedy => GenerateConfig::greedy(settings.max_new_tokens),
            Sampling::Sample {
                temperature,
                top_p,
                seed,
            } => GenerateConfig::sampled(
                settings.max_new_tokens,
                temperature,
                None,
                Some(top_p),
                seed,
            ),
        };
        let outputs = self.loaded.model.generate(&prompts, &config)?;
        outputs
            .into_iter()
            .map(|g| Ok(self.loaded.tokenizer.decode(&g.tokens, true)?))
            .collect()
    }
}

impl<B: Backend> LogLikelihoodModel for LlamaEvalModel<'_, B> {
    fn name(&self) -> String {
        self.loaded.description.clone()
    }

    /// lm-evaluation-harness's `_encode_pair`: trailing whitespace of the
    /// context moves to the front of the continuation, the continuation's
    /// tokens are those of `encode(context + continuation)` after the
    /// context's own tokens (separately encoded if that split fails), BOS
    /// goes before the context where the tokenizer adds one, and an empty
    /// context becomes lm-eval's prefix token. The continuation's tokens are
    /// scored given everything before them.
    ///
    /// Context length, as lm-eval's `_loglikelihood_tokens`: when context plus
    /// continuation exceed `max_position_embeddings`, the context keeps its
    /// last tokens (a warning on stderr counts how many requests were cut). A
    /// continuation that alone leaves no room for one context token is an
    /// error naming both numbers (lm-eval would silently score a truncated
    /// continuation).
    fn loglikelihood(
        &mut self,
        requests: &[LoglikelihoodRequest],
    ) -> Result<Vec<Loglikelihood>, ModelError> {
        let max = self.loaded.model.config().max_position_embeddings;
        let added = self.added_prefix()?;
        let mut seqs = Vec::with_capacity(requests.len());
        let mut firsts = Vec::with_capacity(requests.len());
        let mut truncated = 0usize;
        for r in requests {
            let (mut ctx, cont) = self.encode_pair(&r.context, &r.continuation, &added)?;
            if cont.is_empty() {
                return Err(
                    format!("continuation {:?} encodes to no tokens", r.continuation).into(),
                );
            }
            if cont.len() >= max {
                return Err(format!(
                    "continuation of {} tokens does not fit in the model's context \
                     (max_position_embeddings {max}) with at least one context token",
                    cont.len()
                )
                .into());
            }
            // Keep the end of an over-long context, as lm-eval does.
            if ctx.len() + cont.len() > max {
                let keep = max - cont.len();
                ctx.drain(..ctx.len() - keep);
                truncated += 1;
            }
            firsts.push(ctx.len());
            ctx.extend(cont);
            seqs.push(ctx);
        }
        if truncated > 0 {
            eprintln!(
                "warning: {truncated} of {} log-likelihood requests were longer than the \
                 model's context (max_position_embeddings {max}); their contexts were cut \
                 from the left, as lm-eval does",
                requests.len()
            );
        }
        Ok(self
            .score_tokens(&seqs, &firsts)?
            .into_iter()
            .map(|s| Loglikelihood {
                logprob: s.iter().map(|x| x.0).sum(),
                is_greedy: s.iter().all(|x| x.1),
                n_tokens: s.len(),
            })
            .collect())
    }

    /// lm-evaluation-harness's `get_rolling_token_windows` with
    /// `context_len = 1`: every token of the text is scored exactly once.
    /// The first is predicted from the prefix token (BOS where the tokenizer
    /// adds one, else the tokenizer's BOS token, else its EOS token, like
    /// lm-eval's `prefix_token_id`); the first window holds as many tokens as
    /// the model's context, and each later one scores the next tokens, filled
    /// up on the left with earlier tokens as context. A fed window (its
    /// context and every scored token) never exceeds
    /// `max_position_embeddings` tokens.
    fn loglikelihood_rolling(
        &mut self,
        texts: &[String],
    ) -> Result<Vec<RollingLoglikelihood>, ModelError> {
        let max = self.loaded.model.config().max_position_embeddings;
        let prefix = self.prefix_tokens()?;
        if max <= prefix.len() {
            return Err(format!(
                "max_position_embeddings {max} leaves no room to score a token after the \
                 {}-token prefix",
                prefix.len()
            )
            .into());
        }
        let mut seqs = Vec::new();
        let mut firsts = Vec::new();
        let mut owner = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let mut ids = prefix.clone();
            ids.extend(self.loaded.tokenizer.encode(text, false)?);
            for (start, end, first) in rolling_windows(ids.len(), prefix.len(), max) {
                seqs.push(ids[start..end].to_vec());
                firsts.push(first);
                owner.push(i);
            }
        }
        let mut out = vec![
            RollingLoglikelihood {
                logprob: 0.0,
                n_tokens: 0,
            };
            texts.len()
        ];
        for (s, i) in self.score_tokens(&seqs, &firsts)?.into_iter().zip(owner) {
            out[i].logprob += s.iter().map(|x| x.0).sum::<f64>();
            out[i].n_tokens += s.len();
        }
        Ok(out)
    }
}

impl<B: Backend> LlamaEvalModel<'_, B> {
    /// The special tokens the tokenizer's post-processor puts before any text
    /// (BOS for Llama tokenizers; none for most byte-level BPE tokenizers).
    fn added_prefix(&self) -> Result<Vec<u32>, ModelError> {
        let tokenizer = &self.loaded.tokenizer;
        let (with, without) = (tokenizer.encode("a", true)?, tokenizer.encode("a", false)?);
        let at = (0..=with.len().saturating_sub(without.len()))
            .find(|&k| with[k..].starts_with(&without))
            .unwrap_or(0);
        Ok(with[..at].to_vec())
    }

    /// lm-eval's `prefix_token_id` as the tokens a text's first token is
    /// predicted from: the added prefix where the tokenizer adds one, else
    /// the BOS token, else the EOS token.
    fn prefix_tokens(&self) -> Result<Vec<u32>, ModelError> {
        let added = self.added_prefix()?;
        if !added.is_empty() {
            return Ok(added);
        }
        let tokenizer = &self.loaded.tokenizer;
        match tokenizer.bos_id().or(tokenizer.eos_id()) {
            Some(id) => Ok(vec![id]),
            None => Err(ModelError::from(
                "the tokenizer names neither a BOS nor an EOS token to predict a text's \
                 first token from",
            )),
        }
    }

    /// lm-eval's `_encode_pair` (see [`LogLikelihoodModel::loglikelihood`]):
    /// `(context tokens with the added prefix, continuation tokens)`.
    fn encode_pair(
        &self,
        context: &str,
        continuation: &str,
        added: &[u32],
    ) -> Result<(Vec<u32>, Vec<u32>), ModelError> {
        let tokenizer = &self.loaded.tokenizer;
        let (context, continuation) = move_trailing_whitespace(context, continuation);
        if context.is_empty() {
            return Ok((
                self.prefix_tokens()?,
                tokenizer.encode(&continuation, false)?,
            ));
        }
        let whole = tokenizer.encode(&format!("{context}{continuation}"), false)?;
        let ctx = tokenizer.encode(context, false)?;
        let cont = if whole.len() > ctx.len() && whole.starts_with(&ctx) {
            whole[ctx.len()..].to_vec()
        } else {
            tokenizer.encode(&continuation, false)?
        };
        let mut with_prefix = added.to_vec();
        with_prefix.extend(ctx);
        Ok((with_prefix, cont))
    }
}

/// Keeps the last `keep` tokens of every prompt longer than that; returns
/// how many prompts were cut.
fn truncate_left(prompts: &mut [Vec<u32>], keep: usize) -> usize {
    let mut cut = 0;
    for p in prompts.iter_mut().filter(|p| p.len() > keep) {
        p.drain(..p.len() - keep);
        cut += 1;
    }
    cut
}

/// Moves the context's trailing whitespace to the front of the continuation,
/// as lm-eval's `_encode_pair` does.
fn move_trailing_whitespace<'c>(context: &'c str, continuation: &str) -> (&'c str, String) {
    let trimmed = context.trim_end();
    (
        trimmed,
        format!("{}{continuation}", &context[trimmed.len()..]),
    )
}

/// Windows `(start, end, first_scored)` over a sequence of `len` tokens whose
/// first `prefix` are the prefix: token positions `prefix..len` are each
/// scored exactly once, every window is at most `max` tokens long, and within
/// a window positions `first_scored..` (relative to `start`) are scored. This
/// is lm-eval's `get_rolling_token_windows` with `context_len = 1` and
/// `make_disjoint_window`, for windows that also hold their last scored token.
/// Requires `max > prefix`.
fn rolling_windows(len: usize, prefix: usize, max: usize) -> Vec<(usize, usize, usize)> {
    let mut windows = Vec::new();
    if len <= prefix {
        return windows;
    }
    let end = len.min(max);
    windows.push((0, end, prefix));
    let mut pos = end;
    while pos < len {
        // Score up to max - 1 new tokens, with at least one token of context.
        let end = len.min(pos + max - 1);
        let start = end - max;
        windows.push((start, end, pos - start));
        pos = end;
    }
    windows
}

/// A loaded Llama as a [`logit_lens::LensModel`]: probe points are the
/// embedding output, and for every block the residual stream after attention
/// (`mid`) and after the block (`post`); decoding is the model's own final
/// RMSNorm and unembedding (tied or untied), run on the backend.
pub struct LlamaLens<'a, B: Backend> {
    pub loaded: &'a LoadedModel<B>,
}

fn host<const D: usize, B: Backend>(t: Tensor<B, D>) -> Result<Vec<f32>, logit_lens::LensError> {
    t.into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| logit_lens::LensError::model(format!("{e:?}")))
}

impl<B: Backend> logit_lens::LensModel for LlamaLens<'_, B> {
    fn hidden_size(&self) -> usize {
        self.loaded.model.config().hidden_size
    }

    fn vocab_size(&self) -> usize {
        self.loaded.model.config().vocab_size
    }

    fn trace(&self, tokens: &[u32]) -> logit_lens::Result<logit_lens::ForwardTrace> {
        use logit_lens::{ProbeHidden, ProbePoint};
        self.loaded
            .model
            .check_tokens(tokens)
            .map_err(|e| logit_lens::LensError::model(e.to_string()))?;
        let device = self.loaded.model.device();
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let input =
            Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), &device);
        let out = self.loaded.model.forward_with(
            input,
            ForwardOptions {
                attention_mask: None,
                capture_hidden: true,
                logits: LogitsMode::All,
            },
            None,
        );
        let hidden = out
            .hidden
            .ok_or_else(|| logit_lens::LensError::model("no hidden states captured"))?;
        let mut points = Vec::with_capacity(1 + 2 * hidden.layers.len());
        for (i, layer) in hidden.layers.into_iter().enumerate() {
            if i == 0 {
                points.push(ProbeHidden {
                    point: ProbePoint::Embedding,
                    hidden: host(layer.pre)?,
                });
            }
            points.push(ProbeHidden {
                point: ProbePoint::Mid { layer: i },
                hidden: host(layer.mid)?,
            });
            points.push(ProbeHidden {
                point: ProbePoint::Post { layer: i },
                hidden: host(layer.post)?,
            });
        }
        Ok(logit_lens::ForwardTrace {
            n_positions: tokens.len(),
            points,
            logits: host(out.logits)?,
        })
    }

    fn decode(&self, hidden: &[f32], n: usize) -> logit_lens::Result<Vec<f32>> {
        let d = self.hidden_size();
        let device = self.loaded.model.device();
        let h = Tensor::<B, 3>::from_data(TensorData::new(hidden.to_vec(), [1, n, d]), &device);
        host(self.loaded.model.unembed(self.loaded.model.final_norm(h)))
    }

    fn token_text(&self, id: u32) -> String {
        let tokenizer = &self.loaded.tokenizer;
        match tokenizer.decode(&[id], false) {
            // A byte-level piece of a multi-byte character decodes alone to
            // U+FFFD; its vocabulary string (e.g. "Ãł") is more telling.
            Ok(text) if !text.contains('\u{FFFD}') => text,
            _ => tokenizer
                .id_to_token(id)
                .unwrap_or_else(|| format!("<{id}>")),
        }
    }
}

impl<B: Backend> LlamaLens<'_, B> {
    /// Candidate first-token ids of a word (as written), for token sets such
    /// as refusal vs compliance openers.
    pub fn first_token(&self, word: &str) -> Vec<u32> {
        self.loaded
            .tokenizer
            .encode(word, false)
            .ok()
            .and_then(|ids| ids.first().copied())
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{move_trailing_whitespace, rolling_windows};

    /// lm-eval's `get_rolling_token_windows` followed by `make_disjoint_window`,
    /// transcribed: `(context, predicted)` token lists.
    fn lm_eval_windows(
        tokens: &[u32],
        prefix: u32,
        max_seq_len: usize,
        context_len: usize,
    ) -> Vec<(Vec<u32>, Vec<u32>)> {
        let mut raw = Vec::new();
        if !tokens.is_empty() {
            let pred_len = max_seq_len - context_len + 1;
            let first = max_seq_len.min(tokens.len());
            let mut input = vec![prefix];
            input.extend(&tokens[..first - 1]);
            raw.push((input, tokens[..first].to_vec()));
            let mut predicted = first;
            while predicted < tokens.len() {
                let n = (tokens.len() - predicted).min(pred_len);
                let end = predicted + n;
                raw.push((
                    tokens[end - max_seq_len - 1..end - 1].to_vec(),
                    tokens[end - n..end].to_vec(),
                ));
                predicted += n;
            }
        }
        raw.into_iter()
            .map(|(a, b)| (a[..a.len() - (b.len() - 1)].to_vec(), b))
            .collect()
    }

    #[test]
    fn rolling_windows_are_lm_evals_with_the_last_scored_token_fed() {
        for max in 2..9 {
            for n in 0..40u32 {
                let tokens: Vec<u32> = (1..=n).collect();
                let mut ids = vec![0];
                ids.extend(&tokens);
                let ours: Vec<(Vec<u32>, Vec<u32>)> = rolling_windows(ids.len(), 1, max)
                    .into_iter()
                    .map(|(s, e, f)| {
                        assert!(e - s <= max && f >= 1 && f < e - s, "{max} {n}");
                        (ids[s..s + f].to_vec(), ids[s + f..e].to_vec())
                    })
                    .collect();
                // windows we feed hold the last scored token too: lm-eval's
                // input windows one shorter than the model's context
                assert_eq!(ours, lm_eval_windows(&tokens, 0, max - 1, 1), "{max} {n}");
                let scored: Vec<u32> = ours.iter().flat_map(|w| w.1.clone()).collect();
                assert_eq!(scored, tokens);
            }
        }
    }

    #[test]
    fn rolling_windows_with_a_longer_prefix_score_each_text_token_once() {
        for max in 3..9 {
            for len in 0..30 {
                let mut seen = Vec::new();
                for (s, e, f) in rolling_windows(len, 2, max) {
                    assert!(e - s <= max && f >= 1 && s + f >= 2);
                    seen.extend(s + f..e);
                }
                assert_eq!(seen, (2..len.max(2)).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn trailing_whitespace_moves_to_the_continuation() {
        assert_eq!(
            move_trailing_whitespace("Answer: \n ", "4"),
            ("Answer:", " \n 4".to_string())
        );
        assert_eq!(
            move_trailing_whitespace("Answer:", " 4"),
            ("Answer:", " 4".to_string())
        );
        assert_eq!(move_trailing_whitespace("  ", "x"), ("", "  x".to_string()));
    }
}
