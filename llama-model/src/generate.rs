//! Text generation: greedy or seeded temperature / top-k / top-p sampling,
//! stop tokens, a token budget, many prompts at once (left padded, one KV
//! cache, finished rows dropped from the batch) and a streaming callback.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cache::KvCache;
use crate::error::GenerateError;
use crate::model::{ForwardOptions, Llama, LogitsMode};

/// How the next token is chosen from the logits.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    /// The most likely token (the first one on ties, as `torch.argmax`).
    Greedy,
    /// Sampling in HF's order: temperature, then top-k, then top-p.
    Sample {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Keep only the `k` most likely tokens (ties with the k-th kept).
        top_k: Option<usize>,
        /// Keep the smallest set of most likely tokens whose mass reaches `p`.
        top_p: Option<f32>,
    },
}

/// Parameters of [`Llama::generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    /// Tokens to generate at most per prompt.
    pub max_new_tokens: usize,
    /// Greedy or sampled.
    pub sampling: Sampling,
    /// Seed of the sampler; prompt `i` draws from ChaCha8 stream `i`, so a
    /// prompt's output does not depend on what else is in the batch.
    pub seed: u64,
    /// Tokens that end a sequence, besides the model's EOS ids.
    pub stop_tokens: Vec<u32>,
    /// Whether the model's `eos_token_ids` also stop generation.
    pub stop_at_eos: bool,
}

