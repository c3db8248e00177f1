//! Functional parameters: a [`ParamStore`] owns a model's trainable [`Var`]s and its buffers under
//! PyTorch-style names; a [`ParamSet`] is any name → [`Tensor`] map a model can run forward with.
//!
//! Models never read their weights from the store during forward: they take a `&ParamSet`. The
//! set returned by [`ParamStore::params`] holds the variables' own tensors, so `backward()` reaches
//! the `Var`s; a set built from `θ − α∇θL` (still attached to the graph) evaluates the virtual
//! update of L2RW / Meta-Weight-Net without touching the real weights.

use crate::checkpoint::{load_tensors, save_tensors};
use candle_core::{bail, DType, Device, Result, Tensor, Var};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::RwLock;

/// Name → tensor map used for forward passes. Iteration order is the names' lexicographic order,
/// so anything built by iterating a set (optimiser state, flattened gradients) is deterministic.
#[derive(Debug, Clone, Default)]
pub struct ParamSet {
    map: BTreeMap<String, Tensor>,
}

impl ParamSet {
    /// Wraps an existing map (e.g. virtual parameters `θ' = θ − α∇θL`).
    pub fn new(map: BTreeMap<String, Tensor>) -> Self {
        Self { map }
    }

    /// The tensor called `name`, or an error naming it and listing a few known names.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        match self.map.get(name) {
            Some(t) => Ok(t),
            None => {
                let known: Vec<&str> = self.map.keys().take(8).map(|s| s.as_str()).collect();
                bail!(
                    "parameter `{name}` is not in this ParamSet ({} entries; first: {known:?})",
                    self.map.len()
                )
            }
        }
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Inserts or replaces `name`, returning the previous tensor.
    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) -> Option<Tensor> {
        self.map.insert(name.into(), t)
    }

    /// Entries in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.map.iter()
    }

    /// Names in order.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the set has no tensors.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Total number of scalars.
    pub fn num_elements(&self) -> usize {
        self.map.values().map(|t| t.elem_count()).sum()
    }

    /// The underlying map.
    pub fn as_map(&self) -> &BTreeMap<String, Tensor> {
        &self.map
    }

    /// Consumes the set into its map.
    pub fn into_map(self) -> BTreeMap<String, Tensor> {
        self.map
    }

    /// Applies `f(name, tensor)` to every entry, e.g.
    /// `p.map(|n, t| t - (grads.get(n) * lr))` for a virtual SGD step.
    pub fn map<F>(&self, mut f: F) -> Result<ParamSet>
    where
        F: FnMut(&str, &Tensor) -> Result<Tensor>,
    {
        let mut out = BTreeMap::new();
        for (n, t) in &self.map {
            out.insert(n.clone(), f(n, t)?);
        }
        Ok(ParamSet { map: out })
    }

    /// The same tensors cut from the graph (no gradient will flow back through them).
    pub fn detach(&self) -> ParamSet {
        ParamSet {
            map: self
                .map
                .iter()
                .map(|(n, t)| (n.clone(), t.detach()))
                .collect(),
        }
    }

    /// Every tensor converted to `dtype` (e.g. F64 for finite-difference tests). The conversion is
    /// differentiable, so gradients still reach the original variables.
    pub fn to_dtype(&self, dtype: DType) -> Result<ParamSet> {
        self.map(|_, t| t.to_dtype(dtype))
    }
}

impl FromIterator<(String, Tensor)> for ParamSet {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> Self {
        Self {
            map: iter.into_iter().collect(),
        }
    }
}

impl From<BTreeMap<String, Tensor>> for ParamSet {
    fn from(map: BTreeMap<String, Tensor>) -> Self {
        Self { map }
    }
}

/// Suffix PyTorch uses for BatchNorm's step counter; kept as an integer outside the tensor buffers
/// and written as an `I64` scalar on save so PyTorch's `load_state_dict(strict=True)` accepts the file.
pub const NUM_BATCHES_TRACKED: &str = "num_batches_tracked";

/// A model's state: trainable variables and non-trainable buffers, by PyTorch-style name.
///
/// Buffers (BatchNorm running statistics) sit behind a lock so a `&self` forward can update them
/// on real training steps. Variables can be frozen: a frozen variable is handed out *detached* by
/// [`params`](Self::params), so no gradient is computed for it, and [`trainable_vars`](Self::trainable_vars)
/// omits it (decoupled classifier retraining trains only the head).
#[derive(Debug)]
pub struct ParamStore {
    device: Device,
    vars: BTreeMap<String, Var>,
    buffers: RwLock<BTreeMap<String, Tensor>>,
    counters: RwLock<BTreeMap<String, i64>>,
    frozen: RwLock<BTreeSet<String>>,
}

