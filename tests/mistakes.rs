//! Looking at mistakes: `predictions.csv` (one row per image, agreeing with `catdog predict`),
//! and the galleries `top-losses.png` and `least-confident.png` (the right photos, in the right
//! order, in a grid of the expected size).

mod common;

use std::path::Path;

use common::{assert_ok, catdog};

use catdog::{
    data::{decode_image, discover, synth::write_synth_set, Layout},
    train::gallery::{GalleryLayout, TILE},
};

/// RFC 4180 rows (the `csv` crate's reader; every row as long as the first).
fn read_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes)
        .records()
        .map(|r| r.expect("a CSV row").iter().map(String::from).collect())
        .collect()
}

/// `predictions.csv` as rows keyed by column name.
struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    fn read(path: &Path) -> Csv {
        let mut rows = read_csv(&std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}")));
        let header = rows.remove(0);
        for row in &rows {
            assert_eq!(row.len(), header.len(), "{row:?}");
        }
        Csv { header, rows }
    }

    fn col(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.header))
    }

    fn get<'a>(&self, row: &'a [String], name: &str) -> &'a str {
        &row[self.col(name)]
    }

    fn num(&self, row: &[String], name: &str) -> f64 {
        let v = self.get(row, name);
        v.parse()
            .unwrap_or_else(|e| panic!("{name} = {v:?} is not a number: {e}"))
    }

    /// The rows with a prediction (no error), in file order.
    fn predicted(&self) -> Vec<&Vec<String>> {
        self.rows
            .iter()
            .filter(|r| self.get(r, "error").is_empty())
            .collect()
    }
}

/// Indices into `rows` sorted by `key`, descending, ties in file order; the first `n`.
fn highest(keys: &[f64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[b].total_cmp(&keys[a]).then(a.cmp(&b)));
    order.truncate(n);
    order
}

/// Asserts that `png` is a gallery of exactly the photos of `paths`, in order: each tile's
/// pixels are the file decoded at the tile size, and the grid's other places are empty.
fn assert_gallery(png: &Path, paths: &[String]) {
    let layout = GalleryLayout::new(paths.len());
    let image = image::open(png)
        .unwrap_or_else(|e| panic!("{png:?}: {e}"))
        .to_rgb8();
    assert_eq!(
        (image.width(), image.height()),
        (layout.width, layout.height),
        "{png:?}"
    );
    let tile_pixels = |i: usize| -> Vec<u8> {
        let (x0, y0) = layout.photo_origin(i);
        let mut v = Vec::new();
        for y in y0..y0 + TILE {
            for x in x0..x0 + TILE {
                v.extend_from_slice(&image.get_pixel(x, y).0);
            }
        }
        v
    };
    for (i, path) in paths.iter().enumerate() {
        let expected = decode_image(Path::new(path), TILE).unwrap();
        assert!(
            tile_pixels(i) == expected,
            "{png:?}: tile {i} is not {path}"
        );
    }
    for i in paths.len()..(layout.columns * layout.rows) as usize {
        assert!(
            tile_pixels(i).iter().all(|&b| b == 255),
            "{png:?}: place {i} of the grid is not empty"
        );
    }
}

