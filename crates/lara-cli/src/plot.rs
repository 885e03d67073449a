//! PNG plots of a scored series, drawn with `plotters` (bitmap backend); text in the bundled
//! DejaVu Sans font (`assets/DejaVuSans.ttf`, embedded in the binary, so no system font is
//! needed), laid out with `ab_glyph` by [`TextBackend`].
//!
//! Layout, [`WIDTH`] × [`plot_height`] pixels, white background:
//! - a title strip ([`TITLE_HEIGHT`] pixels): the title and a subtitle;
//! - the data: one subpanel per drawn column (at most [`MAX_COLUMNS`]), each on its own
//!   value axis, its column name in the legend;
//! - the score: the score, the threshold (constant or per row), alarms as a red strip along
//!   the bottom, the time axis below ("row", or "time" with the series' timestamps).
//!
//! Every panel shades the training prefix and the labelled anomalies and draws the monitor's
//! decisions (adaptations, re-selections, roll-backs, retrains) as dashed vertical lines; its
//! legend sits in a strip ([`LEGEND_WIDTH`] pixels) on its right. Long series are reduced to
//! a min/max envelope per pixel column ([`envelope`]), so 100k rows draw in well under a
//! second and a one-row spike still shows.

use std::path::Path;
use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use anyhow::{anyhow, bail, Context, Result};
use lara_core::Series;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{BackendColor, BackendCoord, DrawingErrorKind};

/// The bundled font (DejaVu Sans 2.37; licence in `assets/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// Font family named in the text styles ([`TextBackend`] draws every text in [`FONT`]).
const FAMILY: &str = "sans-serif";

/// Width of every plot in pixels.
pub const WIDTH: u32 = 1600;
/// Height of the title strip at the top.
pub const TITLE_HEIGHT: u32 = 64;
/// Width of the legend strip at the right of each panel.
pub const LEGEND_WIDTH: u32 = 270;
/// Width of the value-axis area at the left of each panel (tick labels and axis name).
pub const AXIS_WIDTH: u32 = 96;
/// Most data columns drawn (one subpanel each).
pub const MAX_COLUMNS: usize = 3;
const DATA_HEIGHT_ONE: u32 = 330;
const DATA_HEIGHT_EACH: u32 = 200;
const SCORE_HEIGHT: u32 = 390;
const X_AXIS_HEIGHT: u32 = 52;

/// Colours (RGB). Bands and the alarm strip are drawn opaque, so these exact values appear
/// in the picture where they are present.
pub const TRAIN_RGB: [u8; 3] = [226, 234, 244];
pub const LABEL_RGB: [u8; 3] = [250, 196, 196];
pub const ALARM_RGB: [u8; 3] = [214, 39, 40];
const TEXT: RGBColor = RGBColor(25, 25, 25);
const SUBTEXT: RGBColor = RGBColor(80, 80, 80);
const DATA_COLORS: [RGBColor; MAX_COLUMNS] = [RGBColor(31, 119, 180), RGBColor(44, 140, 44), RGBColor(128, 83, 179)];
const SCORE: RGBColor = RGBColor(31, 119, 180);
const THRESHOLD: RGBColor = RGBColor(20, 20, 20);
const GRID: RGBColor = RGBColor(228, 228, 228);
const AXIS: RGBColor = RGBColor(120, 120, 120);

fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// A decision of the online monitor, drawn as a dashed vertical line at its row.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub row: usize,
    /// `adapt`, `reselect`, `rollback` or `retrain` (others are drawn like `adapt`).
    pub kind: String,
}

fn marker_style(kind: &str) -> (RGBColor, &'static str) {
    match kind {
        "rollback" => (RGBColor(140, 86, 75), "roll-back"),
        "retrain" => (RGBColor(23, 190, 207), "retrain"),
        "reselect" => (RGBColor(214, 97, 180), "re-selected pattern"),
        _ => (RGBColor(255, 127, 14), "adaptation (LARA)"),
    }
}

/// What to draw. Every per-row slice has one entry per row of `scores`
/// ([`write_detection_plot`] checks this and fails otherwise).
pub struct DetectionPlot<'a> {
    /// First title line (e.g. the command and the data file's name).
    pub title: String,
    /// Second, smaller title line (what was done: model, threshold, alarms).
    pub subtitle: String,
    /// Data columns to draw, `(name, values)`, one subpanel each; only the first
    /// [`MAX_COLUMNS`] are drawn.
    pub columns: Vec<(String, Vec<f64>)>,
    /// Columns of the series (the data legend says "k of N columns" when fewer are drawn).
    pub total_columns: usize,
    /// One timestamp per row: the time axis shows them instead of row numbers.
    pub timestamps: Option<&'a [String]>,
    pub scores: &'a [f64],
    /// A constant threshold, drawn when `thresholds` is `None`.
    pub threshold: Option<f64>,
    /// Per-row thresholds (an online monitor's change with its model).
    pub thresholds: Option<&'a [f64]>,
    /// Rows that raised an alarm (empty: none).
    pub alarms: &'a [bool],
    /// 0/1 anomaly labels, shaded when given.
    pub labels: Option<&'a [u8]>,
    /// Rows `[0, train_end)` are the training prefix (0: none).
    pub train_end: usize,
    /// The online monitor's decisions (none for an offline detection).
    pub markers: &'a [Marker],
}

