//! Reading and writing model folders: `config.json` plus the weights, `model.bpk` (burnpack)
//! or `model.safetensors` (PyTorch names and layouts).

use std::path::{Path, PathBuf};

use burn::{
    module::{Module, ModuleMapper, ModuleVisitor, Param},
    store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore},
    tensor::{DType, Device, Tensor},
};
use catdog_data::printable;
use catdog_data::{write_atomic, write_atomic_with};
use catdog_model::{Classifier, ModelConfig};
use serde::{de::DeserializeOwned, Serialize};

use crate::ModelSpec;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.bpk";
pub const SAFETENSORS_FILE: &str = "model.safetensors";

/// The underlying failure of a model file operation (an I/O error, a decoder's message).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ModelIoError {
    #[error("model folder {0} does not exist")]
    NotFound(PathBuf),
    #[error("{dir} is not a catdog model folder: {file} is missing")]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("{path} is not a valid catdog config")]
    BadConfig {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    #[error("cannot load weights {path}")]
    BadWeights {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: Cause,
    },
}

impl ModelIoError {
    pub(crate) fn write(path: &Path, source: impl Into<Cause>) -> Self {
        ModelIoError::Write {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }
    pub(crate) fn bad_weights(path: &Path, source: impl Into<Cause>) -> Self {
        ModelIoError::BadWeights {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }
    fn bad_config(path: &Path, source: impl Into<Cause>) -> Self {
        ModelIoError::BadConfig {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }
}

/// A model folder loaded for inference.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub spec: ModelSpec,
    /// In inference mode (`valid()`).
    pub model: Classifier,
    /// What the user should know about how the folder was read (e.g. a weights file that was
    /// not used); the command line prints these as warnings.
    pub warnings: Vec<String>,
}

/// Reads and checks the model part of `dir/config.json`.
pub fn read_spec(dir: &Path) -> Result<ModelSpec, ModelIoError> {
    if !dir.is_dir() {
        return Err(ModelIoError::NotFound(dir.to_path_buf()));
    }
    let path = dir.join(CONFIG_FILE);
    if !path.exists() {
        return Err(ModelIoError::MissingFile {
            dir: dir.to_path_buf(),
            file: CONFIG_FILE,
        });
    }
    read_spec_file(&path)
}

/// Reads and checks the model part of a config file at any path (e.g. one shipped beside a
/// safetensors file).
pub fn read_spec_file(path: &Path) -> Result<ModelSpec, ModelIoError> {
    let spec: ModelSpec = read_json(path)?;
    // Everything `config.json` says is checked before anything is built or allocated from it.
    spec.validate()
        .map_err(|e| ModelIoError::bad_config(path, e))?;
    Ok(spec)
}

/// Reads a JSON file into `T`, naming the offending field on failure
/// (`image_size: invalid type ...`).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ModelIoError> {
    let text = catdog_data::read_small_text(path, catdog_data::MAX_STATE_BYTES)
        .map_err(|e| ModelIoError::bad_config(path, e))?;
    let mut json = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        // serde quotes the offending value, which may hold terminal escapes.
        ModelIoError::bad_config(path, printable(&e.to_string()).into_owned())
    })
}

