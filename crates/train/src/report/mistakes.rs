//! What the model gets wrong, image by image: `predictions.csv` (one row per image of an
//! evaluation, in the data set's order) and the two galleries, `top-losses.png` and
//! `least-confident.png`, with the selections they show.

use std::borrow::Cow;

use catdog_data::Skipped;
use catdog_infer::format_percent;

use super::{
    files::ReportFiles,
    gallery::{draw_gallery, Tile},
    metrics::{least_confident, top_losses, ImageResult},
    plots::PlotError,
};

/// Tiles per gallery unless asked otherwise (`catdog eval --top-losses N`).
pub const GALLERY_TILES: usize = 16;
/// The most tiles a gallery may have (a 256-tile gallery is about 1.4k x 7.5k pixels).
pub const MAX_GALLERY_TILES: usize = 256;

/// `s` as one CSV field (RFC 4180): quoted, with quotes doubled, when it holds a comma, a
/// quote or a line break (or starts or ends with a space); as it is otherwise.
pub fn csv_field(s: &str) -> Cow<'_, str> {
    let special = s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ');
    if special {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// `predictions.csv`: a header, then one row per image in the data set's order.
///
/// Columns: `path`, `true_class`, `predicted_class`, `logit_<class>` for every class,
/// `p_<class>` for every class (softmax), `loss` (cross-entropy of the true class), `correct`
/// (`true`/`false`) and `error`. A file that could not be decoded (`skipped`, placed by its
/// [`Skipped::index`] among the `images`, which are the rest of the folder in order) has only
/// its path, its true class when known and the reason in `error`. Numbers are written in full
/// (the shortest text that reads back as the same value).
pub fn predictions_csv(classes: &[String], images: &[ImageResult], skipped: &[Skipped]) -> String {
    let k = classes.len();
    let mut s = String::with_capacity(64 * (images.len() + skipped.len() + 1) * (k + 1));
    let mut header = vec![
        "path".to_string(),
        "true_class".into(),
        "predicted_class".into(),
    ];
    header.extend(classes.iter().map(|c| format!("logit_{c}")));
    header.extend(classes.iter().map(|c| format!("p_{c}")));
    header.extend(["loss".into(), "correct".into(), "error".into()]);
    push_row(&mut s, header.iter().map(|h| csv_field(h)));

    let mut skipped: Vec<&Skipped> = skipped.iter().collect();
    skipped.sort_by_key(|s| s.index);
    let mut skipped = skipped.into_iter().peekable();
    let mut position = 0;
    let skipped_row = |s: &mut String, skip: &Skipped| {
        let class = skip
            .label
            .and_then(|l| classes.get(l))
            .map(String::as_str)
            .unwrap_or("");
        let path = skip.path.to_string_lossy();
        let mut row = vec![csv_field(&path), csv_field(class)];
        row.extend((0..2 * k + 3).map(|_| Cow::Borrowed("")));
        row.push(csv_field(&skip.reason));
        push_row(s, row.into_iter());
    };
    for image in images {
        while let Some(skip) = skipped.next_if(|skip| skip.index <= position) {
            skipped_row(&mut s, skip);
            position += 1;
        }
        let path = image.path.to_string_lossy();
        let mut row = vec![
            csv_field(&path),
            csv_field(&classes[image.label]),
            csv_field(&classes[image.predicted]),
        ];
        row.extend(image.logits.iter().map(|l| Cow::Owned(l.to_string())));
        row.extend(
            image
                .probabilities
                .iter()
                .map(|p| Cow::Owned(p.to_string())),
        );
        row.push(Cow::Owned(image.loss.to_string()));
        row.push(Cow::Borrowed(if image.correct() {
            "true"
        } else {
            "false"
        }));
        row.push(Cow::Borrowed(""));
        push_row(&mut s, row.into_iter());
        position += 1;
    }
    for skip in skipped {
        skipped_row(&mut s, skip);
    }
    s
}

fn push_row<'a>(s: &mut String, fields: impl Iterator<Item = Cow<'a, str>>) {
    for (i, field) in fields.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&field);
    }
    s.push('\n');
}