impl<'a> DetectionPlot<'a> {
    /// A plot of `series` (its columns `show`, timestamps, labels and training prefix) with
    /// `scores` and `alarms`; no threshold, markers or title yet. Indices in `show` beyond
    /// the series' columns are ignored.
    pub fn new(series: &'a Series, show: &[usize], scores: &'a [f64], alarms: &'a [bool]) -> Self {
        let columns = show
            .iter()
            .filter(|&&j| j < series.n_cols())
            .take(MAX_COLUMNS)
            .map(|&j| (series.columns[j].clone(), series.column(j).iter().map(|&v| v as f64).collect()))
            .collect();
        DetectionPlot {
            title: String::new(),
            subtitle: String::new(),
            columns,
            total_columns: series.n_cols(),
            timestamps: series.timestamps.as_deref(),
            scores,
            threshold: None,
            thresholds: None,
            alarms,
            labels: series.labels.as_deref(),
            train_end: series.train_end,
            markers: &[],
        }
    }
}

/// Which of `n_cols` columns to draw: all of them when there are at most [`MAX_COLUMNS`],
/// else those most often among the top contributors of the alarmed rows (`top_dims` of each
/// alarmed row, most contributing first; weighted 3, 2, 1 by rank), filled up with the first
/// columns. Returned in column order.
pub fn pick_columns<'t>(n_cols: usize, alarmed_top_dims: impl IntoIterator<Item = &'t [usize]>) -> Vec<usize> {
    if n_cols <= MAX_COLUMNS {
        return (0..n_cols).collect();
    }
    let mut weight = vec![0usize; n_cols];
    for dims in alarmed_top_dims {
        for (rank, &j) in dims.iter().take(3).enumerate() {
            if j < n_cols {
                weight[j] += 3 - rank;
            }
        }
    }
    let mut order: Vec<usize> = (0..n_cols).collect();
    order.sort_by(|&a, &b| weight[b].cmp(&weight[a]).then(a.cmp(&b)));
    let mut chosen: Vec<usize> = order.into_iter().take(MAX_COLUMNS).collect();
    chosen.sort_unstable();
    chosen
}

/// Height of a plot that draws `n_columns` data columns (capped at [`MAX_COLUMNS`]).
pub fn plot_height(n_columns: usize) -> u32 {
    let data = match n_columns.min(MAX_COLUMNS) {
        0 => 0,
        1 => DATA_HEIGHT_ONE,
        k => DATA_HEIGHT_EACH * k as u32,
    };
    TITLE_HEIGHT + data + SCORE_HEIGHT
}

/// Min/max envelope of `values` for a plot `pixels` wide: the rows are cut into `pixels`
/// equal spans and each span keeps its smallest and largest finite value, in row order, so
/// a polyline through them draws every pixel column's full vertical extent (a one-row spike
/// survives). With at most `2 × pixels` rows every finite value is kept. Points are
/// `(row, value)`; non-finite values are skipped, and a span (or, unreduced, a row) with
/// no finite value breaks the line: the result is a list of polylines.
pub fn envelope(values: &[f64], pixels: usize) -> Vec<Vec<(f64, f64)>> {
    let n = values.len();
    let mut lines: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    let mut flush = |cur: &mut Vec<(f64, f64)>| {
        if !cur.is_empty() {
            lines.push(std::mem::take(cur));
        }
    };
    let pixels = pixels.max(1);
    if n <= 2 * pixels {
        for (t, &v) in values.iter().enumerate() {
            if v.is_finite() {
                cur.push((t as f64, v));
            } else {
                flush(&mut cur);
            }
        }
    } else {
        for b in 0..pixels {
            let (lo, hi) = (b * n / pixels, (b + 1) * n / pixels);
            let mut min: Option<(usize, f64)> = None;
            let mut max: Option<(usize, f64)> = None;
            for (t, &v) in values[lo..hi].iter().enumerate() {
                if !v.is_finite() {
                    continue;
                }
                if min.is_none_or(|(_, m)| v < m) {
                    min = Some((lo + t, v));
                }
                if max.is_none_or(|(_, m)| v > m) {
                    max = Some((lo + t, v));
                }
            }
            match (min, max) {
                (Some(a), Some(b)) => {
                    let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
                    cur.push((first.0 as f64, first.1));
                    if second.0 != first.0 {
                        cur.push((second.0 as f64, second.1));
                    }
                }
                _ => flush(&mut cur),
            }
        }
    }
    flush(&mut cur);
    lines
}

