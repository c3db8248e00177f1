//! The model registry: specs, named constructors, parameter and FLOP counts against hand-computed
//! values, and candle's `Module` against the models' own evaluation forward.

use candle_core::{DType, Device, Module, Tensor};
use rand::{rngs::StdRng, SeedableRng};
use zoo_models::flops::{self, LayerKind};
use zoo_models::registry::{self, ModelSpec};
use zoo_models::{Classifier, Ctx};

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

/// Inputs from a seeded generator (candle's own cannot be seeded).
fn input(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut r = StdRng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n)
        .map(|_| rand::Rng::random_range(&mut r, -1.0f32..1.0))
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

#[test]
fn mlp_flops_are_two_multiply_adds_per_weight() {
    let spec = ModelSpec::Mlp {
        widths: vec![784, 100, 10],
        input_dropout: 0.0,
        hidden_dropout: 0.0,
        max_norm: None,
    };
    let s = registry::summarize(&spec, &Device::Cpu).unwrap();
    // 2·(784·100 + 100·10), by hand.
    assert_eq!(s.flops, 158_800);
    assert_eq!(s.num_params, 784 * 100 + 100 + 100 * 10 + 10);
    assert_eq!(s.input_shape, vec![784]);
    assert_eq!(s.output_shape, vec![10]);
    let names: Vec<&str> = s.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["layers.0", "layers.1"]);
    assert!(s.layers.iter().all(|l| l.kind == LayerKind::Linear));
}

#[test]
fn lenet_and_resnet8_flops_match_hand_counts() {
    let dev = Device::Cpu;
    // LeNet (28 → 14 → 7 → 4): conv1 16·28²·25, conv2 32·14²·400, conv3 64·7²·800,
    // fc1 1024·100, fc2 100·10 multiply-accumulates.
    let lenet = registry::summarize(&registry::find("lenet").unwrap().spec(10), &dev).unwrap();
    let macs = 313_600 + 2_508_800 + 2_508_800 + 102_400 + 1_000;
    assert_eq!(lenet.flops, 2 * macs);
    assert_eq!(lenet.layers[0].output_shape, vec![16, 28, 28]);
    // ResNet-8: stem 16·32²·27, stage 1 two convs 16·32²·144, stage 2 32·16²·144 then
    // 32·16²·288, stage 3 64·8²·288 then 64·8²·576, head 64·10 (option-A shortcuts: no conv).
    let r8 = registry::summarize(&registry::find("resnet8").unwrap().spec(10), &dev).unwrap();
    let macs = 442_368 + 2 * 2_359_296 + 1_179_648 + 2_359_296 + 1_179_648 + 2_359_296 + 640;
    assert_eq!(r8.flops, 2 * macs);
    assert_eq!(r8.layers.len(), 8);
    assert_eq!(r8.layers[0].name, "conv1");
    assert_eq!(r8.layers[7].name, "linear");
}

#[test]
fn resnet20_has_the_option_a_parameter_count() {
    // He et al.'s ResNet-20 with identity (option A) shortcuts: 269,722 parameters, by hand
    // (stem 432 + 32, stage 1 3·4,672, stage 2 13,952 + 2·18,560, stage 3 55,552 + 2·73,984,
    // head 650); 272,474 is the count with projection shortcuts.
    let net = registry::resnet20(10, &mut rng(), &Device::Cpu).unwrap();
    assert_eq!(net.store().num_params(), 269_722);
}

#[test]
fn named_constructors_build_what_create_model_builds() {
    let dev = Device::Cpu;
    let a = registry::resnet32(7, &mut rng(), &dev).unwrap();
    let b = registry::create_model("resnet32", 7, &mut rng(), &dev).unwrap();
    assert_eq!(b.num_classes(), 7);
    let (sa, sb) = (
        a.store().state_dict().unwrap(),
        b.store().state_dict().unwrap(),
    );
    assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>());
    for (k, t) in &sa {
        let d = (t.to_dtype(DType::F64).unwrap() - sb[k].to_dtype(DType::F64).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert_eq!(d, 0.0, "{k}");
    }
}

#[test]
fn unknown_names_are_errors_that_list_the_zoo() {
    let e = registry::find("resnet9").unwrap_err().to_string();
    assert!(
        e.contains("resnet9") && e.contains("resnet32") && e.contains("vnet"),
        "{e}"
    );
    let e = registry::create_model("vnet", 1, &mut rng(), &Device::Cpu);
    assert!(e.is_err(), "the VNet is not a classifier");
}

