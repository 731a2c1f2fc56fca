//! The safetensors container, read through a memory map without copying.
//!
//! The format is small (an 8-byte little-endian header length, a JSON header, then the raw
//! tensor bytes), so it is parsed here rather than through the `safetensors` crate: this way
//! every failure can name the file *and* the tensor (the crate reports a truncated file without
//! saying which tensor overflows), and the tensors keep a handle on the shared map so the model
//! can hold them without borrowing the loader. The crate is still used in tests as an oracle
//! for the files our generator writes.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{io_err, CheckpointError, Result};

/// Element types that appear in gpt-oss checkpoints (others are parsed but rejected by
/// validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    BF16,
    F16,
    F32,
    U8,
    I8,
    Other,
}

impl Dtype {
    pub fn parse(s: &str) -> Dtype {
        match s {
            "BF16" => Dtype::BF16,
            "F16" => Dtype::F16,
            "F32" => Dtype::F32,
            "U8" => Dtype::U8,
            "I8" => Dtype::I8,
            _ => Dtype::Other,
        }
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::BF16 | Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::U8 | Dtype::I8 | Dtype::Other => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::BF16 => "BF16",
            Dtype::F16 => "F16",
            Dtype::F32 => "F32",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::Other => "unsupported",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tensor's bytes inside a mapped file. Cloning shares the map; the bytes are never copied.
#[derive(Clone)]
pub struct TensorBytes {
    map: Arc<Mmap>,
    range: Range<usize>,
}

impl TensorBytes {
    pub fn as_bytes(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }

    /// The bytes as little-endian 16-bit words (bf16 bit patterns). Alignment is checked when
    /// the file is opened, so this cannot fail for a tensor that passed validation.
    pub fn as_u16(&self) -> &[u16] {
        let bytes = self.as_bytes();
        assert!(bytes.as_ptr().align_offset(2) == 0 && bytes.len().is_multiple_of(2));
        // SAFETY: the pointer is 2-byte aligned and the length even (asserted above); every
        // bit pattern is a valid u16; the slice borrows `self`, which keeps the map alive.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<u16>(), bytes.len() / 2) }
    }

    /// A sub-range (in bytes) of this tensor, still backed by the same map.
    pub fn slice(&self, bytes: Range<usize>) -> TensorBytes {
        assert!(bytes.end <= self.range.len());
        TensorBytes {
            map: Arc::clone(&self.map),
            range: self.range.start + bytes.start..self.range.start + bytes.end,
        }
    }

    pub fn len(&self) -> usize {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

impl fmt::Debug for TensorBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TensorBytes({:?})", self.range)
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub range: Range<usize>,
}

/// One memory-mapped `.safetensors` file with its parsed header.
pub struct SafetensorsFile {
    pub path: PathBuf,
    map: Arc<Mmap>,
    pub tensors: BTreeMap<String, TensorInfo>,
    pub file_len: u64,
}

#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<SafetensorsFile> {
        let file = File::open(path).map_err(io_err(path))?;
        let file_len = file.metadata().map_err(io_err(path))?.len();
        // SAFETY: the map is read-only; a model file changed underneath a running process is
        // outside what any inference engine can defend against (llama.cpp maps the same way).
        let map = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        let header_err = |message: String| CheckpointError::Header {
            path: path.to_path_buf(),
            message,
        };
        if map.len() < 8 {
            return Err(header_err(format!(
                "file is {} bytes, shorter than the 8-byte header length",
                map.len()
            )));
        }
        let header_len = u64::from_le_bytes(map[..8].try_into().expect("8 bytes"));
        let header_end = 8u64
            .checked_add(header_len)
            .filter(|&end| end <= file_len)
            .ok_or_else(|| {
                header_err(format!(
                    "header length {header_len} runs past the end of the {file_len}-byte file"
                ))
            })?;
        let header: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&map[8..header_end as usize])
                .map_err(|e| header_err(format!("header is not a JSON object: {e}")))?;

        let mut tensors = BTreeMap::new();
        for (name, value) in header {
            if name == "__metadata__" {
                continue;
            }
            let raw: RawEntry = serde_json::from_value(value)
                .map_err(|e| header_err(format!("entry `{name}`: {e}")))?;
            let [begin, end] = raw.data_offsets;
            let dtype = Dtype::parse(&raw.dtype);
            let numel: usize = raw.shape.iter().product();
            if end < begin || (end - begin) as usize != numel * dtype.size() {
                return Err(header_err(format!(
                    "tensor `{name}`: offsets {begin}..{end} do not match shape {:?} of {}",
                    raw.shape, raw.dtype
                )));
            }
            let abs_begin = header_end + begin;
            let abs_end = header_end + end;
            if abs_end > file_len {
                return Err(CheckpointError::Truncated {
                    path: path.to_path_buf(),
                    tensor: name,
                    needed: abs_end,
                    actual: file_len,
                });
            }
            if abs_begin % dtype.size() as u64 != 0 {
                return Err(CheckpointError::Misaligned {
                    path: path.to_path_buf(),
                    tensor: name,
                    offset: abs_begin,
                });
            }
            tensors.insert(
                name,
                TensorInfo {
                    dtype,
                    shape: raw.shape,
                    range: abs_begin as usize..abs_end as usize,
                },
            );
        }
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            map: Arc::new(map),
            tensors,
            file_len,
        })
    }

    pub fn bytes(&self, info: &TensorInfo) -> TensorBytes {
        TensorBytes {
            map: Arc::clone(&self.map),
            range: info.range.clone(),
        }
    }
}