/// Runs of `true` as inclusive `(first, last)` rows, with runs separated by fewer than
/// `min_gap` rows merged (so a plot draws at most about one band per pixel column).
pub fn merged_runs(mask: impl IntoIterator<Item = bool>, min_gap: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (s, e) in lara_metrics::runs(mask) {
        match out.last_mut() {
            Some(last) if s - last.1 - 1 < min_gap => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
}

/// The bundled font, parsed once.
fn font() -> Result<FontRef<'static>> {
    static PARSED: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    PARSED.get_or_init(|| FontRef::try_from_slice(FONT).ok()).clone().context("the bundled font could not be loaded")
}

/// Plotters' bitmap backend with its own text: every string is laid out in the bundled
/// font with kerning and each glyph's side bearings (plotters 0.3.7's `ab_glyph` text drops
/// the bearings, which spaces letters unevenly), anchored and rotated as the style asks, and
/// blended with coverage as alpha. A text style's `size` is the pixel height from the
/// font's ascender to its descender; its family and style are ignored.
pub struct TextBackend<'a> {
    inner: BitMapBackend<'a>,
    font: FontRef<'static>,
}

impl<'a> TextBackend<'a> {
    pub fn new(inner: BitMapBackend<'a>, font: FontRef<'static>) -> Self {
        TextBackend { inner, font }
    }

    /// Width and height (ascender to descender) of `text` at `size` pixels.
    fn extent(&self, text: &str, size: f64) -> (f32, f32) {
        let scaled = self.font.as_scaled(PxScale::from(size as f32));
        let mut width = 0.0;
        let mut prev = None;
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                width += scaled.kern(p, id);
            }
            width += scaled.h_advance(id);
            prev = Some(id);
        }
        (width, scaled.ascent() - scaled.descent())
    }
}

type BackendError<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> DrawingBackend for TextBackend<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), BackendError<'a>> {
        self.inner.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), BackendError<'a>> {
        self.inner.present()
    }
    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), BackendError<'a>> {
        self.inner.draw_pixel(point, color)
    }
    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), BackendError<'a>> {
        self.inner.draw_line(from, to, style)
    }
    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), BackendError<'a>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), BackendError<'a>> {
        self.inner.draw_path(path, style)
    }
    fn draw_circle<S: plotters_backend::BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), BackendError<'a>> {
        self.inner.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), BackendError<'a>> {
        self.inner.fill_polygon(vert, style)
    }
    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Result<(), BackendError<'a>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: plotters_backend::BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), BackendError<'a>> {
        let (w, h) = self.extent(text, style.size());
        Ok((w.ceil() as u32, h.ceil() as u32))
    }

    fn draw_text<S: plotters_backend::BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), BackendError<'a>> {
        let color = style.color();
        if color.alpha == 0.0 || text.is_empty() {
            return Ok(());
        }
        let size = style.size() as f32;
        let (width, height) = self.extent(text, style.size());
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => -width / 2.0,
            HPos::Right => -width,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0.0,
            VPos::Center => -height / 2.0,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let (w, h) = self.inner.get_size();
        let font = self.font.clone();
        let scaled = font.as_scaled(PxScale::from(size));
        let mut caret = dx;
        let mut prev = None;
        let mut result = Ok(());
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                caret += scaled.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(size, point(caret, dy + scaled.ascent()));
            caret += scaled.h_advance(id);
            let Some(outline) = font.outline_glyph(glyph) else { continue };
            let b = outline.px_bounds();
            let inner = &mut self.inner;
            outline.draw(|gx, gy, coverage| {
                if result.is_err() || coverage <= 0.0 {
                    return;
                }
                let (x, y) = trans.transform(b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
                    let c = BackendColor { alpha: color.alpha * f64::from(coverage.min(1.0)), rgb: color.rgb };
                    result = inner.draw_pixel((x, y), c);
                }
            });
            result.as_ref().map_err(|_| DrawingErrorKind::FontError("drawing a glyph failed".into()))?;
        }
        Ok(())
    }
}

fn draw_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

