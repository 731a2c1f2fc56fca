//! Opening a model folder: find the layout, map the shards, validate every tensor against the
//! config, and hand out typed, zero-copy weight views.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::config::{ExpertFormat, ModelConfig};
use crate::error::{io_err, CheckpointError, Result};
use crate::names::{expected_tensors, Layout, Role, TensorSpec};
use crate::safetensors::{SafetensorsFile, TensorBytes};
use crate::stats::Stats;

/// A bf16 matrix `[rows, cols]` (row-major) plus its optional bias, as stored.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: TensorBytes,
    pub bias: Option<TensorBytes>,
    pub rows: usize,
    pub cols: usize,
}

/// All experts' copies of one projection.
#[derive(Clone, Debug)]
pub enum ExpertMatrix {
    /// `blocks [E, out, in/32, 16]`, `scales [E, out, in/32]`.
    Mxfp4 {
        blocks: TensorBytes,
        scales: TensorBytes,
    },
    /// bf16 `[E, in, out]` (Hugging Face's in-memory orientation, used by bf16 fine-tunes).
    Bf16InOut { weight: TensorBytes },
}

#[derive(Clone, Debug)]
pub struct Experts {
    pub gate_up: ExpertMatrix,
    /// `[E, 2I]`, interleaved gate/up like the weight rows.
    pub gate_up_bias: TensorBytes,
    pub down: ExpertMatrix,
    pub down_bias: TensorBytes,
}

#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub attn_norm: TensorBytes,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub sinks: TensorBytes,
    pub mlp_norm: TensorBytes,
    pub router: Linear,
    pub experts: Experts,
}

#[derive(Clone, Debug)]
pub struct Weights {
    pub embedding: TensorBytes,
    pub layers: Vec<LayerWeights>,
    pub final_norm: TensorBytes,
    pub unembedding: Linear,
}

impl Weights {
    /// Every stored tensor view (fused qkv appears as its three slices).
    pub fn tensors(&self) -> Vec<&TensorBytes> {
        let mut out = vec![&self.embedding, &self.final_norm, &self.unembedding.weight];
        for layer in &self.layers {
            out.extend([&layer.attn_norm, &layer.sinks, &layer.mlp_norm]);
            for l in [&layer.q, &layer.k, &layer.v, &layer.o, &layer.router] {
                out.push(&l.weight);
                out.extend(l.bias.iter());
            }
            let e = &layer.experts;
            out.extend([&e.gate_up_bias, &e.down_bias]);
            for m in [&e.gate_up, &e.down] {
                match m {
                    ExpertMatrix::Mxfp4 { blocks, scales } => out.extend([blocks, scales]),
                    ExpertMatrix::Bf16InOut { weight } => out.push(weight),
                }
            }
        }
        out
    }
}

/// An opened, validated checkpoint. Holds the memory maps; weights are views into them.
pub struct Checkpoint {
    pub dir: PathBuf,
    /// The folder the weights were read from (`dir` or `dir/original`).
    pub weights_dir: PathBuf,
    pub layout: Layout,
    pub config: ModelConfig,
    pub config_path: PathBuf,
    pub files: Vec<PathBuf>,
    pub bytes_on_disk: u64,
    pub tensor_count: usize,
    pub weights: Weights,
}

