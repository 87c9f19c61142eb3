//! The moving parts of training: a model, its optimiser and loss, and the loop over one
//! epoch's batches (`train_epoch` -> `step`), then `validate`. What to train on and where the
//! results go is decided in `run.rs`.

use std::{
    borrow::Cow,
    sync::Arc,
    time::{Duration, Instant},
};

use burn::{
    module::Module,
    optim::{GradientsParams, ModuleOptimizer},
    tensor::{
        module::interpolate,
        ops::{InterpolateMode, InterpolateOptions},
        Device, Int, Tensor,
    },
};
use catdog_data::{
    epoch_plan, Batch, ImageBatcher, ImageSet, Normalization, Order, Prefetcher, SplitMix64,
};
use catdog_infer::{ModelIoError, Tta};
use catdog_model::{kernels::precision::PrecisionScope, Classifier, ModelConfig};

use crate::{
    budget::Measured,
    checkpoint::{Checkpoint, CheckpointSink, TrainState},
    distributed::{all_reduce_gradients, average_and_check, shard, Collective},
    error::TrainError,
    optim::{ema::WeightAverage, lookahead::Lookahead, whiten::whiten_first_conv},
    report::{
        evaluate::{evaluate, evaluate_across, VALIDATION_MIN_BATCH},
        metrics::{EpochMetrics, Evaluation},
    },
    InvalidSetting, Loss, Progress, TrainConfig,
};

/// Batches prepared ahead of the step, on the batch thread.
const PREFETCH_DEPTH: usize = 4;

pub struct Trainer {
    /// On the autodiff device, in training mode; taken out only inside `step`, so that the
    /// optimiser owns the only reference and updates the weights in place.
    model: Option<Classifier>,
    optim: ModuleOptimizer,
    /// The weight average (`ema`), when the run keeps one: what is validated and kept.
    average: Option<WeightAverage>,
    /// Lookahead's slow weights, when the run uses it.
    lookahead: Option<Lookahead>,
    loss: Loss,
    config: TrainConfig,
    model_config: ModelConfig,
    batcher: Arc<ImageBatcher>,
    train_images: usize,
    steps_per_epoch: usize,
    /// The autodiff device.
    device: Device,
    /// The other processes training this model with it (data parallel), if any.
    world: Option<Arc<dyn Collective>>,
    /// Time spent in the gradient all-reduce since the epoch began.
    all_reduce: Duration,
}

/// What one epoch of training measured.
pub struct EpochStats {
    pub epoch: usize,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
    pub loss: f64,
    pub accuracy: f64,
    pub images: usize,
    pub train_seconds: f64,
    /// Time the step waited for the next batch.
    pub data_wait: Duration,
    /// Time spent summing gradients across ranks.
    pub all_reduce: Duration,
    started: Instant,
}

impl EpochStats {
    /// The row of `metrics.csv` for this epoch and its validation.
    pub fn with_validation(&self, val: &Evaluation) -> EpochMetrics {
        EpochMetrics {
            epoch: self.epoch,
            lr: self.lr,
            train_loss: self.loss,
            train_acc: self.accuracy,
            val_loss: val.loss,
            val_acc: val.accuracy,
            seconds: self.started.elapsed().as_secs_f64(),
            images_per_sec: self.images_per_sec(),
            data_wait: self.data_wait.as_secs_f64() / self.train_seconds,
            all_reduce: self.all_reduce.as_secs_f64() / self.train_seconds,
        }
    }

    pub fn images_per_sec(&self) -> f64 {
        self.images as f64 / self.train_seconds
    }
}

