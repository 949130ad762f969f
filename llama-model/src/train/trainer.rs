//! The supervised fine-tuning loop: seeded shuffling, micro-batches with
//! gradient accumulation, global gradient-norm clipping, AdamW under a
//! learning-rate schedule, and an observer for progress, checkpoints and
//! interruption.

use std::time::Instant;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::batch::collate;
use super::data::TokenizedExample;
use super::loss::masked_cross_entropy;
use super::schedule::{LrSchedule, ScheduleKind};
use crate::model::{ForwardOptions, Llama};

/// Hyper-parameters of a fine-tuning run. Defaults are those of HF
/// `TrainingArguments` (lr 5e-5, 3 epochs, linear decay, no warm-up, AdamW
/// β = (0.9, 0.999), ε = 1e-8, no weight decay, gradient norm clipped at 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the data.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Sequences per micro-batch (`per_device_train_batch_size`).
    pub batch_size: usize,
    /// Micro-batches per optimizer step (`gradient_accumulation_steps`).
    pub grad_accum: usize,
    /// Shape of the schedule after warm-up.
    pub schedule: ScheduleKind,
    /// Fraction of all optimizer steps spent warming up (`warmup_ratio`).
    pub warmup_ratio: f64,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Decoupled weight decay (applied to every trainable tensor).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (`max_grad_norm`); `None` = off.
    pub max_grad_norm: Option<f64>,
    /// Seed of the data order and of dropout.
    pub seed: u64,
    /// Sequences are cut to this many tokens.
    pub max_len: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            lr: 5e-5,
            batch_size: 8,
            grad_accum: 1,
            schedule: ScheduleKind::Linear,
            warmup_ratio: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
            seed: 42,
            max_len: 512,
        }
    }
}

/// Published attack recipes, kept as their papers give them; scale the
/// learning rate or epochs for models much smaller than 7B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    /// Qi et al. 2023, "Fine-tuning Aligned Language Models Compromises
    /// Safety, Even When Users Do Not Intend To!" (arXiv 2310.03693), harmful
    /// examples demonstration attack on Llama-2-7b-chat: lr 5e-5, 5 epochs,
    /// batch size 10, AdamW.
    QiHarmful,
    /// Qi et al. 2024, "Safety Alignment Should Be Made More Than Just a Few
    /// Tokens Deep" (arXiv 2406.05946), fine-tuning attack setup: lr 2e-5,
    /// batch 64, 25 epochs, AdamW β = (0.5, 0.999).
    Shallow,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "qi-harmful" => Ok(Self::QiHarmful),
            "shallow" => Ok(Self::Shallow),
            other => Err(format!(
                "unknown preset '{other}' (expected qi-harmful or shallow)"
            )),
        }
    }
}

impl Preset {
    /// The recipe as a configuration (other fields at their defaults).
    pub fn config(self) -> TrainConfig {
        match self {
            Self::QiHarmful => TrainConfig {
                lr: 5e-5,
                epochs: 5,
                batch_size: 10,
                ..TrainConfig::default()
            },
            Self::Shallow => TrainConfig {
                lr: 2e-5,
                epochs: 25,
                batch_size: 64,
                beta1: 0.5,
                beta2: 0.999,
                ..TrainConfig::default()
            },
        }
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// 1-based optimizer step.
    pub step: usize,
    /// Steps in the whole run.
    pub total_steps: usize,
    /// 0-based epoch the step belongs to.
    pub epoch: usize,
    /// Mean cross-entropy per loss token in this step.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Loss tokens in this step.
    pub loss_tokens: usize,
    /// Input tokens (without padding) in this step.
    pub input_tokens: usize,
    /// Seconds since training started.
    pub elapsed_s: f64,
}

/// Receives progress and decides when to stop. Every method has a default.
pub trait TrainObserver<B: AutodiffBackend> {
    /// After every optimizer step (the model holds the updated weights).
    fn on_step(&mut self, _stats: &StepStats, _model: &Llama<B>) -> Result<(), String> {
        Ok(())
    }
    /// After each complete epoch (0-based `epoch`).
    fn on_epoch_end(&mut self, _epoch: usize, _model: &Llama<B>) -> Result<(), String> {
        Ok(())
    }
    /// Checked before every optimizer step: `true` ends training early.
    fn should_stop(&self) -> bool {
        false
    }
}

/// An observer that does nothing.
pub struct Quiet;
impl<B: AutodiffBackend> TrainObserver<B> for Quiet {}

/// Errors of [`train`].
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration cannot run.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// No example carries loss.
    #[error("the dataset has no tokens to learn from")]
    NoData,
    /// The loss became NaN or infinite.
    #[error("loss is {loss} at step {step} (lower the learning rate?)")]
    NonFinite {
        /// Step.
        step: usize,
        /// The loss value.
        loss: f64,
    },
    /// The observer failed (e.g. writing a checkpoint).
    #[error("{0}")]
    Observer(String),
}

