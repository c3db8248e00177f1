//! Tensors read into host `f64`s: moved to the CPU first, then cast. Metal has no f64, so a cast
//! on the device fails there (and on CUDA it is a needless kernel before the copy).

use candle_core::{DType, Device, Result, Tensor};

/// `t` on the CPU as f64 (same shape; no copy for a CPU f64 tensor).
pub fn to_host_f64(t: &Tensor) -> Result<Tensor> {
    t.to_device(&Device::Cpu)?.to_dtype(DType::F64)
}

/// Every element of `t`, flattened, as f64.
pub fn vec_f64(t: &Tensor) -> Result<Vec<f64>> {
    to_host_f64(t)?.flatten_all()?.to_vec1::<f64>()
}

/// The single element of `t` (any shape with one element) as f64.
pub fn scalar_f64(t: &Tensor) -> Result<f64> {
    match vec_f64(t)?[..] {
        [v] => Ok(v),
        _ => candle_core::bail!("expected one element, got shape {:?}", t.dims()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_any_float_dtype_and_rejects_non_scalars() {
        let t = Tensor::new(&[[1.5f32, -2.0]], &Device::Cpu).unwrap();
        assert_eq!(vec_f64(&t).unwrap(), vec![1.5, -2.0]);
        assert_eq!(to_host_f64(&t).unwrap().dims(), &[1, 2]);
        assert!(scalar_f64(&t).is_err());
        let s = Tensor::new(&[[0.25f32]], &Device::Cpu).unwrap();
        assert_eq!(scalar_f64(&s).unwrap(), 0.25);
    }
}
