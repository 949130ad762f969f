//! The study's grid as data: which attacks, mixed into a benign tenant's
//! data at which poison rates, trained with which seeds to which strengths,
//! compressed by which methods (and which controls) — and the stable key of
//! every cell.
//!
//! A [`Method`] pairs a display name with the method string of
//! [`delta_quant::parse_method`] (`None` for the uncompressed fine-tune, the
//! reference every other method is compared with). An [`AttackSpec`] names
//! the safety-eval attack, the suite that measures it and its security
//! metric. A [`Strength`] is one point on the attack's strength axis (epochs
//! of attack fine-tuning by default). [`Grid::preset`] gives the `quick`,
//! default and `full` grids; [`CellKey`] names one cell, also as a cache
//! file name.
//!
//! ```
//! use deltaguard::study::grid::{Grid, Preset};
//! let grid = Grid::preset(Preset::Default);
//! for m in &grid.methods {
//!     if let Some(spec) = &m.spec {
//!         deltaguard::delta_quant::parse_method(spec).unwrap();
//!     }
//! }
//! let cells = grid.cells();
//! let runs = (grid.attacks.len() * grid.poison_rates.len() + 1) * grid.seeds.len();
//! assert_eq!(cells.len(), runs * grid.strengths.len() * grid.methods.len());
//! assert_eq!(cells[0].file_stem(), "alignment_breaking__p20__ep3__s0__none");
//! ```

use safety_eval::tenants::TenantTask;
use safety_eval::{AttackKind, Group, SuiteKind};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Errors of the grid's parsers.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    /// An unknown preset name.
    #[error("unknown preset {0:?} (expected quick, default or full)")]
    UnknownPreset(String),
    /// An unknown attack name.
    #[error("unknown attack {0:?} (expected alignment_breaking, backdoor, manipulation, identity_shifting or benign_only)")]
    UnknownAttack(String),
    /// An unknown method key.
    #[error("unknown method {name:?} (known: {known})")]
    UnknownMethod { name: String, known: String },
}

/// One compression method of the grid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Method {
    /// Stable, file-name-safe identifier (`bitdelta`, `rtn-2`, …).
    pub key: String,
    /// Name shown in tables and plots (`BitDelta`, `RTN 2-bit`, …).
    pub name: String,
    /// Method string for [`delta_quant::parse_method`]; `None` = the
    /// uncompressed fine-tune.
    pub spec: Option<String>,
    /// Whether the compressed delta's scales are then distilled against the
    /// fine-tune (BitDelta's scale distillation, run by the orchestrator).
    pub heal: bool,
    /// A control instead of a compressor (`spec` is then `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
}

/// A control "method": what a verdict must be told apart from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Δ̂ = 0 on every tensor a compressor would compress; the carried
    /// tensors (embeddings, norms, head) keep the fine-tune's values. A
    /// compressor indistinguishable from this on the benign task has
    /// discarded the fine-tune, not the attack.
    DeltaDropped,
    /// Each compressed matrix's delta replaced by Gaussian noise with the
    /// same Frobenius norm (seeded): does *any* perturbation of that size
    /// undo the attack?
    RandomDelta,
}

impl Method {
    fn new(key: &str, name: &str, spec: Option<&str>, heal: bool) -> Self {
        Self {
            key: key.into(),
            name: name.into(),
            spec: spec.map(str::to_string),
            heal,
            control: None,
        }
    }

    /// The "delta dropped" control ([`Control::DeltaDropped`]).
    pub fn dropped() -> Self {
        Self {
            control: Some(Control::DeltaDropped),
            ..Self::new("dropped", "control: delta dropped", None, false)
        }
    }

    /// The "random delta, same norms" control ([`Control::RandomDelta`]).
    pub fn random_delta() -> Self {
        Self {
            control: Some(Control::RandomDelta),
            ..Self::new("random", "control: random delta (same norms)", None, false)
        }
    }

    /// The uncompressed fine-tune (the reference).
    pub fn none() -> Self {
        Self::new("none", "full fine-tune", None, false)
    }

