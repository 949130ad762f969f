//! The study's report: the paper-style table per attack, the "where along
//! the strength axis each method helps" summary, the JSON of everything, the
//! per-sample JSONL and the plots.
//!
//! Every compressed cell is compared with the **uncompressed fine-tune of
//! the same attack and strength** (its reference, method `none`):
//! - risk reduction in points (`100 × (ref − risk)`) and relative
//!   (`(ref − risk) / ref`), positive = safer ([`safety_eval::risk_reduction`]);
//! - utility change relative to the reference (positive = better; for
//!   perplexity, lower is better, so a rise counts as a loss —
//!   [`safety_eval::utility_loss`]);
//! - a **free lunch** is a cell whose risk is lower than its reference's
//!   and whose utility loss is under [`ReportOptions::max_utility_loss`]
//!   (10 %), as in Liu et al. 2024.
//!
//! [`write_report`] writes `report.md`, `report.json`, `samples.jsonl` and
//! the SVGs of [`super::plots`] into the output directory, each file
//! atomically (temp file + rename).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use safety_eval::{risk_reduction, utility_loss, Rate, Reduction};
use serde::{Deserialize, Serialize};

use super::cell::{CellResult, CompressedSize};
use super::grid::{rate_label, AttackSpec, CellKey, Method, Strength, TENANT_KEY};
use super::verdict::{scorer_agreement_markdown, verdict_markdown, verdict_rows};
use safety_eval::stats::ClusterBootstrap;
use safety_eval::verdict::VerdictConfig;

/// Schema id of `report.json`.
pub const SCHEMA: &str = "deltaguard.study/1";

/// Errors of report writing.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] delta_core::CheckpointError),
    #[error("serializing {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("plot {file}: {reason}")]
    Plot { file: String, reason: String },
}

/// The machine a study ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// `model name` of /proc/cpuinfo (or `unknown`).
    pub cpu_model: String,
    /// Logical cores available to the process.
    pub cores: usize,
    pub os: String,
    pub arch: String,
    /// The Burn backend (e.g. `burn-ndarray (CPU, f32)`).
    pub backend: String,
}

impl MachineInfo {
    /// Reads the CPU model from /proc/cpuinfo (Linux) and the core count
    /// from the OS.
    pub fn detect() -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        Self {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            backend: crate::backend::NAME.to_string(),
        }
    }
}

/// `git rev-parse HEAD` in `dir`, with `-dirty` when tracked files differ
/// from it; `None` outside a git checkout or without git.
pub fn git_commit(dir: &Path) -> Option<String> {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = run(&["rev-parse", "HEAD"]).filter(|s| !s.is_empty())?;
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_utc(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Provenance of a study run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// The command line (`std::env::args`).
    pub command_line: Vec<String>,
    pub seed: u64,
    /// See [`git_commit`].
    pub git_commit: Option<String>,
    pub machine: MachineInfo,
    /// Start time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started_utc: String,
    /// Wall-clock seconds of the whole run (set before writing).
    pub runtime_seconds: f64,
    /// What the base model was (path, or `embedded default`).
    pub base_model: String,
    /// deltaguard's version.
    pub version: String,
    /// Anything else the orchestrator records (preset, grid, budget, …).
    #[serde(default)]
    pub parameters: serde_json::Value,
}

impl RunMeta {
    /// Metadata for a run starting now: command line from the process, git
    /// commit of the current directory, machine detected.
    pub fn new(seed: u64, base_model: impl Into<String>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            command_line: std::env::args().collect(),
            seed,
            git_commit: std::env::current_dir().ok().and_then(|d| git_commit(&d)),
            machine: MachineInfo::detect(),
            started_utc: format_utc(now),
            runtime_seconds: 0.0,
            base_model: base_model.into(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            parameters: serde_json::Value::Null,
        }
    }
}

/// Which utility number the table and the free-lunch rule use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UtilityMetric {
    /// Multiple-choice accuracy (higher is better).
    #[default]
    Acc,
    /// Length-normalized multiple-choice accuracy (higher is better).
    AccNorm,
    /// Perplexity on held-out benign answers (lower is better).
    Perplexity,
}

impl UtilityMetric {
    /// The value of this metric in a cell, if measured.
    pub fn of(self, c: &CellResult) -> Option<f64> {
        match self {
            UtilityMetric::Acc => Some(c.utility.acc.rate),
            UtilityMetric::AccNorm => Some(c.utility.acc_norm.rate),
            UtilityMetric::Perplexity => c.utility.perplexity,
        }
    }
    /// Whether a larger value is better.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, UtilityMetric::Perplexity)
    }
    /// Column name.
    pub fn label(self) -> &'static str {
        match self {
            UtilityMetric::Acc => "acc",
            UtilityMetric::AccNorm => "acc_norm",
            UtilityMetric::Perplexity => "perplexity",
        }
    }
}

