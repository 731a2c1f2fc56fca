//! Errors of checkpoint loading. Every variant names the file it is about and, where there is
//! one, the tensor: a user with a broken download must be able to tell which file to fetch again.

use std::path::PathBuf;

use crate::safetensors::Dtype;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{dir}: no gpt-oss checkpoint found (expected config.json with model.safetensors or model.safetensors.index.json, or original/config.json with *.safetensors)")]
    NotACheckpoint { dir: PathBuf },

    #[error("{path}: file not found")]
    MissingFile { path: PathBuf },

    #[error("{path}: malformed JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("{path}: unknown quant_method `{method}` (supported: mxfp4, or no quantization_config for bf16 weights)")]
    UnknownQuantMethod { path: PathBuf, method: String },

    #[error("{path}: malformed safetensors header: {message}")]
    Header { path: PathBuf, message: String },

    #[error("{path}: truncated: tensor `{tensor}` ends at byte {needed} but the file has only {actual} bytes")]
    Truncated {
        path: PathBuf,
        tensor: String,
        needed: u64,
        actual: u64,
    },

    #[error("{index}: tensor `{tensor}` is mapped to `{file}`, which does not exist")]
    IndexNamesMissingFile {
        index: PathBuf,
        tensor: String,
        file: String,
    },

    #[error("{path}: tensor `{tensor}` is listed in the index but not present in this shard")]
    NotInShard { path: PathBuf, tensor: String },

    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },

    #[error("{path}: tensor `{tensor}` has dtype {actual}, expected {expected}")]
    WrongDtype {
        path: PathBuf,
        tensor: String,
        actual: Dtype,
        expected: Dtype,
    },

    #[error("{path}: tensor `{tensor}` has shape {actual:?}, expected {expected:?}")]
    WrongShape {
        path: PathBuf,
        tensor: String,
        actual: Vec<usize>,
        expected: Vec<usize>,
    },

    #[error("{path}: tensor `{tensor}` is not aligned to its element size (offset {offset})")]
    Misaligned {
        path: PathBuf,
        tensor: String,
        offset: u64,
    },

    #[error("{path}: unexpected tensor `{tensor}` (not part of a gpt-oss checkpoint)")]
    UnexpectedTensor { path: PathBuf, tensor: String },
}

pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let path = path.into();
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CheckpointError::MissingFile { path }
        } else {
            CheckpointError::Io { path, source }
        }
    }
}
