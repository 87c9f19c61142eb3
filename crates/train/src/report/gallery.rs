//! A gallery of photos as a PNG: a grid of tiles, each the photo (decoded again from its file,
//! centre square, [`TILE`] pixels a side) framed green when the model was right and red when it
//! was wrong, and under it the file name, the true class, the predicted class with their
//! probabilities, and the loss; a title above.

use std::path::Path;

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use crate::report::plots::{bold, font, render, DrawResult, PlotError};

/// Side of a tile's photo, in pixels.
pub const TILE: u32 = 160;
/// Space between two tiles, across and down.
pub const GAP: u32 = 18;
/// Space around the grid, left, right and below.
pub const MARGIN: u32 = 24;
/// Height of the title block above the grid.
pub const HEADER: u32 = 84;
/// Height of the text under each photo (four lines).
pub const LABEL_HEIGHT: u32 = 84;
/// Tiles in a full row: the square root of the count, rounded up, within these bounds.
pub const MIN_COLUMNS: u32 = 4;
pub const MAX_COLUMNS: u32 = 8;
/// Narrowest picture, so that the title has room.
pub const MIN_WIDTH: u32 = 760;

/// Width of the frame drawn around each photo (outside it).
const FRAME: u32 = 3;
const LINE: i32 = 19;
const RIGHT: RGBColor = RGBColor(0, 128, 0);
const WRONG: RGBColor = RGBColor(200, 30, 30);
const DIM: RGBColor = RGBColor(90, 90, 90);
const MISSING: RGBColor = RGBColor(190, 190, 190);

/// Where the tiles of a gallery go: a grid of `columns` (the square root of the count, rounded
/// up, between [`MIN_COLUMNS`] and [`MAX_COLUMNS`]; one row when there are fewer tiles) by
/// `rows`, centred, below the title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GalleryLayout {
    pub tiles: usize,
    pub columns: u32,
    pub rows: u32,
    /// The picture's size in pixels.
    pub width: u32,
    pub height: u32,
}

impl GalleryLayout {
    pub fn new(tiles: usize) -> Self {
        let square = ((tiles as f64).sqrt().ceil() as u32).clamp(MIN_COLUMNS, MAX_COLUMNS);
        let columns = square.min(tiles as u32).max(1);
        let rows = (tiles as u32).div_ceil(columns);
        let grid_w = columns * TILE + (columns - 1) * GAP;
        let grid_h = rows * (TILE + LABEL_HEIGHT) + rows.saturating_sub(1) * GAP;
        GalleryLayout {
            tiles,
            columns,
            rows,
            width: (grid_w + 2 * MARGIN).max(MIN_WIDTH),
            height: HEADER + grid_h + MARGIN,
        }
    }

    /// The top-left pixel of tile `i`'s photo (tiles go left to right, then down).
    pub fn photo_origin(&self, i: usize) -> (u32, u32) {
        let grid_w = self.columns * TILE + (self.columns - 1) * GAP;
        let left = (self.width - grid_w) / 2;
        let (column, row) = (i as u32 % self.columns, i as u32 / self.columns);
        (
            left + column * (TILE + GAP),
            HEADER + row * (TILE + LABEL_HEIGHT + GAP),
        )
    }
}

/// What one tile shows.
#[derive(Debug, Clone)]
pub struct Tile<'a> {
    /// The photo, decoded again (a file that no longer decodes gets a grey square).
    pub path: &'a Path,
    pub true_class: &'a str,
    pub predicted: &'a str,
    /// The probability of the predicted class, as text.
    pub p_predicted: String,
    /// The probability of the true class, as text, for a mistake.
    pub p_true: Option<String>,
    /// The loss, as text.
    pub loss: String,
    pub correct: bool,
}

