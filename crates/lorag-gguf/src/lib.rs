//! GGUF, the file format of llama.cpp: a reader that validates a file before anything
//! else touches it, and a writer for the files lorag makes itself (test models, LoRA adapters).
//!
//! Invariants:
//! - [`Gguf::open`] never panics on bad input: a file that is not GGUF, a version we do not know,
//!   or a file cut short (header or tensor data) is an [`Error`] that names the file and the problem.
//! - Memory is bounded by the file: every count read from the file (keys, tensors, array
//!   elements, string lengths) is checked against the bytes left in the file times the fewest
//!   bytes one item takes before anything is reserved, and no reservation exceeds the bytes left
//!   (a vector grows past that only as items are actually read). Shapes whose element or byte
//!   count overflows 64 bits, and an alignment that is not a power of two up to 1 MiB, are errors.
//! - [`Writer`] writes little-endian GGUF v3 with `general.alignment` (default 32) respected for every tensor.

pub mod tiny;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: not a GGUF file (it starts with {found:?}, a GGUF file starts with \"GGUF\")"
    )]
    NotGguf { path: PathBuf, found: String },
    #[error("{path}: GGUF version {version} is not supported (1..=3 are)")]
    Version { path: PathBuf, version: u32 },
    #[error("{path}: truncated GGUF: {what}")]
    Truncated { path: PathBuf, what: String },
    #[error("{path}: malformed GGUF: {what}")]
    Malformed { path: PathBuf, what: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The fewest bytes one metadata key/value takes in a file (key length 8, type 4, a 1-byte value).
const MIN_KV_BYTES: u64 = 13;
/// The fewest bytes one tensor directory entry takes (name length 8, dimension count 4, type 4,
/// offset 8).
const MIN_TENSOR_BYTES: u64 = 24;
/// The largest `general.alignment` accepted (llama.cpp requires a power of two).
const MAX_ALIGNMENT: u64 = 1 << 20;

/// The fewest bytes a value of type `ty` takes inside an array (`None`: unknown, or an array,
/// which GGUF arrays cannot hold here).
fn min_value_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        _ => return None,
    })
}

/// The tensor types of ggml, with their block geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: Self = Self(0);
    pub const F16: Self = Self(1);
    pub const Q4_0: Self = Self(2);
    pub const Q4_1: Self = Self(3);
    pub const Q5_0: Self = Self(6);
    pub const Q5_1: Self = Self(7);
    pub const Q8_0: Self = Self(8);
    pub const Q4_K: Self = Self(12);
    pub const Q6_K: Self = Self(14);
    pub const BF16: Self = Self(30);

    /// (elements per block, bytes per block), or None for a type id we do not know.
    pub fn block(self) -> Option<(u64, u64)> {
        Some(match self.0 {
            0 => (1, 4),
            1 => (1, 2),
            2 => (32, 18),
            3 => (32, 20),
            6 => (32, 22),
            7 => (32, 24),
            8 => (32, 34),
            9 => (32, 36),
            10 => (256, 84),
            11 => (256, 110),
            12 => (256, 144),
            13 => (256, 176),
            14 => (256, 210),
            15 => (256, 292),
            16 => (256, 66),
            17 => (256, 74),
            18 => (256, 98),
            19 => (256, 50),
            20 => (32, 18),
            21 => (256, 110),
            22 => (256, 82),
            23 => (256, 136),
            24 => (1, 1),
            25 => (1, 2),
            26 => (1, 4),
            27 => (1, 8),
            28 => (1, 8),
            29 => (256, 56),
            30 => (1, 2),
            34 => (256, 54),
            35 => (256, 66),
            39 => (32, 17),
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "F32",
            1 => "F16",
            2 => "Q4_0",
            3 => "Q4_1",
            6 => "Q5_0",
            7 => "Q5_1",
            8 => "Q8_0",
            9 => "Q8_1",
            10 => "Q2_K",
            11 => "Q3_K",
            12 => "Q4_K",
            13 => "Q5_K",
            14 => "Q6_K",
            15 => "Q8_K",
            16 => "IQ2_XXS",
            17 => "IQ2_XS",
            18 => "IQ3_XXS",
            19 => "IQ1_S",
            20 => "IQ4_NL",
            21 => "IQ3_S",
            22 => "IQ2_S",
            23 => "IQ4_XS",
            24 => "I8",
            25 => "I16",
            26 => "I32",
            27 => "I64",
            28 => "F64",
            29 => "IQ1_M",
            30 => "BF16",
            34 => "TQ1_0",
            35 => "TQ2_0",
            39 => "MXFP4",
            _ => "unknown",
        }
    }

    /// Bytes needed for `n` elements, or None when `n` is not a whole number of blocks (or the
    /// byte count overflows).
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let (per, bytes) = self.block()?;
        n.is_multiple_of(per)
            .then(|| (n / per).checked_mul(bytes))
            .flatten()
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `general.file_type` enum of llama.cpp, as a name ("Q4_1", "Q4_K_M", ...).
pub fn file_type_name(ft: u32) -> &'static str {
    match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4",
        _ => "unknown",
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// An array: the element type id and the elements.
    Array(u32, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(..) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// Any integer value as u64 (negative values give None).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, v) => Some(v),
            _ => None,
        }
    }
}