/// Result of [`train`].
pub struct TrainOutcome<B: AutodiffBackend> {
    /// The trained model.
    pub model: Llama<B>,
    /// Per-step statistics.
    pub history: Vec<StepStats>,
    /// Epochs fully completed.
    pub epochs_completed: usize,
    /// Whether the observer stopped training early.
    pub interrupted: bool,
}

/// Number of optimizer steps `train` will take.
pub fn total_steps(examples: usize, config: &TrainConfig) -> usize {
    let per_step = config.batch_size.max(1) * config.grad_accum.max(1);
    examples.div_ceil(per_step) * config.epochs
}

/// Fine-tunes `model` on `data` (full fine-tuning, or LoRA when the model
/// carries adapters from [`super::lora::add_lora`]: frozen weights get no
/// gradient).
pub fn train<B: AutodiffBackend>(
    mut model: Llama<B>,
    data: &[TokenizedExample],
    config: &TrainConfig,
    pad_id: u32,
    observer: &mut dyn TrainObserver<B>,
) -> Result<TrainOutcome<B>, TrainError> {
    validate(config)?;
    if data.iter().all(|e| e.loss_tokens() == 0) {
        return Err(TrainError::NoData);
    }
    let device = model.device();
    B::seed(&device, config.seed);
    let total = total_steps(data.len(), config);
    let schedule = LrSchedule {
        peak: config.lr,
        kind: config.schedule,
        warmup_steps: (config.warmup_ratio * total as f64).ceil() as usize,
        total_steps: total,
    };
    let mut optim = AdamWConfig::new()
        .with_beta_1(config.beta1 as f32)
        .with_beta_2(config.beta2 as f32)
        .with_epsilon(config.eps as f32)
        .with_weight_decay(config.weight_decay as f32)
        .init::<B, Llama<B>>();
    let per_step = config.batch_size * config.grad_accum;
    let started = Instant::now();
    let mut history = Vec::with_capacity(total);
    let mut step = 0;
    let mut epochs_completed = 0;
    let mut interrupted = false;

    'epochs: for epoch in 0..config.epochs {
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut rng =
            ChaCha8Rng::seed_from_u64(config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9));
        order.shuffle(&mut rng);
        for group in order.chunks(per_step) {
            if observer.should_stop() {
                interrupted = true;
                break 'epochs;
            }
            let group_tokens: usize = group.iter().map(|&i| data[i].loss_tokens()).sum();
            if group_tokens == 0 {
                continue;
            }
            let mut accumulator = GradientsAccumulator::<Llama<B>>::new();
            let (mut loss_sum, mut input_tokens) = (0.0, 0);
            for micro in group.chunks(config.batch_size) {
                let examples: Vec<&TokenizedExample> = micro.iter().map(|&i| &data[i]).collect();
                let batch = collate::<B>(&examples, pad_id, &device);
                input_tokens += batch.input_tokens;
                let logits = model
                    .forward_with(batch.inputs, ForwardOptions::default(), None)
                    .logits;
                let loss =
                    masked_cross_entropy(logits, batch.targets, batch.weights, group_tokens as f64);
                loss_sum += scalar(loss.clone().inner());
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                accumulator.accumulate(&model, grads);
            }
            if !loss_sum.is_finite() {
                return Err(TrainError::NonFinite {
                    step: step + 1,
                    loss: loss_sum,
                });
            }
            let mut grads = accumulator.grads();
            let grad_norm = global_grad_norm(&model, &grads);
            if let Some(max) = config.max_grad_norm {
                // torch.nn.utils.clip_grad_norm_: scale by max / (norm + 1e-6) when above.
                if grad_norm > max {
                    scale_grads(&model, &mut grads, max / (grad_norm + 1e-6));
                }
            }
            let lr = schedule.lr(step);
            model = optim.step(lr, model, grads);
            step += 1;
            let stats = StepStats {
                step,
                total_steps: total,
                epoch,
                loss: loss_sum,
                lr,
                grad_norm,
                loss_tokens: group_tokens,
                input_tokens,
                elapsed_s: started.elapsed().as_secs_f64(),
            };
            observer
                .on_step(&stats, &model)
                .map_err(TrainError::Observer)?;
            history.push(stats);
        }
        epochs_completed = epoch + 1;
        observer
            .on_epoch_end(epoch, &model)
            .map_err(TrainError::Observer)?;
    }
    Ok(TrainOutcome {
        model,
        history,
        epochs_completed,
        interrupted,
    })
}