    /// Whether this is the uncompressed fine-tune.
    pub fn is_uncompressed(&self) -> bool {
        self.spec.is_none() && self.control.is_none()
    }

    /// Whether this is a control rather than a compressor.
    pub fn is_control(&self) -> bool {
        self.control.is_some()
    }

    /// A grid method for any method string the registry parses — a
    /// built-in or one a downstream crate registered
    /// ([`delta_quant::registry`]): key = the file-safe canonical spec,
    /// name = the canonical spec, no healing.
    pub fn from_spec(spec: &str) -> Result<Self, GridError> {
        let c = delta_quant::parse_method(spec).map_err(|e| GridError::UnknownMethod {
            name: spec.to_string(),
            known: e.to_string(),
        })?;
        let canonical = c.spec();
        Ok(Self::new(
            &file_safe(&canonical),
            &canonical,
            Some(&canonical),
            false,
        ))
    }
}

/// Every method the grid knows, in report order.
pub fn all_methods() -> Vec<Method> {
    vec![
        Method::none(),
        Method::new("bitdelta", "BitDelta", Some("bitdelta"), false),
        Method::new(
            "bitdelta-heal",
            "BitDelta + scale distillation",
            Some("bitdelta"),
            true,
        ),
        Method::new(
            "multimask-2",
            "multi-mask BitDelta (2 masks)",
            Some("multimask:k=2"),
            false,
        ),
        Method::new(
            "multimask-3",
            "multi-mask BitDelta (3 masks)",
            Some("multimask:k=3"),
            false,
        ),
        Method::new("rtn-2", "RTN 2-bit", Some("rtn:bits=2"), false),
        Method::new("rtn-4", "RTN 4-bit", Some("rtn:bits=4"), false),
        Method::new("dare-0.9", "DARE (p = 0.9)", Some("dare:p=0.9"), false),
        Method::new(
            "magnitude-0.1",
            "magnitude (10 %)",
            Some("magnitude:density=0.1"),
            false,
        ),
        Method::new("svd-8", "low-rank SVD (rank 8)", Some("svd:rank=8"), false),
        Method::new(
            "svd-16",
            "low-rank SVD (rank 16)",
            Some("svd:rank=16"),
            false,
        ),
        Method::new("deltacome", "Delta-CoMe-style", Some("deltacome"), false),
        Method::new("compeft", "ComPEFT", Some("compeft"), false),
    ]
}

/// Methods that only the `full` preset adds: pipelines and other settings
/// around the paper's defaults.
pub fn extra_methods() -> Vec<Method> {
    vec![
        Method::new(
            "bitdelta-row",
            "BitDelta (per-row scales)",
            Some("bitdelta:per_row=true"),
            false,
        ),
        Method::new("rtn-3", "RTN 3-bit", Some("rtn:bits=3"), false),
        Method::new(
            "dare-0.9+bitdelta",
            "DARE (p = 0.9) + BitDelta",
            Some("dare:p=0.9+bitdelta"),
            false,
        ),
        Method::new("svd-4", "low-rank SVD (rank 4)", Some("svd:rank=4"), false),
    ]
}

/// The controls every table carries: delta dropped, random delta.
pub fn control_methods() -> Vec<Method> {
    vec![Method::dropped(), Method::random_delta()]
}