/// Draws the plot and writes it as a PNG (atomically: temp file, then rename). Fails,
/// without writing, when there are no rows or a per-row input has the wrong length.
pub fn write_detection_plot(path: &Path, plot: &DetectionPlot) -> Result<()> {
    let bytes = render_png(plot)?;
    lara_core::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// Draws the plot; returns the PNG file's bytes.
pub fn render_png(plot: &DetectionPlot) -> Result<Vec<u8>> {
    check(plot)?;
    let font = font()?;
    let n_cols = plot.columns.len().min(MAX_COLUMNS);
    let height = plot_height(n_cols);
    let mut pixels = vec![255u8; (WIDTH * height * 3) as usize];
    draw(TextBackend::new(BitMapBackend::with_buffer(&mut pixels, (WIDTH, height)), font), height, plot)?;
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, WIDTH, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().context("writing PNG header")?;
        w.write_image_data(&pixels).context("writing PNG data")?;
        w.finish().context("finishing PNG")?;
    }
    Ok(bytes)
}

fn check(plot: &DetectionPlot) -> Result<()> {
    let n = plot.scores.len();
    if n == 0 {
        bail!("nothing to plot: the series has no rows");
    }
    let wrong = |what: &str, len: usize| anyhow!("plot: {what} has {len} entries for {n} rows");
    for (name, values) in &plot.columns {
        if values.len() != n {
            return Err(wrong(&format!("column {name:?}"), values.len()));
        }
    }
    if let Some(t) = plot.timestamps {
        if t.len() != n {
            return Err(wrong("the timestamp column", t.len()));
        }
    }
    if let Some(t) = plot.thresholds {
        if t.len() != n {
            return Err(wrong("the thresholds", t.len()));
        }
    }
    if let Some(l) = plot.labels {
        if l.len() != n {
            return Err(wrong("the labels", l.len()));
        }
    }
    if !plot.alarms.is_empty() && plot.alarms.len() != n {
        return Err(wrong("the alarms", plot.alarms.len()));
    }
    Ok(())
}

/// How a legend entry is drawn.
enum Swatch {
    Line(RGBColor),
    Dashed(RGBColor),
    Band([u8; 3]),
    VLine(RGBColor),
}

/// The legend of one panel, drawn in its own strip.
fn draw_legend(area: &DrawingArea<TextBackend, Shift>, heading: &str, entries: &[(Swatch, String)]) -> Result<()> {
    let (x0, y0) = (12, 14);
    let row_h = 23;
    let head = if heading.is_empty() { 12 } else { 34 };
    let box_h = head - 4 + row_h * entries.len() as i32;
    area.draw(&Rectangle::new(
        [(4, y0 - 8), (LEGEND_WIDTH as i32 - 10, y0 + box_h)],
        ShapeStyle::from(&AXIS).stroke_width(1),
    ))
    .map_err(draw_err)?;
    area.draw(&Text::new(heading.to_string(), (x0, y0 + 4), (FAMILY, 15).into_font().color(&TEXT)))
        .map_err(draw_err)?;
    for (i, (swatch, text)) in entries.iter().enumerate() {
        let y = y0 + head + row_h * i as i32;
        let (sx0, sx1) = (x0, x0 + 30);
        match swatch {
            Swatch::Line(c) => {
                area.draw(&PathElement::new(vec![(sx0, y), (sx1, y)], c.stroke_width(2))).map_err(draw_err)?;
            }
            Swatch::Dashed(c) => {
                for k in 0..3 {
                    let a = sx0 + k * 11;
                    area.draw(&PathElement::new(vec![(a, y), (a + 7, y)], c.stroke_width(2))).map_err(draw_err)?;
                }
            }
            Swatch::Band(c) => {
                area.draw(&Rectangle::new([(sx0, y - 7), (sx1, y + 7)], rgb(*c).filled())).map_err(draw_err)?;
            }
            Swatch::VLine(c) => {
                for k in 0..3 {
                    let a = y - 9 + k * 7;
                    area.draw(&PathElement::new(vec![(sx0 + 15, a), (sx0 + 15, a + 4)], c.stroke_width(2)))
                        .map_err(draw_err)?;
                }
            }
        }
        let style = (FAMILY, 14).into_font().color(&TEXT).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(text.clone(), (sx1 + 10, y), style)).map_err(draw_err)?;
    }
    Ok(())
}

/// Tick-label format for an axis spanning `span`: enough decimals to tell ticks apart.
fn tick_format(span: f64) -> impl Fn(&f64) -> String {
    let decimals =
        if span.is_finite() && span > 0.0 { (2.0 - (span / 5.0).log10().floor()).clamp(0.0, 6.0) as usize } else { 2 };
    let decimals = decimals.saturating_sub(1);
    move |v: &f64| {
        let v = if v.abs() < 1e-12 { 0.0 } else { *v };
        if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-4) {
            format!("{v:.2e}")
        } else {
            format!("{v:.decimals$}")
        }
    }
}