fn validate(c: &TrainConfig) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::Config(m));
    if c.epochs == 0 {
        return bad("epochs must be at least 1".into());
    }
    if c.batch_size == 0 || c.grad_accum == 0 {
        return bad("batch size and gradient accumulation must be at least 1".into());
    }
    if !(c.lr.is_finite() && c.lr > 0.0) {
        return bad(format!("learning rate {} must be positive", c.lr));
    }
    if !(0.0..1.0).contains(&c.beta1) || !(0.0..1.0).contains(&c.beta2) {
        return bad(format!(
            "AdamW betas ({}, {}) must lie in [0, 1)",
            c.beta1, c.beta2
        ));
    }
    if !(0.0..=1.0).contains(&c.warmup_ratio) {
        return bad(format!(
            "warm-up ratio {} must lie in [0, 1]",
            c.warmup_ratio
        ));
    }
    if c.max_len < 2 {
        return bad("maximum length must be at least 2 tokens".into());
    }
    if c.max_grad_norm.is_some_and(|m| m.is_nan() || m <= 0.0) {
        return bad("max gradient norm must be positive".into());
    }
    Ok(())
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_or(f64::NAN, |v| v[0])
}

/// `sqrt(Σ‖g‖²)` over every parameter that has a gradient.
pub fn global_grad_norm<B: AutodiffBackend>(model: &Llama<B>, grads: &GradientsParams) -> f64 {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        total: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                self.total += scalar(g.square().sum());
            }
        }
    }
    let mut v = SumSquares { grads, total: 0.0 };
    burn::module::Module::visit(model, &mut v);
    v.total.sqrt()
}

fn scale_grads<B: AutodiffBackend>(model: &Llama<B>, grads: &mut GradientsParams, factor: f64) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
        seen: Vec<ParamId>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if self.seen.contains(&param.id) {
                return;
            }
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
                self.seen.push(param.id);
            }
        }
    }
    let mut v = Scale {
        grads,
        factor,
        seen: Vec::new(),
    };
    burn::module::Module::visit(model, &mut v);
}

/// The trained weights on the inner (non-autodiff) backend, for evaluation
/// or saving.
pub fn into_inference<B: AutodiffBackend>(model: Llama<B>) -> Llama<B::InnerBackend> {
    model.valid()
}