/// One entry of the tensor directory.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying (row length).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The element count (saturating: `Gguf::open` refuses shapes whose count overflows).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |p, &d| p.saturating_mul(d))
    }
    pub fn n_bytes(&self) -> Option<u64> {
        self.ty.bytes_for(self.n_elements())
    }
}

/// A parsed GGUF header: metadata and tensor directory (tensor data stays on disk).
#[derive(Debug, Clone)]
pub struct Gguf {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute file offset where tensor data begins.
    pub data_offset: u64,
    pub file_size: u64,
}

struct Cursor<R> {
    r: R,
    path: PathBuf,
    pos: u64,
    size: u64,
}

impl<R: Read> Cursor<R> {
    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>> {
        if self.pos.saturating_add(n) > self.size {
            return Err(Error::Truncated {
                path: self.path.clone(),
                what: format!(
                    "{what} needs {n} bytes at offset {} but the file has {} bytes",
                    self.pos, self.size
                ),
            });
        }
        let mut buf = vec![0u8; n as usize];
        self.r.read_exact(&mut buf).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        self.pos += n;
        Ok(buf)
    }
    fn left(&self) -> u64 {
        self.size.saturating_sub(self.pos)
    }
    /// Errors when `n` items of at least `min` bytes each cannot fit in the rest of the file.
    fn check_count(&self, n: u64, min: u64, what: &str) -> Result<()> {
        if n.checked_mul(min).is_none_or(|need| need > self.left()) {
            return Err(Error::Truncated {
                path: self.path.clone(),
                what: format!(
                    "{what} claims {n} entries of at least {min} bytes, but {} bytes are left \
                     in the file (offset {})",
                    self.left(),
                    self.pos
                ),
            });
        }
        Ok(())
    }
    /// How many `T`s to reserve for `n` items announced by the file: never more memory than
    /// the bytes left in the file (the vector grows past that only as items are really read).
    fn capacity_for<T>(&self, n: u64) -> usize {
        let fit = self.left() / (std::mem::size_of::<T>().max(1) as u64);
        n.min(fit) as usize
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let v = self.bytes(N as u64, what)?;
        Ok(v.try_into().expect("length checked"))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let b = self.bytes(n, what)?;
        String::from_utf8(b).map_err(|_| Error::Malformed {
            path: self.path.clone(),
            what: format!("{what} is not valid UTF-8"),
        })
    }
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>(key)?[0]),
            1 => Value::I8(self.arr::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.arr(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.arr(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.arr(key)?)),
            7 => Value::Bool(self.arr::<1>(key)?[0] != 0),
            8 => Value::String(self.string(key)?),
            9 if depth == 0 => {
                let et = self.u32(key)?;
                let n = self.u64(key)?;
                let Some(min) = min_value_size(et) else {
                    return Err(Error::Malformed {
                        path: self.path.clone(),
                        what: format!("array {key:?} has elements of unknown or nested type {et}"),
                    });
                };
                // Each element takes at least `min` bytes: a count beyond the file is a lie.
                self.check_count(n, min, &format!("array {key:?}"))?;
                let mut v = Vec::with_capacity(self.capacity_for::<Value>(n));
                for _ in 0..n {
                    v.push(self.value(et, key, depth + 1)?);
                }
                Value::Array(et, v)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.arr(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.arr(key)?)),
            _ => {
                return Err(Error::Malformed {
                    path: self.path.clone(),
                    what: format!("key {key:?} has unknown value type {ty}"),
                })
            }
        })
    }
}