/// A padded value range of the finite values (a unit range around a constant).
fn value_range(values: &[f64]) -> (f64, f64) {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(1.0) {
        let d = (lo.abs() * 0.05).max(0.5);
        return (lo - d, hi + d);
    }
    let pad = 0.06 * (hi - lo);
    (lo - pad, hi + pad)
}

/// The score axis: from the lowest score to the 99.9th percentile or the highest
/// threshold, whichever is higher (the whole range when the maximum is not far above);
/// returns `(lo, hi, clipped)`.
fn score_range(scores: &[f64], thr_max: Option<f64>) -> (f64, f64, bool) {
    let mut sorted: Vec<f64> = scores.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return (0.0, 1.0, false);
    }
    sorted.sort_by(f64::total_cmp);
    let (lo, max) = (sorted[0], sorted[sorted.len() - 1]);
    let q = sorted[((sorted.len() - 1) as f64 * 0.999) as usize];
    let base = thr_max.filter(|t| t.is_finite()).map_or(q, |t| q.max(t));
    let hi = if max - lo <= 1.6 * (base - lo) { max.max(base) } else { base };
    let clipped = max > hi;
    if hi - lo <= f64::EPSILON * lo.abs().max(1.0) {
        let d = (lo.abs() * 0.05).max(0.5);
        return (lo - d, hi + d, clipped);
    }
    let span = hi - lo;
    // Room below for the alarm strip, above for the marker names.
    (lo - 0.12 * span, hi + 0.10 * span, clipped)
}

/// Everything the panels share.
struct Frame<'p> {
    plot: &'p DetectionPlot<'p>,
    n: usize,
    train_runs: Option<(usize, usize)>,
    label_runs: Vec<(usize, usize)>,
    alarm_runs: Vec<(usize, usize)>,
    x_max: f64,
}

type Chart<'a, 'b> = ChartContext<
    'a,
    TextBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

impl Frame<'_> {
    /// Shaded training prefix and labelled anomalies, then the grid and axes.
    fn background(&self, chart: &mut Chart, lo: f64, hi: f64, bottom: bool) -> Result<()> {
        let band = |(s, e): (usize, usize), c: [u8; 3]| {
            Rectangle::new([(s as f64 - 0.5, lo), (e as f64 + 0.5, hi)], rgb(c).filled())
        };
        if let Some(r) = self.train_runs {
            chart.draw_series(std::iter::once(band(r, TRAIN_RGB))).map_err(draw_err)?;
        }
        chart.draw_series(self.label_runs.iter().map(|&r| band(r, LABEL_RGB))).map_err(draw_err)?;
        let ts = self.plot.timestamps;
        let n = self.n;
        let x_fmt = move |x: &f64| {
            let t = x.round().clamp(0.0, (n - 1) as f64) as usize;
            match ts {
                Some(ts) => ts[t].clone(),
                None => t.to_string(),
            }
        };
        let longest = ts.map_or(6, |t| t.iter().map(|s| s.chars().count()).max().unwrap_or(6));
        let plot_w = chart.plotting_area().dim_in_pixel().0 as usize;
        let x_labels = (plot_w / (longest * 9 + 40)).clamp(2, 12);
        let y_fmt = tick_format(hi - lo);
        let mut mesh = chart.configure_mesh();
        mesh.x_labels(x_labels)
            .y_labels(6)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .label_style((FAMILY, 14).into_font().color(&TEXT))
            .axis_desc_style((FAMILY, 15).into_font().color(&TEXT))
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(AXIS);
        if bottom {
            mesh.x_desc(if ts.is_some() { "time" } else { "row" });
        }
        mesh.draw().map_err(draw_err)?;
        Ok(())
    }

    /// Dashed vertical lines at the monitor's decisions, with their names when `names`.
    fn markers(&self, chart: &mut Chart, lo: f64, hi: f64, names: bool) -> Result<()> {
        let per_px = self.n as f64 / chart.plotting_area().dim_in_pixel().0.max(1) as f64;
        let mut last_named: Option<f64> = None;
        for m in self.plot.markers {
            let x = m.row.min(self.n - 1) as f64;
            let (c, _) = marker_style(&m.kind);
            chart
                .draw_series(DashedLineSeries::new(vec![(x, lo), (x, hi)], 6, 4, c.stroke_width(2)))
                .map_err(draw_err)?;
            if names && last_named.is_none_or(|l| (x - l) / per_px > 70.0) {
                let style = (FAMILY, 13).into_font().color(&c).pos(Pos::new(HPos::Left, VPos::Top));
                chart
                    .draw_series(std::iter::once(Text::new(m.kind.clone(), (x + 3.0 * per_px, hi), style)))
                    .map_err(draw_err)?;
                last_named = Some(x);
            }
        }
        Ok(())
    }

    /// Legend entries every panel has: training prefix, labels, marker kinds.
    fn common_entries(&self) -> Vec<(Swatch, String)> {
        let mut e = Vec::new();
        if self.train_runs.is_some() {
            e.push((Swatch::Band(TRAIN_RGB), "training prefix".to_string()));
        }
        if !self.label_runs.is_empty() {
            e.push((Swatch::Band(LABEL_RGB), "labelled anomaly".to_string()));
        }
        let mut kinds: Vec<&'static str> = Vec::new();
        for m in self.plot.markers {
            let (c, name) = marker_style(&m.kind);
            if !kinds.contains(&name) {
                kinds.push(name);
                e.push((Swatch::VLine(c), name.to_string()));
            }
        }
        e
    }
}