impl Trainer {
    /// A freshly initialised model (seeded by `config.seed`) and optimiser on the autodiff
    /// device `ad`, training on `train_set` normalised with `norm`.
    pub fn new(
        config: &TrainConfig,
        model_config: &ModelConfig,
        train_set: Arc<ImageSet>,
        norm: &Normalization,
        ad: &Device,
    ) -> Result<Trainer, TrainError> {
        ad.seed(config.seed);
        let mut model = Classifier::new(model_config, ad).map_err(|e| InvalidSetting {
            field: "model",
            value: e.to_string(),
            fix: "change the architecture settings",
        })?;
        if config.whiten {
            whiten_first_conv(&mut model, &train_set, norm, config.seed);
        }
        let train_images = train_set.len();
        Ok(Trainer {
            average: config.ema_decay().map(WeightAverage::new),
            lookahead: config.lookahead.map(Lookahead::new),
            model: Some(model),
            optim: config.optim.build(),
            loss: Loss::new(config.label_smoothing, ad),
            batcher: Arc::new(
                ImageBatcher::new(train_set, norm, config.augment).with_mix(config.mix),
            ),
            train_images,
            // Every epoch has as many steps as the first: only their order differs.
            steps_per_epoch: epoch_plan(train_images, config.batch_size, epoch_order(config, 1))
                .len()
                .max(1),
            config: config.clone(),
            model_config: model_config.clone(),
            device: ad.clone(),
            world: None,
            all_reduce: Duration::ZERO,
        })
    }

    /// Trains together with the other ranks of `world` (see [`crate::distributed`]).
    pub fn with_world(mut self, world: Option<Arc<dyn Collective>>) -> Self {
        self.world = world.filter(|w| w.size() > 1);
        self
    }

    /// Continues from a checkpoint, if there is one (`load` reads it on this trainer's device
    /// into a fresh optimiser); returns the progress to go on from.
    pub fn restore(
        &mut self,
        load: impl FnOnce(&Device, ModuleOptimizer) -> Result<Option<Checkpoint>, ModelIoError>,
        state: Option<&TrainState>,
    ) -> Result<TrainState, TrainError> {
        let optim = std::mem::replace(&mut self.optim, self.config.optim.build());
        match load(&self.device, optim)? {
            Some(checkpoint) => {
                self.average = self
                    .config
                    .ema_decay()
                    .map(|decay| match checkpoint.average {
                        Some(average) => WeightAverage::resume(&average, decay),
                        // A checkpoint of a run that did not average yet starts its average here.
                        None => WeightAverage::new(decay),
                    });
                (self.model, self.optim) = (Some(checkpoint.model), checkpoint.optim);
                Ok(state.cloned().unwrap_or_default())
            }
            None => Ok(TrainState::new()),
        }
    }

    /// One pass over the training set in the epoch's shuffled order.
    pub fn train_epoch(
        &mut self,
        epoch: usize,
        progress: &mut Progress,
    ) -> Result<EpochStats, TrainError> {
        let started = Instant::now();
        let config = &self.config;
        // Re-seeding per epoch makes dropout draws independent of where a run was resumed.
        let (rank, ranks) = self.world.as_ref().map_or((0, 1), |w| (w.rank(), w.size()));
        // The same seed on every rank: burn draws the initial weights when they are first read
        // (in the first step), and every rank must draw the same ones.
        self.device
            .seed(SplitMix64::derive(config.seed, epoch as u64).next_u64());
        let mut plan = epoch_plan(
            self.train_images,
            config.batch_size,
            epoch_order(config, epoch),
        );
        // With several ranks each takes its shard of every batch: (its images, the batch's).
        let batch_sizes: Vec<usize> = plan.iter().map(Vec::len).collect();
        if ranks > 1 {
            for batch in &mut plan {
                let part = shard(batch.len(), rank, ranks);
                *batch = batch[part].to_vec();
            }
        }
        progress.start_epoch(epoch, config.epochs, plan.len());
        // The steps' gemms in the run's precision; validation (after this call) in f32.
        let _precision = precision_scope(config)?;
        let size = config.train_size(epoch, self.steps_per_epoch);
        let mut batches = Prefetcher::new(self.batcher.clone(), plan, PREFETCH_DEPTH)
            .map_err(TrainError::Thread)?;
        let mut stats = EpochStats {
            epoch,
            lr: config.optim.lr,
            loss: 0.0,
            accuracy: 0.0,
            images: 0,
            train_seconds: 0.0,
            data_wait: Duration::ZERO,
            all_reduce: Duration::ZERO,
            started,
        };
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for step_in_epoch in 0.. {
            let t = Instant::now();
            let Some(host) = batches.next() else { break };
            stats.data_wait += t.elapsed();
            let whole_batch = batch_sizes
                .get(step_in_epoch)
                .copied()
                .unwrap_or(host.len());
            let share = host.len() as f32 / whole_batch.max(1) as f32;
            let global_step = (epoch - 1) * self.steps_per_epoch + step_in_epoch;
            stats.lr = self.config.lr_at(global_step, self.steps_per_epoch);
            let (loss, right, n) = self
                .step(
                    host.to_device(&self.device),
                    size,
                    stats.lr,
                    global_step,
                    share,
                )
                .map_err(|loss| TrainError::NonFinite {
                    epoch,
                    batch: step_in_epoch + 1,
                    loss,
                    lr: stats.lr,
                })?;
            loss_sum += loss as f64 * n as f64;
            correct += right;
            stats.images += n;
            progress.batch(
                loss_sum / stats.images as f64,
                correct as f64 / stats.images as f64,
                stats.images as f64 / started.elapsed().as_secs_f64(),
            );
        }
        batches.finish()?;
        stats.all_reduce = std::mem::take(&mut self.all_reduce);
        if let Some(lookahead) = &mut self.lookahead {
            self.model = self.model.take().map(|model| lookahead.end_epoch(model));
        }
        if let Some(world) = &self.world {
            // The ranks' weights must agree after every step (checked); their running
            // statistics (and the weight average's) come from their own images: averaged.
            let model = self.model.take().expect("the trainer holds its model");
            self.model = Some(
                average_and_check(world.as_ref(), model, epoch).map_err(TrainError::Diverged)?,
            );
            if let Some(average) = &mut self.average {
                average.average_across(world.as_ref());
            }
        }
        stats.train_seconds = started.elapsed().as_secs_f64();
        stats.loss = loss_sum / stats.images.max(1) as f64;
        stats.accuracy = correct as f64 / stats.images.max(1) as f64;
        Ok(stats)
    }