impl Gguf {
    /// Parse the header and tensor directory of `path`, and check that every tensor's data lies
    /// inside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if meta.is_dir() {
            return Err(Error::Io {
                path,
                source: io::Error::other("is a directory, not a GGUF file"),
            });
        }
        let size = meta.len();
        let mut c = Cursor {
            r: BufReader::with_capacity(1 << 16, file),
            path: path.clone(),
            pos: 0,
            size,
        };
        if size < 4 {
            return Err(Error::NotGguf {
                path,
                found: format!("{size}-byte file"),
            });
        }
        let magic: [u8; 4] = c.arr("magic")?;
        if magic != MAGIC {
            return Err(Error::NotGguf {
                path,
                found: String::from_utf8_lossy(&magic).escape_debug().to_string(),
            });
        }
        let version = c.u32("version")?;
        if !(1..=3).contains(&version) {
            return Err(Error::Version { path, version });
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        // A key takes at least 13 bytes (length, type, a 1-byte value); a tensor entry 24 (name
        // length, dimension count, type, offset): counts the file cannot hold are refused
        // before anything is reserved for them.
        c.check_count(n_kv, MIN_KV_BYTES, "the metadata count")?;
        c.check_count(n_tensors, MIN_TENSOR_BYTES, "the tensor count")?;
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            let ty = c.u32(&key)?;
            let v = c.value(ty, &key, 0)?;
            metadata.insert(key, v);
        }
        c.check_count(n_tensors, MIN_TENSOR_BYTES, "the tensor count")?;
        let mut tensors = Vec::with_capacity(c.capacity_for::<TensorInfo>(n_tensors));
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor name #{i}"))?;
            let nd = c.u32(&name)?;
            if nd > 8 {
                return Err(Error::Malformed {
                    path,
                    what: format!("tensor {name:?} has {nd} dimensions"),
                });
            }
            let mut dims = Vec::with_capacity(nd as usize);
            for _ in 0..nd {
                dims.push(c.u64(&name)?);
            }
            let ty = GgmlType(c.u32(&name)?);
            let offset = c.u64(&name)?;
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
            });
        }
        let align = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => a,
                _ => {
                    return Err(Error::Malformed {
                        path,
                        what: format!(
                            "general.alignment is {v:?}, not a power of two up to {MAX_ALIGNMENT}"
                        ),
                    })
                }
            },
        };
        // pos <= size and align <= 1 MiB: no overflow.
        let data_offset = c.pos.div_ceil(align) * align;
        for t in &tensors {
            if t.dims
                .iter()
                .try_fold(1u64, |p, &d| p.checked_mul(d))
                .is_none()
            {
                return Err(Error::Malformed {
                    path: path.clone(),
                    what: format!(
                        "tensor {:?}: shape {:?} has more elements than a 64-bit count holds",
                        t.name, t.dims
                    ),
                });
            }
            let n = t.n_bytes().ok_or_else(|| Error::Malformed {
                path: path.clone(),
                what: format!(
                    "tensor {:?}: type {} with shape {:?} is not a whole number of blocks \
                     (or its byte count overflows)",
                    t.name, t.ty.0, t.dims
                ),
            })?;
            let end = data_offset
                .checked_add(t.offset)
                .and_then(|o| o.checked_add(n));
            match end {
                Some(end) if end <= size => {}
                _ => {
                    return Err(Error::Truncated {
                        path: path.clone(),
                        what: format!(
                            "tensor {:?} ends at byte {} but the file has {size} bytes",
                            t.name,
                            data_offset.saturating_add(t.offset).saturating_add(n)
                        ),
                    })
                }
            }
        }
        Ok(Gguf {
            path,
            version,
            metadata,
            tensors,
            data_offset,
            file_size: size,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }
    /// `{arch}.{suffix}`, e.g. `arch_u64("context_length")`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        self.get_u64(&format!("{}.{suffix}", self.architecture()?))
    }
    pub fn n_params(&self) -> u64 {
        self.tensors
            .iter()
            .fold(0u64, |s, t| s.saturating_add(t.n_elements()))
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
    /// The quantization: `general.file_type` when present, else the most common weight type.
    pub fn quantization(&self) -> String {
        if let Some(ft) = self.get_u64("general.file_type") {
            return file_type_name(ft as u32).to_string();
        }
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for t in &self.tensors {
            *counts.entry(t.ty.name()).or_default() += t.n_elements();
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(n, _)| n.to_string())
            .unwrap_or_else(|| "none".into())
    }
    /// Read the raw bytes of one tensor.
    pub fn read_tensor_bytes(&self, t: &TensorInfo) -> Result<Vec<u8>> {
        let io_err = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let mut f = File::open(&self.path).map_err(io_err)?;
        f.seek(SeekFrom::Start(self.data_offset + t.offset))
            .map_err(io_err)?;
        let mut buf = vec![0u8; t.n_bytes().unwrap_or(0) as usize];
        f.read_exact(&mut buf).map_err(io_err)?;
        Ok(buf)
    }
}

