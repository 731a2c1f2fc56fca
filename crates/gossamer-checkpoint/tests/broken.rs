//! A broken model folder gives one clear error line naming the file (and the tensor), never a
//! panic. Each test breaks a freshly generated checkpoint in one way.

use std::path::{Path, PathBuf};

use gossamer_checkpoint::synth::{write_checkpoint, Preset, SynthOptions};
use gossamer_checkpoint::{Checkpoint, CheckpointError};
use serde_json::Value;

fn make(sharded: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SynthOptions::new(Preset::SmallVocab, 1);
    opts.layers = Some(2);
    if sharded {
        opts.max_shard_bytes = 4_000_000;
    }
    write_checkpoint(&opts, dir.path(), &mut |_, _| {}).unwrap();
    dir
}

fn open_err(dir: &Path) -> String {
    let err = match Checkpoint::open(dir) {
        Ok(_) => panic!("a broken checkpoint opened"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "error spans lines: {msg}");
    msg
}

/// Rewrites a safetensors header in place (tensor data untouched).
fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut json = serde_json::to_vec(&header).unwrap();
    assert!(json.len() <= n, "edited header must not grow");
    json.resize(n, b' ');
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

fn weights(dir: &Path) -> PathBuf {
    dir.join("model.safetensors")
}

const Q: &str = "model.layers.1.self_attn.q_proj.weight";

#[test]
fn a_valid_checkpoint_opens_and_the_safetensors_crate_agrees() {
    let dir = make(false);
    let ck = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(ck.tensor_count, 2 * 19 + 3);
    // The official safetensors crate reads our files the same way.
    let bytes = std::fs::read(weights(dir.path())).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let q = st.tensor(Q).unwrap();
    assert_eq!(q.shape(), &[1024, 512]);
    assert_eq!(q.data(), ck.weights.layers[1].q.weight.as_bytes());
}

#[test]
fn missing_folder() {
    let msg = open_err(Path::new("/nonexistent/gpt-oss-20b"));
    assert_eq!(msg, "/nonexistent/gpt-oss-20b: file not found");
}

#[test]
fn empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let msg = open_err(dir.path());
    assert!(
        msg.starts_with(&format!(
            "{}: no gpt-oss checkpoint found",
            dir.path().display()
        )),
        "{msg}"
    );
}

#[test]
fn weights_without_config_in_a_folder_that_also_has_original() {
    // A missing config.json is reported even when an original/ folder could be read instead.
    let dir = make(false);
    std::fs::create_dir(dir.path().join("original")).unwrap();
    std::fs::write(dir.path().join("original/config.json"), "{}").unwrap();
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let msg = open_err(dir.path());
    assert_eq!(
        msg,
        format!(
            "{}: file not found",
            dir.path().join("config.json").display()
        )
    );
}

#[test]
fn missing_config() {
    let dir = make(false);
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let msg = open_err(dir.path());
    assert_eq!(
        msg,
        format!(
            "{}: file not found",
            dir.path().join("config.json").display()
        )
    );
}

#[test]
fn malformed_config_json() {
    let dir = make(false);
    std::fs::write(dir.path().join("config.json"), "{\"hidden_size\": 2880,").unwrap();
    let msg = open_err(dir.path());
    assert!(
        msg.starts_with(&format!(
            "{}: malformed JSON",
            dir.path().join("config.json").display()
        )),
        "{msg}"
    );
}

#[test]
fn unknown_quant_method() {
    let dir = make(false);
    let path = dir.path().join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    cfg["quantization_config"]["quant_method"] = "awq".into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let msg = open_err(dir.path());
    assert!(
        msg.starts_with(&format!("{}: unknown quant_method `awq`", path.display())),
        "{msg}"
    );
}

#[test]
fn missing_tensor_in_single_file() {
    let dir = make(false);
    edit_header(&weights(dir.path()), |h| {
        h.remove(Q);
    });
    let msg = open_err(dir.path());
    assert_eq!(
        msg,
        format!("{}: tensor `{Q}` is missing", weights(dir.path()).display())
    );
}

#[test]
fn missing_tensor_in_index() {
    let dir = make(true);
    let index = dir.path().join("model.safetensors.index.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    v["weight_map"].as_object_mut().unwrap().remove(Q);
    std::fs::write(&index, v.to_string()).unwrap();
    let msg = open_err(dir.path());
    assert_eq!(msg, format!("{}: tensor `{Q}` is missing", index.display()));
}

#[test]
fn wrong_shape() {
    let dir = make(false);
    edit_header(&weights(dir.path()), |h| {
        h[Q]["shape"] = serde_json::json!([512, 1024]);
    });
    let msg = open_err(dir.path());
    assert_eq!(
        msg,
        format!(
            "{}: tensor `{Q}` has shape [512, 1024], expected [1024, 512]",
            weights(dir.path()).display()
        )
    );
}

#[test]
fn wrong_dtype() {
    let dir = make(false);
    edit_header(&weights(dir.path()), |h| {
        h[Q]["dtype"] = "F16".into();
    });
    let msg = open_err(dir.path());
    assert_eq!(
        msg,
        format!(
            "{}: tensor `{Q}` has dtype F16, expected BF16",
            weights(dir.path()).display()
        )
    );
}

#[test]
fn truncated_shard() {
    let dir = make(true);
    let index = dir.path().join("model.safetensors.index.json");
    let v: Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    let shard = dir.path().join(v["weight_map"][Q].as_str().unwrap());
    let len = std::fs::metadata(&shard).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .unwrap();
    f.set_len(len - 1000).unwrap();
    let msg = open_err(dir.path());
    assert!(
        msg.starts_with(&format!("{}: truncated: tensor `", shard.display())),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!("but the file has only {} bytes", len - 1000)),
        "{msg}"
    );
}

#[test]
fn index_names_a_missing_file() {
    let dir = make(true);
    let index = dir.path().join("model.safetensors.index.json");
    let v: Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    let shard = v["weight_map"][Q].as_str().unwrap().to_string();
    std::fs::remove_file(dir.path().join(&shard)).unwrap();
    let msg = open_err(dir.path());
    assert!(
        msg.starts_with(&format!("{}: tensor `", index.display())),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!("is mapped to `{shard}`, which does not exist")),
        "{msg}"
    );
}

#[test]
fn garbage_header() {
    let dir = make(false);
    std::fs::write(
        weights(dir.path()),
        b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!",
    )
    .unwrap();
    let msg = open_err(dir.path());
    assert!(
        msg.starts_with(&format!(
            "{}: malformed safetensors header",
            weights(dir.path()).display()
        )),
        "{msg}"
    );
    // A file shorter than its own header length.
    std::fs::write(weights(dir.path()), b"\xff\xff\x00\x00\x00\x00\x00\x00{}").unwrap();
    let msg = open_err(dir.path());
    assert!(msg.contains("runs past the end"), "{msg}");
}

#[test]
fn config_that_contradicts_itself() {
    let dir = make(false);
    let path = dir.path().join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    cfg["num_key_value_heads"] = 3.into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let msg = open_err(dir.path());
    assert!(
        msg.contains("not a multiple of num_key_value_heads"),
        "{msg}"
    );
    cfg["num_key_value_heads"] = "four".into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    assert!(open_err(dir.path()).contains("`num_key_value_heads` must be a non-negative integer"));
}

#[test]
fn errors_are_typed() {
    let dir = make(false);
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    assert!(matches!(
        Checkpoint::open(dir.path()),
        Err(CheckpointError::MissingFile { .. })
    ));
}