#[test]
fn every_spec_round_trips_through_json() {
    for e in registry::MODELS {
        let spec = e.spec(e.default_classes);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            serde_json::from_str::<ModelSpec>(&json).unwrap(),
            spec,
            "{json}"
        );
    }
    let s: ModelSpec =
        serde_json::from_str(r#"{"arch": "resnet_cifar", "depth": 32, "num_classes": 10}"#)
            .unwrap();
    assert_eq!(s, registry::find("resnet32").unwrap().spec(10));
    let bad = r#"{"arch": "resnet_cifar", "depth": 32, "num_classes": 10, "widht": 2}"#;
    assert!(serde_json::from_str::<ModelSpec>(bad).is_err());
}

/// `Module::forward` is the evaluation forward with the stored parameters (not the training
/// one: a fresh ResNet's running statistics differ from the batch's).
#[test]
fn module_forward_is_the_eval_forward() {
    let dev = Device::Cpu;
    let net = registry::resnet8(10, &mut rng(), &dev).unwrap();
    let x = input(&[4, 3, 32, 32], 1);
    let p = net.store().params();
    let eval = Classifier::forward(&net, &p, &x, &mut Ctx::eval()).unwrap();
    let module = Module::forward(&net, &x).unwrap();
    assert_eq!(
        eval.to_vec2::<f32>().unwrap(),
        module.to_vec2::<f32>().unwrap()
    );
    let train = Classifier::forward(&net, &p, &x, &mut Ctx::train_no_rng(false)).unwrap();
    assert_ne!(
        train.to_vec2::<f32>().unwrap(),
        module.to_vec2::<f32>().unwrap()
    );
    // Through the registry's boxes too.
    let boxed = registry::create_model("lenet", 10, &mut rng(), &dev).unwrap();
    let x = input(&[3, 1, 28, 28], 2);
    let eval = Classifier::forward(
        boxed.as_ref(),
        &boxed.store().params(),
        &x,
        &mut Ctx::eval(),
    )
    .unwrap();
    assert_eq!(
        eval.to_vec2::<f32>().unwrap(),
        Module::forward(&boxed, &x)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    );
    let built = registry::find("lenet")
        .unwrap()
        .spec(10)
        .build(&mut rng(), &dev)
        .unwrap();
    assert_eq!(
        eval.to_vec2::<f32>().unwrap(),
        built.forward(&x).unwrap().to_vec2::<f32>().unwrap()
    );
}

#[test]
fn vnet_module_gives_the_weights() {
    let dev = Device::Cpu;
    let v = registry::vnet(&mut rng(), &dev).unwrap();
    let losses = input(&[5, 1], 3).abs().unwrap();
    let own = v.forward(&v.store().params(), &losses).unwrap();
    let module = Module::forward(&v, &losses).unwrap();
    assert_eq!(
        own.to_vec2::<f32>().unwrap(),
        module.to_vec2::<f32>().unwrap()
    );
    let s = registry::summarize(&ModelSpec::VNet { hidden: 100 }, &dev).unwrap();
    assert_eq!(
        (s.flops, s.num_params),
        (2 * (100 + 100), 100 + 100 + 100 + 1)
    );
}

#[test]
fn counting_is_scoped_to_the_call() {
    let dev = Device::Cpu;
    let net = registry::lenet(10, &mut rng(), &dev).unwrap();
    let x = input(&[2, 1, 28, 28], 4);
    let (_, outer) = flops::count(|| {
        let (_, inner) = flops::count(|| Module::forward(&net, &x))?;
        assert_eq!(inner.len(), 5);
        Module::forward(&net, &x)
    })
    .unwrap();
    // The inner count kept its layers; the outer one saw the second forward only, batch of 2.
    assert_eq!(outer.len(), 5);
    assert_eq!(flops::total(&outer), 2 * 2 * 5_434_600);
    // Outside a count nothing is recorded, and a failing closure still restores the state.
    assert!(flops::count(|| -> candle_core::Result<()> { candle_core::bail!("x") }).is_err());
    let (_, after) = flops::count(|| Ok(())).unwrap();
    assert!(after.is_empty());
}
