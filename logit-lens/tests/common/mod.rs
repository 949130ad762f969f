//! A small pure-Rust reference model implementing `LensModel`: random
//! weights, a toy residual update per block (causal mean "attention" and a
//! ReLU "MLP", each reading an RMS-normed input), final RMSNorm and a tied or
//! untied linear unembedding.

#![allow(dead_code)]

use logit_lens::{ForwardTrace, LensModel, ProbeHidden, ProbePoint};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct RefModel {
    pub vocab: usize,
    pub d: usize,
    pub embed: Vec<f32>,           // vocab × d
    pub unembed: Option<Vec<f32>>, // vocab × d; None = tied to `embed`
    pub norm: Vec<f32>,            // final RMSNorm weight
    pub eps: f32,
    pub blocks: Vec<(Vec<f32>, Vec<f32>)>, // (attention d×d, mlp d×d)
    pub texts: Vec<String>,
}

fn randn(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-1.0f32..1.0) * scale)
        .collect()
}

pub fn rms_norm(h: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = h.iter().map(|x| x * x).sum::<f32>() / h.len() as f32;
    let inv = 1.0 / (ms + eps).sqrt();
    h.iter().zip(w).map(|(x, g)| x * inv * g).collect()
}

fn matvec(w: &[f32], x: &[f32], rows: usize) -> Vec<f32> {
    let d = x.len();
    (0..rows)
        .map(|r| {
            w[r * d..(r + 1) * d]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect()
}

impl RefModel {
    pub fn random(seed: u64, vocab: usize, d: usize, layers: usize, tied: bool) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let embed = randn(&mut rng, vocab * d, 1.0);
        let unembed = (!tied).then(|| randn(&mut rng, vocab * d, 1.0));
        let norm = (0..d).map(|_| rng.random_range(0.5f32..1.5)).collect();
        let blocks = (0..layers)
            .map(|_| (randn(&mut rng, d * d, 0.6), randn(&mut rng, d * d, 0.6)))
            .collect();
        let mut texts: Vec<String> = (0..vocab).map(|i| format!("t{i}")).collect();
        // A few awkward strings for the escaping tests.
        let specials = ["<b>", "a&b", "\"q\"", "it's", " space", "\n"];
        for (i, s) in specials.iter().enumerate() {
            if i < vocab {
                texts[i] = s.to_string();
            }
        }
        RefModel {
            vocab,
            d,
            embed,
            unembed,
            norm,
            eps: 1e-5,
            blocks,
            texts,
        }
    }

    /// Same architecture with every weight perturbed (a "fine-tune").
    pub fn perturbed(&self, seed: u64, scale: f32) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut m = RefModel {
            vocab: self.vocab,
            d: self.d,
            embed: self.embed.clone(),
            unembed: self.unembed.clone(),
            norm: self.norm.clone(),
            eps: self.eps,
            blocks: self.blocks.clone(),
            texts: self.texts.clone(),
        };
        for (a, b) in &mut m.blocks {
            for x in a.iter_mut().chain(b.iter_mut()) {
                *x += rng.random_range(-1.0f32..1.0) * scale;
            }
        }
        m
    }

    fn unembedding(&self) -> &[f32] {
        self.unembed.as_deref().unwrap_or(&self.embed)
    }

    /// The model's own output path: final norm then unembedding, in f64
    /// accumulation over all rows at once (a different code path from
    /// `decode`, which works row by row in f32).
    fn final_logits(&self, hidden: &[f32]) -> Vec<f32> {
        let u = self.unembedding();
        let mut out = Vec::with_capacity(hidden.len() / self.d * self.vocab);
        for h in hidden.chunks(self.d) {
            let ms: f64 =
                h.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / self.d as f64;
            let inv = 1.0 / (ms + f64::from(self.eps)).sqrt();
            for v in 0..self.vocab {
                let row = &u[v * self.d..(v + 1) * self.d];
                let s: f64 = row
                    .iter()
                    .zip(h)
                    .zip(&self.norm)
                    .map(|((&w, &x), &g)| f64::from(w) * f64::from(x) * inv * f64::from(g))
                    .sum();
                out.push(s as f32);
            }
        }
        out
    }
}

impl LensModel for RefModel {
    fn hidden_size(&self) -> usize {
        self.d
    }
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn trace(&self, tokens: &[u32]) -> logit_lens::Result<ForwardTrace> {
        let (d, n) = (self.d, tokens.len());
        let ones = vec![1.0f32; d];
        let mut h: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| {
                self.embed[t as usize * d..(t as usize + 1) * d]
                    .iter()
                    .copied()
            })
            .collect();
        let mut points = vec![ProbeHidden {
            point: ProbePoint::Embedding,
            hidden: h.clone(),
        }];
        for (layer, (wa, wm)) in self.blocks.iter().enumerate() {
            // "Attention": causal mean of the normed inputs, projected, tanh.
            let normed: Vec<Vec<f32>> = h.chunks(d).map(|r| rms_norm(r, &ones, self.eps)).collect();
            let mut mid = h.clone();
            for t in 0..n {
                let mut mean = vec![0f32; d];
                for s in normed.iter().take(t + 1) {
                    for (m, x) in mean.iter_mut().zip(s) {
                        *m += x / (t + 1) as f32;
                    }
                }
                let a = matvec(wa, &mean, d);
                for (o, x) in mid[t * d..(t + 1) * d].iter_mut().zip(a) {
                    *o += x.tanh();
                }
            }
            points.push(ProbeHidden {
                point: ProbePoint::Mid { layer },
                hidden: mid.clone(),
            });
            // "MLP": ReLU of a projection of the normed row.
            let mut post = mid.clone();
            for t in 0..n {
                let x = rms_norm(&mid[t * d..(t + 1) * d], &ones, self.eps);
                let m = matvec(wm, &x, d);
                for (o, y) in post[t * d..(t + 1) * d].iter_mut().zip(m) {
                    *o += y.max(0.0);
                }
            }
            points.push(ProbeHidden {
                point: ProbePoint::Post { layer },
                hidden: post.clone(),
            });
            h = post;
        }
        let logits = self.final_logits(&h);
        Ok(ForwardTrace {
            n_positions: n,
            points,
            logits,
        })
    }
    fn decode(&self, hidden: &[f32], n: usize) -> logit_lens::Result<Vec<f32>> {
        assert_eq!(hidden.len(), n * self.d);
        let u = self.unembedding();
        let mut out = Vec::with_capacity(n * self.vocab);
        for h in hidden.chunks(self.d) {
            let x = rms_norm(h, &self.norm, self.eps);
            out.extend(matvec(u, &x, self.vocab));
        }
        Ok(out)
    }
    fn token_text(&self, id: u32) -> String {
        self.texts[id as usize].clone()
    }
}
