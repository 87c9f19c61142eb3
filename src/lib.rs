//! catdog: train image classifiers on real photos with burn, evaluate them honestly on held-out
//! data, and export weights.
//!
//! The work is split into three crates, re-exported here: [`model`] (networks that output raw
//! logits), [`data`] (image folders to batches) and [`train`] (loop, loss, metrics, export).

pub use catdog_data as data;
pub use catdog_model as model;
pub use catdog_train as train;
