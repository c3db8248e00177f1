//! The one checkpoint layout of a reweighting run: `model.<name>` (the classifier's state dict),
//! `optim.<name>` (its SGD state), `rule.<name>` (the step rule's state) and the position in the
//! training stream as JSON. Runs checkpointed before the core keep resuming: the layout is the
//! one `l2rw`'s task wrote, which `mwn` and `mlnt` trained on.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Result};
use candle_core::Device;
use zoo_models::optim::{Optimizer, Sgd};
use zoo_models::ParamStore;

use super::rule::StepRule;
use crate::runner::TaskState;

const MODEL: &str = "model.";
const OPTIM: &str = "optim.";
const RULE: &str = "rule.";

/// A task's state: model, optimiser, rule and `(data epoch, batches consumed in it)`.
pub fn pack(
    model: &ParamStore,
    sgd: &Sgd,
    rule: &dyn StepRule,
    (data_epoch, data_pos): (usize, usize),
) -> Result<TaskState> {
    let mut tensors = HashMap::new();
    for (k, v) in model.state_dict()? {
        tensors.insert(format!("{MODEL}{k}"), v);
    }
    for (k, v) in sgd.state() {
        tensors.insert(format!("{OPTIM}{k}"), v);
    }
    for (k, v) in rule.state()? {
        tensors.insert(format!("{RULE}{k}"), v);
    }
    Ok(TaskState {
        tensors,
        json: serde_json::json!({ "data_epoch": data_epoch, "data_pos": data_pos }),
    })
}

/// Restores what [`pack`] wrote into the model, optimiser and rule; returns the data position.
pub fn unpack(
    state: TaskState,
    device: &Device,
    model: &ParamStore,
    sgd: &mut Sgd,
    rule: &mut dyn StepRule,
) -> Result<(usize, usize)> {
    let mut parts: [BTreeMap<String, candle_core::Tensor>; 3] = Default::default();
    for (k, v) in state.tensors {
        let v = v.to_device(device)?;
        let Some((i, name)) = [MODEL, OPTIM, RULE]
            .iter()
            .enumerate()
            .find_map(|(i, p)| k.strip_prefix(p).map(|n| (i, n.to_string())))
        else {
            bail!("unexpected tensor {k:?} in a reweighting checkpoint");
        };
        parts[i].insert(name, v);
    }
    let [m, o, r] = parts;
    model.load_state_dict(&m)?;
    sgd.load_state(&o)?;
    rule.restore(&r)?;
    let get = |k: &str| {
        state
            .json
            .get(k)
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
    };
    let (Some(e), Some(p)) = (get("data_epoch"), get("data_pos")) else {
        bail!("reweighting checkpoint lacks the data position");
    };
    Ok((e, p))
}
