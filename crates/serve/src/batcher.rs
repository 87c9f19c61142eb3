//! Micro-batching: requests put their images on a bounded queue; one worker takes what has
//! arrived (up to `max_batch`, waiting at most `max_wait` for more) and classifies it as one
//! batch while the next requests queue up. A full queue is refused at once (503), so memory
//! stays bounded: at most `queue` waiting images plus one batch.

use std::{sync::Arc, time::Duration};

use catdog_infer::{Classifier, ClassifyError, ClassifyOptions, Input, Prediction, Tta};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// The queue and batch limits (flags of `catdog serve`).
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Images waiting at most; a request beyond it gets 503.
    pub queue: usize,
    /// Images per forward pass at most.
    pub max_batch: usize,
    /// How long the worker waits for more images once one has arrived (0: takes only what is
    /// already queued).
    pub max_wait: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            queue: 256,
            max_batch: 32,
            max_wait: Duration::ZERO,
        }
    }
}

pub type Reply = Result<Prediction, ClassifyError>;

struct Job {
    image: Vec<u8>,
    tta: Tta,
    reply: oneshot::Sender<Reply>,
}

/// The queue's sending side; cloned into every request.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the worker on the current tokio runtime.
    pub fn start(classifier: Arc<Classifier>, limits: BatchLimits, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        tokio::spawn(work(rx, classifier, limits, metrics));
        Batcher { tx }
    }

    /// Queues one encoded image; `None` when the queue is full.
    pub fn submit(&self, image: Vec<u8>, tta: Tta) -> Option<oneshot::Receiver<Reply>> {
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(Job { image, tta, reply }).ok()?;
        Some(answer)
    }
}

async fn work(
    mut rx: mpsc::Receiver<Job>,
    classifier: Arc<Classifier>,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
) {
    let max_batch = limits.max_batch.max(1);
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + limits.max_wait;
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) if limits.max_wait.is_zero() => break,
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => jobs.push(job),
                    _ => break,
                },
            }
        }
        metrics.batch(jobs.len());
        let classifier = classifier.clone();
        // The forward pass runs on rayon's threads; the runtime's threads keep serving.
        let done = tokio::task::spawn_blocking(move || classify(&classifier, jobs)).await;
        if done.is_err() {
            metrics.error("internal");
        }
    }
}

/// Classifies a batch (the plain and the flip-TTA images apart) and answers each job.
fn classify(classifier: &Classifier, jobs: Vec<Job>) {
    let (flip, plain): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.tta == Tta::Flip);
    for (jobs, tta) in [(plain, Tta::Off), (flip, Tta::Flip)] {
        if jobs.is_empty() {
            continue;
        }
        let (inputs, replies): (Vec<Input>, Vec<_>) = jobs
            .into_iter()
            .map(|j| (Input::Bytes(j.image), j.reply))
            .unzip();
        let opts = ClassifyOptions {
            tta,
            calibrated: true,
        };
        for (result, reply) in classifier.classify(&inputs, opts).into_iter().zip(replies) {
            // A client that went away no longer waits for its answer.
            let _ = reply.send(result);
        }
    }
}
