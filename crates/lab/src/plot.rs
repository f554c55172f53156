//! Line charts written as PNG and SVG side by side: labelled axes, a legend, optional log
//! scales. Text is drawn with a font built into the binary, so charts look the same on every
//! machine and need no font configuration.

use crate::number_format::compact;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

pub(crate) const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

/// Why a drawing failed: the backend's error (kept as the source) or words.
pub type DrawError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct PlotError {
    pub path: String,
    #[source]
    pub source: DrawError,
}

impl PlotError {
    pub(crate) fn new(path: &Path, cause: impl Into<DrawError>) -> Self {
        PlotError {
            path: path.display().to_string(),
            source: cause.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Dashed lines mark derived curves (e.g. the decay branches of a stable run).
    pub dashed: bool,
    /// Draw markers only, no line (measurements rather than curves).
    pub markers_only: bool,
    /// Mark every point on the line too (sparse measurements such as evaluations, where a
    /// single point would otherwise not show).
    pub markers: bool,
    /// Index into the palette; series that belong together can share a colour.
    pub color: usize,
    /// An exact colour instead of the palette's, for series coloured by a value (a colour map)
    /// rather than by identity.
    pub rgb: Option<(u8, u8, u8)>,
    /// Whether the series gets a legend entry; pieces of one thing drawn as several series (e.g.
    /// markers split by colour) should not each get one.
    pub in_legend: bool,
}

impl Series {
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>, color: usize) -> Self {
        Series {
            label: label.into(),
            points,
            dashed: false,
            markers_only: false,
            markers: false,
            color,
            rgb: None,
            in_legend: true,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
}

/// Ten colours that stay distinguishable (Tableau 10).
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// Viridis at five stops, interpolated linearly: dark purple at 0 (low) to yellow at 1 (high);
/// `t` is clamped to [0, 1]. The lab's one sequential colour map (heat maps, contour levels).
pub(crate) fn viridis(t: f64) -> (u8, u8, u8) {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let x = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let k = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - k as f64;
    let (a, b) = (STOPS[k], STOPS[k + 1]);
    let mix = |u: f64, v: f64| (u + (v - u) * f).round() as u8;
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font compiled into the binary; the unit tests render
        // with it, so a failure here cannot reach users.
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("built-in font is invalid"));
    });
}

/// Writes `<stem>.png` and `<stem>.svg`; returns their paths.
pub fn render(chart: &Chart, stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    render_panels(std::slice::from_ref(chart), 1, stem)
}

/// Several charts side by side, `columns` to a row, in one PNG and one SVG.
pub fn render_panels(
    charts: &[Chart],
    columns: usize,
    stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    register_font();
    let mut bounds = Vec::with_capacity(charts.len());
    for chart in charts {
        bounds.push(ranges(chart).ok_or_else(|| PlotError::new(stem, "nothing to plot"))?);
    }
    if charts.is_empty() {
        return Err(PlotError::new(stem, "nothing to plot"));
    }
    let columns = columns.clamp(1, charts.len());
    let rows = charts.len().div_ceil(columns);
    let size = if charts.len() == 1 {
        (1200, 800)
    } else {
        (700 * columns as u32, 520 * rows as u32)
    };
    struct Panels<'a> {
        charts: &'a [Chart],
        bounds: &'a [AxisRanges],
        grid: (usize, usize),
    }
    impl Picture for Panels<'_> {
        fn draw<DB: DrawingBackend<ErrorType: 'static>>(
            &self,
            root: &DrawingArea<DB, plotters::coord::Shift>,
        ) -> Result<(), DrawError> {
            let areas = root.split_evenly(self.grid);
            for ((area, chart), (x, y)) in areas.iter().zip(self.charts).zip(self.bounds) {
                draw_scaled(area, chart, *x, *y)?;
            }
            Ok(())
        }
    }
    let panels = Panels {
        charts,
        bounds: &bounds,
        grid: (rows, columns),
    };
    write_png_and_svg(&panels, size, stem)
}

/// Something drawn onto a white canvas of any plotters backend.
pub(crate) trait Picture {
    fn draw<DB: DrawingBackend<ErrorType: 'static>>(
        &self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), DrawError>;
}

/// Draws `picture` into `<stem>.png` and `<stem>.svg` (creating the directory); returns their
/// paths.
pub(crate) fn write_png_and_svg(
    picture: &impl Picture,
    size: (u32, u32),
    stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| PlotError::new(dir, e))?;
    }
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| PlotError::new(&png, e))?;
        picture.draw(&root).map_err(|e| PlotError::new(&png, e))?;
        root.present().map_err(|e| PlotError::new(&png, e))?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| PlotError::new(&svg, e))?;
        picture.draw(&root).map_err(|e| PlotError::new(&svg, e))?;
        root.present().map_err(|e| PlotError::new(&svg, e))?;
    }
    Ok(vec![png, svg])
}

/// The x and y ranges of one chart.
type AxisRanges = ((f64, f64), (f64, f64));

