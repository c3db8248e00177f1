//! No zero-size tensors on the candle path.
//!
//! On CUDA a zero-size tensor is a kernel launch with zero blocks, which the driver rejects
//! (`CUDA_ERROR_INVALID_VALUE`, candle #2327), while the CPU accepts it: a zero-size pad that
//! works in every CPU test stops the first GPU forward. The candle path creates its constants
//! through [`full`], which gives `None` for an empty shape, and [`check_graph`] lets a CPU test
//! walk a forward/backward graph and fail on any empty tensor in it.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Shape, Tensor};

/// `Tensor::full(value, shape)` as `dtype`, or `None` when the shape has no elements (callers
/// leave the part out instead of creating it).
pub fn full(
    value: f32,
    shape: impl Into<Shape>,
    dtype: DType,
    device: &Device,
) -> Result<Option<Tensor>> {
    let shape = shape.into();
    if shape.elem_count() == 0 {
        return Ok(None);
    }
    Ok(Some(Tensor::full(value, shape, device)?.to_dtype(dtype)?))
}

/// Errors, naming the shapes, if `t` or any tensor of the graph that leads from variables to it
/// has no elements (every op the backward pass will run is on one of those tensors).
pub fn check_graph(t: &Tensor, what: &str) -> Result<()> {
    let empty: Vec<String> = t
        .sorted_nodes()
        .into_iter()
        .chain(std::iter::once(t))
        .filter(|n| n.elem_count() == 0)
        .map(|n| format!("{:?}", n.dims()))
        .collect();
    if empty.is_empty() {
        Ok(())
    } else {
        Err(candle_core::Error::Msg(format!(
            "{what}: zero-size tensors in the graph (CUDA rejects them): {}",
            empty.join(", ")
        )))
    }
}

/// [`check_graph`] for each gradient in `grads` of the tensors `of` (and each one's own graph,
/// when it is differentiated again).
pub fn check_grads(grads: &GradStore, of: &[&Tensor], what: &str) -> Result<()> {
    for (i, t) in of.iter().enumerate() {
        if let Some(g) = grads.get(t) {
            check_graph(g, &format!("{what}: gradient {i}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    #[test]
    fn empty_shapes_give_none_and_graphs_with_them_are_reported() {
        let dev = Device::Cpu;
        assert!(full(0.0, (2, 0, 3), DType::F32, &dev).unwrap().is_none());
        let t = full(-1.0, (2, 3), DType::F64, &dev).unwrap().unwrap();
        assert_eq!(t.dtype(), DType::F64);
        let v = Var::new(&[1f32, 2., 3.], &dev).unwrap();
        let y = v.as_tensor().sqr().unwrap().sum_all().unwrap();
        check_graph(&y, "sum").unwrap();
        // A graph through an empty slice is caught.
        let bad = v.as_tensor().narrow(0, 1, 0).unwrap().sum_all().unwrap();
        let e = check_graph(&bad, "narrow").unwrap_err().to_string();
        assert!(e.contains("[0]"), "{e}");
    }
}