impl Checkpoint {
    /// Opens a model folder in either published layout. A Hugging Face root is preferred;
    /// a folder that only has `original/` (or is itself an `original/` folder) is read in the
    /// reference layout.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        if !dir.is_dir() {
            return Err(CheckpointError::MissingFile {
                path: dir.to_path_buf(),
            });
        }
        let hf_config = dir.join("config.json");
        let has_hf_weights = dir.join("model.safetensors").exists()
            || dir.join("model.safetensors.index.json").exists();
        let original = dir.join("original");
        if hf_config.exists() && is_original_config(&hf_config) {
            // `--model` names an `original/` folder itself.
            Self::open_original(dir, dir)
        } else if has_hf_weights {
            // A missing or broken config.json is reported, not bypassed via `original/`.
            Self::open_hf(dir)
        } else if original.join("config.json").exists() {
            Self::open_original(dir, &original)
        } else if hf_config.exists() {
            Self::open_hf(dir)
        } else {
            Err(CheckpointError::NotACheckpoint {
                dir: dir.to_path_buf(),
            })
        }
    }

    fn open_hf(dir: &Path) -> Result<Checkpoint> {
        let config_path = dir.join("config.json");
        let config = ModelConfig::from_hf_file(&config_path)?;
        let index_path = dir.join("model.safetensors.index.json");
        let mut sources = TensorSources::default();
        if index_path.exists() {
            let index = crate::config::read_json(&index_path)?;
            let map = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| CheckpointError::Config {
                    path: index_path.clone(),
                    message: "missing `weight_map` object".into(),
                })?;
            // Open each shard once, in name order.
            let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (tensor, file) in map {
                let file = file.as_str().ok_or_else(|| CheckpointError::Config {
                    path: index_path.clone(),
                    message: format!("weight_map entry for `{tensor}` is not a file name"),
                })?;
                by_file
                    .entry(file.to_string())
                    .or_default()
                    .push(tensor.clone());
            }
            for (file, tensors) in by_file {
                let path = dir.join(&file);
                if !path.exists() {
                    return Err(CheckpointError::IndexNamesMissingFile {
                        index: index_path.clone(),
                        tensor: tensors[0].clone(),
                        file,
                    });
                }
                let shard = SafetensorsFile::open(&path)?;
                for t in &tensors {
                    if !shard.tensors.contains_key(t) {
                        return Err(CheckpointError::NotInShard {
                            path: path.clone(),
                            tensor: t.clone(),
                        });
                    }
                }
                sources.add(shard, Some(&tensors));
            }
            sources.missing_place = index_path;
        } else {
            let path = dir.join("model.safetensors");
            sources.add(SafetensorsFile::open(&path)?, None);
            sources.missing_place = path;
        }
        Self::finish(dir, dir, Layout::Hf, config, config_path, sources)
    }

    fn open_original(dir: &Path, odir: &Path) -> Result<Checkpoint> {
        let config_path = odir.join("config.json");
        let config = ModelConfig::from_original_file(&config_path)?;
        // The reference loader ignores the index and reads every *.safetensors in the folder.
        let mut shards: Vec<PathBuf> = std::fs::read_dir(odir)
            .map_err(io_err(odir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        shards.sort();
        if shards.is_empty() {
            return Err(CheckpointError::MissingFile {
                path: odir.join("model.safetensors"),
            });
        }
        let mut sources = TensorSources::default();
        for p in &shards {
            sources.add(SafetensorsFile::open(p)?, None);
        }
        sources.missing_place = if shards.len() == 1 {
            shards[0].clone()
        } else {
            odir.to_path_buf()
        };
        Self::finish(dir, odir, Layout::Original, config, config_path, sources)
    }

    fn finish(
        dir: &Path,
        weights_dir: &Path,
        layout: Layout,
        config: ModelConfig,
        config_path: PathBuf,
        sources: TensorSources,
    ) -> Result<Checkpoint> {
        let specs = expected_tensors(&config, layout);
        let mut by_role: HashMap<Role, TensorBytes> = HashMap::new();
        for spec in &specs {
            let bytes = sources.validated(spec)?;
            by_role.insert(spec.role, bytes);
        }
        let expected: std::collections::HashSet<&str> =
            specs.iter().map(|s| s.name.as_str()).collect();
        for (name, (file, _)) in &sources.tensors {
            if !expected.contains(name.as_str()) {
                tracing::warn!(
                    file = %sources.files[*file].path.display(),
                    tensor = %name,
                    "ignoring a tensor that gpt-oss does not use"
                );
            }
        }
        let weights = assemble(&config, layout, by_role);
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            weights_dir: weights_dir.to_path_buf(),
            layout,
            bytes_on_disk: sources.files.iter().map(|f| f.file_len).sum(),
            files: sources.files.iter().map(|f| f.path.clone()).collect(),
            tensor_count: sources.tensors.len(),
            config,
            config_path,
            weights,
        })
    }

    pub fn stats(&self) -> Stats {
        Stats::of(&self.config)
    }
}

fn is_original_config(path: &Path) -> bool {
    crate::config::read_json(path)
        .map(|v| v.get("num_experts").is_some() && v.get("model_type").is_none())
        .unwrap_or(false)
}

/// Which file each tensor lives in.
#[derive(Default)]
struct TensorSources {
    files: Vec<SafetensorsFile>,
    tensors: BTreeMap<String, (usize, crate::safetensors::TensorInfo)>,
    /// Where a missing tensor should have been (the index, or the single weights file).
    missing_place: PathBuf,
}

impl TensorSources {
    fn add(&mut self, file: SafetensorsFile, only: Option<&[String]>) {
        let idx = self.files.len();
        for (name, info) in &file.tensors {
            if only.is_none_or(|names| names.iter().any(|n| n == name)) {
                self.tensors.insert(name.clone(), (idx, info.clone()));
            }
        }
        self.files.push(file);
    }