/// Data ranges with a margin; on log axes only positive values count.
fn ranges(chart: &Chart) -> Option<AxisRanges> {
    let pts = || {
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| {
                x.is_finite()
                    && y.is_finite()
                    && (!chart.log_x || *x > 0.0)
                    && (!chart.log_y || *y > 0.0)
            })
    };
    let bounds = |v: Vec<f64>, log: bool| -> Option<(f64, f64)> {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return None;
        }
        Some(if log {
            let (l, h) = (lo.ln(), hi.ln().max(lo.ln() + 1e-9));
            let pad = 0.04 * (h - l).max(0.1);
            ((l - pad).exp(), (h + pad).exp())
        } else {
            let pad = 0.04 * (hi - lo).max(hi.abs() * 1e-3).max(1e-9);
            (lo - pad, hi + pad)
        })
    };
    let x = bounds(pts().map(|p| p.0).collect(), chart.log_x)?;
    let y = bounds(pts().map(|p| p.1).collect(), chart.log_y)?;
    Some((x, y))
}

fn draw_scaled<DB: DrawingBackend<ErrorType: 'static>>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    chart: &Chart,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> Result<(), DrawError> {
    // Log axes get ticks at powers of 10 when the data span two decades, at powers of 2 when
    // they span less (widths, LR grids); a range narrower than a factor of 2 would get no tick
    // at all on a log axis, so it is drawn linear.
    let base = |log: bool, lo: f64, hi: f64| match hi / lo {
        _ if !log => None,
        span if span >= 100.0 => Some(10.0),
        span if span >= 2.0 => Some(2.0),
        _ => None,
    };
    match (base(chart.log_x, x0, x1), base(chart.log_y, y0, y1)) {
        (None, None) => draw(root, chart, x0..x1, y0..y1),
        (Some(b), None) => draw(root, chart, (x0..x1).log_scale().base(b), y0..y1),
        (None, Some(b)) => draw(root, chart, x0..x1, (y0..y1).log_scale().base(b)),
        (Some(bx), Some(by)) => draw(
            root,
            chart,
            (x0..x1).log_scale().base(bx),
            (y0..y1).log_scale().base(by),
        ),
    }
}

fn draw<DB, X, Y>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    chart: &Chart,
    x: X,
    y: Y,
) -> Result<(), DrawError>
where
    DB: DrawingBackend<ErrorType: 'static>,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, (FONT, 28))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)?;
    ctx.configure_mesh()
        .x_label_formatter(&|v| compact(*v))
        .y_label_formatter(&|v| compact(*v))
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 20))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for s in &chart.series {
        let c = s
            .rgb
            .map_or_else(|| color(s.color), |(r, g, b)| RGBColor(r, g, b));
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if s.markers && !s.markers_only {
            ctx.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        }
        let anno = if s.markers_only {
            ctx.draw_series(pts.iter().map(|&p| Circle::new(p, 5, c.filled())))?
        } else if s.dashed {
            ctx.draw_series(DashedLineSeries::new(pts, 8, 5, c.stroke_width(2)))?
        } else {
            ctx.draw_series(LineSeries::new(pts, c.stroke_width(2)))?
        };
        if !s.in_legend {
            continue;
        }
        // The legend shows what the chart shows: a dot for markers, a dashed or solid stroke.
        let anno = anno.label(&s.label);
        if s.markers_only {
            anno.legend(move |(x, y)| Circle::new((x + 12, y), 5, c.filled()));
        } else if s.dashed {
            anno.legend(move |(x, y)| {
                DashedPathElement::new(vec![(x, y), (x + 24, y)], 8, 4, c.stroke_width(3))
            });
        } else {
            anno.legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3))
            });
        }
    }
    let position = legend_corner(chart, |p| ctx.backend_coord(&p), ctx.plotting_area());
    ctx.configure_series_labels()
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()?;
    Ok(())
}