/// Draws `tiles` as a [`GalleryLayout`] grid under `title` and `subtitle` into `path` (PNG).
pub fn draw_gallery(
    path: &Path,
    title: &str,
    subtitle: &str,
    tiles: &[Tile],
) -> Result<(), PlotError> {
    let layout = GalleryLayout::new(tiles.len());
    // Decoded (and checked) like training images, at the tile's size.
    let photos: Vec<Option<Vec<u8>>> = tiles
        .iter()
        .map(|t| catdog_data::decode_image(t.path, TILE).ok())
        .collect();
    render(path, (layout.width, layout.height), |root| {
        let text_w = layout.width - 2 * MARGIN;
        let center = Pos::new(HPos::Center, VPos::Center);
        let mid = layout.width as i32 / 2;
        let title = fit(root, title, &bold(22), text_w, Cut::End)?;
        root.draw(&Text::new(title, (mid, 30), bold(22).pos(center)))?;
        let subtitle = fit(root, subtitle, &font(15), text_w, Cut::End)?;
        root.draw(&Text::new(subtitle, (mid, 60), font(15).pos(center)))?;
        for (i, (tile, photo)) in tiles.iter().zip(photos).enumerate() {
            let (x, y) = layout.photo_origin(i);
            draw_tile(root, (x as i32, y as i32), tile, photo)?;
        }
        Ok(())
    })
}

fn draw_tile(
    root: &DrawingArea<BitMapBackend, Shift>,
    (x, y): (i32, i32),
    tile: &Tile,
    photo: Option<Vec<u8>>,
) -> DrawResult {
    let side = TILE as i32;
    let ink = if tile.correct { RIGHT } else { WRONG };
    let f = FRAME as i32;
    root.draw(&Rectangle::new(
        [(x - f, y - f), (x + side + f - 1, y + side + f - 1)],
        ink.filled(),
    ))?;
    match photo.and_then(|p| BitMapElement::with_owned_buffer((x, y), (TILE, TILE), p)) {
        Some(photo) => root.draw(&photo)?,
        None => {
            root.draw(&Rectangle::new(
                [(x, y), (x + side - 1, y + side - 1)],
                MISSING.filled(),
            ))?;
            let center = Pos::new(HPos::Center, VPos::Center);
            for (j, line) in ["the file no longer", "decodes"].iter().enumerate() {
                root.draw(&Text::new(
                    *line,
                    (x + side / 2, y + side / 2 - 9 + 18 * j as i32),
                    font(14).pos(center),
                ))?;
            }
        }
    }
    let left = Pos::new(HPos::Left, VPos::Top);
    let right = Pos::new(HPos::Right, VPos::Top);
    let top = y + side + f + 5;
    let name = tile
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| tile.path.to_string_lossy().into_owned());
    let dim = |size| font(size).color(&DIM);
    let name = fit(root, &name, &dim(14), TILE, Cut::Middle)?;
    root.draw(&Text::new(name, (x, top), dim(14).pos(left)))?;
    // A class name on the left, its probability flush right; the name is cut to the room left.
    let class_line = |row: i32, label: &str, class: &str, p: Option<&str>, style: TextStyle| {
        let line_y = top + row * LINE;
        let p_w = match p {
            Some(p) => {
                root.draw(&Text::new(
                    p.to_string(),
                    (x + side, line_y),
                    style.clone().pos(right),
                ))?;
                root.estimate_text_size(p, &style)?.0 + 6
            }
            None => 0,
        };
        let text = fit(
            root,
            &format!("{label}{class}"),
            &style,
            TILE.saturating_sub(p_w),
            Cut::End,
        )?;
        root.draw(&Text::new(text, (x, line_y), style.pos(left)))?;
        DrawResult::Ok(())
    };
    class_line(
        1,
        "true: ",
        tile.true_class,
        tile.p_true.as_deref(),
        font(15),
    )?;
    class_line(
        2,
        "predicted: ",
        tile.predicted,
        Some(&tile.p_predicted),
        bold(15).color(&ink),
    )?;
    root.draw(&Text::new(
        tile.loss.clone(),
        (x, top + 3 * LINE),
        dim(14).pos(left),
    ))?;
    Ok(())
}

/// Which part of a text too wide for its room is replaced by an ellipsis.
#[derive(Clone, Copy)]
enum Cut {
    End,
    Middle,
}