impl ParamStore {
    /// An empty store on `device`.
    pub fn new(device: &Device) -> Self {
        Self {
            device: device.clone(),
            vars: BTreeMap::new(),
            buffers: RwLock::new(BTreeMap::new()),
            counters: RwLock::new(BTreeMap::new()),
            frozen: RwLock::new(BTreeSet::new()),
        }
    }

    /// The device the store's tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Registers a trainable variable initialised to `init` (copied). Errors on a duplicate name.
    pub fn add_var(&mut self, name: impl Into<String>, init: Tensor) -> Result<()> {
        let name = name.into();
        if self.vars.contains_key(&name) || self.read_buffers().contains_key(&name) {
            bail!("duplicate parameter name `{name}`")
        }
        let init = init.to_device(&self.device)?.contiguous()?;
        self.vars.insert(name, Var::from_tensor(&init)?);
        Ok(())
    }

    /// Registers a buffer (not trainable). Errors on a duplicate name.
    pub fn add_buffer(&mut self, name: impl Into<String>, init: Tensor) -> Result<()> {
        let name = name.into();
        if self.vars.contains_key(&name) || self.read_buffers().contains_key(&name) {
            bail!("duplicate buffer name `{name}`")
        }
        let init = init.to_device(&self.device)?.detach();
        self.write_buffers().insert(name, init);
        Ok(())
    }

    /// Registers an integer counter (BatchNorm's `num_batches_tracked`), starting at 0.
    pub fn add_counter(&mut self, name: impl Into<String>) -> Result<()> {
        let name = name.into();
        let mut c = self.counters.write().unwrap_or_else(|e| e.into_inner());
        if c.insert(name.clone(), 0).is_some() {
            bail!("duplicate counter name `{name}`")
        }
        Ok(())
    }

    /// Trainable variables by name (frozen ones included).
    pub fn vars(&self) -> &BTreeMap<String, Var> {
        &self.vars
    }

    /// The variable called `name`.
    pub fn var(&self, name: &str) -> Result<&Var> {
        match self.vars.get(name) {
            Some(v) => Ok(v),
            None => bail!(
                "no variable `{name}` in this model ({} variables)",
                self.vars.len()
            ),
        }
    }

    /// The variables' tensors, ready for a forward pass whose `backward()` reaches them; frozen
    /// variables are detached.
    pub fn params(&self) -> ParamSet {
        let frozen = self.read_frozen();
        self.vars
            .iter()
            .map(|(n, v)| {
                let t = if frozen.contains(n) {
                    v.as_detached_tensor()
                } else {
                    v.as_tensor().clone()
                };
                (n.clone(), t)
            })
            .collect()
    }

