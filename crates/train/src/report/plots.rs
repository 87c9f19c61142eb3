//! PNG pictures of a run: learning curves, confusion matrix and reliability diagram.
//!
//! Drawn with plotters into an RGB buffer and encoded with `image`, with the DejaVu Sans font
//! embedded: no system libraries or fonts are needed.

use std::{io::Write as _, path::Path, sync::Once};

use catdog_data::write_atomic;
use plotters::{
    coord::{CoordTranslate, Shift},
    prelude::*,
    style::{register_font, text_anchor::HPos, text_anchor::Pos, text_anchor::VPos},
};

use super::{
    files::ReportFiles,
    metrics::{EpochMetrics, Evaluation},
};

pub(crate) const FONT: &str = "sans-serif";
pub(crate) const TRAIN: RGBColor = RGBColor(31, 119, 180);
pub(crate) const VALID: RGBColor = RGBColor(214, 39, 40);
pub(crate) const GREY: RGBColor = RGBColor(120, 120, 120);

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot draw {file}")]
    Draw {
        file: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot write {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn register_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        // The embedded fonts are valid TrueType files; a failure would leave text undrawn,
        // which the render's error reports.
        let _ = register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Draws `w x h` pixels with `draw` and writes them to `path` as PNG, atomically (replacing
/// catdog's own earlier plot there).
pub(crate) fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> DrawResult,
) -> Result<(), PlotError> {
    let png = draw_png(path, size, draw)?;
    write_atomic(path, &png).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// [`render`] into a new file: refused when `path` exists, also when another process created
/// it while this one drew (the file is created exclusively).
pub(crate) fn render_new(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> DrawResult,
) -> Result<(), PlotError> {
    let png = draw_png(path, size, draw)?;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        let written = file.write_all(&png).and_then(|()| file.sync_all());
        if written.is_err() {
            // Only the file this call created, never one that was there.
            let _ = std::fs::remove_file(path);
        }
        written
    };
    write().map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `w x h` pixels drawn by `draw`, as PNG bytes (`path` names the plot in errors).
fn draw_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> DrawResult,
) -> Result<Vec<u8>, PlotError> {
    register_fonts();
    let file = path.display().to_string();
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(|e| e.into())
            .and_then(|_| draw(&root))
            .and_then(|_| root.present().map_err(|e| e.into()));
        drawn.map_err(|e| PlotError::Draw {
            file: file.clone(),
            source: e.to_string().into(),
        })?;
    }
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &rgb,
        w,
        h,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| PlotError::Draw {
        file,
        source: e.into(),
    })?;
    Ok(png)
}

pub(crate) fn font(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

pub(crate) fn bold(size: u32) -> TextStyle<'static> {
    (FONT, size)
        .into_font()
        .style(FontStyle::Bold)
        .color(&BLACK)
}

/// `curves.png`: training and validation loss (left) and accuracy (right) per epoch.
///
/// `train_note` says how the training numbers were measured (e.g. with label smoothing and
/// augmentation), since they are not comparable with validation's otherwise.
pub fn learning_curves(
    history: &[EpochMetrics],
    train_note: &str,
    path: &Path,
) -> Result<(), PlotError> {
    render(path, (1400, 560), |root| {
        let (left, right) = root.split_horizontally(700);
        let series = |pick: fn(&EpochMetrics) -> f64, scale: f64| -> Vec<(f64, f64)> {
            history
                .iter()
                .map(|m| (m.epoch as f64, scale * pick(m)))
                .collect()
        };
        let curves = [
            (format!("train ({train_note})"), TRAIN),
            ("validation".to_string(), VALID),
        ];
        curve_panel(
            &left,
            ("Loss per epoch", "cross-entropy"),
            [series(|m| m.train_loss, 1.0), series(|m| m.val_loss, 1.0)],
            &curves,
            SeriesLabelPosition::UpperRight,
        )?;
        curve_panel(
            &right,
            ("Accuracy per epoch", "accuracy (%)"),
            [series(|m| m.train_acc, 100.0), series(|m| m.val_acc, 100.0)],
            &curves,
            SeriesLabelPosition::LowerRight,
        )
    })
}

