use std::path::PathBuf;

use catdog_data::MixKind;
use catdog_infer::{Backend, OpenDevice};
use catdog_model::{kernels::precision::Precision, Architecture, CnnArch, MlpArch, ResNetArch};
use catdog_train::{
    export::ExportFormat,
    mistakes::{GALLERY_TILES, MAX_GALLERY_TILES},
    Budget, OptimizerKind, Schedule,
};
use clap::{parser::ValueSource, ArgMatches, Args, Parser, Subcommand, ValueEnum};

use super::Failure;

#[derive(Debug, Parser)]
#[command(
    name = "catdog",
    version,
    about = "Train image classifiers on real photos: train, eval, predict, export, import."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model on a folder of labelled images and evaluate it on held-out data.
    Train(Box<TrainArgs>),
    /// Evaluate a trained model on a labelled folder: accuracy, loss, confusion, per-class scores.
    Eval(EvalArgs),
    /// Predict the class of images, with logits and probabilities.
    Predict(PredictArgs),
    /// Write a self-contained model bundle: burnpack, safetensors or ONNX + config.json.
    Export(ExportArgs),
    /// Turn a safetensors file (PyTorch names and layouts) back into a catdog model folder.
    Import(ImportArgs),
    /// Find a learning rate: a short sweep from tiny to huge rates; writes no run folder.
    LrFind(Box<LrFindArgs>),
    /// Serve a model over HTTP: a JSON API (POST /predictions) and a drag-and-drop page.
    Serve(ServeArgs),
    /// Find training photos whose labels are probably wrong, and near-duplicates (out-of-fold
    /// predictions and confident learning); writes audit.csv for `train --exclude`.
    Audit(Box<AuditArgs>),
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Folds: one model per fold, trained on the others, judges the fold's photos.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=20))]
    pub folds: u16,
    /// Audit folder (default: audit-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an audit catdog wrote there before (only catdog's own files).
    #[arg(long)]
    pub force: bool,
    /// Photos drawn in label-issues.png (0: none).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub gallery: u16,
    /// Print only warnings and the result.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A run folder or exported bundle.
    #[arg(long)]
    pub model: PathBuf,
    /// Address to listen on (loopback by default; 0.0.0.0 serves every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Images per forward pass at most.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_batch: u16,
    /// Milliseconds the batcher waits for more images once one has arrived.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub max_wait_ms: u16,
    /// Images waiting at most; requests beyond it get 503 with Retry-After.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub queue: u16,
    /// Largest request body in MB; larger ones get 413.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_body_mb: u16,
    /// MB of request bodies held at once, all requests together; beyond it, 503.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_inflight_mb: u16,
    /// Connections open at once; more wait until one closes (each idle one is closed after
    /// --read-timeout-s).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_connections: u16,
    /// Seconds a request's head, and then its body, may take to arrive: a connection whose head
    /// is late is closed, a late body gets 408.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=3600))]
    pub read_timeout_s: u16,
    /// Answer requests without `?tta=` with one forward pass instead of flip TTA: about 1.8x
    /// the photos/s (the default CNN), 0.4-0.6 points less accuracy.
    #[arg(long)]
    pub no_tta: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Arch {
    Mlp,
    Cnn,
    /// ResNet-9-style residual network (see `[model]` `arch = "resnet"`).
    #[value(name = "resnet")]
    ResNet,
}

impl Arch {
    /// This kind of network at its default widths.
    pub fn architecture(self) -> Architecture {
        match self {
            Arch::Mlp => Architecture::Mlp(MlpArch::default()),
            Arch::Cnn => Architecture::Cnn(CnnArch::default()),
            Arch::ResNet => Architecture::ResNet(ResNetArch::default()),
        }
    }
}

#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Compute backend (default: flex).
    #[arg(long, value_enum, ignore_case = true)]
    pub backend: Option<Backend>,
    /// GPU adapter index for --backend wgpu, when there are several.
    #[arg(long = "device", allow_negative_numbers = true)]
    pub device_index: Option<usize>,
}

impl BackendArgs {
    /// The chosen backend (flex when none is given), started.
    pub fn open(&self) -> Result<OpenDevice, Failure> {
        Ok(self.backend.unwrap_or_default().open(self.device_index)?)
    }
}

/// The training settings given on the command line, by argument id (the field name in
/// [`SettingsArgs`]): what `--resume` and `lr-find` name when they ignore some, derived from
/// clap's own record so that no list of flags is kept by hand.
pub struct GivenFlags {
    /// (id, `--long-name`) of every settings flag the user typed.
    given: Vec<(String, String)>,
}