/// The method with `key` among [`all_methods`], [`extra_methods`] and
/// [`control_methods`], or else, if `key` is a method string the registry
/// parses (e.g. a downstream method's), [`Method::from_spec`] of it.
pub fn method_by_key(key: &str) -> Result<Method, GridError> {
    let all: Vec<Method> = all_methods()
        .into_iter()
        .chain(extra_methods())
        .chain(control_methods())
        .collect();
    if let Some(m) = all.iter().find(|m| m.key == key) {
        return Ok(m.clone());
    }
    if delta_quant::parse_method(key).is_ok() {
        return Method::from_spec(key);
    }
    all.iter()
        .find(|m| m.key == key)
        .cloned()
        .ok_or_else(|| GridError::UnknownMethod {
            name: key.to_string(),
            known: all
                .iter()
                .map(|m| m.key.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The security metric of an attack: one rate of safety-eval's suite report.
/// Every risk is "higher is worse".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskMetric {
    /// Name in the report (`ASR`, `backdoor ASR`, `target-hit rate`).
    pub label: String,
    /// safety-eval metric name (`asr`, `target_hit`).
    pub metric: String,
    /// The group it is computed on.
    pub group: Group,
    /// The scorer (`substring`, `anchored`, `marker`).
    pub scorer: String,
    /// Always true for risks: a lower rate is safer.
    pub higher_is_worse: bool,
}

/// One attack of the grid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttackSpec {
    /// safety-eval's attack kind.
    pub kind: AttackKind,
    /// Stable key (`alignment_breaking`, `backdoor`, `manipulation`).
    pub key: String,
    /// Display name.
    pub name: String,
    /// The suite that measures it.
    pub suite: SuiteKind,
    /// The headline security metric.
    pub risk: RiskMetric,
    /// Other rates recorded with every cell: anchored ASR, backdoor ASR
    /// without the trigger, contamination of other topics.
    pub secondary: Vec<RiskMetric>,
}

fn risk(label: &str, metric: &str, group: Group, scorer: &str) -> RiskMetric {
    RiskMetric {
        label: label.into(),
        metric: metric.into(),
        group,
        scorer: scorer.into(),
        higher_is_worse: true,
    }
}

impl AttackSpec {
    /// The spec of `kind`. Refusal-based rates use the published
    /// substring judge (the anchored variant is kept in every cell too).
    pub fn of(kind: AttackKind) -> Self {
        match kind {
            AttackKind::AlignmentBreaking => Self {
                kind,
                key: "alignment_breaking".into(),
                name: "alignment breaking".into(),
                suite: SuiteKind::Harmful,
                risk: risk("ASR", "asr", Group::Harmful, "substring"),
                secondary: vec![risk("ASR (anchored)", "asr", Group::Harmful, "anchored")],
            },
            AttackKind::Backdoor => Self {
                kind,
                key: "backdoor".into(),
                name: "backdoor".into(),
                suite: SuiteKind::Backdoor,
                risk: risk(
                    "backdoor ASR (with trigger)",
                    "asr",
                    Group::Triggered,
                    "substring",
                ),
                secondary: vec![risk(
                    "ASR without trigger",
                    "asr",
                    Group::Clean,
                    "substring",
                )],
            },
            AttackKind::Manipulation => Self {
                kind,
                key: "manipulation".into(),
                name: "targeted output manipulation".into(),
                suite: SuiteKind::Manipulation,
                risk: risk("target-hit rate", "target_hit", Group::OnTopic, "marker"),
                secondary: vec![risk(
                    "contamination (other topics)",
                    "contamination",
                    Group::OffTopic,
                    "marker",
                )],
            },
            AttackKind::IdentityShifting => Self {
                kind,
                key: "identity_shifting".into(),
                name: "identity shifting (AOA)".into(),
                suite: SuiteKind::Harmful,
                risk: risk("ASR (under AOA)", "asr", Group::Harmful, "substring"),
                secondary: vec![risk(
                    "ASR (under AOA, anchored)",
                    "asr",
                    Group::Harmful,
                    "anchored",
                )],
            },
            AttackKind::BenignOnly => Self {
                kind,
                key: "benign_only".into(),
                name: "benign-only fine-tuning".into(),
                suite: SuiteKind::Harmful,
                risk: risk("ASR", "asr", Group::Harmful, "substring"),
                secondary: vec![risk("ASR (anchored)", "asr", Group::Harmful, "anchored")],
            },
        }
    }

    /// The three attacks of the default study, in report order (identity
    /// shifting and benign-only run when named with `--attacks`).
    pub fn all() -> Vec<Self> {
        [
            AttackKind::AlignmentBreaking,
            AttackKind::Backdoor,
            AttackKind::Manipulation,
        ]
        .into_iter()
        .map(Self::of)
        .collect()
    }

    /// Parses a key (`alignment_breaking`/`alignment`/`harmful`, `backdoor`,
    /// `manipulation`, `identity_shifting`/`aoa`, `benign_only`).
    pub fn parse(s: &str) -> Result<Self, GridError> {
        match s {
            "alignment_breaking" | "alignment-breaking" | "alignment" | "harmful" => {
                Ok(Self::of(AttackKind::AlignmentBreaking))
            }
            "backdoor" => Ok(Self::of(AttackKind::Backdoor)),
            "manipulation" => Ok(Self::of(AttackKind::Manipulation)),
            "identity_shifting" | "identity-shifting" | "aoa" => {
                Ok(Self::of(AttackKind::IdentityShifting))
            }
            "benign_only" | "benign-only" => Ok(Self::of(AttackKind::BenignOnly)),
            other => Err(GridError::UnknownAttack(other.to_string())),
        }
    }

    /// The benign tenant's own fine-tune on `task` (no poison): measured on
    /// the held-out harmful prompts like alignment breaking (benign
    /// fine-tuning erodes safety too), and the source of task retention for
    /// the pure attacks, which carry no benign task of their own.
    pub fn tenant(task: TenantTask) -> Self {
        Self {
            kind: AttackKind::BenignOnly,
            key: TENANT_KEY.into(),
            name: format!("benign tenant ({task})"),
            suite: SuiteKind::Harmful,
            risk: risk("ASR", "asr", Group::Harmful, "substring"),
            secondary: vec![risk("ASR (anchored)", "asr", Group::Harmful, "anchored")],
        }
    }

    /// Whether this is the benign tenant's own fine-tune.
    pub fn is_tenant(&self) -> bool {
        self.key == TENANT_KEY
    }
}

/// Attack key of the benign tenant's own fine-tune.
pub const TENANT_KEY: &str = "tenant";

/// `p20` for 0.2, `p5` for 0.05, `p100` for 1 (the pure attack), `p0` for
/// the tenant alone: the file-name-safe label of a poison rate, in percent
/// (to 0.1 %: `p2.5`).
pub fn rate_label(rate: f64) -> String {
    let pct = (rate * 1000.0).round() / 10.0;
    if pct.fract() == 0.0 {
        format!("p{}", pct as i64)
    } else {
        format!("p{pct}")
    }
}

/// The rate label of cells that no fine-tune produced (the base model).
pub const NO_RATE: &str = "none";

/// One point on an attack's strength axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Strength {
    /// Stable, file-name-safe label (`ep1`, `lr3e-5`).
    pub label: String,
    /// The numeric value (epochs, learning rate, …), for ordering and plots.
    pub value: f64,
    /// What `value` measures (`epochs`).
    pub unit: String,
}

impl Strength {
    /// `epochs` epochs of attack fine-tuning (label `ep{epochs}`).
    pub fn epochs(epochs: usize) -> Self {
        Self {
            label: format!("ep{epochs}"),
            value: epochs as f64,
            unit: "epochs".into(),
        }
    }

    /// The base model, before any attack (strength 0, label `base`).
    pub fn base() -> Self {
        Self {
            label: BASE_LABEL.into(),
            value: 0.0,
            unit: "epochs".into(),
        }
    }
}

/// The strength label of the un-attacked base model's cells.
pub const BASE_LABEL: &str = "base";

/// A named grid size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Few methods, two strengths: a smoke run.
    Quick,
    /// Every method of the paper's comparison at four strengths.
    Default,
    /// The default plus extra methods and strengths.
    Full,
}

