//! The exported ONNX graph, decoded back with the same protobuf types: inputs, outputs, node
//! order, initializer names, shapes and values, metadata; and the refusals. That onnxruntime
//! computes catdog's logits from it is checked by `examples/python/check_onnx.py`.

use std::collections::HashMap;

use burn::{
    nn::PaddingConfig2d,
    tensor::{Device, Tensor},
};
use catdog_model::{Classifier, CnnConfig, MlpConfig, ModelConfig};
use catdog_onnx::{
    metadata,
    prost::Message,
    proto::{
        attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
        type_proto, ModelProto, NodeProto, TensorProto, ValueInfoProto,
    },
    to_model_proto, to_onnx, OnnxError, OnnxInput, IR_VERSION, OPSET_VERSION,
};

const MEAN: [f32; 3] = [0.45, 0.5, 0.55];
const STD: [f32; 3] = [0.2, 0.25, 0.3];

fn build(config: &ModelConfig) -> Classifier {
    let device = Device::flex();
    device.seed(42);
    Classifier::new(config, &device).unwrap()
}

fn mlp_config() -> ModelConfig {
    ModelConfig::Mlp(MlpConfig {
        num_classes: 3,
        image_size: 8,
        hidden: vec![16, 8],
        dropout: 0.1,
    })
}

fn cnn_config(hidden: Option<usize>, convs_per_block: usize) -> ModelConfig {
    ModelConfig::Cnn(CnnConfig {
        num_classes: 2,
        image_size: 16,
        channels: vec![4, 6],
        convs_per_block,
        hidden,
        dropout: 0.2,
    })
}

fn class_names(n: usize) -> Vec<String> {
    ["cat", "dog", "bird \"quoted\" \u{e9}"][..n]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn input<'a>(
    model: &'a Classifier,
    config: &'a ModelConfig,
    classes: &'a [String],
    probabilities: bool,
) -> OnnxInput<'a> {
    OnnxInput {
        model,
        config,
        classes,
        mean: MEAN,
        std: STD,
        image_size: config.image_size(),
        probabilities,
        temperature: 1.0,
        producer_version: "0.1.0-test",
    }
}

/// Exports and decodes the bytes back.
fn export(input: &OnnxInput) -> ModelProto {
    let bytes = to_onnx(input).unwrap();
    let decoded = ModelProto::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded, to_model_proto(input).unwrap());
    decoded
}

/// `[Some(n)]` for a fixed dimension, `[None]` for the symbolic `batch`.
fn shape(v: &ValueInfoProto) -> Vec<Option<i64>> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().unwrap().value.as_ref() else {
        panic!("{} is not a tensor", v.name)
    };
    assert_eq!(t.elem_type, DataType::Float as i32, "{}", v.name);
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match d.value.as_ref().unwrap() {
            dimension::Value::DimValue(n) => Some(*n),
            dimension::Value::DimParam(p) => {
                assert_eq!(p, "batch");
                None
            }
        })
        .collect()
}

fn ops(model: &ModelProto) -> Vec<&str> {
    let g = model.graph.as_ref().unwrap();
    g.node.iter().map(|n| n.op_type.as_str()).collect()
}

fn initializers(model: &ModelProto) -> HashMap<&str, &TensorProto> {
    let g = model.graph.as_ref().unwrap();
    g.initializer.iter().map(|t| (t.name.as_str(), t)).collect()
}