    /// The learning-rate range test: one step at each of `lrs` in turn, over as many shuffled
    /// epochs as it takes; `on_step(step, lr, loss)` is told each step's loss (non-finite when
    /// the step diverged, which ends the test) and ends the test by returning false.
    pub fn lr_range_test(
        &mut self,
        lrs: &[f64],
        mut on_step: impl FnMut(usize, f64, f32) -> bool,
    ) -> Result<(), TrainError> {
        let mut step = 0;
        for epoch in 1.. {
            if step == lrs.len() {
                break;
            }
            let plan = epoch_plan(
                self.train_images,
                self.config.batch_size,
                epoch_order(&self.config, epoch),
            );
            let mut batches = Prefetcher::new(self.batcher.clone(), plan, PREFETCH_DEPTH)
                .map_err(TrainError::Thread)?;
            for host in batches.by_ref() {
                let lr = lrs[step];
                let size = self.config.image_size;
                let loss = match self.step(host.to_device(&self.device), size, lr, step, 1.0) {
                    Ok((loss, _, _)) => loss,
                    Err(loss) => {
                        on_step(step, lr, loss);
                        return Ok(());
                    }
                };
                step += 1;
                if !on_step(step - 1, lr, loss) || step == lrs.len() {
                    return Ok(());
                }
            }
            batches.finish()?;
        }
        Ok(())
    }

    /// Times training and inference for a time budget, on a throwaway model of the same
    /// architecture and a fresh optimiser: a clone would share the run's weight buffers, which
    /// an optimiser may update in place. The run's own draws are untouched (every epoch
    /// re-seeds the device). Two untimed steps warm the allocator and kernels up.
    pub fn measure(
        &self,
        valid: Arc<ImageSet>,
        norm: &Normalization,
        device: &Device,
    ) -> Result<Measured, TrainError> {
        let probe =
            Classifier::new(&self.model_config, &self.device).map_err(|e| InvalidSetting {
                field: "model",
                value: e.to_string(),
                fix: "change the architecture settings",
            })?;
        let mut optim = self.config.optim.build();
        let full = self.config.image_size;
        let (probe, step) = self.time_steps(probe, &mut optim, full)?;
        let (probe, small_step) = match &self.config.progressive {
            Some(p) if p.start_size < full => {
                let (probe, step) = self.time_steps(probe, &mut optim, p.start_size)?;
                (probe, Some((p.start_size, step)))
            }
            _ => (probe, None),
        };
        // Inference on up to 256 validation images, at the validation batch size.
        let sample: Vec<usize> = (0..valid.len().min(256)).collect();
        let sample = Arc::new(valid.subset(&sample));
        let started = Instant::now();
        self.validate_model(&probe.valid(), sample.clone(), norm, device)?;
        let inference_per_image = started.elapsed().as_secs_f64() / sample.len().max(1) as f64;
        Ok(Measured {
            step,
            small_step,
            inference_per_image,
        })
    }