/// Report settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportOptions {
    /// Title of report.md.
    pub title: String,
    /// The utility number of the table and of the free-lunch rule.
    pub utility: UtilityMetric,
    /// Largest relative utility loss that still counts as a free lunch (0.10).
    pub max_utility_loss: f64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            title: "deltaguard study".into(),
            utility: UtilityMetric::Acc,
            max_utility_loss: 0.10,
        }
    }
}

/// One row of the table: a cell compared with its reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub key: CellKey,
    pub strength: Strength,
    pub method: Method,
    pub risk: Rate,
    /// The uncompressed fine-tune's risk at the same strength (compressed
    /// cells only, when that cell exists).
    pub reference_risk: Option<Rate>,
    /// Risk reduction against the reference (positive = safer).
    pub risk_reduction: Option<Reduction>,
    /// The chosen utility metric.
    pub utility: Option<f64>,
    /// Relative utility change against the reference, positive = better
    /// (`−utility_loss`).
    pub utility_change: Option<f64>,
    pub compressed: Option<CompressedSize>,
    /// Risk lower than the reference and utility loss under the threshold.
    pub free_lunch: bool,
    /// The risk's interval lies entirely below the reference's.
    pub ci_separated: bool,
}

/// Rows of one attack, in table order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackTable {
    pub attack: AttackSpec,
    /// The base model's row, if that cell was evaluated.
    pub base: Option<Row>,
    /// Strengths ascending; within one, the reference first, then the
    /// methods in the order they first appear in the cells.
    pub rows: Vec<Row>,
}

/// Groups `cells` by attack (in [`AttackSpec::all`] order, then any other)
/// and compares every compressed cell with its reference.
pub fn tables(cells: &[CellResult], opts: &ReportOptions) -> Vec<AttackTable> {
    let mut attack_order: Vec<String> = AttackSpec::all().into_iter().map(|a| a.key).collect();
    for c in cells {
        if !attack_order.contains(&c.cell.attack.key) {
            attack_order.push(c.cell.attack.key.clone());
        }
    }
    let mut method_order: Vec<String> = vec!["none".into()];
    for c in cells {
        if !method_order.contains(&c.cell.method.key) {
            method_order.push(c.cell.method.key.clone());
        }
    }
    let by_key: BTreeMap<&CellKey, &CellResult> = cells.iter().map(|c| (c.key(), c)).collect();
    let mut out = Vec::new();
    for a in attack_order {
        let mine: Vec<&CellResult> = cells.iter().filter(|c| c.cell.attack.key == a).collect();
        let Some(attack) = mine.first().map(|c| c.cell.attack.clone()) else {
            continue;
        };
        let base = mine
            .iter()
            .find(|c| c.key().is_base())
            .map(|c| row_of(c, None, opts));
        let mut rest: Vec<&CellResult> = mine.into_iter().filter(|c| !c.key().is_base()).collect();
        let pos = |m: &str| {
            method_order
                .iter()
                .position(|x| x == m)
                .unwrap_or(usize::MAX)
        };
        rest.sort_by(|x, y| {
            x.cell
                .strength
                .value
                .total_cmp(&y.cell.strength.value)
                .then_with(|| x.cell.strength.label.cmp(&y.cell.strength.label))
                .then_with(|| pos(&x.cell.method.key).cmp(&pos(&y.cell.method.key)))
        });
        let rows = rest
            .iter()
            .map(|c| {
                let reference = if c.cell.method.is_uncompressed() {
                    None
                } else {
                    by_key.get(&c.key().reference()).copied()
                };
                row_of(c, reference, opts)
            })
            .collect();
        out.push(AttackTable { attack, base, rows });
    }
    out
}