fn floats(t: &TensorProto) -> Vec<f32> {
    assert_eq!(t.data_type, DataType::Float as i32);
    t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

fn meta(model: &ModelProto) -> HashMap<&str, &str> {
    model
        .metadata_props
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect()
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> &'a catdog_onnx::proto::AttributeProto {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("{} has no attribute {name}", node.name))
}

/// Every node input is the graph input, an initializer or an earlier node's output, and every
/// value is produced once: the nodes are in topological order.
fn assert_well_formed(model: &ModelProto) {
    let g = model.graph.as_ref().unwrap();
    let mut known: Vec<&str> = g.input.iter().map(|v| v.name.as_str()).collect();
    known.extend(g.initializer.iter().map(|t| t.name.as_str()));
    for node in &g.node {
        for i in &node.input {
            assert!(
                known.contains(&i.as_str()),
                "{}: input {i} undefined",
                node.name
            );
        }
        for o in &node.output {
            assert!(!known.contains(&o.as_str()), "{o} defined twice");
            known.push(o);
        }
    }
    for o in &g.output {
        assert!(
            known.contains(&o.name.as_str()),
            "output {} undefined",
            o.name
        );
    }
    for t in &g.initializer {
        let n: i64 = t.dims.iter().product();
        assert_eq!(t.raw_data.len() as i64, 4 * n, "{}", t.name);
    }
}

#[test]
fn mlp_graph() {
    let config = mlp_config();
    let model = build(&config);
    let classes = class_names(3);
    let onnx = export(&input(&model, &config, &classes, false));
    assert_well_formed(&onnx);

    assert_eq!(onnx.ir_version, IR_VERSION);
    assert_eq!(onnx.opset_import.len(), 1);
    assert_eq!(onnx.opset_import[0].domain, "");
    assert_eq!(onnx.opset_import[0].version, OPSET_VERSION);
    assert_eq!(OPSET_VERSION, 17);
    assert_eq!(onnx.producer_name, "catdog");
    assert_eq!(onnx.producer_version, "0.1.0-test");

    let g = onnx.graph.as_ref().unwrap();
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.input[0].name, "pixels");
    assert_eq!(shape(&g.input[0]), [None, Some(3), Some(8), Some(8)]);
    assert_eq!(g.output.len(), 1);
    assert_eq!(g.output[0].name, "logits");
    assert_eq!(shape(&g.output[0]), [None, Some(3)]);
    assert_eq!(
        ops(&onnx),
        ["Sub", "Div", "Flatten", "Gemm", "Relu", "Gemm", "Relu", "Gemm"]
    );
    assert_eq!(g.node.last().unwrap().output, ["logits"]);
    assert_eq!(g.node[0].input, ["pixels", "normalization.mean"]);

    let init = initializers(&onnx);
    let shapes: Vec<(&str, Vec<i64>)> = g
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t.dims.clone()))
        .collect();
    assert_eq!(
        shapes,
        [
            ("normalization.mean", vec![1, 3, 1, 1]),
            ("normalization.std", vec![1, 3, 1, 1]),
            ("hidden.0.weight", vec![16, 192]),
            ("hidden.0.bias", vec![16]),
            ("hidden.1.weight", vec![8, 16]),
            ("hidden.1.bias", vec![8]),
            ("output.weight", vec![3, 8]),
            ("output.bias", vec![3]),
        ]
    );
    assert_eq!(floats(init["normalization.mean"]), MEAN);
    assert_eq!(floats(init["normalization.std"]), STD);

    // Gemm takes PyTorch's [out, in] with transB = 1: the burn weight [in, out] transposed.
    let Classifier::Mlp(m) = &model else {
        unreachable!()
    };
    let burn_w = values(m.output.weight.val()); // [8, 3]
    let onnx_w = floats(init["output.weight"]); // [3, 8]
    for i in 0..8 {
        for o in 0..3 {
            assert_eq!(onnx_w[o * 8 + i], burn_w[i * 3 + o]);
        }
    }
    assert_eq!(
        floats(init["hidden.0.bias"]),
        values(m.hidden[0].bias.as_ref().unwrap().val())
    );
    for gemm in g.node.iter().filter(|n| n.op_type == "Gemm") {
        let t = attr(gemm, "transB");
        assert_eq!((t.r#type, t.i), (AttributeType::Int as i32, 1));
    }

    let md = meta(&onnx);
    let names: Vec<String> = serde_json::from_str(md[metadata::CLASSES]).unwrap();
    assert_eq!(names, classes);
    assert_eq!(md[metadata::IMAGE_SIZE], "8");
    assert_eq!(md[metadata::ARCHITECTURE], "mlp");
    assert_eq!(md[metadata::OUTPUTS], "logits");
    assert!(md[metadata::PREPROCESSING].contains("triangle"));
    let norm: serde_json::Value = serde_json::from_str(md[metadata::NORMALIZATION]).unwrap();
    assert_eq!(norm["mean"][1].as_f64().unwrap() as f32, MEAN[1]);
    let back: ModelConfig = serde_json::from_str(md[metadata::MODEL]).unwrap();
    assert_eq!(back, config);
}

#[test]
fn cnn_graph_with_probabilities() {
    let config = cnn_config(Some(5), 2);
    let model = build(&config);
    let classes = class_names(2);
    let onnx = export(&input(&model, &config, &classes, true));
    assert_well_formed(&onnx);

    let g = onnx.graph.as_ref().unwrap();
    assert_eq!(shape(&g.input[0]), [None, Some(3), Some(16), Some(16)]);
    let outputs: Vec<(&str, Vec<Option<i64>>)> = g
        .output
        .iter()
        .map(|o| (o.name.as_str(), shape(o)))
        .collect();
    assert_eq!(
        outputs,
        [
            ("logits", vec![None, Some(2)]),
            ("probabilities", vec![None, Some(2)])
        ]
    );
    let block = ["Conv", "BatchNormalization", "Relu"];
    let mut expected = vec!["Sub", "Div"];
    for _ in 0..2 {
        expected.extend(block);
        expected.extend(block);
        expected.push("MaxPool");
    }
    expected.extend([
        "GlobalAveragePool",
        "Flatten",
        "Gemm",
        "Relu",
        "Gemm",
        "Softmax",
    ]);
    assert_eq!(ops(&onnx), expected);
    let softmax = g.node.last().unwrap();
    assert_eq!(softmax.input, ["logits"]);
    assert_eq!(softmax.output, ["probabilities"]);
    assert_eq!(attr(softmax, "axis").i, 1);

    let init = initializers(&onnx);
    let dims = |name: &str| init[name].dims.clone();
    assert_eq!(dims("blocks.0.convs.0.weight"), [4, 3, 3, 3]);
    assert_eq!(dims("blocks.0.convs.1.weight"), [4, 4, 3, 3]);
    assert_eq!(dims("blocks.1.convs.0.weight"), [6, 4, 3, 3]);
    for stat in ["weight", "bias", "running_mean", "running_var"] {
        assert_eq!(dims(&format!("blocks.1.norms.1.{stat}")), [6]);
    }
    assert_eq!(dims("hidden.weight"), [5, 6]);
    assert_eq!(dims("output.weight"), [2, 5]);
    assert_eq!(dims("output.bias"), [2]);
    // No conv bias (BatchNorm's beta replaces it): 2 constants, 2 blocks x 2 x (conv + 4 BN
    // tensors), hidden and output weight and bias.
    assert_eq!(g.initializer.len(), 2 + 2 * 2 * 5 + 4);

    let Classifier::Cnn(m) = &model else {
        unreachable!()
    };
    let conv = &m.blocks[1].convs[0];
    assert_eq!(
        floats(init["blocks.1.convs.0.weight"]),
        values(conv.weight.val())
    );
    let norm = &m.blocks[0].norms[1];
    assert_eq!(
        floats(init["blocks.0.norms.1.running_var"]),
        values(norm.running_var.value())
    );
    assert_eq!(
        floats(init["blocks.0.norms.1.weight"]),
        values(norm.gamma.val())
    );

    let conv_node = g.node.iter().find(|n| n.op_type == "Conv").unwrap();
    assert_eq!(
        conv_node.input,
        ["normalized", "blocks.0.convs.0.weight"],
        "no bias input"
    );
    assert_eq!(attr(conv_node, "kernel_shape").ints, [3, 3]);
    assert_eq!(attr(conv_node, "pads").ints, [1, 1, 1, 1]);
    assert_eq!(attr(conv_node, "strides").ints, [1, 1]);
    assert_eq!(attr(conv_node, "group").i, 1);
    let bn = g
        .node
        .iter()
        .find(|n| n.op_type == "BatchNormalization")
        .unwrap();
    let eps = attr(bn, "epsilon");
    assert_eq!(eps.r#type, AttributeType::Float as i32);
    assert_eq!(eps.f, m.blocks[0].norms[0].epsilon as f32);
    assert_eq!(
        bn.input,
        [
            "blocks.0.convs.0",
            "blocks.0.norms.0.weight",
            "blocks.0.norms.0.bias",
            "blocks.0.norms.0.running_mean",
            "blocks.0.norms.0.running_var"
        ]
    );
    let pool = g.node.iter().find(|n| n.op_type == "MaxPool").unwrap();
    assert_eq!(attr(pool, "kernel_shape").ints, [2, 2]);
    assert_eq!(attr(pool, "strides").ints, [2, 2]);
    assert_eq!(attr(pool, "ceil_mode").i, 0);

    let md = meta(&onnx);
    assert_eq!(md[metadata::ARCHITECTURE], "cnn");
    assert_eq!(md[metadata::OUTPUTS], "logits,probabilities");
    assert_eq!(md[metadata::IMAGE_SIZE], "16");
}

#[test]
fn cnn_without_hidden_layer() {
    let config = cnn_config(None, 1);
    let model = build(&config);
    let classes = class_names(2);
    let onnx = export(&input(&model, &config, &classes, false));
    assert_well_formed(&onnx);
    assert_eq!(
        ops(&onnx),
        [
            "Sub",
            "Div",
            "Conv",
            "BatchNormalization",
            "Relu",
            "MaxPool",
            "Conv",
            "BatchNormalization",
            "Relu",
            "MaxPool",
            "GlobalAveragePool",
            "Flatten",
            "Gemm"
        ]
    );
    assert_eq!(initializers(&onnx)["output.weight"].dims, [2, 6]);
}

#[test]
fn an_mlp_without_hidden_layers_is_one_gemm() {
    let config = ModelConfig::Mlp(MlpConfig {
        num_classes: 2,
        image_size: 8,
        hidden: vec![],
        dropout: 0.0,
    });
    let model = build(&config);
    let classes = class_names(2);
    let onnx = export(&input(&model, &config, &classes, false));
    assert_well_formed(&onnx);
    assert_eq!(ops(&onnx), ["Sub", "Div", "Flatten", "Gemm"]);
    assert_eq!(initializers(&onnx)["output.weight"].dims, [2, 192]);
}

#[test]
fn resnet_graph_has_residual_adds_and_pytorch_names() {
    let config = ModelConfig::ResNet(catdog_model::ResNetConfig {
        num_classes: 2,
        image_size: 16,
        stem: 3,
        channels: vec![4, 6],
        residual: vec![1, 0],
        dropout: 0.1,
    });
    let model = build(&config);
    let classes = class_names(2);
    let onnx = export(&input(&model, &config, &classes, false));
    assert_well_formed(&onnx);
    let cbr = ["Conv", "BatchNormalization", "Relu"];
    let mut expected = vec!["Sub", "Div"];
    expected.extend(cbr); // stem
    expected.extend(cbr); // stage 0 down
    expected.push("MaxPool");
    expected.extend(cbr); // stage 0 residual first
    expected.extend(cbr); // stage 0 residual second
    expected.push("Add");
    expected.extend(cbr); // stage 1 down
    expected.push("MaxPool");
    expected.extend(["GlobalAveragePool", "Flatten", "Gemm"]);
    assert_eq!(ops(&onnx), expected);
    let g = onnx.graph.as_ref().unwrap();
    let add = g.node.iter().find(|n| n.op_type == "Add").unwrap();
    assert_eq!(
        add.input,
        ["stages.0.down.pool", "stages.0.residual.0.second.norm.relu"]
    );
    let init = initializers(&onnx);
    let dims = |name: &str| init[name].dims.clone();
    assert_eq!(dims("stem.conv.weight"), [3, 3, 3, 3]);
    assert_eq!(dims("stages.0.down.convs.0.weight"), [4, 3, 3, 3]);
    assert_eq!(dims("stages.0.residual.0.first.conv.weight"), [4, 4, 3, 3]);
    assert_eq!(dims("stages.0.residual.0.second.norm.running_var"), [4]);
    assert_eq!(dims("stages.1.down.norms.0.weight"), [6]);
    assert_eq!(dims("output.weight"), [2, 6]);
    assert_eq!(meta(&onnx)["architecture"], "resnet");
}

#[test]
fn a_calibrated_model_divides_by_its_temperature_before_the_softmax() {
    let config = mlp_config();
    let model = build(&config);
    let classes = class_names(config.num_classes());
    let onnx = export(&OnnxInput {
        temperature: 0.625,
        ..input(&model, &config, &classes, true)
    });
    assert_well_formed(&onnx);
    let g = onnx.graph.as_ref().unwrap();
    let [.., div, softmax] = &g.node[..] else {
        panic!("too few nodes")
    };
    assert_eq!(div.op_type, "Div");
    assert_eq!(div.input, ["logits", "temperature"]);
    assert_eq!(
        (softmax.op_type.as_str(), &softmax.input[..]),
        ("Softmax", &div.output[..])
    );
    assert_eq!(softmax.output, ["probabilities"]);
    let t = initializers(&onnx)["temperature"];
    assert_eq!((t.dims.clone(), floats(t)), (vec![1], vec![0.625]));
    assert_eq!(meta(&onnx)["temperature"], "0.625");
    // Uncalibrated: no Div, and the metadata says 1.
    let plain = export(&input(&model, &config, &classes, true));
    assert!(!ops(&plain).ends_with(&["Div", "Softmax"]));
    assert_eq!(meta(&plain)["temperature"], "1");
}

#[test]
fn the_export_is_deterministic() {
    let config = cnn_config(None, 1);
    let model = build(&config);
    let classes = class_names(2);
    let a = to_onnx(&input(&model, &config, &classes, true)).unwrap();
    let b = to_onnx(&input(&model, &config, &classes, true)).unwrap();
    assert_eq!(a, b);
}

fn settings_error(input: &OnnxInput) -> String {
    match to_onnx(input) {
        Err(e @ OnnxError::Settings(_)) => e.to_string(),
        Err(e) => panic!("expected a settings error, got {e:?}"),
        Ok(_) => panic!("expected a settings error, got a model"),
    }
}

#[test]
fn bad_settings_are_refused() {
    let config = mlp_config();
    let model = build(&config);
    let classes = class_names(3);

    let two = class_names(2);
    let e = settings_error(&input(&model, &config, &two, false));
    assert!(
        e.contains("2 class names for a model with 3 outputs"),
        "{e}"
    );

    let e = settings_error(&OnnxInput {
        image_size: 16,
        ..input(&model, &config, &classes, false)
    });
    assert!(e.contains("image size 16"), "{e}");

    let e = settings_error(&OnnxInput {
        std: [0.2, 0.0, 0.2],
        ..input(&model, &config, &classes, false)
    });
    assert!(e.contains("std"), "{e}");

    let e = settings_error(&OnnxInput {
        mean: [f32::NAN, 0.5, 0.5],
        ..input(&model, &config, &classes, false)
    });
    assert!(e.contains("mean"), "{e}");

    for t in [0.0, -1.0, f32::INFINITY, f32::NAN] {
        let e = settings_error(&OnnxInput {
            temperature: t,
            ..input(&model, &config, &classes, true)
        });
        assert!(e.contains("temperature"), "{t}: {e}");
    }
}

fn mismatch(input: &OnnxInput) -> String {
    match to_onnx(input) {
        Err(e @ OnnxError::Mismatch(_)) => e.to_string(),
        Err(e) => panic!("expected a mismatch, got {e:?}"),
        Ok(_) => panic!("expected a mismatch, got a model"),
    }
}

#[test]
fn a_model_that_does_not_match_its_config_is_refused() {
    let mlp = mlp_config();
    let cnn = cnn_config(None, 1);
    let cnn_model = build(&cnn);
    let classes = class_names(3);
    let err = mismatch(&input(&cnn_model, &mlp, &classes, false));
    assert!(
        err.contains("the config is for the mlp architecture but the model is a cnn"),
        "{err}"
    );

    // Same architecture, other widths.
    let wider = ModelConfig::Mlp(MlpConfig {
        hidden: vec![32, 8],
        ..match mlp {
            ModelConfig::Mlp(c) => c,
            _ => unreachable!(),
        }
    });
    let model = build(&mlp_config());
    let err = mismatch(&input(&model, &wider, &classes, false));
    assert!(
        err.contains("hidden.0 maps 192 to 16 features, the config 192 to 32"),
        "{err}"
    );

    let deeper = cnn_config(None, 2);
    let classes = class_names(2);
    let err = mismatch(&input(&cnn_model, &deeper, &classes, false));
    assert!(err.contains("blocks.0 has 1 convolutions"), "{err}");
    let err = mismatch(&input(&cnn_model, &cnn_config(Some(4), 1), &classes, false));
    assert!(err.contains("no hidden layer"), "{err}");
}

fn unsupported(input: &OnnxInput) -> String {
    match to_onnx(input) {
        Err(e @ OnnxError::Unsupported { .. }) => e.to_string(),
        Err(e) => panic!("expected an unsupported layer, got {e:?}"),
        Ok(_) => panic!("expected an unsupported layer, got a model"),
    }
}

#[test]
fn untranslatable_layers_are_refused_by_name() {
    let config = cnn_config(None, 1);
    let classes = class_names(2);

    let mut model = build(&config);
    if let Classifier::Cnn(m) = &mut model {
        m.blocks[1].convs[0].padding = PaddingConfig2d::Same;
    }
    let err = unsupported(&input(&model, &config, &classes, false));
    assert!(
        err.contains("cannot export blocks.1.convs.0 to ONNX"),
        "{err}"
    );

    let mut model = build(&config);
    if let Classifier::Cnn(m) = &mut model {
        m.blocks[0].pool.padding = PaddingConfig2d::Explicit(1, 1, 1, 1);
    }
    let err = unsupported(&input(&model, &config, &classes, false));
    assert!(err.contains("cannot export blocks.0.pool to ONNX"), "{err}");

    let mut model = build(&config);
    if let Classifier::Cnn(m) = &mut model {
        m.global_pool.output_size = [2, 2];
    }
    let err = unsupported(&input(&model, &config, &classes, false));
    assert!(err.contains("cannot export global_pool to ONNX"), "{err}");
}

/// FNV-1a 64, as `codegen/src/main.rs` records it in the generated file's header.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn proto_schema_matches_generated_code() {
    let schema = include_bytes!("../src/proto/onnx.proto3");
    let code = include_str!("../src/proto/onnx.rs");
    let stamp = format!(
        "schema length {} bytes, FNV-1a {:016x}.",
        schema.len(),
        fnv1a(schema)
    );
    assert!(
        code.lines().take(3).any(|l| l.contains(&stamp)),
        "src/proto/onnx.rs was not generated from this onnx.proto3 ({stamp}): regenerate it \
         (crates/onnx/codegen/README.md)"
    );
}
