//! What a model holds and costs: its tensors, parameter count and forward FLOPs per input,
//! counted layer by layer in one evaluation forward ([`crate::flops`]).

use super::{ModelSpec, ZooModel};
use crate::flops::{self, LayerKind};
use candle_core::{DType, Device, Result, Tensor, TensorId};
use rand::{rngs::StdRng, SeedableRng};
use std::collections::HashMap;

/// One named tensor of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSummary {
    /// PyTorch-style name, e.g. `layer1.0.conv1.weight`.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// A variable (trained) rather than a buffer (e.g. running statistics).
    pub variable: bool,
}

/// One convolution or linear layer of the forward pass, in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSummary {
    /// The weight's name without `.weight` (e.g. `layer1.0.conv1`), or `?` if not a variable.
    pub name: String,
    /// Convolution or linear.
    pub kind: LayerKind,
    /// The weight's shape.
    pub weight_shape: Vec<usize>,
    /// Output shape for one input (batch dimension left out).
    pub output_shape: Vec<usize>,
    /// FLOPs for one input (`2 ×` multiply-accumulates).
    pub flops: u64,
}

/// A model's size and cost ([`summarize`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    /// Shape of one input.
    pub input_shape: Vec<usize>,
    /// Shape of one output.
    pub output_shape: Vec<usize>,
    /// Scalars in the variables (PyTorch's `sum(p.numel() for p in model.parameters())`).
    pub num_params: usize,
    /// Scalars in the buffers (running statistics).
    pub num_buffer_elements: usize,
    /// Variables then buffers, by name.
    pub tensors: Vec<TensorSummary>,
    /// Convolution and linear layers in the order the forward runs them.
    pub layers: Vec<LayerSummary>,
    /// Forward FLOPs for one input: the sum over [`Self::layers`].
    pub flops: u64,
}

/// Builds `spec` on `device` (weights from seed 0) and summarises it.
pub fn summarize(spec: &ModelSpec, device: &Device) -> Result<ModelSummary> {
    let model = spec.build(&mut StdRng::seed_from_u64(0), device)?;
    summarize_model(model.as_ref(), &spec.input_shape())
}

/// Summarises `model` by one evaluation forward of a zero input of shape `input` (one input,
/// batch dimension left out) in f32.
pub fn summarize_model(model: &dyn ZooModel, input: &[usize]) -> Result<ModelSummary> {
    let store = model.store();
    let mut shape = vec![1];
    shape.extend_from_slice(input);
    let x = Tensor::zeros(shape, DType::F32, store.device())?;
    let (y, counted) = flops::count(|| model.forward(&x))?;
    let names: HashMap<TensorId, &str> = store
        .vars()
        .iter()
        .map(|(n, v)| (v.as_tensor().id(), n.as_str()))
        .collect();
    let layers: Vec<LayerSummary> = counted
        .into_iter()
        .map(|l| LayerSummary {
            name: names
                .get(&l.weight)
                .map(|n| n.strip_suffix(".weight").unwrap_or(n).to_string())
                .unwrap_or_else(|| "?".into()),
            kind: l.kind,
            weight_shape: l.weight_shape,
            output_shape: l.output_shape.iter().skip(1).copied().collect(),
            flops: l.flops,
        })
        .collect();
    let mut tensors: Vec<TensorSummary> = store
        .vars()
        .iter()
        .map(|(n, v)| TensorSummary {
            name: n.clone(),
            shape: v.dims().to_vec(),
            variable: true,
        })
        .collect();
    let buffers = store.buffers();
    tensors.extend(buffers.iter().map(|(n, t)| TensorSummary {
        name: n.clone(),
        shape: t.dims().to_vec(),
        variable: false,
    }));
    Ok(ModelSummary {
        input_shape: input.to_vec(),
        output_shape: y.dims().iter().skip(1).copied().collect(),
        num_params: store.num_params(),
        num_buffer_elements: buffers.values().map(|t| t.elem_count()).sum(),
        flops: layers.iter().map(|l| l.flops).sum(),
        tensors,
        layers,
    })
}
