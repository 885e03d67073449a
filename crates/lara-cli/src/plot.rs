//! A small PNG plot of a scored series: the data on top, the anomaly score and its threshold
//! below, labelled anomalies shaded and alarms marked. No text, so no font dependency: the
//! command that writes a plot prints its legend.

use anyhow::{Context, Result};
use std::path::Path;

const WIDTH: usize = 1600;
const PANEL_HEIGHT: usize = 260;
const MARGIN: usize = 12;

type Rgb = [u8; 3];
const BACKGROUND: Rgb = [255, 255, 255];
const LABEL_BAND: Rgb = [255, 214, 214];
const TRAIN_BAND: Rgb = [232, 240, 255];
const DATA_COLORS: [Rgb; 3] = [[40, 40, 40], [30, 110, 200], [40, 150, 60]];
const SCORE: Rgb = [200, 30, 30];
const THRESHOLD: Rgb = [20, 20, 20];
const ALARM: Rgb = [120, 0, 120];
const FRAME: Rgb = [170, 170, 170];
const MARKER: Rgb = [240, 140, 0];

/// Legend of the picture [`write_detection_plot`] draws, for the command to print.
pub const LEGEND: &str = "top: data (first 3 columns, each min-max scaled; black, blue, green); \
bottom: score (red) and threshold (black dashes), alarms as purple ticks; \
pink bands: labelled anomalies; light blue: training prefix; orange lines: adaptations";

struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            pixels.extend_from_slice(&BACKGROUND);
        }
        Canvas { width, height, pixels }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, c: Rgb) {
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(self.width) {
                self.set(x as i64, y as i64, c);
            }
        }
    }

    /// Bresenham line.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
}

/// A panel: the pixel rectangle a series of `n` points is drawn into.
struct Panel {
    top: usize,
    n: usize,
}

impl Panel {
    fn x(&self, t: usize) -> i64 {
        (MARGIN + t * (WIDTH - 2 * MARGIN - 1) / self.n.saturating_sub(1).max(1)) as i64
    }
    fn y(&self, v: f64, lo: f64, hi: f64) -> i64 {
        let f = if hi > lo { ((v - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.5 };
        (self.top + PANEL_HEIGHT - 1 - (f * (PANEL_HEIGHT - 1) as f64) as usize) as i64
    }
    fn shade(&self, c: &mut Canvas, from: usize, to: usize, color: Rgb) {
        let (x0, x1) = (self.x(from) as usize, self.x(to.max(from)) as usize + 1);
        c.rect(x0, self.top, x1, self.top + PANEL_HEIGHT, color);
    }
    fn polyline(&self, c: &mut Canvas, values: &[f64], lo: f64, hi: f64, color: Rgb) {
        for t in 1..values.len() {
            c.line((self.x(t - 1), self.y(values[t - 1], lo, hi)), (self.x(t), self.y(values[t], lo, hi)), color);
        }
    }
    fn frame(&self, c: &mut Canvas) {
        let (l, r) = (MARGIN as i64 - 1, (WIDTH - MARGIN) as i64);
        let (t, b) = (self.top as i64 - 1, (self.top + PANEL_HEIGHT) as i64);
        c.line((l, t), (r, t), FRAME);
        c.line((l, b), (r, b), FRAME);
        c.line((l, t), (l, b), FRAME);
        c.line((r, t), (r, b), FRAME);
    }
}

fn finite_range(v: &[f64]) -> (f64, f64) {
    v.iter().filter(|x| x.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)))
}

/// What to draw: `columns` are up to three data columns; `labels` and `alarms` are optional.
pub struct DetectionPlot<'a> {
    pub columns: Vec<Vec<f64>>,
    pub scores: &'a [f64],
    pub threshold: Option<f64>,
    pub labels: Option<&'a [u8]>,
    pub train_end: usize,
    /// Per-row thresholds (an online monitor's change with its model); drawn instead of
    /// `threshold` when given.
    pub thresholds: Option<&'a [f64]>,
    /// Rows of monitor decisions (adaptations, re-selections, roll-backs): orange lines.
    pub markers: &'a [usize],
}