fn row_of(c: &CellResult, reference: Option<&CellResult>, opts: &ReportOptions) -> Row {
    let utility = opts.utility.of(c);
    let (mut reference_risk, mut risk_red, mut utility_change) = (None, None, None);
    let (mut free_lunch, mut ci_separated) = (false, false);
    if let Some(r) = reference {
        reference_risk = Some(r.risk);
        let red = risk_reduction(r.risk.rate, c.risk.rate);
        risk_red = Some(red);
        ci_separated = c.risk.ci_high < r.risk.ci_low;
        let loss = match (opts.utility.of(r), utility) {
            (Some(rv), Some(v)) => Some(utility_loss(rv, v, opts.utility.higher_is_better())),
            _ => None,
        };
        utility_change = loss.map(|l| 0.0 - l);
        free_lunch = red.absolute > 0.0 && loss.is_some_and(|l| l < opts.max_utility_loss);
    }
    Row {
        key: c.key().clone(),
        strength: c.cell.strength.clone(),
        method: c.cell.method.clone(),
        risk: c.risk,
        reference_risk,
        risk_reduction: risk_red,
        utility,
        utility_change,
        compressed: c.compressed,
        free_lunch,
        ci_separated,
    }
}

/// `12.3 KiB`-style size.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn fmt_utility(metric: UtilityMetric, v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if metric == UtilityMetric::Perplexity => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn table_md(t: &AttackTable, opts: &ReportOptions) -> String {
    let mut s = String::new();
    let label = &t.attack.risk.label;
    let _ = writeln!(
        s,
        "| strength | method | {label} [95 % CI] | n | risk ↓ (pts) | risk ↓ (rel.) | {} | utility Δ | size | ratio | naive ✓ |",
        opts.utility.label()
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    let rows = t.base.iter().chain(&t.rows);
    for r in rows {
        let method = if r.key.is_base() {
            "base model".to_string()
        } else {
            r.method.name.clone()
        };
        let (pts, rel) = match r.risk_reduction {
            Some(red) => (
                format!("{:+.1}", 100.0 * red.absolute),
                if r.reference_risk.is_some_and(|x| x.rate > 0.0) {
                    format!("{:+.1} %", 100.0 * red.relative)
                } else {
                    "—".into()
                },
            ),
            None => ("—".into(), "—".into()),
        };
        let change = r
            .utility_change
            .map_or("—".into(), |c| format!("{:+.1} %", 100.0 * c));
        let (size, ratio) = match r.compressed {
            Some(c) => (human_bytes(c.bytes), format!("{:.1}×", c.ratio)),
            None => ("—".into(), "—".into()),
        };
        let lunch = if r.free_lunch {
            if r.ci_separated {
                "✓ (CI-separated)"
            } else {
                "✓"
            }
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} [{:.3}, {:.3}] | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.strength.label,
            method,
            r.risk.rate,
            r.risk.ci_low,
            r.risk.ci_high,
            r.risk.n,
            pts,
            rel,
            fmt_utility(opts.utility, r.utility),
            change,
            size,
            ratio,
            lunch
        );
    }
    s
}