/// Loads `dir/config.json` and the folder's weights (`model.bpk`, else `model.safetensors`; with
/// both present, the one whose checksum `config.json` records, and a warning) onto `device`, in
/// inference mode.
pub fn load_model(dir: &Path, device: &Device) -> Result<LoadedModel, ModelIoError> {
    let spec = read_spec(dir)?;
    let burnpack = dir.join(WEIGHTS_FILE);
    let safetensors = dir.join(SAFETENSORS_FILE);
    let mut warnings = Vec::new();
    // With both files present, the one whose checksum was recorded is verified while choosing.
    let (weights, verified) = match (burnpack.is_file(), safetensors.is_file()) {
        (true, true) => {
            let recorded = |path: &Path| -> Result<bool, ModelIoError> {
                Ok(spec.weights_crc32.is_some()
                    && spec.weights_crc32 == Some(weights_checksum(path)?))
            };
            let burnpack_recorded = recorded(&burnpack)?;
            let safetensors_recorded = !burnpack_recorded && recorded(&safetensors)?;
            let (used, unused) = if safetensors_recorded {
                (SAFETENSORS_FILE, WEIGHTS_FILE)
            } else {
                (WEIGHTS_FILE, SAFETENSORS_FILE)
            };
            warnings.push(format!(
                "{} holds both {WEIGHTS_FILE} and {SAFETENSORS_FILE}: {used} is used, {unused} \
                 ignored",
                printable(&dir.to_string_lossy())
            ));
            (dir.join(used), burnpack_recorded || safetensors_recorded)
        }
        (true, false) => (burnpack.clone(), false),
        (false, true) => (safetensors, false),
        (false, false) => {
            return Err(ModelIoError::MissingFile {
                dir: dir.to_path_buf(),
                file: WEIGHTS_FILE,
            })
        }
    };
    if let (Some(expected), false) = (spec.weights_crc32, verified) {
        let found = weights_checksum(&weights)?;
        if found != expected {
            return Err(ModelIoError::bad_weights(
                &weights,
                format!(
                    "its checksum {found:08x} does not match the {expected:08x} in config.json: \
                     the file is damaged, or an export or training into this folder was \
                     interrupted (export or train it again)"
                ),
            ));
        }
    }
    let model = if weights == burnpack {
        load_weights(&spec.model, &weights, device)?
    } else {
        load_safetensors(&spec.model, &weights, device)?
    };
    Ok(LoadedModel {
        spec,
        model: model.valid(),
        warnings,
    })
}

/// The CRC-32 of a weights file, as [`ModelSpec::weights_crc32`] records it.
pub fn weights_checksum(path: &Path) -> Result<u32, ModelIoError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| ModelIoError::bad_weights(path, e))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(hasher.finalize()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) => return Err(ModelIoError::bad_weights(path, e)),
        }
    }
}

/// Builds the configured model and fills it with `load`, refusing any mismatch. A malformed file
/// must be an error, never a crash: any panic in a decoder is contained here.
fn load_into(
    config: &ModelConfig,
    path: &Path,
    device: &Device,
    load: impl FnOnce(Classifier) -> Result<Classifier, String>,
) -> Result<Classifier, ModelIoError> {
    let model = Classifier::new(config, device).map_err(|e| ModelIoError::bad_weights(path, e))?;
    let loaded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(model).map(into_f32)));
    match loaded {
        Ok(Ok(m)) => match first_non_finite(&m) {
            // NaN or infinite weights give NaN logits for every image: refused, not run.
            Some(name) => Err(ModelIoError::bad_weights(
                path,
                format!("tensor {name} holds NaN or infinite values"),
            )),
            None => Ok(m),
        },
        Ok(Err(reason)) => Err(ModelIoError::bad_weights(path, reason)),
        Err(_) => Err(ModelIoError::bad_weights(path, "malformed weights file")),
    }
}

/// `model` with every float tensor in f32. A file's tensors load in the dtype they were stored
/// in (PyTorch users save float16, bfloat16 or float64), and catdog's kernels, optimiser and
/// exports work in f32.
fn into_f32(model: Classifier) -> Classifier {
    struct ToF32;
    impl ModuleMapper for ToF32 {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if param.val().dtype() == DType::F32 {
                return param;
            }
            param.map(|t| {
                let device = t.device();
                Tensor::from_data(t.into_data().convert::<f32>(), &device)
            })
        }
    }
    model.map(&mut ToF32)
}

/// The path of the first float tensor of `model` with a NaN or infinite value.
fn first_non_finite(model: &Classifier) -> Option<String> {
    #[derive(Default)]
    struct Finder {
        path: Vec<String>,
        found: Option<String>,
    }
    impl ModuleVisitor for Finder {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.found.is_none() && !param.val().into_data().iter::<f32>().all(f32::is_finite) {
                self.found = Some(self.path.join("."));
            }
        }
    }
    let mut finder = Finder::default();
    model.visit(&mut finder);
    finder.found
}

/// Loads burnpack weights (`model.bpk`) into the configured model.
pub fn load_weights(
    config: &ModelConfig,
    path: &Path,
    device: &Device,
) -> Result<Classifier, ModelIoError> {
    load_into(config, path, device, |model| {
        model.try_load_file(path).map_err(|e| {
            format!("{e} (were they written for another architecture or class count?)")
        })
    })
}