    /// Seconds per training step of `probe` on `size`-pixel images: the mean of six steps after
    /// two untimed ones.
    fn time_steps(
        &self,
        mut probe: Classifier,
        optim: &mut ModuleOptimizer,
        size: usize,
    ) -> Result<(Classifier, f64), TrainError> {
        const WARM: usize = 2;
        const TIMED: usize = 6;
        let plan = epoch_plan(
            self.train_images,
            self.config.batch_size,
            epoch_order(&self.config, 1),
        );
        let plan: Vec<_> = plan.into_iter().take(WARM + TIMED).collect();
        let timed_steps = plan.len().saturating_sub(WARM).max(1);
        let mut batches = Prefetcher::new(self.batcher.clone(), plan, PREFETCH_DEPTH)
            .map_err(TrainError::Thread)?;
        let _precision = precision_scope(&self.config)?;
        let mut started = Instant::now();
        for (i, host) in batches.by_ref().enumerate() {
            if i == WARM {
                started = Instant::now();
            }
            let batch = host.to_device(&self.device);
            let logits = probe.forward(resized(batch.images, size));
            let loss = self.loss.of_batch(logits, batch.targets, batch.mix);
            let grads = GradientsParams::from_grads(loss.backward(), &probe);
            probe = optim.step(self.config.optim.lr, probe, grads);
        }
        batches.finish()?;
        Ok((probe, started.elapsed().as_secs_f64() / timed_steps as f64))
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    /// Follows a budget's new count (the learning-rate schedule and the image sizes span it).
    pub fn follow_plan(&mut self, config: &TrainConfig) {
        self.config.epochs = config.epochs;
        self.config.replans = config.replans.clone();
    }

    /// Forward, loss, backward and an optimiser step on one batch; returns the batch's mean
    /// loss and how many of its images were classified right, or the loss if it is not finite
    /// (the weights are then left as they were). The images are resized to `size` first when
    /// they are not that size; `global_step` (0-based, over the run) paces the weight average.
    ///
    /// With several ranks, `share` is this rank's part of the whole batch: the gradients are
    /// summed across ranks (each weighted by its share), and the loss, the count of right
    /// answers and the images returned are the whole batch's, the same on every rank.
    fn step(
        &mut self,
        batch: Batch,
        size: usize,
        lr: f64,
        global_step: usize,
        share: f32,
    ) -> Result<(f32, usize, usize), f32> {
        let images = batch.targets.dims()[0];
        let model = self
            .model
            .take()
            .expect("the trainer holds its model between steps");
        let logits = model.forward(resized(batch.images, size));
        // A mixed image counts as right when the model picks the label covering most of it.
        let majority = match &batch.mix {
            Some((partner, weight)) if *weight < 0.5 => partner.clone(),
            _ => batch.targets.clone(),
        };
        let loss = self.loss.of_batch(logits.clone(), batch.targets, batch.mix);
        let loss_value: f32 = loss
            .clone()
            .into_data()
            .iter::<f32>()
            .next()
            .unwrap_or(f32::NAN);
        let mut correct = count_correct(logits, majority);
        let (mut loss_value, mut images) = (loss_value, images);
        let grads = match &self.world {
            // Every rank goes through the all-reduce, finite loss or not, so that none waits
            // for another; the summed loss then tells all of them alike.
            Some(world) => {
                let mut grads = GradientsParams::from_grads(loss.backward(), &model);
                let mut extra = [loss_value * images as f32, correct as f32, images as f32];
                let t = Instant::now();
                all_reduce_gradients(world.as_ref(), &model, &mut grads, share, &mut extra);
                self.all_reduce += t.elapsed();
                images = extra[2] as usize;
                loss_value = extra[0] / extra[2].max(1.0);
                correct = extra[1] as usize;
                (loss_value.is_finite()).then_some(grads)
            }
            None if !loss_value.is_finite() => None,
            None => Some(GradientsParams::from_grads(loss.backward(), &model)),
        };
        let Some(grads) = grads else {
            self.model = Some(model);
            return Err(loss_value);
        };
        let mut model = self.optim.step(lr, model, grads);
        if let Some(lookahead) = &mut self.lookahead {
            model = lookahead.after_step(model);
        }
        if let Some(average) = &mut self.average {
            average.update(&model, global_step);
        }
        self.model = Some(model);
        Ok((loss_value, correct, images))
    }

    /// The kept model (see [`Self::kept_model`]) in inference mode on `set` (plain
    /// cross-entropy, no augmentation).
    pub fn validate(
        &self,
        set: Arc<ImageSet>,
        norm: &Normalization,
        device: &Device,
    ) -> Result<Evaluation, TrainError> {
        self.validate_model(&self.kept_model().valid(), set, norm, device)
    }

    /// `model` (in inference mode) on `set`, in validation-sized batches.
    fn validate_model(
        &self,
        model: &Classifier,
        set: Arc<ImageSet>,
        norm: &Normalization,
        device: &Device,
    ) -> Result<Evaluation, TrainError> {
        let batch_size = self.config.batch_size.max(VALIDATION_MIN_BATCH);
        let evaluated = match &self.world {
            Some(world) => evaluate_across(world.as_ref(), model, set, norm, device, batch_size)?,
            None => evaluate(model, set, norm, device, batch_size, Tta::Off, 1.0)?,
        };
        Ok(evaluated.evaluation)
    }

    /// Saves the model and optimiser after an epoch.
    pub fn checkpoint(
        &self,
        sink: &impl CheckpointSink,
        state: &TrainState,
    ) -> Result<(), TrainError> {
        let average = self.average.as_ref().and_then(|a| a.model(self.model()));
        Ok(sink.save_checkpoint(self.model(), average.as_ref(), &self.optim, state)?)
    }

    /// What the run validates, keeps as its best epoch and exports: the weight average when
    /// there is one, else the trained weights.
    pub fn kept_model(&self) -> Cow<'_, Classifier> {
        match self.average.as_ref().and_then(|a| a.model(self.model())) {
            Some(average) => Cow::Owned(average),
            None => Cow::Borrowed(self.model()),
        }
    }