/// Builds a GGUF v3 file in memory order and writes it out.
#[derive(Default)]
pub struct Writer {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a key (replacing an earlier value of the same key).
    pub fn set(&mut self, key: impl Into<String>, v: Value) -> &mut Self {
        let key = key.into();
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = v;
        } else {
            self.metadata.push((key, v));
        }
        self
    }

    /// Add a tensor. `dims` in ggml order (row length first). Panics if `data` does not have the
    /// size that `ty` and `dims` imply: that is a bug in the caller, not bad input.
    pub fn tensor(&mut self, name: impl Into<String>, dims: &[u64], ty: GgmlType, data: Vec<u8>) {
        let n: u64 = dims.iter().product();
        let want = ty.bytes_for(n).expect("whole blocks");
        let name = name.into();
        assert_eq!(data.len() as u64, want, "tensor {name}: data size");
        self.tensors.push((name, dims.to_vec(), ty, data));
    }

    /// Add an f32 tensor.
    pub fn tensor_f32(&mut self, name: impl Into<String>, dims: &[u64], data: &[f32]) {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, GgmlType::F32, bytes);
    }

    pub fn write(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        // Write to a temporary file in the same folder, then rename: never a half-written file.
        // A failed write (a full disk) removes the temporary file and leaves `path` as it was.
        let tmp = path.with_extension("gguf.partial");
        let written = File::create(&tmp)
            .and_then(|f| {
                let mut w = BufWriter::new(f);
                self.write_to(&mut w)?;
                w.flush()?;
                w.get_ref().sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let align = self
            .metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(DEFAULT_ALIGNMENT);
        let mut head = Vec::new();
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            head.extend(encode_str(k));
            head.extend_from_slice(&v.type_id().to_le_bytes());
            head.extend(encode_value(v));
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, data) in &self.tensors {
            head.extend(encode_str(name));
            head.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&ty.0.to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + data.len() as u64).div_ceil(align) * align;
        }
        let pad = (head.len() as u64).div_ceil(align) * align - head.len() as u64;
        head.resize(head.len() + pad as usize, 0);
        w.write_all(&head)?;
        let mut written = 0u64;
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            w.write_all(&vec![0u8; (off - written) as usize])?;
            w.write_all(data)?;
            written = off + data.len() as u64;
        }
        let tail = written.div_ceil(align) * align - written;
        w.write_all(&vec![0u8; tail as usize])
    }
}