/// Tensor names of the safetensors convention, in PyTorch's `state_dict` style: no enum variant
/// (`hidden.0.weight`, not `Mlp.hidden.0.weight`), Linear weights `[out, in]`, BatchNorm
/// `weight/bias/running_mean/running_var`.
fn pytorch_store(bytes: Option<Vec<u8>>) -> SafetensorsStore {
    SafetensorsStore::from_bytes(bytes)
        .skip_enum_variants(true)
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_from_adapter(PyTorchToBurnAdapter)
}

/// Loads weights from a safetensors file in PyTorch convention (as written by
/// [`save_safetensors`], or by PyTorch's `safetensors.torch.save_file` with the same names).
///
/// Every tensor of the model must be present with its shape, and every tensor of the file must
/// be used (PyTorch's `num_batches_tracked` counters aside): a file for another architecture is
/// refused rather than half-loaded.
pub fn load_safetensors(
    config: &ModelConfig,
    path: &Path,
    device: &Device,
) -> Result<Classifier, ModelIoError> {
    let bytes = std::fs::read(path).map_err(|e| ModelIoError::bad_weights(path, e))?;
    load_into(config, path, device, |mut model| {
        // Partial and unvalidated, so the mismatches come back as a list to report, not as
        // burn-store's own advice on how to configure it.
        let mut store = pytorch_store(Some(bytes))
            .allow_partial(true)
            .validate(false);
        let result = model.load_from(&mut store).map_err(|e| e.to_string())?;
        let unused: Vec<String> = result
            .unused
            .iter()
            .filter(|name| !name.ends_with("num_batches_tracked"))
            .cloned()
            .collect();
        let missing: Vec<String> = result
            .missing
            .iter()
            .map(|(path, _)| path.clone())
            .collect();
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        let mut problems = Vec::new();
        for (what, items) in [
            ("missing", &missing),
            ("not in the model", &unused),
            ("wrong", &errors),
        ] {
            if !items.is_empty() {
                problems.push(format!("{what}: {}", abbreviated(items)));
            }
        }
        if problems.is_empty() {
            Ok(model)
        } else {
            Err(format!(
                "its tensors do not match the model described by its config ({})",
                problems.join("; ")
            ))
        }
    })
}

/// The first few items of a list and how many there are in all.
fn abbreviated(items: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut s = items[..items.len().min(SHOWN)].join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(", ... ({} in all)", items.len()));
    }
    s
}

/// Saves weights as safetensors in PyTorch convention, atomically.
pub fn save_safetensors(model: &Classifier, path: &Path) -> Result<(), ModelIoError> {
    let err = |e: &dyn std::fmt::Display| ModelIoError::write(path, e.to_string());
    let mut store = pytorch_store(None).metadata("catdog_version", env!("CARGO_PKG_VERSION"));
    model.save_into(&mut store).map_err(|e| err(&e))?;
    let bytes = store.get_bytes().map_err(|e| err(&e))?;
    let bytes = with_sorted_header(&bytes).ok_or_else(|| err(&"a malformed safetensors header"))?;
    write_atomic(path, &bytes).map_err(|e| ModelIoError::write(path, e))
}

/// A safetensors file with its JSON header's keys in sorted order: burn writes the metadata
/// from a hash map, in a new order every run, so the same weights gave different bytes.
fn with_sorted_header(bytes: &[u8]) -> Option<Vec<u8>> {
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: serde_json::Value = serde_json::from_slice(bytes.get(8..8 + len)?).ok()?;
    // serde_json's maps are sorted (BTreeMap) in this build; the data offsets are relative to
    // the end of the header, so only its length changes. Padded with spaces to 8 bytes, as
    // the format's writers do.
    let mut text = serde_json::to_vec(&header).ok()?;
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - len);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + len..]);
    Some(out)
}

/// Saves weights atomically: a temporary file in the same folder, synced, then a rename.
pub fn save_weights(model: &Classifier, path: &Path) -> Result<(), ModelIoError> {
    write_atomic_with(path, |tmp| {
        model
            .clone()
            .save_file(tmp)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
    .map_err(|e| ModelIoError::write(path, e))
}

/// Writes pretty JSON atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ModelIoError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| ModelIoError::write(path, e))?;
    text.push('\n');
    write_atomic(path, text.as_bytes()).map_err(|e| ModelIoError::write(path, e))
}
