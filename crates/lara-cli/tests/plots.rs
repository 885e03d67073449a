//! `lara detect --plot` and `lara replay --plot` end to end: the real binary writes a PNG,
//! which is decoded and checked for its layout, its text and its colours.

use std::path::Path;

mod common;

use common::{lara, ok, shared, tmp_dir, train_small, FILE};

// The layout of crates/lara-cli/src/plot.rs: 1600 px wide; a 64 px title strip; one data
// column is a 330 px panel, the score panel 390 px; legends in the right 270 px; value
// axes in the left 96 px.
const WIDTH: usize = 1600;
const TITLE: usize = 64;
const DATA: usize = 330;
const SCORE: usize = 390;
const LEGEND: usize = 270;
const AXIS: usize = 96;
const ALARM: [u8; 3] = [214, 39, 40];
const LABEL: [u8; 3] = [250, 196, 196];
const TRAIN: [u8; 3] = [226, 234, 244];

struct Image {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Image {
    fn read(path: &Path) -> Image {
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        Image { width: info.width as usize, height: info.height as usize, rgb: buf }
    }

    fn px(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Pixels in `[x0, x1) × [y0, y1)` for which `f` holds.
    fn count(&self, (x0, x1): (usize, usize), (y0, y1): (usize, usize), f: impl Fn([u8; 3]) -> bool) -> usize {
        (y0..y1).flat_map(|y| (x0..x1).map(move |x| (x, y))).filter(|&(x, y)| f(self.px(x, y))).count()
    }

    /// Dark (text-coloured) pixels in a region.
    fn dark(&self, xs: (usize, usize), ys: (usize, usize)) -> usize {
        self.count(xs, ys, |p| p.iter().all(|&c| c < 100))
    }

    fn has(&self, c: [u8; 3]) -> bool {
        self.rgb.chunks(3).any(|p| p == c)
    }
}

/// Checks shared by both commands' plots of [`FILE`] (one data column, timestamps, labels).
fn check_layout(img: &Image) {
    assert_eq!((img.width, img.height), (WIDTH, TITLE + DATA + SCORE), "size");
    let non_white = img.count((0, WIDTH), (0, img.height), |p| p != [255, 255, 255]);
    assert!(non_white > img.width * img.height / 20, "nearly blank: {non_white} non-white pixels");
    // Title: two lines of text in the top strip, left-aligned.
    let title = img.dark((0, WIDTH / 2), (0, TITLE));
    assert!(title > 400, "title strip has {title} dark pixels");
    assert_eq!(img.dark((WIDTH - LEGEND, WIDTH), (0, TITLE)), 0, "title strip's right end is empty");
    // A legend with text beside each panel.
    let (data, score) = ((TITLE, TITLE + DATA), (TITLE + DATA, img.height));
    for (what, ys) in [("data", data), ("score", score)] {
        let n = img.dark((WIDTH - LEGEND + 50, WIDTH), ys);
        assert!(n > 300, "{what} legend has {n} dark pixels");
    }
    // Value-axis tick labels left of both panels, time-axis labels below the score panel.
    for (what, ys) in [("data", data), ("score", score)] {
        let n = img.dark((40, AXIS), ys);
        assert!(n > 150, "{what} axis has {n} dark pixels");
    }
    let n = img.dark((AXIS, WIDTH - LEGEND), (img.height - 52, img.height));
    assert!(n > 500, "time axis has {n} dark pixels");
    // Shaded training prefix and labelled anomalies (the file has both).
    assert!(img.has(TRAIN), "no training-prefix band");
    assert!(img.has(LABEL), "no labelled-anomaly band");
}

/// Alarm rows in a scores CSV written by `lara detect` / `lara replay` (column 4).
fn alarm_rows(csv: &Path) -> usize {
    let text = std::fs::read_to_string(csv).unwrap();
    text.lines().skip(1).filter(|l| l.split(',').nth(3) == Some("1")).count()
}

#[test]
fn detect_plot_has_title_axes_legend_alarms_and_labels() {
    let dir = tmp_dir("plot-detect");
    let model = train_small(&dir);
    let data = shared().join(FILE);
    let (scores, png) = (dir.join("scores.csv"), dir.join("detect.png"));
    let said = ok(
        &lara(&[
            "detect",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            scores.to_str().unwrap(),
            "--plot",
            png.to_str().unwrap(),
        ]),
        "detect --plot",
    );
    assert!(said.contains(&format!("plot written to {}", png.display())), "{said}");
    let img = Image::read(&png);
    check_layout(&img);
    // This model alarms on this file (the file has real incidents); the alarms are drawn,
    // and only in the score panel's bottom strip.
    let alarms = alarm_rows(&scores);
    assert!(alarms > 0, "expected alarms on {FILE}");
    let red = |p: [u8; 3]| p == ALARM;
    assert!(img.count((AXIS, WIDTH - LEGEND), (TITLE + DATA, img.height - 52), red) > 0, "no alarm drawn");
    assert_eq!(img.count((0, WIDTH - LEGEND), (0, TITLE + DATA), red), 0, "alarm colour above the score panel");
}

#[test]
fn replay_plot_has_title_axes_legend_and_labels() {
    let dir = tmp_dir("plot-replay");
    let data = shared().join(FILE);
    let (scores, png) = (dir.join("online.csv"), dir.join("online.png"));
    let said = ok(
        &lara(&[
            "replay",
            "--data",
            data.to_str().unwrap(),
            "--out",
            scores.to_str().unwrap(),
            "--window",
            "32",
            "--plot",
            png.to_str().unwrap(),
        ]),
        "replay --plot",
    );
    assert!(said.contains(&format!("plot written to {}", png.display())), "{said}");
    let img = Image::read(&png);
    check_layout(&img);
    // The alarm colour appears exactly when the monitor alarmed.
    let drawn = img.count((AXIS, WIDTH - LEGEND), (TITLE + DATA, img.height - 52), |p| p == ALARM) > 0;
    assert_eq!(drawn, alarm_rows(&scores) > 0, "alarm strip vs {} alarm rows", alarm_rows(&scores));
}

#[test]
fn plot_to_an_unwritable_path_is_an_error_naming_it() {
    let dir = tmp_dir("plot-bad");
    let model = train_small(&dir);
    let data = shared().join(FILE);
    let png = dir.join("no-such-dir").join("p.png");
    let out = lara(&[
        "detect",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.join("s.csv").to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.png"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!png.exists());
}