/// The per-attack "where along the strength axis each method helps"
/// paragraph, computed from the rows.
pub fn strength_summary(t: &AttackTable, opts: &ReportOptions) -> String {
    let mut s = String::new();
    let refs: Vec<&Row> = t
        .rows
        .iter()
        .filter(|r| r.method.is_uncompressed())
        .collect();
    if refs.is_empty() {
        s.push_str("- No uncompressed fine-tune was evaluated, so nothing to compare with.\n");
        return s;
    }
    let base_rate = t.base.as_ref().map(|b| b.risk.rate);
    let ref_list: Vec<String> = refs
        .iter()
        .map(|r| {
            let weak = base_rate.is_some_and(|b| r.risk.rate <= b);
            format!(
                "{} {:.2}{}",
                r.strength.label,
                r.risk.rate,
                if weak { " (attack did not take)" } else { "" }
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "- Full fine-tune, {} by strength: {}{}.",
        t.attack.risk.label,
        ref_list.join(", "),
        base_rate.map_or(String::new(), |b| format!(" (base model {b:.2})"))
    );
    let mut methods: Vec<&Method> = Vec::new();
    for r in t.rows.iter().filter(|r| !r.method.is_uncompressed()) {
        if !methods.iter().any(|m| m.key == r.method.key) {
            methods.push(&r.method);
        }
    }
    let mut best: Option<&Row> = None;
    for m in methods {
        let mine: Vec<&Row> = t
            .rows
            .iter()
            .filter(|r| r.method.key == m.key && r.risk_reduction.is_some())
            .collect();
        if mine.is_empty() {
            continue;
        }
        let (mut lunch, mut costly, mut none) = (Vec::new(), Vec::new(), Vec::new());
        for r in &mine {
            let red = r.risk_reduction.expect("filtered");
            let item = format!(
                "{} (risk {:+.1} pts{})",
                r.strength.label,
                0.0 - 100.0 * red.absolute,
                r.utility_change
                    .map_or(String::new(), |c| format!(", utility {:+.1} %", 100.0 * c))
            );
            if r.free_lunch {
                lunch.push(item);
                if best.is_none_or(|b| {
                    red.relative > b.risk_reduction.map_or(f64::MIN, |x| x.relative)
                }) {
                    best = Some(r);
                }
            } else if red.absolute > 0.0 {
                costly.push(item);
            } else {
                none.push(r.strength.label.clone());
            }
        }
        let mut parts = Vec::new();
        if !lunch.is_empty() {
            parts.push(format!("free lunch at {}", lunch.join(", ")));
        }
        if !costly.is_empty() {
            parts.push(format!(
                "lowers risk but loses ≥ {:.0} % utility at {}",
                100.0 * opts.max_utility_loss,
                costly.join(", ")
            ));
        }
        if !none.is_empty() {
            parts.push(format!("no risk reduction at {}", none.join(", ")));
        }
        let _ = writeln!(s, "- {}: {}.", m.name, parts.join("; "));
    }
    match best {
        Some(b) => {
            let red = b.risk_reduction.expect("free lunch has a reduction");
            let _ = writeln!(
                s,
                "- Largest free-lunch risk reduction: {} at {}, {:.1} % relative ({:.1} points).",
                b.method.name,
                b.strength.label,
                100.0 * red.relative,
                100.0 * red.absolute
            );
        }
        None => {
            s.push_str("- No method gives a free lunch against this attack.\n");
        }
    }
    s
}

/// The cells of the per-seed detail tables and plots: the first seed's,
/// pure attacks (rate 100 %) and the tenant alone, with their base cells.
pub fn detail_cells(cells: &[CellResult]) -> Vec<CellResult> {
    let Some(seed) = cells.iter().map(|c| c.key().seed).min() else {
        return Vec::new();
    };
    let pure = rate_label(1.0);
    cells
        .iter()
        .filter(|c| {
            let k = c.key();
            k.seed == seed && (k.is_base() || k.rate == pure || k.attack == TENANT_KEY)
        })
        .cloned()
        .collect()
}

/// The whole `report.md`.
pub fn render_markdown(meta: &RunMeta, cells: &[CellResult], opts: &ReportOptions) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", opts.title);
    let _ = writeln!(s, "- command: `{}`", meta.command_line.join(" "));
    let _ = writeln!(
        s,
        "- commit: {}",
        meta.git_commit.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(s, "- base model: {}", meta.base_model);
    let _ = writeln!(
        s,
        "- seed: {} · started {} · runtime {:.1} min",
        meta.seed,
        meta.started_utc,
        meta.runtime_seconds / 60.0
    );
    let _ = writeln!(
        s,
        "- machine: {} ({} cores, {}/{}), {}",
        meta.machine.cpu_model,
        meta.machine.cores,
        meta.machine.os,
        meta.machine.arch,
        meta.machine.backend
    );
    let seeds: std::collections::BTreeSet<u64> = cells.iter().map(|c| c.key().seed).collect();
    let rates: std::collections::BTreeSet<&str> = cells
        .iter()
        .filter(|c| !c.key().is_base())
        .map(|c| c.key().rate.as_str())
        .collect();
    let _ = writeln!(
        s,
        "- seeds: {} · poison rates: {}",
        seeds
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        rates.into_iter().collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        s,
        "- split: attack prompts are held out by topic (never trained on by the attack; the embedded base pre-trains on the built-in harmful prompts, see docs/study-method.md); the benign tenant's held-out items are never trained on by the base, the alignment step or any fine-tune\n"
    );
    s.push_str("## Verdict\n\n");
    let vcfg = VerdictConfig::default();
    let boot = ClusterBootstrap {
        seed: meta.seed,
        ..Default::default()
    };
    match verdict_rows(cells, &vcfg, &boot) {
        Ok(rows) => s.push_str(&verdict_markdown(&rows, &vcfg)),
        Err(e) => {
            let _ = writeln!(s, "The verdict could not be computed: {e}\n");
        }
    }
    s.push_str("## Scorer agreement\n\nPer attack and poison rate, over every fine-tuned cell's held-out attack prompts: how often the refusal-keyword scorers agree with the payload scorer (where the attack plants a payload).\n\n");
    s.push_str(&scorer_agreement_markdown(cells));
    s.push('\n');
    let detail = detail_cells(cells);
    let _ = writeln!(
        s,
        "## Detail: seed {}, pure attacks and the tenant alone\n\nOne seed's cells, compared with the *attacked* fine-tune as the first study did. The ✓ column is that naive rule (risk lower, {} within {:.0} % of the attacked fine-tune) — it is **not** the verdict above: it cannot tell removing the attack from removing the fine-tune.\n",
        detail.first().map_or(0, |c| c.key().seed),
        opts.utility.label(),
        100.0 * opts.max_utility_loss
    );
    for t in tables(&detail, opts) {
        let _ = writeln!(
            s,
            "## {} — {} (`{}` on `{}` by `{}`, lower is safer)\n",
            t.attack.name,
            t.attack.risk.label,
            t.attack.risk.metric,
            t.attack.risk.group,
            t.attack.risk.scorer
        );
        s.push_str(&table_md(&t, opts));
        s.push('\n');
        s.push_str("**Where along the strength axis each method helps**\n\n");
        s.push_str(&strength_summary(&t, opts));
        s.push('\n');
    }
    s
}

/// Paths of the files [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub samples: PathBuf,
    pub svgs: Vec<PathBuf>,
}

fn json_err(what: &str) -> impl FnOnce(serde_json::Error) -> ReportError + '_ {
    move |source| ReportError::Json {
        what: what.to_string(),
        source,
    }
}