/// Writes a safetensors file tensor by tensor, streaming the data so a 13 GB checkpoint never
/// sits in memory. The caller declares every tensor first (the header comes first in the file).
pub struct SafetensorsWriter {
    out: std::io::BufWriter<File>,
    path: PathBuf,
    pending: std::collections::VecDeque<(String, usize)>,
    remaining_in_tensor: usize,
}

pub struct TensorDecl {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl TensorDecl {
    pub fn nbytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }
}

impl SafetensorsWriter {
    pub fn create(path: &Path, decls: &[TensorDecl]) -> Result<SafetensorsWriter> {
        use std::io::Write;
        let mut header = serde_json::Map::new();
        let mut offset = 0usize;
        for d in decls {
            let n = d.nbytes();
            header.insert(
                d.name.clone(),
                serde_json::json!({
                    "dtype": d.dtype.as_str(),
                    "shape": d.shape,
                    "data_offsets": [offset, offset + n],
                }),
            );
            offset += n;
        }
        header.insert(
            "__metadata__".into(),
            serde_json::json!({"format": "pt", "generator": "gossamer random-checkpoint"}),
        );
        let mut json = serde_json::to_vec(&header).expect("header serialises");
        // Pad so tensor data starts 8-byte aligned, as the reference writer does.
        while !(8 + json.len()).is_multiple_of(8) {
            json.push(b' ');
        }
        let file = File::create(path).map_err(io_err(path))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 22, file);
        out.write_all(&(json.len() as u64).to_le_bytes())
            .and_then(|_| out.write_all(&json))
            .map_err(io_err(path))?;
        Ok(SafetensorsWriter {
            out,
            path: path.to_path_buf(),
            pending: decls.iter().map(|d| (d.name.clone(), d.nbytes())).collect(),
            remaining_in_tensor: 0,
        })
    }

    /// Appends bytes of the current tensor (tensors are written in declaration order).
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.remaining_in_tensor == 0 {
                let (_, n) = self
                    .pending
                    .pop_front()
                    .expect("wrote more bytes than the declared tensors hold");
                self.remaining_in_tensor = n;
                continue;
            }
            let take = rest.len().min(self.remaining_in_tensor);
            self.out
                .write_all(&rest[..take])
                .map_err(io_err(&self.path))?;
            self.remaining_in_tensor -= take;
            rest = &rest[take..];
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        use std::io::Write;
        assert!(
            self.remaining_in_tensor == 0 && self.pending.iter().all(|(_, n)| *n == 0),
            "not every declared tensor was written"
        );
        self.out.flush().map_err(io_err(&self.path))
    }
}
