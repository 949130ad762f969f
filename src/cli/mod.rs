//! Subcommands of the `deltaguard` binary.

pub mod apply;
pub mod attack;
pub mod compress;
pub mod convert;
pub mod eval;
pub mod finetune;
pub mod generate;
pub mod heal;
pub mod input;
pub mod inspect;
pub mod lens;
pub mod logits;
pub mod score;
pub mod serve;
pub mod study;

use std::path::Path;

/// What every subcommand returns.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

/// The output rule of every command that writes one file or model
/// directory (`compress`, `apply`, `convert`, `attack`, `finetune`, `heal`):
/// an existing `--out` is refused unless `--overwrite` was given, and a
/// missing parent directory is refused rather than created.
pub fn refuse_existing(out: &Path, overwrite: bool) -> CliResult {
    if out.exists() && !overwrite {
        return Err(format!(
            "{} already exists (pass --overwrite to replace it)",
            out.display()
        )
        .into());
    }
    require_parent(out)
}

/// Refuses an output whose parent directory does not exist (a typo in
/// `--out` should not silently create a directory tree).
pub fn require_parent(out: &Path) -> CliResult {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "{}: the parent directory {} does not exist (create it first)",
            out.display(),
            parent.display()
        )
        .into());
    }
    Ok(())
}

/// The results directory of `eval` and `lens`: may exist already (files in
/// it are replaced, each atomically); its parent must exist. Errors name the
/// path and what was being done.
pub fn create_out_dir(out: &Path) -> CliResult {
    require_parent(out)?;
    if out.exists() && !out.is_dir() {
        return Err(format!("{}: --out exists and is not a directory", out.display()).into());
    }
    if !out.exists() {
        std::fs::create_dir(out)
            .map_err(|e| format!("{}: cannot create the output directory: {e}", out.display()))?;
    }
    Ok(())
}

/// Checks a `--trigger` flag: only for the backdoor (`is_backdoor`), and not
/// blank; `flag` names the option that chose it (`--suite backdoor`).
pub fn check_trigger(trigger: Option<&str>, is_backdoor: bool, flag: &str) -> CliResult {
    match trigger {
        Some(_) if !is_backdoor => Err(format!("--trigger applies to {flag} only").into()),
        Some(t) if t.trim().is_empty() => Err("--trigger: give a non-empty trigger".into()),
        _ => Ok(()),
    }
}

/// `1234567` → `"1.23 MB"` (decimal units, like `ls -h --si`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// Parse `5GB`, `500MB`, `2GiB`, `1000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as 5GB or 500MB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (use B, kB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    Ok((num * mult) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("2MiB").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("5XB").is_err());
        assert_eq!(human_bytes(1_234_567), "1.23 MB");
        assert_eq!(human_bytes(999), "999 B");
    }
}
