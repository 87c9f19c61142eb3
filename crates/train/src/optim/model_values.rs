//! A model's float tensors as plain `f32` buffers, and those buffers put back: how the weight
//! average ([`crate::optim::ema`]) and Lookahead ([`crate::optim::lookahead`]) keep their copies of the
//! weights, updated in one pass over memory instead of as chains of tensor ops.

use burn::{
    module::{Module, ModuleMapper, ModuleVisitor, Param},
    tensor::{Tensor, TensorData},
};
use catdog_model::Classifier;

/// Which of a model's float tensors.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Tensors {
    /// Every one: weights and BatchNorm's running statistics.
    All,
    /// Those that take a gradient (the weights being trained).
    Trainable,
}

impl Tensors {
    fn includes<const D: usize>(self, param: &Param<Tensor<D>>) -> bool {
        self == Tensors::All || param.val().is_require_grad()
    }
}

/// The values of `which` tensors of `model`, in visiting order.
pub(crate) fn collect(model: &Classifier, which: Tensors) -> Vec<Vec<f32>> {
    let mut collect = Collect {
        which,
        values: Vec::new(),
    };
    model.visit(&mut collect);
    collect.values
}

/// `model` with `which` of its tensors holding `values` (as [`collect`] gives them, for the
/// same architecture); each parameter keeps its id (the optimiser's state is keyed by it) and
/// whether it takes a gradient.
pub(crate) fn replace(model: Classifier, values: &[Vec<f32>], which: Tensors) -> Classifier {
    model.map(&mut Replace {
        which,
        values: values.iter(),
    })
}

struct Collect {
    which: Tensors,
    values: Vec<Vec<f32>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.which.includes(param) {
            self.values
                .push(param.val().into_data().iter::<f32>().collect());
        }
    }
}

struct Replace<'a, I: Iterator<Item = &'a Vec<f32>>> {
    which: Tensors,
    values: I,
}

impl<'a, I: Iterator<Item = &'a Vec<f32>>> ModuleMapper for Replace<'a, I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !self.which.includes(&param) {
            return param;
        }
        let Some(values) = self.values.next() else {
            return param;
        };
        param.map(|t| {
            let require_grad = t.is_require_grad();
            let data = TensorData::new(values.clone(), t.shape());
            Tensor::from_data(data, &t.device()).set_require_grad(require_grad)
        })
    }
}
