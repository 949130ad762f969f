//! Pipelines (`dare:p=0.5+bitdelta`) and the method-string parser.
//!
//! # Pipeline semantics
//!
//! Stages run left to right. Stage i compresses the *reconstruction* of
//! stage i − 1 (stage 0 gets Δ), so every stage sees a plain dense delta and
//! any method can follow any other. Only the **last stage's payload is
//! stored** — earlier stages are transforms, and their payloads would be
//! redundant.
//!
//! One exception keeps pipelines meaningful: if the input of the last stage
//! has exact zeros (a sparsifying stage such as DARE, magnitude or ComPEFT
//! ran before) and the last stage's reconstruction is *not* zero on all of
//! them, the support is kept as a 1-bit mask and the result is
//! [`Compressed::Masked`]: Δ̂ = mask ⊙ last.reconstruct(). Without it,
//! `dare+bitdelta` would turn every dropped entry into +α (sign(0) = +1)
//! and undo the sparsification. The mask costs 1 bit per entry and is
//! counted in [`Compressed::storage_bytes`]. When the last stage already
//! reproduces the zeros (e.g. `dare+magnitude`), no mask is stored.
//!
//! All stages get the same [`CompressContext`] (tensor name and seed).

use serde_json::{json, Value};

use crate::compressed::MaskedPayload;
use crate::compressor::{CompressContext, Compressor, Params};
use crate::pack::BitMatrix;
use crate::params::ParamList;
use crate::{Compressed, DeltaMatrix, QuantError};

/// The built-in methods with their parameters (`name=default`); the
/// [registry](crate::registry) holds these and any a downstream crate
/// registered ([`crate::registry::methods`]).
pub const METHODS: &[(&str, &[&str])] = &{
    let b = &crate::registry::BUILTIN_METHODS;
    let mut out: [(&str, &[&str]); 8] = [("", &[]); 8];
    let mut i = 0;
    while i < b.len() {
        out[i] = (b[i].name, b[i].params);
        i += 1;
    }
    out
};

/// A chain of compressors (see the [module docs](self)).
#[derive(Debug)]
pub struct Pipeline {
    stages: Vec<Box<dyn Compressor>>,
}

impl Pipeline {
    /// At least two stages make a pipeline; one is just that compressor.
    pub fn new(stages: Vec<Box<dyn Compressor>>) -> Result<Self, QuantError> {
        if stages.is_empty() {
            return Err(QuantError::Syntax {
                spec: String::new(),
                reason: "a pipeline needs at least one stage".into(),
            });
        }
        Ok(Self { stages })
    }
    pub fn stages(&self) -> &[Box<dyn Compressor>] {
        &self.stages
    }
}

impl Compressor for Pipeline {
    fn method(&self) -> &'static str {
        "pipeline"
    }
    fn params(&self) -> Params {
        let stages: Vec<Value> = self
            .stages
            .iter()
            .map(|s| json!({ "method": s.method(), "params": s.params() }))
            .collect();
        Params::from([("stages".to_string(), Value::Array(stages))])
    }
    fn spec(&self) -> String {
        self.stages
            .iter()
            .map(|s| s.spec())
            .collect::<Vec<_>>()
            .join("+")
    }
    fn compress_matrix(
        &self,
        delta: &DeltaMatrix,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError> {
        let (last, earlier) = self.stages.split_last().expect("non-empty");
        let mut input = delta.clone();
        for stage in earlier {
            input = stage.compress_matrix(&input, ctx)?.reconstruct();
        }
        let out = last.compress_matrix(&input, ctx)?;
        if earlier.is_empty() || !input.data().contains(&0.0) {
            return Ok(out);
        }
        let rec = out.reconstruct();
        let leaks = input
            .data()
            .iter()
            .zip(rec.data())
            .any(|(&x, &y)| x == 0.0 && y != 0.0);
        if !leaks {
            return Ok(out);
        }
        let codes: Vec<u8> = input.data().iter().map(|&x| (x != 0.0) as u8).collect();
        let mask = BitMatrix::pack(input.rows(), input.cols(), 1, &codes)?;
        Ok(Compressed::Masked(MaskedPayload {
            mask,
            inner: Box::new(out),
        }))
    }
}

/// Parses a method string into a compressor.
///
/// Syntax: `stage ("+" stage)*`, `stage = name [":" key "=" value ("," key "=" value)*]`.
/// Whitespace around tokens is ignored; omitted parameters take their
/// defaults (see [`crate::registry`]); unknown names or keys give
/// [`QuantError::UnknownMethod`] / [`QuantError::UnknownParam`] listing the
/// valid ones. One stage gives that compressor, several a [`Pipeline`].
///
/// ```
/// let c = delta_quant::parse_method("dare:p=0.5,seed=1+bitdelta").unwrap();
/// assert_eq!(c.spec(), "dare:p=0.5,seed=1+bitdelta:per_row=false");
/// assert!(delta_quant::parse_method("bitdelta:bits=2").is_err());
/// ```
pub fn parse_method(spec: &str) -> Result<Box<dyn Compressor>, QuantError> {
    let mut stages = Vec::new();
    for stage in spec.split('+') {
        stages.push(parse_stage(spec, stage.trim())?);
    }
    if stages.len() == 1 {
        Ok(stages.pop().expect("one stage"))
    } else {
        Ok(Box::new(Pipeline::new(stages)?))
    }
}

fn parse_stage(spec: &str, stage: &str) -> Result<Box<dyn Compressor>, QuantError> {
    let (name, params) = match stage.split_once(':') {
        Some((n, p)) => (n.trim(), Some(p)),
        None => (stage, None),
    };
    if name.is_empty() {
        return Err(QuantError::Syntax {
            spec: spec.to_string(),
            reason: "empty method name".into(),
        });
    }
    let Some(info) = crate::registry::method(name) else {
        return Err(QuantError::UnknownMethod {
            name: name.to_string(),
            valid: crate::registry::method_names().join(", "),
        });
    };
    let p = ParamList::parse(name, spec, params, &info.keys())?;
    (info.build)(&p)
}
