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
        let prompts = chats
            .iter()
            .map(|c| self.chat_ids(c))
            .collect::<Result<Vec<_>, _>>()?;
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

    /// lm-evaluation-harness style: context and continuation are tokenized
    /// separately (BOS before the context where the tokenizer adds one) and
    /// the continuation's tokens are scored given everything before them.
    fn loglikelihood(
        &mut self,
        requests: &[LoglikelihoodRequest],
    ) -> Result<Vec<Loglikelihood>, ModelError> {
        let max = self.loaded.model.config().max_position_embeddings;
        let mut seqs = Vec::with_capacity(requests.len());
        let mut firsts = Vec::with_capacity(requests.len());
        for r in requests {
            let mut ctx = self.loaded.tokenizer.encode(&r.context, true)?;
            let cont = self.loaded.tokenizer.encode(&r.continuation, false)?;
            if cont.is_empty() {
                return Err(
                    format!("continuation {:?} encodes to no tokens", r.continuation).into(),
                );
            }
            // Keep the end of an over-long context, as lm-eval does.
            if ctx.len() + cont.len() > max {
                let keep = max.saturating_sub(cont.len()).max(1);
                ctx.drain(..ctx.len() - keep.min(ctx.len()));
            }
            firsts.push(ctx.len());
            ctx.extend(cont);
            seqs.push(ctx);
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

    /// Every token after the first is scored given those before it, in
    /// windows of the model's context length.
    fn loglikelihood_rolling(
        &mut self,
        texts: &[String],
    ) -> Result<Vec<RollingLoglikelihood>, ModelError> {
        let max = self.loaded.model.config().max_position_embeddings.max(2);
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            let ids = self.loaded.tokenizer.encode(text, true)?;
            let windows: Vec<Vec<u32>> = ids.chunks(max).map(<[u32]>::to_vec).collect();
            let firsts = vec![1; windows.len()];
            let scored = self.score_tokens(&windows, &firsts)?;
            let (mut logprob, mut n) = (0.0, 0);
            for s in scored {
                logprob += s.iter().map(|x| x.0).sum::<f64>();
                n += s.len();
            }
            out.push(RollingLoglikelihood {
                logprob,
                n_tokens: n,
            });
        }
        Ok(out)
    }
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
        self.loaded
            .tokenizer
            .decode(&[id], false)
            .unwrap_or_else(|_| format!("<{id}>"))
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
