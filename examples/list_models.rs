//! Lists the zoo's models through the registry: parameters, forward FLOPs per input, input shape.
//!
//! ```sh
//! cargo run --release --example list_models
//! ```

use anyhow::Result;
use candle_core::Device;
use zoo_models::registry;

fn main() -> Result<()> {
    // SAFETY: the first statement of main; no other thread exists yet.
    unsafe { zoo_models::init() };
    print!("{}", run(&Device::Cpu)?);
    Ok(())
}

/// One line per model.
pub fn run(dev: &Device) -> Result<String> {
    let mut out = String::new();
    for entry in registry::MODELS {
        let s = registry::summarize(&entry.spec(entry.default_classes), dev)?;
        out += &format!(
            "{:<17} {:>10} params {:>12} FLOPs  input {:?}  {}\n",
            entry.name, s.num_params, s.flops, s.input_shape, entry.description
        );
    }
    Ok(out)
}
