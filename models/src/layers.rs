//! Functional layers: a [`Builder`] that registers parameters under PyTorch names with seeded
//! initialisation, and forward functions that read them from a [`ParamSet`].
//!
//! All convolution, pooling, linear and batch-norm arithmetic goes through [`crate::ops`], so the
//! fast CPU path (with differentiable backwards) applies to every model. Use these to write your
//! own [`Classifier`](crate::Classifier).

use crate::classifier::Ctx;
use crate::init::Init;
use crate::ops;
use crate::params::{ParamSet, ParamStore, NUM_BATCHES_TRACKED};
use candle_core::{bail, DType, Device, Result, Tensor};
use rand::rngs::StdRng;
use rand::Rng;

/// BatchNorm ε, as PyTorch's default.
pub const BN_EPS: f64 = 1e-5;
/// BatchNorm running-statistics momentum, as PyTorch's default.
pub const BN_MOMENTUM: f64 = 0.1;

/// Registers parameters in a [`ParamStore`], drawing initial values from a seeded rng. Parameters
/// are created in the order the architecture's constructor calls the builder, so the same seed
/// always gives the same weights.
pub struct Builder<'r> {
    store: ParamStore,
    rng: &'r mut StdRng,
    dtype: DType,
}

impl<'r> Builder<'r> {
    /// A builder for an `f32` model on `device`.
    pub fn new(device: &Device, rng: &'r mut StdRng) -> Self {
        Self {
            store: ParamStore::new(device),
            rng,
            dtype: DType::F32,
        }
    }

    /// The rng (for architecture-specific draws).
    pub fn rng(&mut self) -> &mut StdRng {
        self.rng
    }

    /// A tensor of `shape` drawn with `init`.
    pub fn draw(&mut self, shape: &[usize], init: Init) -> Result<Tensor> {
        let dev = self.store.device().clone();
        init.tensor(shape, self.dtype, &dev, self.rng)
    }

    /// Adds a variable `name` of `shape` drawn with `init`.
    pub fn var(&mut self, name: &str, shape: &[usize], init: Init) -> Result<()> {
        let t = self.draw(shape, init)?;
        self.store.add_var(name, t)
    }

    /// Convolution weight `{name}.weight` of shape `(c_out, c_in / groups, k, k)`, no bias.
    pub fn conv(
        &mut self,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        groups: usize,
        init: Init,
    ) -> Result<()> {
        if groups == 0 || !c_in.is_multiple_of(groups) || !c_out.is_multiple_of(groups) {
            bail!("conv `{name}`: channels {c_in}->{c_out} not divisible by groups {groups}")
        }
        self.var(
            &format!("{name}.weight"),
            &[c_out, c_in / groups, k, k],
            init,
        )
    }

    /// Bias `{name}.bias` of `n` values drawn with `init` (of a [`Builder::conv`] or
    /// [`Builder::linear`] layer `name` with `n` outputs).
    pub fn bias(&mut self, name: &str, n: usize, init: Init) -> Result<()> {
        self.var(&format!("{name}.bias"), &[n], init)
    }

    /// Linear layer `{name}.weight` `(out, in)` and, when `bias_init` is given, `{name}.bias`.
    pub fn linear(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
        init: Init,
        bias_init: Option<Init>,
    ) -> Result<()> {
        self.var(&format!("{name}.weight"), &[d_out, d_in], init)?;
        if let Some(b) = bias_init {
            self.bias(name, d_out, b)?;
        }
        Ok(())
    }

    /// PyTorch's default `nn.Linear(d_in, d_out)`.
    pub fn linear_default(&mut self, name: &str, d_in: usize, d_out: usize) -> Result<()> {
        self.linear(
            name,
            d_in,
            d_out,
            Init::PytorchDefault,
            Some(Init::bias_default(d_in)),
        )
    }

    /// BatchNorm with `c` channels: weight 1, bias 0, running mean 0, running var 1, counter 0.
    pub fn bn(&mut self, name: &str, c: usize) -> Result<()> {
        self.var(&format!("{name}.weight"), &[c], Init::Constant(1.0))?;
        self.var(&format!("{name}.bias"), &[c], Init::Constant(0.0))?;
        let dev = self.store.device().clone();
        self.store.add_buffer(
            format!("{name}.running_mean"),
            Tensor::zeros(c, self.dtype, &dev)?,
        )?;
        self.store.add_buffer(
            format!("{name}.running_var"),
            Tensor::ones(c, self.dtype, &dev)?,
        )?;
        self.store
            .add_counter(format!("{name}.{NUM_BATCHES_TRACKED}"))
    }

    /// The finished store.
    pub fn finish(self) -> ParamStore {
        self.store
    }
}

/// Convolution `{name}.weight` (plus `{name}.bias` if present in `p`).
pub fn conv2d(
    p: &ParamSet,
    name: &str,
    x: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    let w = p.get(&format!("{name}.weight"))?;
    let bias = format!("{name}.bias");
    if p.contains(&bias) {
        ops::conv2d_bias(x, w, p.get(&bias)?, stride, padding, groups)
    } else {
        ops::conv2d(x, w, stride, padding, groups)
    }
}

/// Linear layer `{name}.weight` (plus `{name}.bias` if present in `p`).
pub fn linear(p: &ParamSet, name: &str, x: &Tensor) -> Result<Tensor> {
    let (w, b) = linear_params(p, name)?;
    ops::linear(x, w, b)
}

/// [`linear`] followed by ReLU, fused into one op ([`ops::linear_relu`]) when the layer has a
/// bias.
pub fn linear_relu(p: &ParamSet, name: &str, x: &Tensor) -> Result<Tensor> {
    match linear_params(p, name)? {
        (w, Some(b)) => ops::linear_relu(x, w, b),
        (w, None) => ops::relu(&ops::linear(x, w, None)?),
    }
}