/// Draws `top-losses.png` and `least-confident.png` into `files`: the `n` images with the
/// highest loss and the `n` with the lowest top probability, each as a tile with the photo
/// (decoded again from its file), its true and predicted class and their probabilities.
/// `title` names the evaluated set.
pub fn draw_galleries(
    files: &ReportFiles,
    classes: &[String],
    images: &[ImageResult],
    n: usize,
    title: &str,
) -> Result<(), PlotError> {
    let tiles = |indices: &[usize]| -> Vec<Tile> {
        indices.iter().map(|&i| tile(&images[i], classes)).collect()
    };
    let total = images.len();
    let chosen = top_losses(images, n);
    draw_gallery(
        &files.top_losses,
        &format!("Top losses, {title}"),
        &format!(
            "the {} of {total} images with the highest loss (cross-entropy of the true class), \
             highest first",
            chosen.len()
        ),
        &tiles(&chosen),
    )?;
    let chosen = least_confident(images, n);
    draw_gallery(
        &files.least_confident,
        &format!("Least confident, {title}"),
        &format!(
            "the {} of {total} images whose top probability is lowest (nearest a guess), lowest \
             first",
            chosen.len()
        ),
        &tiles(&chosen),
    )
}

fn tile<'a>(image: &'a ImageResult, classes: &'a [String]) -> Tile<'a> {
    Tile {
        path: &image.path,
        true_class: &classes[image.label],
        predicted: &classes[image.predicted],
        p_predicted: format_percent(image.confidence()),
        // For a mistake, how much the model gave the true class.
        p_true: (!image.correct()).then(|| format_percent(image.probabilities[image.label])),
        loss: format!("loss {:.3}", image.loss),
        correct: image.correct(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::report::metrics::image_results;

    /// RFC 4180 rows, read with the `csv` crate.
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.expect("a CSV row").iter().map(String::from).collect())
            .collect()
    }

    #[test]
    fn skipped_files_keep_their_place_and_fields_are_quoted() {
        let classes = vec!["cat, \"tabby\"".to_string(), "dog".to_string()];
        let paths: Vec<PathBuf> = vec!["a,1.png".into(), "b\n2.png".into()];
        let images =
            image_results(&[1.0, -1.0, 0.5, 0.25], &[0, 1], &paths, &classes, 1.0).unwrap();
        let skipped = vec![
            Skipped {
                path: "z \"bad\".jpg".into(),
                reason: "not a JPEG, PNG, WebP, BMP, GIF or TIFF image".into(),
                index: 0,
                label: Some(1),
            },
            Skipped {
                path: "last.png".into(),
                reason: "empty file".into(),
                index: 3,
                label: None,
            },
        ];
        let text = predictions_csv(&classes, &images, &skipped);
        let rows = parse_csv(&text);
        assert_eq!(
            rows[0],
            [
                "path",
                "true_class",
                "predicted_class",
                "logit_cat, \"tabby\"",
                "logit_dog",
                "p_cat, \"tabby\"",
                "p_dog",
                "loss",
                "correct",
                "error"
            ]
        );
        let paths: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
        assert_eq!(paths, ["z \"bad\".jpg", "a,1.png", "b\n2.png", "last.png"]);
        assert_eq!(rows[1][1], "dog");
        assert!(rows[1][2..9].iter().all(String::is_empty), "{:?}", rows[1]);
        assert_eq!(rows[1][9], "not a JPEG, PNG, WebP, BMP, GIF or TIFF image");
        assert_eq!(rows[4][1], "", "no class known");
        assert_eq!(&rows[2][1..3], ["cat, \"tabby\"", "cat, \"tabby\""]);
        assert_eq!(&rows[2][3..5], ["1", "-1"]);
        assert_eq!(rows[2][8], "true");
        assert_eq!(rows[3][8], "false");
        let p: f32 = rows[2][5].parse().unwrap();
        assert_eq!(p, images[0].probabilities[0], "written in full");
        let loss: f64 = rows[3][7].parse().unwrap();
        assert_eq!(loss, images[1].loss);
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("cat.1.jpg"), "cat.1.jpg");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("cr\r"), "\"cr\r\"");
        assert_eq!(csv_field(" pad"), "\" pad\"");
        assert_eq!(csv_field(""), "");
    }
}