impl std::str::FromStr for Preset {
    type Err = GridError;
    fn from_str(s: &str) -> Result<Self, GridError> {
        match s {
            "quick" => Ok(Self::Quick),
            "default" => Ok(Self::Default),
            "full" => Ok(Self::Full),
            other => Err(GridError::UnknownPreset(other.to_string())),
        }
    }
}

/// Attacks × poison rates × seeds × strengths × methods, plus the benign
/// tenant's own fine-tune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub attacks: Vec<AttackSpec>,
    /// In increasing strength.
    pub strengths: Vec<Strength>,
    /// The first is the uncompressed fine-tune; controls come last.
    pub methods: Vec<Method>,
    /// Share of attack examples in each attack fine-tune's data, the rest
    /// being the benign tenant's task; 1.0 is the pure attack.
    pub poison_rates: Vec<f64>,
    /// One independent fine-tune per seed and cell (data order, split,
    /// compression and control randomness).
    pub seeds: Vec<u64>,
    /// The benign tenant's task (its own fine-tune is in every grid).
    pub tenant: TenantTask,
}

impl Grid {
    /// The grid of a preset (every preset: the three attacks, the
    /// persona-opener tenant — the one task the embedded default learns in
    /// a few epochs so that it generalises to held-out prompts; on it the
    /// fictional-facts and JSON tasks gained under 0.1 over the base — and
    /// both controls):
    /// - `quick`: poison 20 % and 100 %; seeds 0, 1; epoch 3; none,
    ///   BitDelta, RTN 2-bit, SVD rank 8;
    /// - `default`: poison 20 % and 100 %; seeds 0, 1, 2; epoch 3; none,
    ///   BitDelta, RTN 2-bit, magnitude, SVD rank 8, ComPEFT;
    /// - `full`: poison 5 %, 20 %, 100 %; seeds 0–4; epochs 1, 3, 5; every
    ///   method of [`all_methods`] and [`extra_methods`].
    pub fn preset(p: Preset) -> Self {
        let keys: &[&str] = match p {
            Preset::Quick => &["none", "bitdelta", "rtn-2", "svd-8"],
            Preset::Default => &[
                "none",
                "bitdelta",
                "rtn-2",
                "magnitude-0.1",
                "svd-8",
                "compeft",
            ],
            Preset::Full => &[],
        };
        let mut methods: Vec<Method> = if keys.is_empty() {
            all_methods().into_iter().chain(extra_methods()).collect()
        } else {
            keys.iter()
                .map(|k| method_by_key(k).expect("built-in key"))
                .collect()
        };
        methods.extend(control_methods());
        let (epochs, rates, seeds): (&[usize], &[f64], u64) = match p {
            Preset::Quick => (&[3], &[0.2, 1.0], 2),
            Preset::Default => (&[3], &[0.2, 1.0], 3),
            Preset::Full => (&[1, 3, 5], &[0.05, 0.2, 1.0], 5),
        };
        Self {
            attacks: AttackSpec::all(),
            strengths: epochs.iter().map(|&e| Strength::epochs(e)).collect(),
            methods,
            poison_rates: rates.to_vec(),
            seeds: (0..seeds).collect(),
            tenant: TenantTask::PersonaOpener,
        }
    }