/// Layer `name`'s weight and, if it has one, bias.
fn linear_params<'a>(p: &'a ParamSet, name: &str) -> Result<(&'a Tensor, Option<&'a Tensor>)> {
    let bias = format!("{name}.bias");
    let b = if p.contains(&bias) {
        Some(p.get(&bias)?)
    } else {
        None
    };
    Ok((p.get(&format!("{name}.weight"))?, b))
}

/// BatchNorm `name` on `(n, c)` or `(n, c, h, w)` input.
///
/// Training mode normalises with batch statistics; when `ctx.update_stats` is set it also updates
/// the running statistics in `store` as PyTorch does (momentum 0.1, unbiased batch variance) and
/// bumps `num_batches_tracked`. Evaluation uses the running statistics (converted to the input's
/// dtype, so an `f64` parameter set works with an `f32` store).
pub fn batch_norm(
    store: &ParamStore,
    p: &ParamSet,
    name: &str,
    x: &Tensor,
    ctx: &Ctx,
) -> Result<Tensor> {
    norm(store, p, name, x, ctx, false)
}

/// [`batch_norm`] followed by ReLU, as one fused op on the CPU fast path
/// ([`ops::batch_norm_relu_train`]).
pub fn batch_norm_relu(
    store: &ParamStore,
    p: &ParamSet,
    name: &str,
    x: &Tensor,
    ctx: &Ctx,
) -> Result<Tensor> {
    norm(store, p, name, x, ctx, true)
}

/// [`batch_norm`], with a ReLU after it when `relu`.
fn norm(
    store: &ParamStore,
    p: &ParamSet,
    name: &str,
    x: &Tensor,
    ctx: &Ctx,
    relu: bool,
) -> Result<Tensor> {
    let gamma = p.get(&format!("{name}.weight"))?;
    let beta = p.get(&format!("{name}.bias"))?;
    let rm_name = format!("{name}.running_mean");
    let rv_name = format!("{name}.running_var");
    if ctx.train {
        let c = x.dim(1)?;
        let n = x.elem_count() / c.max(1);
        if n <= 1 {
            bail!("batch norm `{name}` in training mode needs more than one value per channel, got input {:?}", x.dims())
        }
        let (y, mean, var) = if relu {
            ops::batch_norm_relu_train(x, gamma, beta, BN_EPS)?
        } else {
            ops::batch_norm_train(x, gamma, beta, BN_EPS)?
        };
        if ctx.update_stats {
            let rm = store.buffer(&rm_name)?;
            let rv = store.buffer(&rv_name)?;
            let mean = mean.detach().to_dtype(rm.dtype())?;
            let var_unbiased = (var.detach().to_dtype(rv.dtype())? * (n as f64 / (n - 1) as f64))?;
            let new_rm = ((rm * (1.0 - BN_MOMENTUM))? + (mean * BN_MOMENTUM)?)?;
            let new_rv = ((rv * (1.0 - BN_MOMENTUM))? + (var_unbiased * BN_MOMENTUM)?)?;
            store.set_buffer(&rm_name, &new_rm)?;
            store.set_buffer(&rv_name, &new_rv)?;
            store.bump_counter(&format!("{name}.{NUM_BATCHES_TRACKED}"));
        }
        Ok(y)
    } else {
        let rm = store.buffer(&rm_name)?.to_dtype(x.dtype())?;
        let rv = store.buffer(&rv_name)?.to_dtype(x.dtype())?;
        let y = ops::batch_norm_eval(x, gamma, beta, &rm, &rv, BN_EPS)?;
        if relu {
            ops::relu(&y)
        } else {
            Ok(y)
        }
    }
}

/// Inverted dropout: in training mode each element is kept with probability `1 − rate` and
/// scaled by `1/(1 − rate)`; the Bernoulli mask is drawn on the CPU from `ctx.rng`, so a seed
/// fixes it. Identity in evaluation mode or when `rate == 0`.
pub fn dropout(x: &Tensor, rate: f64, ctx: &mut Ctx) -> Result<Tensor> {
    if !(0.0..1.0).contains(&rate) {
        bail!("dropout rate must be in [0, 1), got {rate}")
    }
    if !ctx.train || rate == 0.0 {
        return Ok(x.clone());
    }
    let Some(rng) = ctx.rng.as_deref_mut() else {
        bail!("dropout in training mode needs a seeded rng in Ctx::rng")
    };
    let keep = 1.0 - rate;
    let scale = (1.0 / keep) as f32;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f64>() < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), &Device::Cpu)?
        .to_dtype(x.dtype())?
        .to_device(x.device())?;
    x.mul(&mask)
}

/// 2×2 average pooling with stride 2 as a reshape + mean (exact gradients at every order; odd
/// trailing rows/columns dropped, as PyTorch's `avg_pool2d(x, 2)`).
pub fn avg_pool2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / 2, w / 2);
    x.narrow(2, 0, ho * 2)?
        .narrow(3, 0, wo * 2)?
        .reshape((n, c, ho, 2, wo, 2))?
        .mean(5)?
        .mean(3)
}

/// `x[:, :, ::2, ::2]` (the option-A shortcut's spatial subsampling), as a differentiable
/// reshape + narrow. Odd sizes keep the last row/column, as Python slicing does.
pub fn subsample2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let x = x.pad_with_zeros(2, 0, h % 2)?.pad_with_zeros(3, 0, w % 2)?;
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    x.reshape((n, c, ho, 2, wo, 2))?
        .narrow(5, 0, 1)?
        .narrow(3, 0, 1)?
        .reshape((n, c, ho, wo))
}

/// ReLU through `ops::relu` (fused backward on the CPU fast path).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    ops::relu(x)
}