/// One panel of `curves.png`: a line with markers per series, against the epoch.
fn curve_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    (title, y_desc): (&str, &str),
    points: [Vec<(f64, f64)>; 2],
    curves: &[(String, RGBColor); 2],
    legend_corner: SeriesLabelPosition,
) -> DrawResult {
    let epochs = points[0].len().max(1);
    let ys = points.iter().flatten().map(|p| p.1);
    let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(title, bold(26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5..epochs as f64 + 0.5, (lo - pad)..(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels(epochs.clamp(2, 15))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(font(16))
        .axis_desc_style(font(18))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (points, (label, color)) in points.into_iter().zip(curves) {
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )?;
    }
    draw_legend(&mut chart, legend_corner)
}

/// The legend of a chart's labelled series, in one style for every plot.
pub(crate) fn draw_legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
    corner: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .label_font(font(16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(corner)
        .draw()?;
    Ok(())
}

/// The confusion matrix and reliability diagram of one evaluation, titled "Confusion matrix,
/// {title}" and "Reliability, {title}".
pub fn evaluation_plots(
    eval: &Evaluation,
    title: &str,
    files: &ReportFiles,
) -> Result<(), PlotError> {
    confusion_matrix(
        eval,
        &format!("Confusion matrix, {title}"),
        &files.confusion,
    )?;
    reliability_diagram(eval, &format!("Reliability, {title}"), &files.calibration)
}

/// `confusion.png`: counts per (true, predicted) class, shaded by the share of the true class.
pub fn confusion_matrix(eval: &Evaluation, title: &str, path: &Path) -> Result<(), PlotError> {
    let k = eval.classes.len().max(1);
    let cell = (560 / k as u32).clamp(60, 220) as i32;
    let (left, top) = (180, 110);
    let size = (
        left as u32 + k as u32 * cell as u32 + 60,
        top as u32 + k as u32 * cell as u32 + 110,
    );
    render(path, size, |root| {
        let center = Pos::new(HPos::Center, VPos::Center);
        let grid_w = k as i32 * cell;
        root.draw(&Text::new(
            title.to_string(),
            (size.0 as i32 / 2, 30),
            bold(24).pos(center),
        ))?;
        root.draw(&Text::new(
            format!(
                "{} images, accuracy {:.2}% (rows: true class, columns: predicted)",
                eval.images,
                100.0 * eval.accuracy
            ),
            (size.0 as i32 / 2, 64),
            font(16).pos(center),
        ))?;
        for (t, row) in eval.confusion.iter().enumerate() {
            let support: usize = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let share = if support > 0 {
                    count as f64 / support as f64
                } else {
                    0.0
                };
                let (x, y) = (left + p as i32 * cell, top + t as i32 * cell);
                // White -> dark blue with the share; dark cells get white text.
                let shade = |c: u8| (255.0 - share * (255.0 - c as f64)) as u8;
                let fill = RGBColor(shade(8), shade(48), shade(107));
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    fill.filled(),
                ))?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    BLACK.stroke_width(1),
                ))?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let mid = (x + cell / 2, y + cell / 2);
                root.draw(&Text::new(
                    count.to_string(),
                    (mid.0, mid.1 - 12),
                    bold(22).color(&ink).pos(center),
                ))?;
                root.draw(&Text::new(
                    format!("{:.1}%", 100.0 * share),
                    (mid.0, mid.1 + 16),
                    font(16).color(&ink).pos(center),
                ))?;
            }
        }
        for (i, class) in eval.classes.iter().enumerate() {
            let mid = i as i32 * cell + cell / 2;
            root.draw(&Text::new(
                class.clone(),
                (left - 12, top + mid),
                font(18).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            root.draw(&Text::new(
                class.clone(),
                (left + mid, top + grid_w + 18),
                font(18).pos(center),
            ))?;
        }
        root.draw(&Text::new(
            "predicted class",
            (left + grid_w / 2, top + grid_w + 52),
            bold(18).pos(center),
        ))?;
        root.draw(&Text::new(
            "true class",
            (24, top + grid_w / 2),
            bold(18).transform(FontTransform::Rotate270).pos(center),
        ))?;
        Ok(())
    })
}