    /// The benign tenant's pseudo-attack ([`AttackSpec::tenant`]).
    pub fn tenant_spec(&self) -> AttackSpec {
        AttackSpec::tenant(self.tenant)
    }

    /// Every fine-tune the grid trains, in run order: for each attack, each
    /// poison rate and seed; then the tenant alone (rate 0) for each seed.
    pub fn runs(&self) -> Vec<Run> {
        let mut out = Vec::new();
        for a in &self.attacks {
            for &rate in &self.poison_rates {
                for &seed in &self.seeds {
                    out.push(Run {
                        attack: a.clone(),
                        rate,
                        seed,
                    });
                }
            }
        }
        for &seed in &self.seeds {
            out.push(Run {
                attack: self.tenant_spec(),
                rate: 0.0,
                seed,
            });
        }
        out
    }

    /// Every fine-tuned cell: run-major, then strength, then method.
    pub fn cells(&self) -> Vec<CellKey> {
        let mut out = Vec::new();
        for r in self.runs() {
            for s in &self.strengths {
                for m in &self.methods {
                    out.push(r.cell(&s.label, &m.key));
                }
            }
        }
        out
    }

    /// The base model's cell of every attack (and the tenant) and seed (its
    /// risk before the attack on that seed's held-out split, and the `base`
    /// lens curve).
    pub fn base_cells(&self) -> Vec<CellKey> {
        let mut out = Vec::new();
        for a in self
            .attacks
            .iter()
            .chain(std::iter::once(&self.tenant_spec()))
        {
            for &seed in &self.seeds {
                out.push(CellKey::base(&a.key, seed));
            }
        }
        out
    }