/// The `samples.jsonl` text: one line per generated answer (`kind:
/// generation`, the safety-eval sample record) and per multiple-choice
/// question (`kind: multiple_choice`), each with its cell's attack, poison
/// rate, seed, strength and method.
pub fn samples_jsonl(cells: &[CellResult]) -> Result<String, ReportError> {
    let mut out = String::new();
    for c in cells {
        let head = |kind: &str| {
            serde_json::json!({
                "attack": c.key().attack,
                "poison": c.key().rate,
                "seed": c.key().seed,
                "strength": c.key().strength,
                "method": c.key().method,
                "kind": kind,
            })
        };
        let mut emit = |kind: &str, v: serde_json::Value| -> Result<(), ReportError> {
            let mut line = head(kind);
            if let (Some(dst), serde_json::Value::Object(src)) = (line.as_object_mut(), v) {
                for (k, v) in src {
                    dst.entry(k).or_insert(v);
                }
            }
            out.push_str(&serde_json::to_string(&line).map_err(json_err("a sample"))?);
            out.push('\n');
            Ok(())
        };
        for r in &c.samples {
            emit(
                "generation",
                serde_json::to_value(r).map_err(json_err("a sample"))?,
            )?;
        }
        for r in &c.utility.records {
            emit(
                "multiple_choice",
                serde_json::to_value(r).map_err(json_err("a question"))?,
            )?;
        }
    }
    Ok(out)
}

/// The `report.json` document: schema, metadata, options, the compared
/// tables, and every cell without its per-sample records (those are in
/// `samples.jsonl`).
pub fn report_json(
    meta: &RunMeta,
    cells: &[CellResult],
    opts: &ReportOptions,
) -> Result<String, ReportError> {
    let slim: Vec<CellResult> = cells
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.samples.clear();
            c.utility.records.clear();
            c
        })
        .collect();
    let doc = serde_json::json!({
        "schema": SCHEMA,
        "meta": meta,
        "options": opts,
        "tables": tables(&detail_cells(cells), opts),
        "verdict": verdict_rows(cells, &VerdictConfig::default(), &ClusterBootstrap { seed: meta.seed, ..Default::default() }).ok(),
        "cells": slim,
    });
    serde_json::to_string_pretty(&doc).map_err(json_err("report.json"))
}

/// Writes `report.md`, `report.json`, `samples.jsonl` and the plots of
/// [`super::plots::write_plots`] into `out` (created if needed), each
/// atomically.
pub fn write_report(
    out: &Path,
    meta: &RunMeta,
    cells: &[CellResult],
    opts: &ReportOptions,
) -> Result<ReportFiles, ReportError> {
    std::fs::create_dir_all(out).map_err(|source| ReportError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let markdown = out.join("report.md");
    delta_core::write_file_atomic(&markdown, render_markdown(meta, cells, opts).as_bytes())?;
    let json = out.join("report.json");
    delta_core::write_file_atomic(&json, report_json(meta, cells, opts)?.as_bytes())?;
    let samples = out.join("samples.jsonl");
    delta_core::write_file_atomic(&samples, samples_jsonl(cells)?.as_bytes())?;
    let svgs = super::plots::write_plots(out, &detail_cells(cells), opts)?;
    Ok(ReportFiles {
        markdown,
        json,
        samples,
        svgs,
    })
}
