//! [`TrainConfig::validate`]: every setting that cannot work is refused before any work, named
//! with its value and the fix. One small check per concern, run in order; the first failure is
//! reported.

use catdog_infer::Backend;
use catdog_model::{kernels::precision::Precision, Architecture, IMAGE_SIZE};

use crate::{InvalidSetting, TrainConfig};

type Check = fn(&TrainConfig) -> Result<(), InvalidSetting>;

/// The checks, in the order their failures are reported.
const CHECKS: [Check; 11] = [
    run_length,
    batch_size,
    optimiser,
    regularisation,
    lookahead,
    mix,
    validation_split,
    image_sizes,
    architecture_options,
    device,
    model_fits,
];

impl TrainConfig {
    /// Refuses impossible values before any work is done.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        CHECKS.iter().try_for_each(|check| check(self))
    }
}

fn bad(field: &'static str, value: impl ToString, fix: &'static str) -> Result<(), InvalidSetting> {
    Err(InvalidSetting {
        field,
        value: value.to_string(),
        fix,
    })
}

/// A share in `[0, 1)`.
fn unit_share(x: f64) -> bool {
    (0.0..1.0).contains(&x)
}

fn run_length(c: &TrainConfig) -> Result<(), InvalidSetting> {
    if c.epochs == 0 {
        return bad("epochs", 0, "use at least 1 epoch");
    }
    match c.budget {
        Some(b) if b.duration().as_secs() < 10 => {
            bad("budget", b, "use at least 10 seconds (e.g. 15m)")
        }
        _ => Ok(()),
    }
}

/// A batch of one makes BatchNorm's variance 0 (and training's last partial batch is dropped
/// only when it is not the only one).
fn batch_size(c: &TrainConfig) -> Result<(), InvalidSetting> {
    match c.batch_size {
        0 | 1 => bad(
            "batch-size",
            c.batch_size,
            "use a batch size of at least 2 (e.g. 64)",
        ),
        _ => Ok(()),
    }
}

fn optimiser(c: &TrainConfig) -> Result<(), InvalidSetting> {
    let o = &c.optim;
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return bad(
            "lr",
            o.lr,
            "the learning rate must be positive (e.g. 0.002)",
        );
    }
    if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
        return bad("weight-decay", o.weight_decay, "use a value >= 0");
    }
    if !unit_share(o.momentum) {
        return bad("momentum", o.momentum, "use a value in [0, 1)");
    }
    if !(o.warmup_epochs.is_finite() && o.warmup_epochs >= 0.0) {
        return bad("warmup-epochs", o.warmup_epochs, "use a value >= 0");
    }
    Ok(())
}

fn regularisation(c: &TrainConfig) -> Result<(), InvalidSetting> {
    if !unit_share(f64::from(c.label_smoothing)) {
        return bad(
            "label-smoothing",
            c.label_smoothing,
            "use a value in [0, 1)",
        );
    }
    match c.ema {
        Some(decay) if !unit_share(decay) => bad(
            "ema",
            decay,
            "use a decay in [0, 1), e.g. 0.999 (0 keeps the last weights)",
        ),
        _ => Ok(()),
    }
}

fn lookahead(c: &TrainConfig) -> Result<(), InvalidSetting> {
    let Some(look) = c.lookahead else {
        return Ok(());
    };
    if look.steps < 2 {
        return bad(
            "lookahead.steps",
            look.steps,
            "use at least 2 steps between synchronisations (e.g. 5)",
        );
    }
    if !(look.alpha > 0.0 && look.alpha <= 1.0) {
        return bad(
            "lookahead.alpha",
            look.alpha,
            "use a share in (0, 1], e.g. 0.5",
        );
    }
    Ok(())
}

fn mix(c: &TrainConfig) -> Result<(), InvalidSetting> {
    let Some(mix) = c.mix else {
        return Ok(());
    };
    if !(mix.alpha.is_finite() && mix.alpha > 0.0) {
        return bad(
            "mix.alpha",
            mix.alpha,
            "use a positive Beta parameter, e.g. 1.0",
        );
    }
    if !(mix.probability > 0.0 && mix.probability <= 1.0) {
        return bad(
            "mix.probability",
            mix.probability,
            "use a share of batches in (0, 1], e.g. 0.5",
        );
    }
    Ok(())
}

