//! Learning-rate schedules with linear warm-up, as HF transformers defines
//! them (`get_constant_schedule_with_warmup`, `get_linear_schedule_with_warmup`,
//! `get_cosine_schedule_with_warmup`).

use serde::{Deserialize, Serialize};

/// The shape of the learning rate after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// The peak rate throughout.
    Constant,
    /// Linear decay from the peak to 0 at the last step.
    #[default]
    Linear,
    /// Half-cosine decay from the peak to 0 at the last step.
    Cosine,
}

impl std::str::FromStr for ScheduleKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "constant" => Ok(Self::Constant),
            "linear" => Ok(Self::Linear),
            "cosine" => Ok(Self::Cosine),
            other => Err(format!(
                "unknown schedule '{other}' (expected constant, linear or cosine)"
            )),
        }
    }
}

/// A learning-rate schedule over `total_steps` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Shape after warm-up.
    pub kind: ScheduleKind,
    /// Steps of linear warm-up from 0 to the peak.
    pub warmup_steps: usize,
    /// Optimizer steps in the whole run.
    pub total_steps: usize,
}

impl LrSchedule {
    /// The rate used for optimizer step `step` (0-based), as HF's
    /// `LambdaLR` evaluates it: warm-up `peak·(step)/warmup`, then the decay
    /// measured from the end of warm-up.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / decay_steps).min(1.0);
        match self.kind {
            ScheduleKind::Constant => self.peak,
            ScheduleKind::Linear => self.peak * (1.0 - progress).max(0.0),
            ScheduleKind::Cosine => {
                self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay_like_hf() {
        let s = LrSchedule {
            peak: 1.0,
            kind: ScheduleKind::Linear,
            warmup_steps: 2,
            total_steps: 6,
        };
        let lrs: Vec<f64> = (0..6).map(|i| s.lr(i)).collect();
        assert_eq!(lrs, vec![0.0, 0.5, 1.0, 0.75, 0.5, 0.25]);
        let c = LrSchedule {
            kind: ScheduleKind::Cosine,
            warmup_steps: 0,
            total_steps: 4,
            peak: 2.0,
        };
        assert!((c.lr(0) - 2.0).abs() < 1e-12);
        assert!((c.lr(2) - 1.0).abs() < 1e-12);
        assert!(c.lr(3) < 0.3);
        let k = LrSchedule {
            kind: ScheduleKind::Constant,
            ..c
        };
        assert_eq!(k.lr(3), 2.0);
    }
}
