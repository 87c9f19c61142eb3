//! Classifies photos with a trained model from a Rust program:
//!
//! ```sh
//! cargo run --release --example classify -- runs/<run> photo1.jpg photo2.jpg
//! ```

use catdog::infer::{Backend, Classifier, ClassifyOptions, Input};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: classify MODEL_DIR PHOTO...")?;
    let photos: Vec<Input> = args.map(Input::path).collect();

    let device = Backend::Flex.open(None)?.device;
    let classifier = Classifier::load(model.as_ref(), &device)?;
    let results = classifier.classify(&photos, ClassifyOptions::default());
    for (photo, result) in photos.iter().zip(results) {
        let Input::Path(path) = photo else { continue };
        match result {
            Ok(p) => println!(
                "{}: {} ({:.1}%), logits {:?}",
                path.display(),
                p.class,
                100.0 * p.confidence(),
                p.logits
            ),
            Err(e) => println!("{}: {e}", path.display()),
        }
    }
    Ok(())
}
