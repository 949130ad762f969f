//! Fault tests (issue 14): `kill -9` of `compress`, `apply`, `convert`,
//! `finetune` and `study` at seeded points, and Ctrl-C (SIGINT) of `study`.
//!
//! For each command one uninterrupted run is timed first; the kill points
//! are seeded fractions of that time, so the test means the same on a slow
//! and a fast machine (no timing is asserted). After each kill the output is
//! absent or complete and valid (loaded back), a previous output replaced
//! with `--overwrite` is intact, and the next run of the same command
//! succeeds. Every child is bounded by a timeout and killed if the test
//! fails (no orphans).
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("testdata/hf-reference").join(name)
}

/// Longest any one child may run.
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

/// A running `deltaguard`, killed (and reaped) when dropped unfinished.
struct Running {
    child: Option<Child>,
    what: String,
}

impl Running {
    fn spawn(args: &[String]) -> Running {
        let child = Command::new(env!("CARGO_BIN_EXE_deltaguard"))
            .args(args)
            // The study's thread count is part of what it computes with:
            // fixed, so runs on any machine compare.
            .env("RAYON_NUM_THREADS", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start deltaguard");
        Running {
            child: Some(child),
            what: args.join(" "),
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid, which it still is: the
        // child is reaped only in `wait`.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits (up to [`CHILD_TIMEOUT`]) and returns the status and stderr.
    fn wait(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > CHILD_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("timed out: deltaguard {}", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        use std::io::Read;
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        (status, err)
    }

    /// Sleeps `delay` (returning early if the child exits), then SIGKILLs it
    /// if it still runs. Returns whether it was killed.
    fn kill_after(mut self, delay: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < delay {
            let child = self.child.as_mut().unwrap();
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.signal(libc::SIGKILL);
        let (status, _) = self.wait();
        use std::os::unix::process::ExitStatusExt;
        status.signal() == Some(libc::SIGKILL)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs to completion; panics with stderr on failure. Returns the run time.
fn run_ok(args: &[String]) -> Duration {
    let t0 = Instant::now();
    let (status, err) = Running::spawn(args).wait();
    assert!(status.success(), "deltaguard {}: {err}", args.join(" "));
    t0.elapsed()
}

/// `n` kill points in (5 %, 95 %) of `clean`, from a fixed seed.
fn kill_points(seed: u64, n: usize, clean: Duration) -> Vec<Duration> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            clean.mul_f64(0.05 + 0.9 * u)
        })
        .collect()
}

/// Every file under `path` (or the file itself) with its bytes, by relative path.
fn snapshot(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    if path.is_file() {
        return vec![(PathBuf::new(), std::fs::read(path).unwrap())];
    }
    let mut out = Vec::new();
    let mut todo = vec![path.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((
                    p.strip_prefix(path).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A command line for an output path, with or without `--overwrite`.
type ArgsFor = Box<dyn Fn(&Path, bool) -> Vec<String>>;

/// One command under test: its arguments for an output path, and how to
/// check that an output is complete and valid.
struct Case {
    name: &'static str,
    args: ArgsFor,
    valid: fn(&Path),
}

/// A model directory loads and computes logits.
fn valid_model(dir: &Path) {
    run_ok(&[
        "logits".into(),
        "--model".into(),
        s(dir),
        "--tokens".into(),
        "1,2,3".into(),
        "--json".into(),
    ]);
}

/// A delta file passes `inspect` (which verifies its checksums).
fn valid_delta(file: &Path) {
    run_ok(&["inspect".into(), s(file), "--json".into()]);
}

/// Clean run, then kill -9 at seeded points: even points on a fresh
/// target, odd ones while `--overwrite` replaces the clean run's output.
fn exercise(case: &Case, dir: &Path, seed: u64, points: usize) {
    let previous = dir.join(format!("{}-previous", case.name));
    let clean = run_ok(&(case.args)(&previous, false));
    (case.valid)(&previous);
    let before = snapshot(&previous);
    for (i, delay) in kill_points(seed, points, clean).into_iter().enumerate() {
        let overwrite = i % 2 == 1;
        let out = if overwrite {
            previous.clone()
        } else {
            dir.join(format!("{}-{i}", case.name))
        };
        let killed = Running::spawn(&(case.args)(&out, overwrite)).kill_after(delay);
        let what = format!("{} killed={killed} at {delay:?} (point {i})", case.name);
        if overwrite {
            // Old or new, it is whole: the same inputs give the same bytes.
            assert!(out.exists(), "{what}: the previous output vanished");
            assert!(snapshot(&out) == before, "{what}: previous output changed");
        } else if out.exists() {
            (case.valid)(&out);
        }
        // The next run of the same command succeeds, stale temporaries and
        // lock files notwithstanding.
        run_ok(&(case.args)(&out, true));
        (case.valid)(&out);
        // ... and has cleaned up what the killed one left beside the output.
        let name = out.file_name().unwrap().to_string_lossy().to_string();
        let stray: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(&format!(".{name}.")))
            .collect();
        assert!(
            stray.is_empty(),
            "{what}: left beside the output: {stray:?}"
        );
        assert!(snapshot(&out) == before, "{what}: rerun differs");
    }
}

#[test]
fn kill_9_leaves_no_partial_output_and_the_next_run_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (base, ft) = (fixture("pair/base"), fixture("pair/finetuned"));
    // A small chat file for finetune.
    let chats = dir.join("chats.jsonl");
    run_ok(&[
        "attack".into(),
        "--kind".into(),
        "alignment_breaking".into(),
        "--n".into(),
        "16".into(),
        "--out".into(),
        s(&chats),
    ]);
    let delta = dir.join("bitdelta.safetensors");
    run_ok(&[
        "compress".into(),
        "--base".into(),
        s(&base),
        "--finetuned".into(),
        s(&ft),
        "--method".into(),
        "bitdelta".into(),
        "--out".into(),
        s(&delta),
        "-q".into(),
    ]);
    let gguf = root().join("llama-model/tests/data/gguf/tiny_llama.gguf");
    let with_overwrite = |mut v: Vec<String>, overwrite: bool| {
        if overwrite {
            v.push("--overwrite".into());
        }
        v.push("-q".into());
        v
    };
    let (b1, f1, b2, d2, b3) = (s(&base), s(&ft), s(&base), s(&delta), s(&base));
    let (g, c) = (s(&gguf), s(&chats));
    let cases = [
        Case {
            name: "compress",
            args: Box::new(move |out, o| {
                with_overwrite(
                    [
                        "compress",
                        "--base",
                        &b1,
                        "--finetuned",
                        &f1,
                        "--method",
                        "rtn:bits=4",
                        "--out",
                        &s(out),
                    ]
                    .map(String::from)
                    .to_vec(),
                    o,
                )
            }),
            valid: valid_delta,
        },
        Case {
            name: "apply",
            args: Box::new(move |out, o| {
                with_overwrite(
                    ["apply", "--base", &b2, "--delta", &d2, "--out", &s(out)]
                        .map(String::from)
                        .to_vec(),
                    o,
                )
            }),
            valid: valid_model,
        },
        Case {
            name: "convert",
            args: Box::new(move |out, o| {
                with_overwrite(
                    ["convert", "--gguf", &g, "--out", &s(out)]
                        .map(String::from)
                        .to_vec(),
                    o,
                )
            }),
            valid: valid_model,
        },
        Case {
            name: "finetune",
            args: Box::new(move |out, o| {
                with_overwrite(
                    [
                        "finetune",
                        "--model",
                        &b3,
                        "--data",
                        &c,
                        "--epochs",
                        "1",
                        "--batch-size",
                        "4",
                        "--max-len",
                        "96",
                        "--out",
                        &s(out),
                    ]
                    .map(String::from)
                    .to_vec(),
                    o,
                )
            }),
            valid: valid_model,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        exercise(case, dir, 14 + i as u64, 4);
    }
}

/// `deltaguard study` on the tiny pair base: one attack, one seed, one
/// poison rate, the quick preset (2 runs × 4 methods + 2 base cells).
fn study_args(out: &Path) -> Vec<String> {
    [
        "study",
        "--model",
        &s(&fixture("pair/base")),
        "--quick",
        "--attack",
        "alignment_breaking",
        "--seeds",
        "1",
        "--poison-rates",
        "1",
        "--out",
        &s(out),
        "-q",
    ]
    .map(String::from)
    .to_vec()
}

/// `report.json` without what differs between two correct runs: wall-clock
/// fields (`seconds`, `started_utc`, `runtime_seconds`), the command line
/// (another `--out`) and the `--out` prefix of model paths.
fn comparable_report(out: &Path) -> String {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for k in ["seconds", "started_utc", "runtime_seconds", "command_line"] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(out.join("report.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    strip(&mut v);
    serde_json::to_string_pretty(&v)
        .unwrap()
        .replace(&s(out), "<out>")
}

fn cell_files(out: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let Ok(rd) = std::fs::read_dir(out.join("cells")) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let t = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p, t)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn study_survives_kill_9_and_resumes_after_ctrl_c_to_the_same_report() {
    let tmp = tempfile::tempdir().unwrap();
    let clean_out = tmp.path().join("clean");
    let clean = run_ok(&study_args(&clean_out));
    let reference = comparable_report(&clean_out);

    // kill -9 at seeded points of one run directory; each rerun resumes.
    let killed_out = tmp.path().join("killed");
    for delay in kill_points(41, 3, clean) {
        Running::spawn(&study_args(&killed_out)).kill_after(delay);
        if killed_out.join("report.json").exists() {
            comparable_report(&killed_out);
        }
        for (cell, _) in cell_files(&killed_out) {
            let text = std::fs::read_to_string(&cell).unwrap();
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{}: partial cell: {e}", cell.display()));
        }
    }
    run_ok(&study_args(&killed_out));
    assert_eq!(comparable_report(&killed_out), reference, "after kill -9");

    // Ctrl-C once some cells are done: a clean stop, then a resume.
    let out = tmp.path().join("interrupted");
    let running = Running::spawn(&study_args(&out));
    let started = Instant::now();
    while cell_files(&out).len() < 3 {
        assert!(started.elapsed() < CHILD_TIMEOUT, "no cells appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    running.signal(libc::SIGINT);
    let (status, err) = running.wait();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), None, "died of a signal: {err}");
    let done_before = cell_files(&out);
    if !status.success() {
        assert!(err.contains("interrupted"), "{status}: {err}");
        assert!(err.contains("rerun the same command"), "{err}");
        assert!(!out.join("report.json").exists(), "report of a partial run");
    }
    run_ok(&study_args(&out));
    // Finished cells were reused, not recomputed.
    let after = cell_files(&out);
    for (cell, mtime) in &done_before {
        let now = after.iter().find(|(c, _)| c == cell).map(|(_, t)| *t);
        assert_eq!(now, Some(*mtime), "{} was recomputed", cell.display());
    }
    assert_eq!(comparable_report(&out), reference, "after Ctrl-C");
}