impl GenerateConfig {
    /// Greedy decoding of up to `max_new_tokens` tokens, stopping at EOS.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            sampling: Sampling::Greedy,
            seed: 0,
            stop_tokens: Vec::new(),
            stop_at_eos: true,
        }
    }

    /// Sampling with temperature, optional top-k / top-p, and a seed.
    pub fn sampled(
        max_new_tokens: usize,
        temperature: f32,
        top_k: Option<usize>,
        top_p: Option<f32>,
        seed: u64,
    ) -> Self {
        Self {
            sampling: Sampling::Sample {
                temperature,
                top_k,
                top_p,
            },
            seed,
            ..Self::greedy(max_new_tokens)
        }
    }

    /// Adds stop tokens.
    pub fn with_stop_tokens(mut self, tokens: impl IntoIterator<Item = u32>) -> Self {
        self.stop_tokens.extend(tokens);
        self
    }

    fn validate(&self) -> Result<(), GenerateError> {
        if let Sampling::Sample {
            temperature,
            top_k,
            top_p,
        } = &self.sampling
        {
            if !temperature.is_finite() || *temperature <= 0.0 {
                return Err(GenerateError::BadSampling(format!(
                    "temperature {temperature} must be positive (use Sampling::Greedy for 0)"
                )));
            }
            if *top_k == Some(0) {
                return Err(GenerateError::BadSampling(
                    "top_k must be at least 1".into(),
                ));
            }
            if let Some(p) = top_p {
                if p.is_nan() || *p <= 0.0 || *p > 1.0 {
                    return Err(GenerateError::BadSampling(format!(
                        "top_p {p} must be in (0, 1]"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token was produced (not included in [`Generation::tokens`]).
    StopToken(u32),
    /// `max_new_tokens` were produced.
    MaxNewTokens,
}

/// What one prompt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// New tokens, without the stop token.
    pub tokens: Vec<u32>,
    /// Why generation ended.
    pub stop_reason: StopReason,
}

/// One generated token, as the streaming callback sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEvent {
    /// Index of the prompt.
    pub row: usize,
    /// The token (stop tokens included, flagged by `is_stop`).
    pub token: u32,
    /// Its index among the prompt's new tokens.
    pub step: usize,
    /// Whether this token ends the sequence as a stop token.
    pub is_stop: bool,
}

impl<B: Backend> Llama<B> {
    /// Generates a continuation of every prompt (token ids, BOS included if
    /// wanted). Prompts of different lengths are left padded and run together.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        config: &GenerateConfig,
    ) -> Result<Vec<Generation>, GenerateError> {
        self.generate_streaming(prompts, config, |_| {})
    }

    /// [`Self::generate`], calling `on_token` for every token as soon as it is chosen.
    pub fn generate_streaming(
        &self,
        prompts: &[Vec<u32>],
        config: &GenerateConfig,
        mut on_token: impl FnMut(TokenEvent),
    ) -> Result<Vec<Generation>, GenerateError> {
        config.validate()?;
        let vocab = self.config().vocab_size;
        let context = self.config().max_position_embeddings;
        for (row, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(GenerateError::EmptyPrompt { row });
            }
            if let Some(&token) = p.iter().find(|&&t| t as usize >= vocab) {
                return Err(GenerateError::TokenOutOfRange {
                    row,
                    token,
                    vocab_size: vocab,
                });
            }
            // Every position the cache will hold must be one the model knows;
            // this also bounds the generation loop and the cache's size.
            let total = p.len().saturating_add(config.max_new_tokens);
            if total > context {
                return Err(GenerateError::TooLong {
                    row,
                    prompt_len: p.len(),
                    max_new_tokens: config.max_new_tokens,
                    total,
                    max_position_embeddings: context,
                });
            }
        }
        let mut results: Vec<Generation> = prompts
            .iter()
            .map(|_| Generation {
                tokens: Vec::new(),
                stop_reason: StopReason::MaxNewTokens,
            })
            .collect();
        if prompts.is_empty() || config.max_new_tokens == 0 {
            return Ok(results);
        }
        let mut stops = config.stop_tokens.clone();
        if config.stop_at_eos {
            stops.extend(self.config().eos_token_ids.iter().copied());
        }
        let mut rngs: Vec<ChaCha8Rng> = (0..prompts.len())
            .map(|i| {
                let mut r = ChaCha8Rng::seed_from_u64(config.seed);
                r.set_stream(i as u64);
                r
            })
            .collect();

        let device = self.device();
        let b = prompts.len();
        let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let padded = prompts.iter().any(|p| p.len() != max_len);
        let mut ids = Vec::with_capacity(b * max_len);
        let mut mask = Vec::with_capacity(b * max_len);
        for p in prompts {
            let pad = max_len - p.len();
            ids.extend(std::iter::repeat_n(0i64, pad).chain(p.iter().map(|&t| t as i64)));
            mask.extend(std::iter::repeat_n(0i64, pad).chain(std::iter::repeat_n(1i64, p.len())));
        }
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, max_len]), &device);
        let attention_mask = padded
            .then(|| Tensor::<B, 2, Int>::from_data(TensorData::new(mask, [b, max_len]), &device));

        // Room for the prompt and every new token: the cache is never copied.
        let mut cache = KvCache::with_capacity(self.layers.len(), max_len + config.max_new_tokens);
        let mut logits = self
            .forward_with(
                tokens,
                ForwardOptions {
                    attention_mask,
                    capture_hidden: false,
                    logits: LogitsMode::Last,
                },
                Some(&mut cache),
            )
            .logits;
        // Original prompt index of each row still in the batch.
        let mut active: Vec<usize> = (0..b).collect();
        for step in 0..config.max_new_tokens {
            let n = active.len();
            let host: Vec<f32> = logits
                .reshape([n, vocab])
                .into_data()
                .convert::<f32>()
                .to_vec()
                .expect("f32 logits");
            let mut keep = Vec::with_capacity(n);
            let mut next = Vec::with_capacity(n);
            for (j, &row) in active.iter().enumerate() {
                let row_logits = &host[j * vocab..(j + 1) * vocab];
                // A NaN/Inf model would otherwise "generate" token 0 forever
                // and be scored as if it had answered.
                if let Some(token) = row_logits.iter().position(|x| !x.is_finite()) {
                    return Err(GenerateError::NonFiniteLogits {
                        row,
                        step,
                        token,
                        value: row_logits[token],
                    });
                }
                let token = choose(row_logits, &config.sampling, &mut rngs[row]);
                let is_stop = stops.contains(&token);
                on_token(TokenEvent {
                    row,
                    token,
                    step,
                    is_stop,
                });
                if is_stop {
                    results[row].stop_reason = StopReason::StopToken(token);
                } else {
                    results[row].tokens.push(token);
                    keep.push(j);
                    next.push(token as i64);
                }
            }
            if keep.is_empty() || step + 1 == config.max_new_tokens {
                break;
            }
            if keep.len() < n {
                cache.select_rows(&keep);
                active = keep.iter().map(|&j| active[j]).collect();
            }
            let n = active.len();
            let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(next, [n, 1]), &device);
            logits = self
                .forward_with(
                    tokens,
                    ForwardOptions {
                        attention_mask: None,
                        capture_hidden: false,
                        logits: LogitsMode::Last,
                    },
                    Some(&mut cache),
                )
                .logits;
        }
        Ok(results)
    }
}