fn encode_str(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    b
}

fn encode_value(v: &Value) -> Vec<u8> {
    match v {
        Value::U8(x) => vec![*x],
        Value::I8(x) => vec![*x as u8],
        Value::U16(x) => x.to_le_bytes().to_vec(),
        Value::I16(x) => x.to_le_bytes().to_vec(),
        Value::U32(x) => x.to_le_bytes().to_vec(),
        Value::I32(x) => x.to_le_bytes().to_vec(),
        Value::F32(x) => x.to_le_bytes().to_vec(),
        Value::Bool(x) => vec![u8::from(*x)],
        Value::String(s) => encode_str(s),
        Value::Array(et, items) => {
            let mut b = et.to_le_bytes().to_vec();
            b.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                b.extend(encode_value(it));
            }
            b
        }
        Value::U64(x) => x.to_le_bytes().to_vec(),
        Value::I64(x) => x.to_le_bytes().to_vec(),
        Value::F64(x) => x.to_le_bytes().to_vec(),
    }
}

/// IEEE half from f32 (round to nearest even), for writing F16 tensors.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Writer {
        let mut w = Writer::new();
        w.set("general.architecture", Value::String("llama".into()));
        w.set("llama.context_length", Value::U32(2048));
        w.set(
            "tokenizer.ggml.tokens",
            Value::Array(
                8,
                vec![Value::String("a".into()), Value::String("b".into())],
            ),
        );
        w.tensor_f32("x.weight", &[3, 2], &[1., 2., 3., 4., 5., 6.]);
        w.tensor_f32("y.weight", &[5], &[0.5; 5]);
        w
    }

    #[test]
    fn roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        sample().write(&p).unwrap();
        let g = Gguf::open(&p).unwrap();
        assert_eq!(g.architecture(), Some("llama"));
        assert_eq!(g.arch_u64("context_length"), Some(2048));
        assert_eq!(g.n_params(), 11);
        let t = g.tensor("y.weight").unwrap().clone();
        assert_eq!(t.offset % 32, 0);
        let b = g.read_tensor_bytes(&t).unwrap();
        assert_eq!(f32::from_le_bytes(b[0..4].try_into().unwrap()), 0.5);
        assert_eq!(g.quantization(), "F32");
    }

    #[test]
    fn bad_inputs_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        sample().write(&p).unwrap();
        let full = std::fs::read(&p).unwrap();
        // truncated in tensor data, and in the header
        for cut in [full.len() - 16, 40, 10] {
            std::fs::write(&p, &full[..cut]).unwrap();
            let e = Gguf::open(&p).unwrap_err().to_string();
            assert!(e.contains("truncated"), "{cut}: {e}");
            assert!(e.contains("m.gguf"), "{e}");
        }
        std::fs::write(&p, b"hello world, this is text").unwrap();
        let e = Gguf::open(&p).unwrap_err().to_string();
        assert!(e.contains("not a GGUF file"), "{e}");
        let e = Gguf::open(dir.path().join("missing.gguf"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.gguf"), "{e}");
    }

    #[test]
    fn f16_conversion() {
        for (x, h) in [
            (0.0f32, 0u16),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
        ] {
            assert_eq!(f32_to_f16_bits(x), h, "{x}");
        }
        assert_eq!(f32_to_f16_bits(1e-7), 0x0002);
        assert_eq!(f32_to_f16_bits(1e9), 0x7c00);
    }
}