fn draw(backend: TextBackend, height: u32, plot: &DetectionPlot) -> Result<()> {
    let n = plot.scores.len();
    debug_assert_eq!(backend.get_size(), (WIDTH, height));
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;

    // Title strip.
    let (title_area, rest) = root.split_vertically(TITLE_HEIGHT);
    title_area
        .draw(&Text::new(plot.title.clone(), (16, 10), (FAMILY, 22).into_font().color(&TEXT)))
        .map_err(draw_err)?;
    title_area
        .draw(&Text::new(plot.subtitle.clone(), (16, 40), (FAMILY, 15).into_font().color(&SUBTEXT)))
        .map_err(draw_err)?;

    // Bands in rows, merged below one pixel column (about n / 1200 rows).
    let min_gap = n / 1200 + 1;
    let frame = Frame {
        plot,
        n,
        train_runs: (plot.train_end > 0).then(|| (0, plot.train_end.min(n) - 1)),
        label_runs: plot.labels.map_or_else(Vec::new, |l| merged_runs(l.iter().map(|&v| v == 1), min_gap)),
        alarm_runs: merged_runs(plot.alarms.iter().copied(), min_gap),
        x_max: (n.max(2) - 1) as f64,
    };

    let columns = &plot.columns[..plot.columns.len().min(MAX_COLUMNS)];
    let data_h = plot_height(columns.len()) - TITLE_HEIGHT - SCORE_HEIGHT;
    let (data_area, score_area) = rest.split_vertically(data_h);

    // Data subpanels.
    let each = if columns.is_empty() { 0 } else { data_h / columns.len() as u32 };
    let mut remaining = data_area;
    for (k, ((name, values), color)) in columns.iter().zip(DATA_COLORS).enumerate() {
        let (panel, below) = remaining.split_vertically(each);
        remaining = below;
        let (chart_area, legend_area) = panel.split_horizontally(WIDTH - LEGEND_WIDTH);
        let (lo, hi) = value_range(values);
        let mut chart = ChartBuilder::on(&chart_area)
            .margin_top(10)
            .margin_bottom(6)
            .margin_right(16)
            .y_label_area_size(AXIS_WIDTH)
            .build_cartesian_2d(0f64..frame.x_max, lo..hi)
            .map_err(draw_err)?;
        frame.background(&mut chart, lo, hi, false)?;
        let px = chart.plotting_area().dim_in_pixel().0 as usize;
        for line in envelope(values, px) {
            chart.draw_series(LineSeries::new(line, color.stroke_width(1))).map_err(draw_err)?;
        }
        frame.markers(&mut chart, lo, hi, false)?;
        chart_area
            .draw(&Text::new(
                "value",
                (20, each as i32 / 2),
                (FAMILY, 15).into_font().color(&TEXT).transform(FontTransform::Rotate270),
            ))
            .map_err(draw_err)?;
        let mut entries = vec![(Swatch::Line(color), name.clone())];
        if k == 0 {
            entries.extend(frame.common_entries());
        }
        let heading = if plot.total_columns > columns.len() {
            format!("data ({} of {} columns)", columns.len(), plot.total_columns)
        } else {
            "data".to_string()
        };
        draw_legend(&legend_area, if k == 0 { &heading } else { "" }, &entries)?;
    }

    // Score panel.
    let (chart_area, legend_area) = score_area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let thr_max = match plot.thresholds {
        Some(th) => th.iter().copied().filter(|t| t.is_finite()).reduce(f64::max),
        None => plot.threshold,
    };
    let (lo, hi, clipped) = score_range(plot.scores, thr_max);
    let mut chart = ChartBuilder::on(&chart_area)
        .margin_top(10)
        .margin_bottom(8)
        .margin_right(16)
        .x_label_area_size(X_AXIS_HEIGHT)
        .y_label_area_size(AXIS_WIDTH)
        .build_cartesian_2d(0f64..frame.x_max, lo..hi)
        .map_err(draw_err)?;
    frame.background(&mut chart, lo, hi, true)?;
    let px = chart.plotting_area().dim_in_pixel().0 as usize;
    let clamp = |line: Vec<(f64, f64)>| line.into_iter().map(move |(x, y)| (x, y.clamp(lo, hi)));
    for line in envelope(plot.scores, px) {
        chart.draw_series(LineSeries::new(clamp(line), SCORE.stroke_width(1))).map_err(draw_err)?;
    }
    let thr_values: Option<Vec<f64>> = match (plot.thresholds, plot.threshold) {
        (Some(th), _) => Some(th.to_vec()),
        (None, Some(t)) if t.is_finite() => Some(vec![t; 2]),
        _ => None,
    };
    if let Some(th) = &thr_values {
        let lines =
            if plot.thresholds.is_some() { envelope(th, px) } else { vec![vec![(0.0, th[0]), (frame.x_max, th[0])]] };
        for line in lines {
            chart.draw_series(DashedLineSeries::new(clamp(line), 8, 5, THRESHOLD.stroke_width(2))).map_err(draw_err)?;
        }
    }
    let strip = (lo, lo + 0.07 * (hi - lo));
    chart
        .draw_series(frame.alarm_runs.iter().map(|&(s, e)| {
            Rectangle::new([(s as f64 - 0.5, strip.0), (e as f64 + 0.5, strip.1)], rgb(ALARM_RGB).filled())
        }))
        .map_err(draw_err)?;
    frame.markers(&mut chart, lo, hi, true)?;
    let plot_h = SCORE_HEIGHT as i32 - X_AXIS_HEIGHT as i32;
    chart_area
        .draw(&Text::new(
            "score",
            (20, plot_h / 2),
            (FAMILY, 15).into_font().color(&TEXT).transform(FontTransform::Rotate270),
        ))
        .map_err(draw_err)?;
    let n_alarms = plot.alarms.iter().filter(|&&a| a).count();
    let mut entries =
        vec![(Swatch::Line(SCORE), if clipped { "score (clipped at p99.9)".to_string() } else { "score".to_string() })];
    if thr_values.is_some() {
        let what = if plot.thresholds.is_some() { "threshold (per row)" } else { "threshold" };
        entries.push((Swatch::Dashed(THRESHOLD), what.to_string()));
    }
    entries.push((Swatch::Band(ALARM_RGB), format!("alarm ({n_alarms} rows)")));
    entries.extend(frame.common_entries());
    draw_legend(&legend_area, "anomaly score", &entries)?;
    root.present().map_err(draw_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn envelope_keeps_every_point_of_a_short_series() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(envelope(&v, 2), vec![vec![(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0)]]);
    }

    #[test]
    fn envelope_keeps_min_and_max_of_each_pixel_in_row_order() {
        // 1000 rows on 10 pixels: 100 rows per span; a one-row spike in span 3.
        let mut v: Vec<f64> = (0..1000).map(|t| (t % 7) as f64).collect();
        v[345] = 100.0;
        v[377] = -50.0;
        let lines = envelope(&v, 10);
        assert_eq!(lines.len(), 1);
        let pts = &lines[0];
        assert!(pts.len() <= 20, "{} points", pts.len());
        assert!(pts.contains(&(345.0, 100.0)) && pts.contains(&(377.0, -50.0)));
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0), "points are in row order");
        // Every span's extremes: span 0 has min 0 at row 0 and max 6 at row 6.
        assert_eq!(&pts[..2], &[(0.0, 0.0), (6.0, 6.0)]);
    }

    #[test]
    fn envelope_breaks_lines_at_missing_values() {
        let v = [1.0, f64::NAN, 3.0, 4.0, f64::INFINITY];
        assert_eq!(envelope(&v, 10), vec![vec![(0.0, 1.0)], vec![(2.0, 3.0), (3.0, 4.0)]]);
        let mut long = vec![1.0; 100];
        long[40..60].iter_mut().for_each(|v| *v = f64::NAN);
        assert_eq!(envelope(&long, 10).len(), 2);
        assert!(envelope(&[f64::NAN; 50], 5).is_empty());
    }

    #[test]
    fn runs_closer_than_a_pixel_merge() {
        let mask = [true, false, true, false, false, false, true, true];
        assert_eq!(merged_runs(mask, 1), vec![(0, 0), (2, 2), (6, 7)]);
        assert_eq!(merged_runs(mask, 2), vec![(0, 2), (6, 7)]);
        assert_eq!(merged_runs(mask, 4), vec![(0, 7)]);
    }

    #[test]
    fn columns_follow_the_alarms_contributors() {
        assert_eq!(pick_columns(2, std::iter::empty()), vec![0, 1]);
        assert_eq!(pick_columns(10, std::iter::empty()), vec![0, 1, 2]);
        let dims: Vec<Vec<usize>> = vec![vec![7, 4, 1], vec![7, 9, 1], vec![9, 7]];
        assert_eq!(pick_columns(10, dims.iter().map(|d| d.as_slice())), vec![1, 7, 9]);
    }

    fn sample(n: usize) -> (Vec<f64>, Vec<f64>, Vec<u8>, Vec<bool>) {
        let col: Vec<f64> = (0..n).map(|t| (t as f64 * 0.05).sin() * 10.0 + 50.0).collect();
        let scores: Vec<f64> =
            (0..n).map(|t| if (n / 2..n / 2 + 20).contains(&t) { 9.0 } else { (t as f64).sin().abs() }).collect();
        let labels: Vec<u8> = (0..n).map(|t| u8::from((n / 2..n / 2 + 20).contains(&t))).collect();
        let alarms: Vec<bool> = scores.iter().map(|&s| s > 2.0).collect();
        (col, scores, labels, alarms)
    }

    #[test]
    fn draws_bands_alarms_and_text() {
        let n = 500;
        let (col, scores, labels, alarms) = sample(n);
        let markers = [Marker { row: 250, kind: "adapt".into() }];
        let plot = DetectionPlot {
            title: "lara detect: test.csv".into(),
            subtitle: "a unit test".into(),
            columns: vec![("cpu".into(), col)],
            total_columns: 1,
            timestamps: None,
            scores: &scores,
            threshold: Some(2.0),
            thresholds: None,
            alarms: &alarms,
            labels: Some(&labels),
            train_end: 100,
            markers: &markers,
        };
        let (w, h, px) = decode(&render_png(&plot).unwrap());
        assert_eq!((w, h), (WIDTH, plot_height(1)));
        let has = |c: [u8; 3]| px.chunks(3).any(|p| p == c);
        assert!(has(ALARM_RGB) && has(LABEL_RGB) && has(TRAIN_RGB));
        // Dark text pixels in the title strip.
        let dark_in_title =
            px[..(WIDTH * TITLE_HEIGHT * 3) as usize].chunks(3).filter(|p| p.iter().all(|&c| c < 90)).count();
        assert!(dark_in_title > 100, "{dark_in_title} dark pixels in the title strip");
    }

    #[test]
    fn rejects_mismatched_lengths_and_empty_series() {
        let (col, scores, labels, alarms) = sample(100);
        let mut plot = DetectionPlot {
            title: String::new(),
            subtitle: String::new(),
            columns: vec![("x".into(), col[..99].to_vec())],
            total_columns: 1,
            timestamps: None,
            scores: &scores,
            threshold: None,
            thresholds: None,
            alarms: &alarms,
            labels: Some(&labels),
            train_end: 0,
            markers: &[],
        };
        let e = render_png(&plot).unwrap_err().to_string();
        assert!(e.contains("\"x\" has 99 entries for 100 rows"), "{e}");
        plot.columns.clear();
        plot.scores = &[];
        plot.alarms = &[];
        plot.labels = None;
        assert!(render_png(&plot).unwrap_err().to_string().contains("no rows"));
    }

    #[test]
    fn a_long_series_draws_fast() {
        let n = 100_000;
        let (col, scores, labels, alarms) = sample(n);
        let thresholds: Vec<f64> = (0..n).map(|t| if t < n / 3 { 2.0 } else { 3.0 }).collect();
        let ts: Vec<String> = (0..n).map(|t| format!("2024-01-01 {:02}:{:02}", t / 60 % 24, t % 60)).collect();
        let markers: Vec<Marker> = (1..20).map(|k| Marker { row: k * 5000, kind: "adapt".into() }).collect();
        let plot = DetectionPlot {
            title: "long".into(),
            subtitle: String::new(),
            columns: (0..3).map(|k| (format!("c{k}"), col.clone())).collect(),
            total_columns: 38,
            timestamps: Some(&ts),
            scores: &scores,
            threshold: None,
            thresholds: Some(&thresholds),
            alarms: &alarms,
            labels: Some(&labels),
            train_end: 10_000,
            markers: &markers,
        };
        let t0 = std::time::Instant::now();
        let bytes = render_png(&plot).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let (w, h, _) = decode(&bytes);
        assert_eq!((w, h), (WIDTH, plot_height(3)));
        // The bound is for an optimised build; a debug build is several times slower.
        let limit = if cfg!(debug_assertions) { 10.0 } else { 1.0 };
        assert!(secs < limit, "100k rows took {secs:.2} s");
    }
}
