//! The study's grid as data: which attacks, at which strengths, compressed by
//! which methods — and the stable key of every cell.
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
//! assert_eq!(cells.len(), grid.attacks.len() * grid.strengths.len() * grid.methods.len());
//! assert_eq!(cells[0].file_stem(), "alignment_breaking__ep1__none");
//! ```

use safety_eval::{AttackKind, Group, SuiteKind};
use serde::{Deserialize, Serialize};

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
}

impl Method {
    fn new(key: &str, name: &str, spec: Option<&str>, heal: bool) -> Self {
        Self {
            key: key.into(),
            name: name.into(),
            spec: spec.map(str::to_string),
            heal,
        }
    }

    /// The uncompressed fine-tune (the reference).
    pub fn none() -> Self {
        Self::new("none", "full fine-tune", None, false)
    }

    /// Whether this is the uncompressed fine-tune.
    pub fn is_uncompressed(&self) -> bool {
        self.spec.is_none()
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

/// The method with `key` among [`all_methods`] and [`extra_methods`], or
/// else, if `key` is a method string the registry parses (e.g. a
/// downstream method's), [`Method::from_spec`] of it.
pub fn method_by_key(key: &str) -> Result<Method, GridError> {
    let all: Vec<Method> = all_methods().into_iter().chain(extra_methods()).collect();
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
}

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

/// Attacks × strengths × methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub attacks: Vec<AttackSpec>,
    /// In increasing strength.
    pub strengths: Vec<Strength>,
    /// The first is the uncompressed fine-tune.
    pub methods: Vec<Method>,
}

impl Grid {
    /// The grid of a preset:
    /// - `quick`: all attacks; epochs 1 and 3; none, BitDelta, RTN 2-bit, SVD rank 8;
    /// - `default`: all attacks; epochs 1, 2, 3, 5; every method of [`all_methods`];
    /// - `full`: epochs 1, 2, 3, 5, 8; [`all_methods`] and [`extra_methods`].
    pub fn preset(p: Preset) -> Self {
        let methods = match p {
            Preset::Quick => ["none", "bitdelta", "rtn-2", "svd-8"]
                .iter()
                .map(|k| method_by_key(k).expect("built-in key"))
                .collect(),
            Preset::Default => all_methods(),
            Preset::Full => all_methods().into_iter().chain(extra_methods()).collect(),
        };
        let epochs: &[usize] = match p {
            Preset::Quick => &[1, 3],
            Preset::Default => &[1, 2, 3, 5],
            Preset::Full => &[1, 2, 3, 5, 8],
        };
        Self {
            attacks: AttackSpec::all(),
            strengths: epochs.iter().map(|&e| Strength::epochs(e)).collect(),
            methods,
        }
    }

    /// Every cell, attack-major, then strength, then method.
    pub fn cells(&self) -> Vec<CellKey> {
        let mut out = Vec::new();
        for a in &self.attacks {
            for s in &self.strengths {
                for m in &self.methods {
                    out.push(CellKey::new(&a.key, &s.label, &m.key));
                }
            }
        }
        out
    }

    /// The base model's cell of every attack (its risk before the attack,
    /// and the `base` lens curve).
    pub fn base_cells(&self) -> Vec<CellKey> {
        self.attacks.iter().map(|a| CellKey::base(&a.key)).collect()
    }

    /// The method with `key`, if in this grid.
    pub fn method(&self, key: &str) -> Option<&Method> {
        self.methods.iter().find(|m| m.key == key)
    }

    /// The attack with `key`, if in this grid.
    pub fn attack(&self, key: &str) -> Option<&AttackSpec> {
        self.attacks.iter().find(|a| a.key == key)
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

/// Which cell: attack, strength label, method key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CellKey {
    pub attack: String,
    pub strength: String,
    pub method: String,
}

impl CellKey {
    /// A key from its parts.
    pub fn new(attack: &str, strength: &str, method: &str) -> Self {
        Self {
            attack: attack.into(),
            strength: strength.into(),
            method: method.into(),
        }
    }

    /// The un-attacked base model evaluated for `attack`.
    pub fn base(attack: &str) -> Self {
        Self::new(attack, BASE_LABEL, "none")
    }

    /// Whether this is a base-model cell.
    pub fn is_base(&self) -> bool {
        self.strength == BASE_LABEL
    }

    /// The uncompressed fine-tune of the same attack and strength.
    pub fn reference(&self) -> Self {
        Self::new(&self.attack, &self.strength, "none")
    }

    /// `attack__strength__method` with every character outside
    /// `[A-Za-z0-9._+-]` replaced by `_`: a stable cache file name.
    pub fn file_stem(&self) -> String {
        format!(
            "{}__{}__{}",
            file_safe(&self.attack),
            file_safe(&self.strength),
            file_safe(&self.method)
        )
    }
}

impl std::fmt::Display for CellKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {} / {}", self.attack, self.strength, self.method)
    }
}