fn validation_split(c: &TrainConfig) -> Result<(), InvalidSetting> {
    if c.validation_fraction > 0.0 && c.validation_fraction < 0.9 {
        return Ok(());
    }
    bad(
        "validation-fraction",
        c.validation_fraction,
        "use a share between 0 and 0.9 (e.g. 0.1)",
    )
}

/// The final size and a progressive schedule's sizes and ramp.
fn image_sizes(c: &TrainConfig) -> Result<(), InvalidSetting> {
    // The one image-size rule (`catdog_model::IMAGE_SIZE`); the text is tied to it here.
    const _: () = assert!(*IMAGE_SIZE.start() == 8 && *IMAGE_SIZE.end() == 1024);
    if !IMAGE_SIZE.contains(&c.image_size) {
        return bad(
            "image-size",
            c.image_size,
            "use a size between 8 and 1024 pixels",
        );
    }
    let Some(p) = &c.progressive else {
        return Ok(());
    };
    if matches!(c.model, Architecture::Mlp(_)) {
        return bad(
            "progressive",
            p.start_size,
            "an MLP takes one input size: leave progressive resizing out",
        );
    }
    if !(*IMAGE_SIZE.start()..c.image_size).contains(&p.start_size) {
        return bad(
            "progressive start size",
            p.start_size,
            "use a size of at least 8 pixels and below image-size",
        );
    }
    if !(0.0 <= p.ramp_start && p.ramp_start <= p.ramp_end && p.ramp_end <= 1.0) {
        return bad(
            "progressive ramp",
            format!("{}..{}", p.ramp_start, p.ramp_end),
            "use shares of the run with 0 <= ramp_start <= ramp_end <= 1",
        );
    }
    Ok(())
}

/// Options that need something the architecture or the run does not have.
fn architecture_options(c: &TrainConfig) -> Result<(), InvalidSetting> {
    if c.whiten && matches!(c.model, Architecture::Mlp(_)) {
        return bad(
            "whiten",
            true,
            "an MLP has no convolution to whiten: leave it out",
        );
    }
    if c.precision != Precision::F32 && c.backend != Backend::Flex {
        return bad(
            "precision",
            "bf16",
            "bf16 runs in catdog's CPU kernels: use the default flex backend, or f32",
        );
    }
    if !c.precision.supported() {
        return bad(
            "precision",
            "bf16",
            "this CPU has no AVX512-BF16 (Intel Cooper Lake, Sapphire Rapids and later; AMD \
             Zen 4 and later): train in f32",
        );
    }
    if c.patience == Some(0) {
        return bad("patience", 0, "use at least 1, or leave it out");
    }
    Ok(())
}

fn device(c: &TrainConfig) -> Result<(), InvalidSetting> {
    match c.device_index {
        Some(index) if c.backend != Backend::Wgpu => bad(
            "device",
            format!("{index} with --backend {}", c.backend),
            "--device picks a GPU adapter: use it with --backend wgpu, or leave it out",
        ),
        _ => Ok(()),
    }
}

/// The model with the final image size: the same validator that checks a loaded model folder,
/// memory bounds included, and a batch whose activations fit.
fn model_fits(c: &TrainConfig) -> Result<(), InvalidSetting> {
    let model = c.model_for(2);
    if let Err(e) = model.validate() {
        return bad("model", e, "change the architecture settings");
    }
    let max_batch = model.max_batch_size();
    if c.batch_size <= max_batch {
        return Ok(());
    }
    bad(
        "batch-size",
        format!(
            "{} (at most {max_batch} fits for this {} on {s}x{s} images)",
            c.batch_size,
            model.name(),
            s = c.image_size
        ),
        "a batch's activations would need more than 4 GiB; use a smaller batch or image size",
    )
}