impl GivenFlags {
    /// The settings flags given to the subcommand of `matches`.
    pub fn of(matches: &ArgMatches) -> GivenFlags {
        let Some((_, sub)) = matches.subcommand() else {
            return GivenFlags { given: Vec::new() };
        };
        let settings = SettingsArgs::augment_args(clap::Command::new("settings"));
        let given = settings
            .get_arguments()
            .filter_map(|arg| {
                let id = arg.get_id().as_str();
                let typed = sub.try_contains_id(id).unwrap_or(false)
                    && sub.value_source(id) == Some(ValueSource::CommandLine);
                Some((id.to_string(), format!("--{}", arg.get_long()?))).filter(|_| typed)
            })
            .collect();
        GivenFlags { given }
    }

    /// The long names of the given flags whose id `keep` accepts, in declaration order.
    pub fn named(&self, keep: impl Fn(&str) -> bool) -> Vec<&str> {
        self.given
            .iter()
            .filter(|(id, _)| keep(id))
            .map(|(_, long)| long.as_str())
            .collect()
    }
}

/// What to train on and how: shared by `train` and `lr-find`.
#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// TOML file with training settings, or a run's config.json (which repeats that run,
    /// following the epoch counts its budget chose); flags given here override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Folder of labelled images (Kaggle `cat.0.jpg` or one sub-folder per class).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Held-out folder evaluated at the end (default: data/dogs-vs-cats/test when training on
    /// the default data and it exists).
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Photos of --data to leave out: a file with one path per line, or a CSV whose first
    /// column is `path` (`catdog audit` writes audit.csv).
    #[arg(long, value_name = "FILE")]
    pub exclude: Option<PathBuf>,
    /// Architecture.
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Input images are resized to SIZE x SIZE.
    #[arg(long, allow_negative_numbers = true)]
    pub image_size: Option<usize>,
    /// Progressive resizing: train the first epochs on SIZE x SIZE images (40% of the run, then
    /// growing to --image-size by 75%; CNN and ResNet).
    #[arg(long, value_name = "SIZE", allow_negative_numbers = true)]
    pub progressive: Option<usize>,
    /// Train at --image-size throughout.
    #[arg(long, conflicts_with = "progressive")]
    pub no_progressive: bool,
    #[arg(long, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// Time for the whole run (e.g. 15m, 1h30m): after a short measurement the epoch count is
    /// set so that training and the final evaluation end within it. --epochs wins when given.
    #[arg(long)]
    pub budget: Option<Budget>,
    #[arg(long, allow_negative_numbers = true)]
    pub batch_size: Option<usize>,
    /// Optimiser (default: adamw).
    #[arg(long, value_enum, ignore_case = true)]
    pub optimizer: Option<OptimizerKind>,
    /// Peak learning rate.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// SGD momentum (Nesterov).
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    /// Learning-rate schedule (default: cosine).
    #[arg(long, value_enum, ignore_case = true)]
    pub schedule: Option<Schedule>,
    /// Linear warm-up length in epochs.
    #[arg(long, allow_negative_numbers = true)]
    pub warmup_epochs: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub label_smoothing: Option<f32>,
    /// Validate, keep and export an exponential moving average of the weights with this decay
    /// per step (e.g. 0.999; default: the last weights).
    #[arg(long, allow_negative_numbers = true)]
    pub ema: Option<f64>,
    /// Keep the last weights, not their moving average.
    #[arg(long, conflicts_with = "ema")]
    pub no_ema: bool,
    /// Lookahead: every STEPS optimiser steps the weights move back half-way (alpha 0.5, or
    /// the config file's) to where they were STEPS steps earlier (e.g. 5; default: off).
    #[arg(long, value_name = "STEPS", allow_negative_numbers = true)]
    pub lookahead: Option<usize>,
    /// Stop after this many epochs without a better validation loss.
    #[arg(long, allow_negative_numbers = true)]
    pub patience: Option<usize>,
    /// Share of each class held out for validation.
    #[arg(long, allow_negative_numbers = true)]
    pub validation_fraction: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// Turn off training augmentation (flips and crops).
    #[arg(long)]
    pub no_augment: bool,
    /// Mix training images in pairs, learning both labels: cutmix pastes a box of one image
    /// into the other, mixup blends them (on half the batches, Beta(1, 1) shares, or the
    /// config file's; default: off).
    #[arg(long, value_enum, ignore_case = true)]
    pub mix: Option<MixKind>,
    /// Start the first convolution from the whitening filters of the training images' 3x3
    /// patches (CNN and ResNet).
    #[arg(long)]
    pub whiten: bool,
    /// The training steps' convolution and linear gemms in bf16 (inputs rounded to bfloat16,
    /// sums, weights and gradients in f32): needs AVX512-BF16 (Intel Cooper Lake, Sapphire
    /// Rapids and later; AMD Zen 4 and later) and the flex backend. Validation and evaluation
    /// stay f32. Default: f32.
    #[arg(long, value_enum, ignore_case = true)]
    pub precision: Option<Precision>,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Where decoded images are cached (default: ~/.cache/catdog).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Decode every image instead of using the cache.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Run folder (default: runs/<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (only --epochs, to raise the
    /// count, and --test are taken from the command line).
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Start over in a folder that holds a catdog run (only catdog's own files are replaced).
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Print only warnings and the final result.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct LrFindArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// The sweep's first learning rate.
    #[arg(long, default_value_t = 1e-7, allow_negative_numbers = true)]
    pub min_lr: f64,
    /// The sweep's last learning rate.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    pub max_lr: f64,
    /// Steps from --min-lr to --max-lr (one batch each).
    #[arg(long, default_value_t = 150, allow_negative_numbers = true)]
    pub steps: usize,
    /// Where to draw the loss curve (an existing file is never replaced; default: lr-find.png,
    /// or lr-find-2.png, lr-find-3.png ... when that is taken).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print the sweep and the suggestions as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run folder or exported bundle.
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled images to evaluate on.
    #[arg(long)]
    pub data: PathBuf,
    /// Print the evaluation as JSON.
    #[arg(long)]
    pub json: bool,
    /// One forward pass per image, instead of the default flip TTA (the mean of the logits
    /// of each image and its mirror image).
    #[arg(long)]
    pub no_tta: bool,
    /// Probabilities (and the calibration error) from softmax(logits), ignoring the
    /// temperature fitted in training.
    #[arg(long)]
    pub no_calibration: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[arg(long)]
    pub no_cache: bool,
    /// Folder for confusion.png, calibration.png, predictions.csv (one row per image),
    /// top-losses.png and least-confident.png (default: MODEL/eval-<data folder name>).
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Write no files: no plots, no predictions.csv, no galleries.
    #[arg(long, conflicts_with = "plots")]
    pub no_plots: bool,
    /// Images in each gallery: top-losses.png (the highest losses) and least-confident.png (the
    /// lowest top probabilities); 0 draws neither.
    #[arg(
        long,
        value_name = "N",
        default_value_t = GALLERY_TILES as u16,
        value_parser = clap::value_parser!(u16).range(0..=MAX_GALLERY_TILES as i64),
        conflicts_with = "no_plots"
    )]
    pub top_losses: u16,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A run folder or exported bundle.
    #[arg(long)]
    pub model: PathBuf,
    /// Image files or folders.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Print predictions as JSON.
    #[arg(long)]
    pub json: bool,
    /// One forward pass per image, instead of the default flip TTA (the mean of the logits
    /// of each image and its mirror image): the logits an export gives.
    #[arg(long)]
    pub no_tta: bool,
    /// Probabilities as softmax(logits), ignoring the temperature fitted in training.
    #[arg(long)]
    pub no_calibration: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run folder to export.
    #[arg(long)]
    pub model: PathBuf,
    /// Bundle folder to write.
    #[arg(long)]
    pub out: PathBuf,
    /// What to write beside config.json: model.bpk; model.safetensors with PyTorch names and
    /// layouts (Linear weights [out, in], BatchNorm running_mean/running_var); or model.onnx,
    /// one graph from RGB pixels in 0..1 ([batch, 3, S, S]) to raw logits, for onnxruntime.
    #[arg(long, value_enum, default_value_t = ExportFormat::Burnpack)]
    pub format: ExportFormat,
    /// With --format onnx: a second graph output `probabilities` (softmax of the logits).
    #[arg(long)]
    pub probabilities: bool,
    /// Replace a bundle catdog exported there before (only catdog's own files are replaced).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The safetensors file.
    #[arg(long)]
    pub weights: PathBuf,
    /// Its config.json (default: config.json beside the weights).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model folder to write (config.json + model.bpk).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a model folder catdog imported there before.
    #[arg(long)]
    pub force: bool,
}