/// `text` as drawn in `style`, shortened with "…" until it is at most `width` pixels wide.
fn fit(
    area: &DrawingArea<BitMapBackend, Shift>,
    text: &str,
    style: &TextStyle,
    width: u32,
    cut: Cut,
) -> Result<String, Box<dyn std::error::Error>> {
    let wide = |s: &str| -> Result<bool, Box<dyn std::error::Error>> {
        Ok(area.estimate_text_size(s, style)?.0 > width)
    };
    if !wide(text)? {
        return Ok(text.to_string());
    }
    let chars: Vec<char> = text.chars().collect();
    for keep in (0..chars.len()).rev() {
        let shortened: String = match cut {
            Cut::End => chars[..keep].iter().chain(['…'].iter()).collect(),
            Cut::Middle => {
                let tail = keep / 2;
                let head = keep - tail;
                chars[..head]
                    .iter()
                    .chain(['…'].iter())
                    .chain(&chars[chars.len() - tail..])
                    .collect()
            }
        };
        if !wide(&shortened)? {
            return Ok(shortened);
        }
    }
    Ok("…".to_string())
}

#[cfg(test)]
mod tests {
    use catdog_data::{synth::write_synth_set, Layout};

    use super::*;

    #[test]
    fn gallery_size_follows_the_tile_count() {
        // A full row holds the square root of the count (rounded up) tiles, at least 4 and at most
        // 8; fewer tiles than that make one row.
        for (tiles, columns, rows) in [
            (1, 1, 1),
            (3, 3, 1),
            (5, 4, 2),
            (16, 4, 4),
            (17, 5, 4),
            (64, 8, 8),
            (100, 8, 13),
        ] {
            let layout = GalleryLayout::new(tiles);
            assert_eq!(
                (layout.columns, layout.rows),
                (columns, rows),
                "{tiles} tiles"
            );
            let width = (columns * TILE + (columns - 1) * GAP + 2 * MARGIN).max(MIN_WIDTH);
            let height = HEADER + rows * (TILE + LABEL_HEIGHT) + (rows - 1) * GAP + MARGIN;
            assert_eq!(
                (layout.width, layout.height),
                (width, height),
                "{tiles} tiles"
            );
            // Tiles never overlap and stay inside the picture.
            let (x, y) = layout.photo_origin(tiles - 1);
            assert!(x + TILE + MARGIN <= layout.width && y + TILE + LABEL_HEIGHT < layout.height);
        }
    }

    #[test]
    fn a_file_that_no_longer_decodes_gets_a_grey_tile() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let paths =
            write_synth_set(&dir.join("photos"), &["cat"], 1, 200, Layout::Kaggle, 7).unwrap();
        let gone = dir.join("photos/cat.99.jpg");
        let long = "a very long class name that cannot fit under one photo";
        let tiles = [
            Tile {
                path: &paths[0],
                true_class: long,
                predicted: "dog",
                p_predicted: "99.9%".into(),
                p_true: Some("0.1%".into()),
                loss: "loss 7.000".into(),
                correct: false,
            },
            Tile {
                path: &gone,
                true_class: "cat",
                predicted: long,
                p_predicted: "51.0%".into(),
                p_true: None,
                loss: "loss 0.673".into(),
                correct: true,
            },
        ];
        let png = dir.join("gallery.png");
        draw_gallery(&png, "A title", "a subtitle", &tiles).unwrap();
        let image = image::open(&png).unwrap().to_rgb8();
        let layout = GalleryLayout::new(2);
        assert_eq!(
            (image.width(), image.height()),
            (layout.width, layout.height)
        );
        let (x, y) = layout.photo_origin(1);
        let grey = (x..x + TILE)
            .flat_map(|x| (y..y + TILE).map(move |y| (x, y)))
            .filter(|&(x, y)| image.get_pixel(x, y).0 == [190, 190, 190])
            .count();
        assert!(
            grey > (TILE * TILE) as usize * 3 / 4,
            "{grey} grey pixels in the tile of the missing file"
        );
        // Long names are cut to the tile: nothing is drawn between the two tiles' text.
        let (x0, _) = layout.photo_origin(0);
        let gap_x = x0 + TILE + GAP / 2;
        for y in y + TILE + 4..y + TILE + LABEL_HEIGHT {
            assert_eq!(
                image.get_pixel(gap_x, y).0,
                [255, 255, 255],
                "text at y {y}"
            );
        }
    }
}