#[test]
fn eval_and_train_write_predictions_and_galleries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Class and file names that need quoting in CSV.
    let tabby = "cat, \"tabby\"";
    write_synth_set(
        &dir.join("data"),
        &[tabby, "dog"],
        12,
        24,
        Layout::ImageFolder,
        5,
    )
    .unwrap();
    write_synth_set(
        &dir.join("held-out"),
        &[tabby, "dog"],
        5,
        24,
        Layout::ImageFolder,
        9,
    )
    .unwrap();
    let held_out = dir.join("held-out");
    std::fs::write(held_out.join(tabby).join("2,broken.jpg"), b"not an image").unwrap();
    std::fs::write(held_out.join("dog").join("0 empty.png"), b"").unwrap();
    std::fs::rename(
        held_out.join("dog/3.png"),
        held_out.join("dog/three \"3\",\nnew line.png"),
    )
    .unwrap();
    let toml =
        "epochs = 1\nimage_size = 16\nbatch_size = 8\n[model]\narch = \"mlp\"\nhidden = [16]\n";
    std::fs::write(dir.join("run.toml"), toml).unwrap();
    let o = catdog(
        &[
            "train", "--config", "run.toml", "--data", "data", "--test", "held-out", "--out", "run",
        ],
        dir,
    );
    assert_ok(&o);

    // Training writes the held-out set's results and galleries into the run folder, bad files
    // included.
    let discovered = discover(&held_out).unwrap();
    let order: Vec<String> = discovered
        .samples
        .iter()
        .map(|s| s.path.to_string_lossy().into_owned())
        .collect();
    assert_eq!(order.len(), 12);
    let run_csv = Csv::read(&dir.join("run/predictions.csv"));
    let run_paths: Vec<String> = run_csv
        .rows
        .iter()
        .map(|r| dir.join(&r[0]).to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        run_paths, order,
        "one row per file, in the data set's order"
    );
    assert_eq!(run_csv.predicted().len(), 10);
    for file in ["top-losses.png", "least-confident.png"] {
        let layout = GalleryLayout::new(10);
        let png = image::open(dir.join("run").join(file)).unwrap();
        assert_eq!((png.width(), png.height()), (layout.width, layout.height));
    }

    // `catdog eval`: the same rows beside its plots, in its own folder.
    let o = catdog(
        &[
            "eval",
            "--model",
            "run",
            "--data",
            "held-out",
            "--top-losses",
            "4",
        ],
        dir,
    );
    assert_ok(&o);
    let eval_dir = dir.join("run/eval-held-out");
    let csv = Csv::read(&eval_dir.join("predictions.csv"));
    assert_eq!(csv.rows, run_csv.rows, "eval and train agree");
    let classes = [tabby, "dog"];
    let mut header = vec!["path", "true_class", "predicted_class"];
    let logit_cols: Vec<String> = classes.iter().map(|c| format!("logit_{c}")).collect();
    let p_cols: Vec<String> = classes.iter().map(|c| format!("p_{c}")).collect();
    header.extend(logit_cols.iter().map(String::as_str));
    header.extend(p_cols.iter().map(String::as_str));
    header.extend(["loss", "correct", "error"]);
    assert_eq!(csv.header, header);

    // Every row agrees with `catdog predict --json` on the same files.
    let o = catdog(&["predict", "--model", "run", "--json", "held-out"], dir);
    assert_eq!(o.status.code(), Some(1), "two files cannot be read");
    let predicted: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let predicted = predicted.as_array().unwrap();
    assert_eq!(predicted.len(), csv.rows.len());
    for row in &csv.rows {
        let path = &row[0];
        let p = predicted
            .iter()
            .find(|p| p["path"] == path.as_str())
            .unwrap_or_else(|| panic!("{path:?} not predicted"));
        let error = csv.get(row, "error");
        if !error.is_empty() {
            assert_eq!(p["error"], error, "{path:?}");
            assert!(csv.get(row, "predicted_class").is_empty());
            assert!(csv.get(row, "loss").is_empty() && csv.get(row, "correct").is_empty());
            continue;
        }
        assert_eq!(p["predicted"], csv.get(row, "predicted_class"), "{path:?}");
        let mut logits = Vec::new();
        for (k, class) in classes.iter().enumerate() {
            let logit = csv.num(row, &logit_cols[k]);
            let prob = csv.num(row, &p_cols[k]);
            let (l, q) = (
                p["logits"][k].as_f64().unwrap(),
                p["probabilities"][k].as_f64().unwrap(),
            );
            assert!((logit - l).abs() < 1e-5, "{path:?} {class}: {logit} vs {l}");
            assert!((prob - q).abs() < 1e-5, "{path:?} {class}: {prob} vs {q}");
            logits.push(logit);
        }
        let label = classes
            .iter()
            .position(|c| *c == csv.get(row, "true_class"))
            .unwrap();
        let max = logits.iter().copied().fold(f64::MIN, f64::max);
        let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        let loss = csv.num(row, "loss");
        assert!((loss - (lse - logits[label])).abs() < 1e-5, "{path:?}");
        let right = csv.get(row, "predicted_class") == csv.get(row, "true_class");
        assert_eq!(
            csv.get(row, "correct"),
            if right { "true" } else { "false" }
        );
    }
    let errors: Vec<&str> = csv
        .rows
        .iter()
        .map(|r| csv.get(r, "error"))
        .filter(|e| !e.is_empty())
        .collect();
    assert_eq!(
        errors,
        [
            "not a JPEG, PNG, WebP, BMP, GIF or TIFF image",
            "empty file"
        ]
    );

    // The galleries show the 4 highest-loss rows and the 4 least confident, in order.
    let rows = csv.predicted();
    let losses: Vec<f64> = rows.iter().map(|r| csv.num(r, "loss")).collect();
    let doubt: Vec<f64> = rows
        .iter()
        .map(|r| -p_cols.iter().map(|c| csv.num(r, c)).fold(0.0, f64::max))
        .collect();
    let path_of = |i: &usize| dir.join(&rows[*i][0]).to_string_lossy().into_owned();
    let worst: Vec<String> = highest(&losses, 4).iter().map(path_of).collect();
    let unsure: Vec<String> = highest(&doubt, 4).iter().map(path_of).collect();
    assert_gallery(&eval_dir.join("top-losses.png"), &worst);
    assert_gallery(&eval_dir.join("least-confident.png"), &unsure);
    // The whole set in one gallery: every photo, each once.
    let o = catdog(
        &[
            "eval",
            "--model",
            "run",
            "--data",
            "held-out",
            "--plots",
            "all",
            "--top-losses",
            "256",
        ],
        dir,
    );
    assert_ok(&o);
    let all: Vec<String> = highest(&losses, 256).iter().map(path_of).collect();
    assert_eq!(all.len(), 10);
    assert_gallery(&dir.join("all/top-losses.png"), &all);

    // 0 draws no gallery, and removes those of an earlier evaluation; more than 256 is refused.
    let o = catdog(
        &[
            "eval",
            "--model",
            "run",
            "--data",
            "held-out",
            "--top-losses",
            "0",
        ],
        dir,
    );
    assert_ok(&o);
    assert!(eval_dir.join("predictions.csv").exists());
    assert!(!eval_dir.join("top-losses.png").exists());
    assert!(!eval_dir.join("least-confident.png").exists());
    let o = catdog(
        &[
            "eval",
            "--model",
            "run",
            "--data",
            "held-out",
            "--top-losses",
            "257",
        ],
        dir,
    );
    assert_eq!(o.status.code(), Some(2));
    // --no-plots writes nothing.
    let o = catdog(
        &[
            "eval",
            "--model",
            "run",
            "--data",
            "held-out",
            "--plots",
            "none",
            "--no-plots",
        ],
        dir,
    );
    assert_eq!(o.status.code(), Some(2), "--plots and --no-plots conflict");
    let o = catdog(
        &["eval", "--model", "run", "--data", "data", "--no-plots"],
        dir,
    );
    assert_ok(&o);
    assert!(!dir.join("run/eval-data").exists());
}