/// Picks a token from one row of logits.
pub fn choose(logits: &[f32], sampling: &Sampling, rng: &mut impl Rng) -> u32 {
    match sampling {
        Sampling::Greedy => argmax(logits),
        Sampling::Sample {
            temperature,
            top_k,
            top_p,
        } => {
            let probs = sampling_distribution(logits, *temperature, *top_k, *top_p);
            let u: f64 = rng.random();
            let total: f64 = probs.iter().map(|&(_, p)| p).sum();
            let mut acc = 0.0;
            for &(id, p) in &probs {
                acc += p / total;
                if u < acc {
                    return id;
                }
            }
            probs.last().map_or(0, |&(id, _)| id)
        }
    }
}

/// Index of the largest logit, the first one on ties (NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

/// The tokens that can be sampled and their probabilities (most likely
/// first, normalized), after temperature, top-k and top-p as HF applies them.
pub fn sampling_distribution(
    logits: &[f32],
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f32>,
) -> Vec<(u32, f64)> {
    let t = f64::from(temperature);
    let mut scored: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .map(|(i, &v)| (i as u32, f64::from(v) / t))
        .collect();
    // Stable sort: equal logits keep id order.
    scored.sort_by(|a, b| b.1.partial_cmp(&a.1).expect("no NaN"));
    if let Some(k) = top_k {
        if k < scored.len() {
            let kth = scored[k - 1].1;
            scored.retain(|&(_, v)| v >= kth);
        }
    }
    let max = scored.first().map_or(0.0, |s| s.1);
    let mut probs: Vec<(u32, f64)> = scored
        .into_iter()
        .map(|(i, v)| (i, (v - max).exp()))
        .collect();
    let z: f64 = probs.iter().map(|p| p.1).sum();
    for p in &mut probs {
        p.1 /= z;
    }
    if let Some(p) = top_p {
        let p = f64::from(p);
        let mut cum = 0.0;
        let mut cut = probs.len();
        for (i, &(_, q)) in probs.iter().enumerate() {
            cum += q;
            if cum >= p {
                cut = i + 1;
                break;
            }
        }
        probs.truncate(cut.max(1));
        let z: f64 = probs.iter().map(|p| p.1).sum();
        for q in &mut probs {
            q.1 /= z;
        }
    }
    probs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
    }

    #[test]
    fn top_k_and_top_p_truncate() {
        let logits = [1.0f32, 3.0, 2.0, 0.0];
        let d = sampling_distribution(&logits, 1.0, Some(2), None);
        assert_eq!(d.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
        let d = sampling_distribution(&logits, 1.0, None, Some(0.5));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0], (1, 1.0));
        let d = sampling_distribution(&logits, 1.0, None, None);
        assert!((d.iter().map(|x| x.1).sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn low_temperature_is_nearly_greedy() {
        let logits = [1.0f32, 3.0, 2.0, 0.0];
        let d = sampling_distribution(&logits, 0.01, None, None);
        assert!(d[0].1 > 0.999 && d[0].0 == 1);
    }
}