/// `calibration.png`: a reliability diagram (accuracy against confidence per bin, with the
/// diagonal of perfect calibration) above the number of images per bin, titled with the ECE.
pub fn reliability_diagram(eval: &Evaluation, title: &str, path: &Path) -> Result<(), PlotError> {
    render(path, (900, 900), |root| {
        let cal = &eval.calibration;
        let bins = cal.bins.len().max(1);
        // The top-class probability is never below 1/classes: start at that bin.
        let first = ((bins as f64) / eval.classes.len().max(1) as f64).floor() as usize;
        let x_lo = cal.bins.get(first).map(|b| b.lower).unwrap_or(0.0);
        let (upper, lower) = root.split_vertically(640);
        let x_desc = match &eval.uncalibrated {
            Some(raw) => format!(
                "confidence: top-class softmax(logits / {:.3}); error {:.2}% at temperature 1",
                eval.temperature,
                100.0 * raw.ece
            ),
            None => "confidence (top-class softmax probability)".to_string(),
        };
        let mut chart = ChartBuilder::on(&upper)
            .caption(
                format!(
                    "{title}: expected calibration error {:.2}%",
                    100.0 * cal.ece
                ),
                bold(22),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(x_lo..1.0, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("accuracy in bin")
            .label_style(font(16))
            .axis_desc_style(font(18))
            .x_label_formatter(&|x| format!("{x:.2}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let filled: Vec<_> = cal.bins.iter().filter(|b| b.images > 0).collect();
        chart
            .draw_series(filled.iter().map(|b| {
                Rectangle::new(
                    [(b.lower, 0.0), (b.upper, b.accuracy)],
                    TRAIN.mix(0.85).filled(),
                )
            }))?
            .label("accuracy of the bin's images")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], TRAIN.filled()));
        chart.draw_series(filled.iter().map(|b| {
            Rectangle::new(
                [(b.lower, 0.0), (b.upper, b.accuracy)],
                WHITE.stroke_width(2),
            )
        }))?;
        // A calibrated model's bar reaches its bin's mean confidence.
        chart
            .draw_series(filled.iter().map(|b| {
                PathElement::new(
                    vec![(b.lower, b.mean_confidence), (b.upper, b.mean_confidence)],
                    VALID.stroke_width(4),
                )
            }))?
            .label("mean confidence of the bin's images")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], VALID.stroke_width(4)));
        chart
            .draw_series(LineSeries::new(
                [(x_lo, x_lo), (1.0, 1.0)],
                GREY.stroke_width(2),
            ))?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREY.stroke_width(2)));
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;

        let most = filled.iter().map(|b| b.images).max().unwrap_or(1) as f64;
        let mut counts = ChartBuilder::on(&lower)
            .caption(
                format!("images per confidence bin ({} in all)", eval.images),
                font(18),
            )
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_lo..1.0, 0.0..most * 1.1)?;
        counts
            .configure_mesh()
            .y_desc("images")
            .label_style(font(14))
            .axis_desc_style(font(16))
            .x_label_formatter(&|x| format!("{x:.2}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .y_labels(4)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        counts.draw_series(filled.iter().map(|b| {
            Rectangle::new([(b.lower, 0.0), (b.upper, b.images as f64)], GREY.filled())
        }))?;
        Ok(())
    })
}
