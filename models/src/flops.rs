//! Counting a forward pass's floating-point operations, layer by layer.
//!
//! Every zoo model computes its convolutions and linear layers through [`crate::ops`], which
//! report each one here while a [`count`] is running on the thread (otherwise the report is one
//! thread-local read). A layer's FLOPs are `2 ×` its multiply-accumulates (one multiply and one
//! add each): `2 · |output| · c_in/groups · kh · kw` for a convolution, `2 · |output| · in` for a
//! linear layer, as PyTorch's `torch.utils.flop_counter` counts (fvcore and the ResNet paper's
//! tables count multiply-accumulates: half these numbers). Biases, batch norm, activations and
//! pooling are not counted, and the count is that of the layer as defined, whatever algorithm
//! computes it (Winograd does fewer multiplies).

use candle_core::{Result, Tensor, TensorId};
use std::cell::RefCell;

/// The kind of a counted layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// A 2-D convolution (weight `(c_out, c_in/groups, kh, kw)`).
    Conv,
    /// A linear layer (weight `(out, in)`).
    Linear,
}

/// One convolution or linear layer run during [`count`].
#[derive(Debug, Clone, PartialEq)]
pub struct LayerFlops {
    /// Convolution or linear.
    pub kind: LayerKind,
    /// The weight tensor's id: match it against a store's variables to name the layer.
    pub weight: TensorId,
    /// The weight's shape.
    pub weight_shape: Vec<usize>,
    /// The layer's output shape (batch included).
    pub output_shape: Vec<usize>,
    /// `2 ×` multiply-accumulates, for the whole batch.
    pub flops: u64,
}

thread_local! {
    static LOG: RefCell<Option<Vec<LayerFlops>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns its value with the layers it ran on this thread, in order. A `count`
/// inside `f` takes its layers for itself. Work `f` hands to other threads is not seen (the zoo's
/// forward passes run their layers on the calling thread).
pub fn count<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Vec<LayerFlops>)> {
    /// Restores the enclosing count's log even if `f` panics (else every later op would keep
    /// appending to a log that nobody reads).
    struct Restore(Option<Option<Vec<LayerFlops>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(prev) = self.0.take() {
                LOG.with(|l| *l.borrow_mut() = prev);
            }
        }
    }
    let mut restore = Restore(Some(LOG.with(|l| l.replace(Some(Vec::new())))));
    let out = f();
    let prev = restore.0.take().unwrap_or_default();
    let layers = LOG.with(|l| l.replace(prev)).unwrap_or_default();
    Ok((out?, layers))
}

/// Total FLOPs of `layers`.
pub fn total(layers: &[LayerFlops]) -> u64 {
    layers.iter().map(|l| l.flops).sum()
}

/// Passes a convolution's or linear layer's output `y` through, noting it when a [`count`] runs
/// on this thread. Every output element costs `c_in/groups · kh · kw` (conv) or `in` (linear)
/// multiply-accumulates: the product of the weight's dims after the first.
pub(crate) fn note(kind: LayerKind, w: &Tensor, y: Result<Tensor>) -> Result<Tensor> {
    if let Ok(y) = &y {
        LOG.with(|l| {
            if let Some(log) = l.borrow_mut().as_mut() {
                let per_output: usize = w.dims().iter().skip(1).product();
                log.push(LayerFlops {
                    kind,
                    weight: w.id(),
                    weight_shape: w.dims().to_vec(),
                    output_shape: y.dims().to_vec(),
                    flops: 2 * (y.elem_count() as u64) * per_output as u64,
                });
            }
        });
    }
    y
}
