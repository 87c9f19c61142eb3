//! What the defaults train for a given time: the architecture, the input size and the
//! progressive schedule, chosen by the budget of one training run.

use catdog_model::{Architecture, ResNetArch};

use crate::{budget::Budget, progressive::Progressive, TrainConfig};

/// From this budget on the defaults train the ResNet: at 30 minutes it scores 1.1-1.9 points
/// above the CNN's 15-minute run (docs/results.md). The threshold itself is not tuned: the
/// ResNet recipe was measured at 30 and 60 minutes, the CNN at 5 and 15.
pub const RESNET_FROM: Budget = Budget::minutes(25);

/// The ResNet's final input side; its first epochs train at [`Progressive`]'s start size.
pub const RESNET_IMAGE_SIZE: usize = 56;

/// The model, input size and progressive schedule of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub model: Architecture,
    pub image_size: usize,
    pub progressive: Option<Progressive>,
}

impl Recipe {
    /// The defaults' recipe for a run of `budget`: the CNN at 48x48 (the settings of
    /// [`TrainConfig::default`]), or from [`RESNET_FROM`] on the ResNet, resized progressively
    /// from 32x32 up to [`RESNET_IMAGE_SIZE`].
    pub fn for_budget(budget: Budget) -> Recipe {
        if budget >= RESNET_FROM {
            Recipe {
                model: Architecture::ResNet(ResNetArch::default()),
                image_size: RESNET_IMAGE_SIZE,
                progressive: Some(Progressive::default()),
            }
        } else {
            let d = TrainConfig::default();
            Recipe {
                model: d.model,
                image_size: d.image_size,
                progressive: d.progressive,
            }
        }
    }

    /// `config` with this recipe's model, input size and progressive schedule.
    pub fn apply(self, config: &mut TrainConfig) {
        config.model = self.model;
        config.image_size = self.image_size;
        config.progressive = self.progressive;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_BUDGET;

    #[test]
    fn short_budgets_train_the_default_cnn_and_long_ones_the_resnet() {
        let d = TrainConfig::default();
        for minutes in [1, 5, 15, 24] {
            let r = Recipe::for_budget(Budget::minutes(minutes));
            assert_eq!(
                (r.model, r.image_size, r.progressive),
                (d.model.clone(), d.image_size, d.progressive),
                "{minutes} min"
            );
        }
        for minutes in [25, 30, 60, 600] {
            let r = Recipe::for_budget(Budget::minutes(minutes));
            assert!(matches!(r.model, Architecture::ResNet(_)), "{minutes} min");
            assert_eq!(r.image_size, RESNET_IMAGE_SIZE);
            assert_eq!(r.progressive, Some(Progressive::default()));
        }
        // The default budget keeps the default settings.
        assert!(Recipe::for_budget(DEFAULT_BUDGET).model.same_kind(&d.model));
        let mut c = TrainConfig::default();
        Recipe::for_budget(Budget::minutes(30)).apply(&mut c);
        assert_eq!(c.image_size, RESNET_IMAGE_SIZE);
        c.validate().expect("the ResNet recipe is a valid config");
    }
}
