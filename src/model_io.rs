//! Load a model the way users name it on the command line: a Hugging Face
//! directory or a `.gguf` file, optionally with a deltaguard delta file applied
//! on top (W = W_base + Δ̂, carried tensors taken from the delta file).

use burn::tensor::backend::Backend;
use delta_core::Checkpoint;
use delta_quant::{DeltaFile, EntryKind};
use llama_model::gguf::{load_llama_gguf, GgufError};
use llama_model::load::{F32Tensor, NamedTensors, TensorSource};
use llama_model::tokenizer::SpecialTokens;
use llama_model::{ChatTemplate, Llama, LlamaConfig, LoadError, Tokenizer};
use std::path::{Path, PathBuf};

/// Errors of [`load_model`].
#[derive(Debug, thiserror::Error)]
pub enum ModelIoError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Checkpoint(#[from] delta_core::CheckpointError),
    #[error("{path}: {source}")]
    Delta {
        path: PathBuf,
        #[source]
        source: delta_quant::QuantError,
    },
    #[error("{0}")]
    Tokenizer(String),
    #[error(
        "{delta} was made against a different base (fingerprint {expected}); {model} has fingerprint {got}"
    )]
    WrongBase {
        delta: PathBuf,
        model: PathBuf,
        expected: String,
        got: String,
    },
    #[error("{delta}: a delta applies to a Hugging Face directory; convert {model} first with `deltaguard convert`")]
    DeltaOnGguf { delta: PathBuf, model: PathBuf },
    #[error("{path}: neither a Hugging Face model directory nor a .gguf file")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: cannot open the delta file: {reason}")]
    DeltaNotAFile { path: PathBuf, reason: &'static str },
}

/// Opens a delta file, saying plainly when the path is a directory or does
/// not exist (mapping a directory would report "No such device").
pub fn open_delta_file(path: &Path) -> Result<DeltaFile, ModelIoError> {
    let not_a_file = |reason| ModelIoError::DeltaNotAFile {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(not_a_file("it is a directory, not a file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_a_file("no such file"))
        }
        _ => {}
    }
    DeltaFile::open(path).map_err(|source| ModelIoError::Delta {
        path: path.to_path_buf(),
        source,
    })
}

/// A model ready to run, with what is needed to talk to it.
pub struct LoadedModel<B: Backend> {
    pub model: Llama<B>,
    pub tokenizer: Tokenizer,
    /// The checkpoint's chat template, or ChatML when it has none.
    pub chat_template: ChatTemplate,
    /// Where it came from (path, plus the delta file if any).
    pub description: String,
}

/// Reads tensors from a base source, replacing those that a delta file holds:
/// compressed entries become base + reconstruction, carried entries are the
/// fine-tune's stored tensor.
struct WithDeltaFile<'a, S: TensorSource + ?Sized> {
    base: &'a S,
    delta: &'a DeltaFile,
}

impl<S: TensorSource + ?Sized> TensorSource for WithDeltaFile<'_, S> {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.base.shape(name)
    }
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let entry = self.delta.entries().iter().find(|e| e.name == name);
        let delta_err = |e: delta_quant::QuantError| LoadError::Delta {
            name: name.to_string(),
            reason: e.to_string(),
        };
        match entry.map(|e| e.kind) {
            None => self.base.read_f32(name),
            Some(EntryKind::Carried) => {
                let t = self.delta.carried(name).map_err(delta_err)?;
                let dtype = delta_core::DType::from_safetensors(t.dtype).ok_or_else(|| {
                    LoadError::Delta {
                        name: name.to_string(),
                        reason: format!("unsupported carried dtype {:?}", t.dtype),
                    }
                })?;
                Ok(delta_core::dtype::decode(t.data, dtype))
            }
            Some(EntryKind::Compressed) => {
                let mut w = self.base.read_f32(name)?;
                let c = self.delta.compressed(name).map_err(delta_err)?;
                let [rows, cols] = c.shape();
                if rows.checked_mul(cols) != Some(w.len()) {
                    return Err(LoadError::Delta {
                        name: name.to_string(),
                        reason: format!(
                            "delta has {rows}x{cols} values, the base tensor {}",
                            w.len()
                        ),
                    });
                }
                // base += Δ̂ in one pass, without a Δ̂ temporary.
                c.add_into(&mut w).map_err(delta_err)?;
                Ok(w)
            }
        }
    }
}