    fn validated(&self, spec: &TensorSpec) -> Result<TensorBytes> {
        let Some((file_idx, info)) = self.tensors.get(&spec.name) else {
            return Err(CheckpointError::MissingTensor {
                path: self.missing_place.clone(),
                tensor: spec.name.clone(),
            });
        };
        let file = &self.files[*file_idx];
        if info.dtype != spec.dtype {
            return Err(CheckpointError::WrongDtype {
                path: file.path.clone(),
                tensor: spec.name.clone(),
                actual: info.dtype,
                expected: spec.dtype,
            });
        }
        if info.shape != spec.shape {
            return Err(CheckpointError::WrongShape {
                path: file.path.clone(),
                tensor: spec.name.clone(),
                actual: info.shape.clone(),
                expected: spec.shape.clone(),
            });
        }
        Ok(file.bytes(info))
    }
}

fn assemble(cfg: &ModelConfig, layout: Layout, mut t: HashMap<Role, TensorBytes>) -> Weights {
    let mut take = |role: Role| t.remove(&role).expect("validated above");
    let h = cfg.hidden_size;
    let linear =
        |weight: TensorBytes, bias: Option<TensorBytes>, rows: usize, cols: usize| Linear {
            weight,
            bias,
            rows,
            cols,
        };
    let embedding = take(Role::Embedding);
    let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
    for l in 0..cfg.num_hidden_layers {
        let (q, k, v) = match layout {
            Layout::Hf => (
                linear(
                    take(Role::QWeight(l)),
                    Some(take(Role::QBias(l))),
                    cfg.q_dim(),
                    h,
                ),
                linear(
                    take(Role::KWeight(l)),
                    Some(take(Role::KBias(l))),
                    cfg.kv_dim(),
                    h,
                ),
                linear(
                    take(Role::VWeight(l)),
                    Some(take(Role::VBias(l))),
                    cfg.kv_dim(),
                    h,
                ),
            ),
            Layout::Original => {
                // Fused rows are [q | k | v]; split into views without copying.
                let w = take(Role::QkvWeight(l));
                let b = take(Role::QkvBias(l));
                let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
                let rows = |r0: usize, r1: usize| w.slice(r0 * h * 2..r1 * h * 2);
                let bias = |r0: usize, r1: usize| b.slice(r0 * 2..r1 * 2);
                (
                    linear(rows(0, qd), Some(bias(0, qd)), qd, h),
                    linear(rows(qd, qd + kvd), Some(bias(qd, qd + kvd)), kvd, h),
                    linear(
                        rows(qd + kvd, qd + 2 * kvd),
                        Some(bias(qd + kvd, qd + 2 * kvd)),
                        kvd,
                        h,
                    ),
                )
            }
        };
        let experts = match cfg.expert_format {
            ExpertFormat::Mxfp4 => Experts {
                gate_up: ExpertMatrix::Mxfp4 {
                    blocks: take(Role::GateUpBlocks(l)),
                    scales: take(Role::GateUpScales(l)),
                },
                gate_up_bias: take(Role::GateUpBias(l)),
                down: ExpertMatrix::Mxfp4 {
                    blocks: take(Role::DownBlocks(l)),
                    scales: take(Role::DownScales(l)),
                },
                down_bias: take(Role::DownBias(l)),
            },
            ExpertFormat::Bf16 => Experts {
                gate_up: ExpertMatrix::Bf16InOut {
                    weight: take(Role::GateUpDense(l)),
                },
                gate_up_bias: take(Role::GateUpBias(l)),
                down: ExpertMatrix::Bf16InOut {
                    weight: take(Role::DownDense(l)),
                },
                down_bias: take(Role::DownBias(l)),
            },
        };
        layers.push(LayerWeights {
            attn_norm: take(Role::AttnNorm(l)),
            q,
            k,
            v,
            o: linear(
                take(Role::OWeight(l)),
                Some(take(Role::OBias(l))),
                h,
                cfg.q_dim(),
            ),
            sinks: take(Role::Sinks(l)),
            mlp_norm: take(Role::MlpNorm(l)),
            router: linear(
                take(Role::RouterWeight(l)),
                Some(take(Role::RouterBias(l))),
                cfg.num_local_experts,
                h,
            ),
            experts,
        });
    }
    Weights {
        embedding,
        layers,
        final_norm: take(Role::FinalNorm),
        unembedding: linear(take(Role::Unembedding), None, cfg.vocab_size, h),
    }
}