    /// Trainable (not frozen) variables in name order, for optimisers.
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        let frozen = self.read_frozen();
        self.vars
            .iter()
            .filter(|(n, _)| !frozen.contains(*n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }

    /// Whether `name` is a variable that is not frozen.
    pub fn is_trainable(&self, name: &str) -> bool {
        self.vars.contains_key(name) && !self.read_frozen().contains(name)
    }

    /// Freezes (`false`) or unfreezes (`true`) the variable `name`.
    pub fn set_trainable(&self, name: &str, trainable: bool) -> Result<()> {
        self.var(name)?;
        let mut f = self.frozen.write().unwrap_or_else(|e| e.into_inner());
        if trainable {
            f.remove(name);
        } else {
            f.insert(name.to_string());
        }
        Ok(())
    }

    /// Freezes every variable except those named in `keep` (e.g. the classifier head).
    pub fn freeze_all_except(&self, keep: &[&str]) -> Result<()> {
        for k in keep {
            self.var(k)?;
        }
        let mut f = self.frozen.write().unwrap_or_else(|e| e.into_inner());
        f.clear();
        for n in self.vars.keys() {
            if !keep.contains(&n.as_str()) {
                f.insert(n.clone());
            }
        }
        Ok(())
    }

    /// Makes every variable trainable again.
    pub fn unfreeze_all(&self) {
        self.frozen
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Number of trainable scalars (all variables, frozen or not; buffers excluded), as
    /// PyTorch's `sum(p.numel() for p in model.parameters())`.
    pub fn num_params(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// A copy of the buffer `name` (cheap: tensors share storage).
    pub fn buffer(&self, name: &str) -> Result<Tensor> {
        match self.read_buffers().get(name) {
            Some(t) => Ok(t.clone()),
            None => bail!("no buffer `{name}` in this model"),
        }
    }

    /// Replaces the buffer `name`; the new value must have the same shape. It is stored detached
    /// and converted to the buffer's dtype.
    pub fn set_buffer(&self, name: &str, value: &Tensor) -> Result<()> {
        let mut b = self.write_buffers();
        let Some(old) = b.get(name) else {
            bail!("no buffer `{name}` in this model")
        };
        if old.dims() != value.dims() {
            bail!(
                "buffer `{name}`: shape {:?} does not match the model's {:?}",
                value.dims(),
                old.dims()
            )
        }
        let v = value
            .detach()
            .to_dtype(old.dtype())?
            .to_device(&self.device)?;
        b.insert(name.to_string(), v);
        Ok(())
    }

    /// A snapshot of every buffer.
    pub fn buffers(&self) -> BTreeMap<String, Tensor> {
        self.read_buffers().clone()
    }

    /// Adds one to the counter `name` (no-op if the model has no such counter).
    pub fn bump_counter(&self, name: &str) {
        let mut c = self.counters.write().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = c.get_mut(name) {
            *v += 1;
        }
    }

    /// The value of counter `name`.
    pub fn counter(&self, name: &str) -> Result<i64> {
        match self
            .counters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            Some(v) => Ok(*v),
            None => bail!("no counter `{name}` in this model"),
        }
    }

    /// Every variable, buffer and counter as PyTorch's `model.state_dict()` would name them
    /// (variables detached; counters as `I64` scalars on the CPU).
    pub fn state_dict(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (n, v) in &self.vars {
            out.insert(n.clone(), v.as_detached_tensor());
        }
        for (n, t) in self.read_buffers().iter() {
            out.insert(n.clone(), t.clone());
        }
        for (n, c) in self
            .counters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            out.insert(n.clone(), Tensor::new(*c, &Device::Cpu)?);
        }
        Ok(out)
    }

    /// Loads a state dict: the names must match exactly (missing and unexpected names are both
    /// errors, listed) and shapes must agree. Values are converted to the model's dtype/device.
    /// Nothing is modified unless every check passes.
    pub fn load_state_dict(&self, sd: &BTreeMap<String, Tensor>) -> Result<()> {
        let counters_names: Vec<String> = self
            .counters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        let buffers = self.buffers();
        let mut expected: BTreeMap<&str, (&[usize], DType)> = BTreeMap::new();
        for (n, v) in &self.vars {
            expected.insert(n, (v.dims(), v.dtype()));
        }
        for (n, t) in &buffers {
            expected.insert(n, (t.dims(), t.dtype()));
        }
        for n in &counters_names {
            expected.insert(n, (&[], DType::I64));
        }
        let missing: Vec<&str> = expected
            .keys()
            .filter(|n| !sd.contains_key(**n))
            .copied()
            .collect();
        let unexpected: Vec<&str> = sd
            .keys()
            .filter(|n| !expected.contains_key(n.as_str()))
            .map(|s| s.as_str())
            .collect();
        if !missing.is_empty() || !unexpected.is_empty() {
            bail!("state dict does not match the model: missing {missing:?}, unexpected {unexpected:?}")
        }
        let mut bad = Vec::new();
        for (n, (dims, _)) in &expected {
            let got = sd[*n].dims();
            // PyTorch writes num_batches_tracked as a 0-d tensor; accept a 1-element vector too.
            let ok = got == *dims || (dims.is_empty() && sd[*n].elem_count() == 1);
            if !ok {
                bad.push(format!("`{n}`: checkpoint {got:?} vs model {dims:?}"));
            }
        }
        if !bad.is_empty() {
            bail!(
                "state dict shapes do not match the model: {}",
                bad.join("; ")
            )
        }
        for (n, v) in &self.vars {
            let t = sd[n].to_dtype(v.dtype())?.to_device(&self.device)?;
            v.set(&t)?;
        }
        for n in buffers.keys() {
            self.set_buffer(n, &sd[n])?;
        }
        let mut c = self.counters.write().unwrap_or_else(|e| e.into_inner());
        for n in &counters_names {
            let v = sd[n]
                .to_dtype(DType::I64)?
                .flatten_all()?
                .to_vec1::<i64>()?[0];
            c.insert(n.clone(), v);
        }
        Ok(())
    }

    /// Writes variables, buffers and counters to a safetensors file with PyTorch names, atomically.
    /// In PyTorch: `model.load_state_dict(safetensors.torch.load_file(path))`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_tensors(path, &self.state_dict()?)
    }

    /// Loads a file written by [`save`](Self::save) (or by PyTorch with the same names); see
    /// [`load_state_dict`](Self::load_state_dict) for the checks.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let sd = load_tensors(path, &Device::Cpu)?;
        self.load_state_dict(&sd)
            .map_err(|e| candle_core::Error::Msg(format!("loading {}: {e}", path.display())))
    }

    fn read_buffers(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Tensor>> {
        self.buffers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_buffers(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Tensor>> {
        self.buffers.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read_frozen(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<String>> {
        self.frozen.read().unwrap_or_else(|e| e.into_inner())
    }
}
