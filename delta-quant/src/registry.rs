//! The method registry: every compression method and stored encoding this
//! process knows, built-in or registered by a downstream crate.
//!
//! * A **method** ([`MethodInfo`]) is what a method string names: its
//!   parameters (with defaults) and a constructor from parsed parameters.
//!   [`crate::parse_method`] — and through it `DeltaFile::open`, `apply`,
//!   `heal`, the study grid and the CLI — looks names up here.
//! * An **encoding** ([`EncodingInfo`]) is what a compressed tensor is
//!   stored as (the `kind` of its encoding record) and how to decode it from
//!   its parts. Several methods may share one (DARE and magnitude pruning
//!   both store `sparse`).
//!
//! The eight built-in methods and their encodings are always present and
//! cannot be replaced. A downstream crate registers its own once per
//! process, before it parses method strings or opens files that use them:
//!
//! ```
//! use delta_quant::registry::{register_method, MethodInfo};
//! use delta_quant::{BitDelta, Compressor, ParamList, QuantError};
//!
//! // A "method" that is BitDelta with per-row scales under its own name.
//! fn build(_: &ParamList) -> Result<Box<dyn Compressor>, QuantError> {
//!     Ok(Box::new(BitDelta::new(true)))
//! }
//! register_method(MethodInfo {
//!     name: "rowbits",
//!     params: &[],
//!     summary: "BitDelta with one scale per row",
//!     build,
//! })
//! .unwrap();
//! assert!(delta_quant::parse_method("rowbits").is_ok());
//! // Registering the same definition again is a no-op; another one under
//! // the name is refused.
//! register_method(MethodInfo { name: "rowbits", params: &[], summary: "BitDelta with one scale per row", build }).unwrap();
//! assert!(register_method(MethodInfo { name: "bitdelta", params: &[], summary: "", build }).is_err());
//! ```
//!
//! A full downstream method (own payload type, encoding, file round trip)
//! is shown in the crate docs and in `examples/ternary-method`.

use std::sync::RwLock;

use crate::bitdelta::{BitDelta, MultiMask};
use crate::compressor::Compressor;
use crate::dare::Dare;
use crate::deltacome::DeltaCome;
use crate::lowrank::LowRank;
use crate::magnitude::Magnitude;
use crate::params::ParamList;
use crate::payload::DecodeFn;
use crate::rtn::Rtn;
use crate::ternary::Compeft;
use crate::QuantError;

/// Builds a compressor from its parsed, key-checked parameters.
pub type BuildFn = fn(&ParamList) -> Result<Box<dyn Compressor>, QuantError>;

/// A compression method as method strings name it.
#[derive(Debug, Clone, Copy)]
pub struct MethodInfo {
    /// Name in method strings: lower-case ASCII letters, digits, `_`, `-`.
    pub name: &'static str,
    /// Parameters as `key=default` (the key is what the parser accepts;
    /// the default is documentation, e.g. `seed=<context seed>`).
    pub params: &'static [&'static str],
    /// One line for help texts.
    pub summary: &'static str,
    /// Constructor; the parameters it gets hold only keys from `params`.
    pub build: BuildFn,
}

impl MethodInfo {
    /// The parameter keys (`params` without defaults).
    pub fn keys(&self) -> Vec<&'static str> {
        self.params
            .iter()
            .map(|k| k.split('=').next().unwrap_or(k))
            .collect()
    }
    fn same_as(&self, other: &MethodInfo) -> bool {
        self.name == other.name
            && self.params == other.params
            && self.summary == other.summary
            && std::ptr::fn_addr_eq(self.build, other.build)
    }
}

/// A stored encoding and its decoder.
#[derive(Debug, Clone, Copy)]
pub struct EncodingInfo {
    /// The `kind` of the encoding record ([`crate::CompressedTensor::kind`]).
    pub kind: &'static str,
    /// Decodes a stored tensor of this kind.
    pub decode: DecodeFn,
}

macro_rules! builder {
    ($fn:ident, $ty:ty) => {
        fn $fn(p: &ParamList) -> Result<Box<dyn Compressor>, QuantError> {
            Ok(Box::new(<$ty>::from_params(p)?))
        }
    };
}
builder!(build_bitdelta, BitDelta);
builder!(build_multimask, MultiMask);
builder!(build_rtn, Rtn);
builder!(build_dare, Dare);
builder!(build_magnitude, Magnitude);
builder!(build_svd, LowRank);
builder!(build_deltacome, DeltaCome);
builder!(build_compeft, Compeft);

/// The built-in methods, in the order help texts list them.
pub const BUILTIN_METHODS: [MethodInfo; 8] = [
    MethodInfo {
        name: "bitdelta",
        params: &["per_row=false"],
        summary: "BitDelta: α·sign(Δ), α = mean|Δ| (1 bit/entry)",
        build: build_bitdelta,
    },
    MethodInfo {
        name: "multimask",
        params: &["k=2", "per_row=false"],
        summary: "k residual BitDelta sign masks (k bits/entry)",
        build: build_multimask,
    },
    MethodInfo {
        name: "rtn",
        params: &["bits=4", "group=128"],
        summary: "group-wise asymmetric round-to-nearest",
        build: build_rtn,
    },
    MethodInfo {
        name: "dare",
        params: &["p=0.9", "seed=<context seed>"],
        summary: "DARE: drop with probability p, rescale 1/(1-p)",
        build: build_dare,
    },
    MethodInfo {
        name: "magnitude",
        params: &["density=0.1"],
        summary: "keep the largest |Δ|",
        build: build_magnitude,
    },
    MethodInfo {
        name: "svd",
        params: &["rank=16", "solver=auto"],
        summary: "truncated SVD (solver auto|exact|randomized)",
        build: build_svd,
    },
    MethodInfo {
        name: "deltacome",
        params: &["rank=128", "schedule=8x2/3x32/2x*", "solver=auto"],
        summary: "Delta-CoMe-style SVD with mixed-precision singular vectors",
        build: build_deltacome,
    },
    MethodInfo {
        name: "compeft",
        params: &["density=0.1", "alpha=1"],
        summary: "ComPEFT: top-k then sign·α·std(Δ)",
        build: build_compeft,
    },
];