    /// The model being trained (autodiff device, training mode).
    pub fn model(&self) -> &Classifier {
        self.model
            .as_ref()
            .expect("the trainer holds its model between steps")
    }

    pub fn parameters(&self) -> usize {
        self.model().num_params()
    }
}

/// Keeps `config.precision` in force for the kernels while it lives.
fn precision_scope(config: &TrainConfig) -> Result<PrecisionScope, TrainError> {
    config.precision.scope().map_err(|_| {
        TrainError::from(InvalidSetting {
            field: "precision",
            value: "bf16".into(),
            fix: "this CPU has no AVX512-BF16: train in f32",
        })
    })
}

/// `images` scaled to `size x size` (bilinear, half-pixel centres as PIL and PyTorch), or as
/// they are when they have that size.
fn resized(images: Tensor<4>, size: usize) -> Tensor<4> {
    let [_, _, h, w] = images.dims();
    if (h, w) == (size, size) {
        return images;
    }
    interpolate(
        images,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size([size, size]),
    )
}

/// Training visits the set in a new seeded order every epoch.
fn epoch_order(config: &TrainConfig, epoch: usize) -> Order {
    Order::Shuffled {
        seed: config.seed,
        epoch: epoch as u64,
    }
}

fn count_correct(logits: Tensor<2>, targets: Tensor<1, Int>) -> usize {
    let predicted: Tensor<1, Int> = logits.argmax(1).flatten(0, 1);
    predicted
        .equal(targets)
        .int()
        .sum()
        .into_data()
        .iter::<i64>()
        .next()
        .unwrap_or(0) as usize
}