/// Whether `path` names a GGUF file.
pub fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Load a HF directory or GGUF file, optionally with a delta file applied.
pub fn load_model<B: Backend>(
    path: &Path,
    delta: Option<&Path>,
    device: &B::Device,
) -> Result<LoadedModel<B>, ModelIoError> {
    if is_gguf(path) {
        if let Some(d) = delta {
            return Err(ModelIoError::DeltaOnGguf {
                delta: d.to_path_buf(),
                model: path.to_path_buf(),
            });
        }
        return load_gguf(path, device);
    }
    if !path.join("config.json").is_file() {
        return Err(ModelIoError::UnknownFormat {
            path: path.to_path_buf(),
        });
    }
    let ck = Checkpoint::open(path)?;
    let tokenizer =
        Tokenizer::from_dir(path).map_err(|e| ModelIoError::Tokenizer(e.to_string()))?;
    let chat_template = ChatTemplate::from_dir(path)
        .map_err(|e| ModelIoError::Tokenizer(e.to_string()))?
        .unwrap_or_else(ChatTemplate::chatml);
    let config_origin = path.join("config.json").display().to_string();
    let config =
        LlamaConfig::from_json(ck.config_json(), &config_origin).map_err(LoadError::from)?;
    let (model, description) = match delta {
        None => (
            Llama::from_tensors(config, &ck, device)?,
            path.display().to_string(),
        ),
        Some(delta_path) => {
            let file = open_delta_file(delta_path)?;
            if file.base_fingerprint() != ck.fingerprint() {
                return Err(ModelIoError::WrongBase {
                    delta: delta_path.to_path_buf(),
                    model: path.to_path_buf(),
                    expected: file.base_fingerprint().to_string(),
                    got: ck.fingerprint().to_string(),
                });
            }
            let src = WithDeltaFile {
                base: &ck,
                delta: &file,
            };
            (
                Llama::from_tensors(config, &src, device)?,
                format!(
                    "{} + {} ({})",
                    path.display(),
                    delta_path.display(),
                    file.method()
                ),
            )
        }
    };
    Ok(LoadedModel {
        model,
        tokenizer,
        chat_template,
        description,
    })
}

fn load_gguf<B: Backend>(path: &Path, device: &B::Device) -> Result<LoadedModel<B>, ModelIoError> {
    let gguf = load_llama_gguf(path)?;
    let config = LlamaConfig::from_json(&gguf.config_json, &path.display().to_string())
        .map_err(LoadError::from)?;
    let mut tensors = NamedTensors::new();
    for t in gguf.tensors() {
        let t = t?;
        tensors.insert(t.name, F32Tensor::new(t.shape, t.data)?);
    }
    let token = |id: Option<u32>| id.and_then(|i| gguf.tokenizer.id_to_token(i));
    let special = SpecialTokens {
        bos_token: token(gguf.bos_token_id),
        eos_token: token(gguf.eos_token_id),
        pad_token: None,
        unk_token: None,
    };
    let tokenizer = Tokenizer::from_tokenizers(gguf.tokenizer.clone(), special.clone());
    let chat_template = match &gguf.chat_template {
        Some(src) => ChatTemplate::new(src)
            .map_err(|e| ModelIoError::Tokenizer(e.to_string()))?
            .with_special_tokens(
                special.bos_token.as_deref().unwrap_or(""),
                special.eos_token.as_deref().unwrap_or(""),
            ),
        None => ChatTemplate::chatml(),
    };
    let model = Llama::from_tensors(config, &tensors, device)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        chat_template,
        description: path.display().to_string(),
    })
}