/// The corner where the legend hides the least of the chart: the one whose legend-sized box
/// holds the fewest drawn samples (markers, and lines sampled every few pixels). Upper right on
/// a tie, where falling curves (losses) leave room; curves that fill it (a contour plot's upper
/// branches) push the legend elsewhere instead of under it.
fn legend_corner<DB: DrawingBackend, CT: CoordTranslate>(
    chart: &Chart,
    to_pixel: impl Fn((f64, f64)) -> (i32, i32),
    area: &DrawingArea<DB, CT>,
) -> SeriesLabelPosition {
    let labels: Vec<&str> = chart
        .series
        .iter()
        .filter(|s| s.in_legend)
        .map(|s| s.label.as_str())
        .collect();
    // The box the 16 px legend font needs, estimated: about 8 px a character and 20 px a row,
    // plus the glyph column and margins.
    let chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as i32;
    let (w, h) = (60 + 8 * chars, 20 + 20 * labels.len() as i32);
    let (xs, ys) = area.get_pixel_range();
    let corners = [
        (SeriesLabelPosition::UpperRight, xs.end - w, ys.start),
        (SeriesLabelPosition::UpperLeft, xs.start, ys.start),
        (SeriesLabelPosition::LowerRight, xs.end - w, ys.end - h),
        (SeriesLabelPosition::LowerLeft, xs.start, ys.end - h),
    ];
    let mut hidden = [0usize; 4];
    let mut count = |(x, y): (i32, i32)| {
        for (n, (_, x0, y0)) in hidden.iter_mut().zip(&corners) {
            if (*x0..x0 + w).contains(&x) && (*y0..y0 + h).contains(&y) {
                *n += 1;
            }
        }
    };
    for s in &chart.series {
        // Points off the plot (none a log axis can show) are pinned to its border, so a stray
        // one costs a few samples, not a walk to the far end of the pixel range.
        let pixels: Vec<(i32, i32)> = s
            .points
            .iter()
            .filter(|(x, y)| {
                x.is_finite()
                    && y.is_finite()
                    && (!chart.log_x || *x > 0.0)
                    && (!chart.log_y || *y > 0.0)
            })
            .map(|&p| {
                let (x, y) = to_pixel(p);
                (
                    x.clamp(xs.start - 1, xs.end + 1),
                    y.clamp(ys.start - 1, ys.end + 1),
                )
            })
            .collect();
        if let Some(&last) = pixels.last() {
            count(last);
        }
        if s.markers_only {
            pixels.iter().rev().skip(1).for_each(|&p| count(p));
            continue;
        }
        for pair in pixels.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            let (dx, dy) = ((x1 - x0) as f64, (y1 - y0) as f64);
            let steps = ((dx.hypot(dy) / 6.0).ceil() as i32).max(1);
            for k in 0..steps {
                let t = k as f64 / steps as f64;
                count((x0 + (t * dx) as i32, y0 + (t * dy) as i32));
            }
        }
    }
    let best = (0..corners.len()).min_by_key(|&i| hidden[i]).unwrap_or(0);
    corners[best].0.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_and_an_svg_with_the_labels() {
        let dir = tempfile::tempdir().unwrap();
        let chart = Chart {
            title: "loss".into(),
            x_label: "tokens".into(),
            y_label: "held-out loss".into(),
            log_x: true,
            log_y: false,
            series: vec![
                Series::line(
                    "stable",
                    (1..50)
                        .map(|i| (i as f64 * 1e3, 5.0 / (i as f64).sqrt()))
                        .collect(),
                    0,
                ),
                Series {
                    dashed: true,
                    ..Series::line("branch", vec![(2e4, 1.2), (3e4, 0.9)], 0)
                },
            ],
        };
        let files = render(&chart, &dir.path().join("plot")).unwrap();
        let png = std::fs::read(&files[0]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // A blank canvas compresses to almost nothing; axes, text and curves do not.
        assert!(png.len() > 10_000, "{} bytes", png.len());
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        for text in ["held-out loss", "tokens", "stable", "branch", "<polyline"] {
            assert!(svg.contains(text), "{text} missing from the SVG");
        }
        assert!(render(&Chart::default(), &dir.path().join("empty")).is_err());
    }

    #[test]
    fn legend_avoids_the_curves_and_skips_hidden_series() {
        let dir = tempfile::tempdir().unwrap();
        // Along the top and down the right edge: only the lower-left corner stays free.
        let edge = vec![(0.0, 10.0), (10.0, 10.0), (10.0, 0.0)];
        let chart = Chart {
            title: "corner".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![
                Series {
                    rgb: Some((0x12, 0x34, 0x56)),
                    ..Series::line("edge", edge, 0)
                },
                Series {
                    markers_only: true,
                    in_legend: false,
                    ..Series::line("unlisted", vec![(5.0, 5.0)], 1)
                },
            ],
            ..Chart::default()
        };
        let files = render(&chart, &dir.path().join("corner")).unwrap();
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        assert!(svg.contains("#123456"), "the exact colour is used");
        assert!(svg.contains("edge") && !svg.contains("unlisted"));
        // The legend box: the only black-bordered rectangle, in the lower left of 1200 x 800.
        let rect = svg
            .split("<rect")
            .skip(1)
            .map(|r| &r[..r.find('>').unwrap()])
            .find(|r| r.contains("stroke=\"#000000\""))
            .unwrap();
        let attr = |name: &str| -> i32 {
            let rest = &rect[rect.find(&format!(" {name}=\"")).unwrap() + name.len() + 3..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        };
        assert!(attr("x") < 300 && attr("y") > 400, "{rect}");
    }

    #[test]
    fn panels_share_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let chart = |title: &str| Chart {
            title: title.into(),
            x_label: "width".into(),
            y_label: "mean |x|".into(),
            log_x: true,
            log_y: true,
            series: vec![Series {
                markers: true,
                ..Series::line("step 0", vec![(128.0, 1.0), (256.0, 1.1), (512.0, 0.9)], 0)
            }],
        };
        let charts = [chart("embedding"), chart("attention"), chart("logits")];
        let files = render_panels(&charts, 2, &dir.path().join("coord")).unwrap();
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        for title in ["embedding", "attention", "logits"] {
            assert!(svg.contains(title), "{title} missing");
        }
        // Markers: a circle per point of every panel.
        assert!(svg.matches("<circle").count() >= 9);
        assert!(render_panels(&[], 2, &dir.path().join("none")).is_err());
    }
}