/// Draws the plot and writes it as a PNG (atomically: temp file, then rename).
pub fn write_detection_plot(path: &Path, plot: &DetectionPlot) -> Result<()> {
    let n = plot.scores.len();
    let height = 2 * PANEL_HEIGHT + 3 * MARGIN;
    let mut c = Canvas::new(WIDTH, height);
    let panels = [Panel { top: MARGIN, n }, Panel { top: 2 * MARGIN + PANEL_HEIGHT, n }];
    for p in &panels {
        if plot.train_end > 0 {
            p.shade(&mut c, 0, plot.train_end.min(n) - 1, TRAIN_BAND);
        }
        if let Some(labels) = plot.labels {
            for (s, e) in lara_metrics::runs(labels.iter().map(|&l| l == 1)) {
                p.shade(&mut c, s, e, LABEL_BAND);
            }
        }
        p.frame(&mut c);
    }
    for (col, color) in plot.columns.iter().take(3).zip(DATA_COLORS) {
        let (lo, hi) = finite_range(col);
        panels[0].polyline(&mut c, col, lo, hi, color);
    }
    // Scores are heavy-tailed: draw them up to a high quantile so the bulk stays visible.
    let (lo, _) = finite_range(plot.scores);
    let mut sorted: Vec<f64> = plot.scores.iter().copied().filter(|x| x.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let q = sorted.get((sorted.len() as f64 * 0.999) as usize).copied().unwrap_or(1.0);
    let thr_max = match plot.thresholds {
        Some(th) => finite_range(th).1.is_finite().then(|| finite_range(th).1),
        None => plot.threshold,
    };
    let hi = thr_max.map_or(q, |t| q.max(t * 1.2));
    panels[1].polyline(&mut c, plot.scores, lo, hi, SCORE);
    let bottom = (panels[1].top + PANEL_HEIGHT) as i64;
    let per_row: Vec<f64> = match (plot.thresholds, plot.threshold) {
        (Some(th), _) => th.to_vec(),
        (None, Some(t)) => vec![t; n],
        (None, None) => Vec::new(),
    };
    for (t_idx, (&s, &t)) in plot.scores.iter().zip(&per_row).enumerate() {
        if t.is_finite() && t_idx % 4 == 0 {
            let (x, y) = (panels[1].x(t_idx), panels[1].y(t, lo, hi));
            c.line((x, y), (x + 1, y), THRESHOLD);
        }
        if s > t {
            let x = panels[1].x(t_idx);
            c.line((x, bottom - 10), (x, bottom - 1), ALARM);
        }
    }
    for &m in plot.markers {
        for p in &panels {
            let x = p.x(m.min(n.saturating_sub(1)));
            c.line((x, p.top as i64), (x, (p.top + PANEL_HEIGHT) as i64 - 1), MARKER);
        }
    }
    write_png(path, &c)
}

fn write_png(path: &Path, c: &Canvas) -> Result<()> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, c.width as u32, c.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().context("writing PNG header")?;
        w.write_image_data(&c.pixels).context("writing PNG data")?;
        w.finish().context("finishing PNG")?;
    }
    lara_core::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_decodable_png() {
        let n = 500;
        let scores: Vec<f64> =
            (0..n).map(|t| if (300..320).contains(&t) { 5.0 } else { (t as f64).sin().abs() }).collect();
        let labels: Vec<u8> = (0..n).map(|t| u8::from((300..320).contains(&t))).collect();
        let col: Vec<f64> = (0..n).map(|t| (t as f64 * 0.1).sin()).collect();
        let path = std::env::temp_dir().join(format!("lara-plot-test-{}.png", std::process::id()));
        let plot = DetectionPlot {
            columns: vec![col],
            scores: &scores,
            threshold: Some(2.0),
            labels: Some(&labels),
            train_end: 100,
            thresholds: None,
            markers: &[250],
        };
        write_detection_plot(&path, &plot).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().width as usize, WIDTH);
        assert_eq!(reader.info().height as usize, 2 * PANEL_HEIGHT + 3 * MARGIN);
        std::fs::remove_file(&path).unwrap();
    }
}
