//! `models`: the zoo's model registry.
//!
//! `models list` prints every model with its parameter count, forward FLOPs per input and input
//! shape; `models info NAME` one model's layers (with their FLOPs) and tensors. FLOPs are `2 ×`
//! the multiply-accumulates of the convolutions and linear layers, counted in one evaluation
//! forward (`zoo_models::flops`).

use anyhow::Result;
use candle_core::Device;
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use zoo_models::registry::{self, Entry, ModelSummary};

#[derive(Parser)]
#[command(
    name = "models",
    about = "List the zoo's models with their parameters and forward FLOPs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every model: name, parameters, forward FLOPs per input, input shape, description.
    List,
    /// One model: its spec, its convolution and linear layers with their FLOPs, its tensors.
    Info {
        /// Registry name (`models list` prints them).
        name: String,
        /// Output classes (default: those of the data set the model was made for).
        #[arg(long)]
        classes: Option<usize>,
    },
}

/// `n` with an SI suffix, 3 significant digits or more (e.g. `464 K`, `139 M`, `8.41 G`).
fn si(n: u64) -> String {
    let (v, unit) = match n {
        0..1_000 => return n.to_string(),
        1_000..1_000_000 => (n as f64 / 1e3, "K"),
        1_000_000..1_000_000_000 => (n as f64 / 1e6, "M"),
        _ => (n as f64 / 1e9, "G"),
    };
    let digits = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    format!("{v:.digits$} {unit}")
}

fn shape(s: &[usize]) -> String {
    s.iter().map(usize::to_string).collect::<Vec<_>>().join("×")
}

fn list(dev: &Device) -> Result<()> {
    println!(
        "{:<17} {:>9} {:>12} {:>10}  description",
        "name", "params", "FLOPs/input", "input"
    );
    for e in registry::MODELS {
        let s = registry::summarize(&e.spec(e.default_classes), dev)?;
        println!(
            "{:<17} {:>9} {:>12} {:>10}  {}",
            e.name,
            si(s.num_params as u64),
            si(s.flops),
            shape(&s.input_shape),
            e.description
        );
    }
    println!("\nFLOPs: 2 × multiply-accumulates of convolutions and linear layers, one input.");
    Ok(())
}

fn info(e: &Entry, classes: usize, dev: &Device) -> Result<()> {
    let spec = e.spec(classes);
    let s: ModelSummary = registry::summarize(&spec, dev)?;
    println!("{}: {}", e.name, e.description);
    println!("spec: {}", serde_json::to_string(&spec)?);
    println!(
        "input {}, output {}",
        shape(&s.input_shape),
        shape(&s.output_shape)
    );
    println!(
        "parameters {} ({}), buffers {} scalars",
        s.num_params,
        si(s.num_params as u64),
        s.num_buffer_elements
    );
    println!("forward FLOPs per input {} ({})\n", s.flops, si(s.flops));
    println!(
        "{:<28} {:<7} {:>16} {:>14} {:>12}",
        "layer", "kind", "weight", "output", "FLOPs"
    );
    for l in &s.layers {
        println!(
            "{:<28} {:<7} {:>16} {:>14} {:>12}",
            l.name,
            format!("{:?}", l.kind).to_lowercase(),
            shape(&l.weight_shape),
            shape(&l.output_shape),
            l.flops
        );
    }
    println!("\n{:<40} {:>16}  kind", "tensor", "shape");
    for t in &s.tensors {
        let kind = if t.variable { "variable" } else { "buffer" };
        println!("{:<40} {:>16}  {kind}", t.name, shape(&t.shape));
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let dev = Device::Cpu;
    match cli.cmd {
        Cmd::List => list(&dev),
        Cmd::Info { name, classes } => {
            let e = registry::find(&name)?;
            info(e, classes.unwrap_or(e.default_classes), &dev)
        }
    }
}

fn main() -> ExitCode {
    // SAFETY: the first statement of main, before any thread starts.
    unsafe { zoo::init_process() };
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
