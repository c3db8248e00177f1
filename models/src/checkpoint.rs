//! safetensors files for weights, buffers and any other named tensors (optimiser state, RNG
//! state encoded as tensors). Writes are atomic: a temporary file in the same directory, then a
//! rename, so a crash mid-write never leaves a truncated checkpoint behind. Files get the mode
//! of any new file (`0644` under the usual umask).
//!
//! Model weights: [`ParamStore::save`](crate::params::ParamStore::save) /
//! [`ParamStore::load`](crate::params::ParamStore::load) use these functions with PyTorch names.

use candle_core::{Device, Result, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Writes `tensors` to `path` as safetensors, atomically (temp file + rename). Parent
/// directories are created.
pub fn save_tensors(path: impl AsRef<Path>, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let path = path.as_ref();
    let ctx = |e: std::io::Error, what: &str| {
        candle_core::Error::Msg(format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ctx(e, "creating the directory of"))?;
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| candle_core::Error::Msg(format!("not a file path: {}", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    // safetensors needs contiguous tensors; the HashMap is only the serialiser's input type, the
    // file's header order is fixed by safetensors itself.
    let map: HashMap<&str, Tensor> = tensors
        .iter()
        .map(|(n, t)| Ok((n.as_str(), t.detach().contiguous()?)))
        .collect::<Result<_>>()?;
    // The mode of a newly created file (0666 less the umask), set again after the write:
    // safetensors writes through a 0600 temporary file of its own.
    let mode = std::fs::File::create(&tmp)
        .and_then(|f| f.metadata())
        .map(|m| m.permissions())
        .map_err(|e| ctx(e, "creating a temporary file beside"))?;
    let written = candle_core::safetensors::save(&map, &tmp).and_then(|()| {
        std::fs::set_permissions(&tmp, mode).map_err(|e| candle_core::Error::Msg(e.to_string()))
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(candle_core::Error::Msg(format!(
            "writing {}: {e}",
            path.display()
        )));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ctx(e, "renaming the temporary file onto")
    })
}

/// Reads every tensor of a safetensors file onto `device`.
pub fn load_tensors(path: impl AsRef<Path>, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let path = path.as_ref();
    let map = candle_core::safetensors::load(path, device)
        .map_err(|e| candle_core::Error::Msg(format!("reading {}: {e}", path.display())))?;
    Ok(map.into_iter().collect())
}