/// Encoding kinds the crate decodes itself (in `Compressed::decode`); a
/// downstream encoding may not take one of these names.
pub const BUILTIN_ENCODINGS: [&str; 8] = [
    "bitdelta",
    "multimask",
    "rtn",
    "sparse",
    "lowrank",
    "deltacome",
    "ternary",
    "masked",
];

/// Registered downstream methods and encodings, in registration order.
static METHODS: RwLock<Vec<MethodInfo>> = RwLock::new(Vec::new());
static ENCODINGS: RwLock<Vec<EncodingInfo>> = RwLock::new(Vec::new());

fn registry_err(name: &str, reason: impl Into<String>) -> QuantError {
    QuantError::Registry {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Names are what method strings and encoding records can carry unquoted.
fn check_name(name: &str) -> Result<(), QuantError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err(registry_err(
            name,
            "a name is 1-64 characters of a-z, 0-9, `_`, `-`",
        ));
    }
    if name == "pipeline" {
        return Err(registry_err(name, "`pipeline` is reserved"));
    }
    Ok(())
}

/// Registers a downstream method. Registering an identical definition
/// again is a no-op (so every test or entry point may call it); a
/// different definition under a known name — built-in or registered — is
/// a [`QuantError::Registry`] error, as is an invalid name or parameter key.
pub fn register_method(m: MethodInfo) -> Result<(), QuantError> {
    check_name(m.name)?;
    if BUILTIN_METHODS.iter().any(|b| b.name == m.name) {
        return Err(registry_err(m.name, "a built-in method has this name"));
    }
    for k in m.keys() {
        if k.is_empty() || k.contains([',', ':', '+', '=']) || k.trim() != k {
            return Err(registry_err(m.name, format!("invalid parameter key `{k}`")));
        }
    }
    let mut all = METHODS.write().unwrap_or_else(|e| e.into_inner());
    match all.iter().find(|x| x.name == m.name) {
        Some(old) if old.same_as(&m) => Ok(()),
        Some(_) => Err(registry_err(
            m.name,
            "another method is already registered under this name",
        )),
        None => {
            all.push(m);
            Ok(())
        }
    }
}

/// Registers a downstream encoding (same rules as [`register_method`]).
pub fn register_encoding(e: EncodingInfo) -> Result<(), QuantError> {
    check_name(e.kind)?;
    if BUILTIN_ENCODINGS.contains(&e.kind) {
        return Err(registry_err(e.kind, "a built-in encoding has this kind"));
    }
    let mut all = ENCODINGS.write().unwrap_or_else(|e| e.into_inner());
    match all.iter().find(|x| x.kind == e.kind) {
        Some(old) if std::ptr::fn_addr_eq(old.decode, e.decode) => Ok(()),
        Some(_) => Err(registry_err(
            e.kind,
            "another decoder is already registered for this kind",
        )),
        None => {
            all.push(e);
            Ok(())
        }
    }
}

/// Every method: the built-ins, then the registered ones in order.
pub fn methods() -> Vec<MethodInfo> {
    let user = METHODS.read().unwrap_or_else(|e| e.into_inner());
    BUILTIN_METHODS.iter().chain(user.iter()).copied().collect()
}

/// The method called `name`, if known.
pub fn method(name: &str) -> Option<MethodInfo> {
    if let Some(b) = BUILTIN_METHODS.iter().find(|m| m.name == name) {
        return Some(*b);
    }
    let user = METHODS.read().unwrap_or_else(|e| e.into_inner());
    user.iter().find(|m| m.name == name).copied()
}

/// The method names, built-ins first, for error messages and help.
pub fn method_names() -> Vec<&'static str> {
    methods().iter().map(|m| m.name).collect()
}

/// The decoder of a registered downstream encoding `kind` (built-in kinds
/// are decoded by the crate and are not listed here).
pub fn encoding(kind: &str) -> Option<DecodeFn> {
    let all = ENCODINGS.read().unwrap_or_else(|e| e.into_inner());
    all.iter().find(|e| e.kind == kind).map(|e| e.decode)
}

/// Every encoding kind this process can read, built-ins first.
pub fn encoding_kinds() -> Vec<&'static str> {
    let all = ENCODINGS.read().unwrap_or_else(|e| e.into_inner());
    BUILTIN_ENCODINGS
        .iter()
        .copied()
        .chain(all.iter().map(|e| e.kind))
        .collect()
}

/// Help text listing every method with its parameters, one per line
/// (`  name:key=default,...  summary`), for CLIs.
pub fn methods_help() -> String {
    methods()
        .iter()
        .map(|m| {
            let spec = if m.params.is_empty() {
                m.name.to_string()
            } else {
                format!("{}:{}", m.name, m.params.join(","))
            };
            format!("  {spec:<44} {}", m.summary)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
