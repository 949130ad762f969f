//! `deltaguard study`: which delta compression keeps fine-tuning attacks
//! out, and at what utility cost — the paper's table, end to end.
//!
//! Building blocks: [`tokenizer`] (the embedded default's byte-level BPE),
//! [`grid`] (attacks × poison rates × seeds × strengths × methods and
//! controls, cell keys), [`cell`] (evaluating one model for one attack and
//! the benign tenant's task, and the resumable cell cache), [`verdict`] (the
//! statistical free-lunch verdict over the whole table), [`report`] and
//! [`plots`] (report.md, report.json, samples.jsonl, SVGs).

pub mod cell;
pub mod embedded;
pub mod grid;
pub mod plots;
pub mod report;
pub mod run;
pub mod tokenizer;
pub mod verdict;
