//! `--backend fast|candle`: which implementation of the ops a run uses.
//!
//! Resolved once per experiment against its device (the fast path is CPU-only), selected on the
//! experiment's thread (runs side by side inherit it, see [`crate::parallel`]) and recorded as a
//! top-level `backend` in `config.json` and in the summary's run information. A `config.json`
//! saved before the field existed reads as `fast` (what every run here used), so `--resume` of
//! committed results still matches, and a run never resumes under the other backend.

use anyhow::{bail, Result};
use candle_core::Device;
use serde_json::Value;
use zoo_models::ops::Backend;

/// The config field.
pub const FIELD: &str = "backend";

/// The backend a run on `device` uses: `--backend` if given, else the device's default (fast on
/// the CPU, candle's ops on a GPU). `fast` on a GPU is an error (there is no fast GPU path).
pub fn resolve(flag: Option<Backend>, device: &Device) -> Result<Backend> {
    match flag {
        Some(Backend::Fast) if !device.is_cpu() => bail!(
            "--backend fast: the fast path runs on the CPU only; on {device:?} use --backend \
             candle (the default there) or --cpu"
        ),
        Some(b) => Ok(b),
        None => Ok(Backend::default_for(device)),
    }
}

/// Records `b` in a configuration's JSON form (`config.json`).
pub fn record(config: &mut Value, b: Backend) {
    if let Value::Object(m) = config {
        m.insert(FIELD.into(), Value::String(b.name().into()));
    }
}

/// `upgraded` (a saved configuration read through today's type, which drops fields it does not
/// know) with the saved `raw` configuration's backend put back, `fast` when it has none.
pub fn carry_saved(raw: &Value, mut upgraded: Value) -> Value {
    let saved = raw
        .get(FIELD)
        .cloned()
        .unwrap_or_else(|| Value::String(Backend::Fast.name().into()));
    if let Value::Object(m) = &mut upgraded {
        m.insert(FIELD.into(), saved);
    }
    upgraded
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_resolve_per_device_and_old_configs_read_as_fast() {
        assert_eq!(resolve(None, &Device::Cpu).unwrap(), Backend::Fast);
        assert_eq!(
            resolve(Some(Backend::Candle), &Device::Cpu).unwrap(),
            Backend::Candle
        );
        let mut v = json!({"lr": 0.1});
        record(&mut v, Backend::Candle);
        assert_eq!(v, json!({"lr": 0.1, "backend": "candle"}));
        // Saved before the field existed: fast. Saved with it: kept.
        assert_eq!(
            carry_saved(&json!({"lr": 0.1}), json!({"lr": 0.1}))[FIELD],
            "fast"
        );
        assert_eq!(carry_saved(&v, json!({"lr": 0.1}))[FIELD], "candle");
    }
}