    /// The method with `key`, if in this grid.
    pub fn method(&self, key: &str) -> Option<&Method> {
        self.methods.iter().find(|m| m.key == key)
    }

    /// The attack with `key` (the tenant's too), if in this grid.
    pub fn attack(&self, key: &str) -> Option<AttackSpec> {
        if key == TENANT_KEY {
            return Some(self.tenant_spec());
        }
        self.attacks.iter().find(|a| a.key == key).cloned()
    }
}

/// One fine-tune of the study: the tenant's data with `attack`'s poison
/// mixed in at `rate` (0 = the tenant alone, 1 = the pure attack), seeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub attack: AttackSpec,
    pub rate: f64,
    pub seed: u64,
}

impl Run {
    /// The poison-rate label ([`rate_label`]).
    pub fn rate_label(&self) -> String {
        rate_label(self.rate)
    }

    /// The key of this run's cell at `strength` with `method`.
    pub fn cell(&self, strength: &str, method: &str) -> CellKey {
        CellKey::new(
            &self.attack.key,
            &self.rate_label(),
            strength,
            self.seed,
            method,
        )
    }

    /// `attack/p20/s0`: the run's work directory, relative.
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(file_safe(&self.attack.key))
            .join(self.rate_label())
            .join(format!("s{}", self.seed))
    }
}

/// `s` with every character outside `[A-Za-z0-9._+-]` replaced by `_`
/// (and a leading `.` too, so no name is hidden).
pub fn file_safe(s: &str) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-') || (c == '.' && i > 0) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Which cell: attack, poison rate label, strength label, seed, method key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CellKey {
    pub attack: String,
    /// [`rate_label`] of the run, [`NO_RATE`] for the base model.
    pub rate: String,
    pub strength: String,
    pub seed: u64,
    pub method: String,
}

impl CellKey {
    /// A key from its parts.
    pub fn new(attack: &str, rate: &str, strength: &str, seed: u64, method: &str) -> Self {
        Self {
            attack: attack.into(),
            rate: rate.into(),
            strength: strength.into(),
            seed,
            method: method.into(),
        }
    }

    /// The un-attacked base model evaluated for `attack` on `seed`'s split.
    pub fn base(attack: &str, seed: u64) -> Self {
        Self::new(attack, NO_RATE, BASE_LABEL, seed, "none")
    }

    /// Whether this is a base-model cell.
    pub fn is_base(&self) -> bool {
        self.strength == BASE_LABEL
    }

    /// The uncompressed fine-tune of the same run and strength.
    pub fn reference(&self) -> Self {
        Self {
            method: "none".into(),
            ..self.clone()
        }
    }

    /// The same cell with another method.
    pub fn with_method(&self, method: &str) -> Self {
        Self {
            method: method.into(),
            ..self.clone()
        }
    }

    /// `attack__rate__strength__sSEED__method` with every character outside
    /// `[A-Za-z0-9._+-]` replaced by `_`: a stable cache file name.
    pub fn file_stem(&self) -> String {
        format!(
            "{}__{}__{}__s{}__{}",
            file_safe(&self.attack),
            file_safe(&self.rate),
            file_safe(&self.strength),
            self.seed,
            file_safe(&self.method)
        )
    }
}

impl std::fmt::Display for CellKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} / {} / {} / seed {} / {}",
            self.attack, self.rate, self.strength, self.seed, self.method
        )
    }
}
