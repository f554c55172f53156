//! Heat maps of a measurement over two grids (loss over width and learning rate): a coloured
//! cell per pair with its value written in it, marked cells for the optima, PNG and SVG side by
//! side, several maps in one file.

use crate::plot::{register_font, write_png_and_svg, DrawError, Picture, PlotError, FONT};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct Heatmap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Column labels, left to right.
    pub x_ticks: Vec<String>,
    /// Row labels, bottom to top.
    pub y_ticks: Vec<String>,
    /// `values[row][column]`; None leaves the cell grey.
    pub values: Vec<Vec<Option<f64>>>,
    /// (row, column) cells outlined and starred: e.g. each column's best.
    pub marked: Vec<(usize, usize)>,
    /// Values above `min + span` get the top colour, so one diverged point does not flatten
    /// the scale of the rest; None uses the full range.
    pub span: Option<f64>,
}

/// The lab's colour map as a plotters colour.
fn viridis(t: f64) -> RGBColor {
    let (r, g, b) = crate::plot::viridis(t);
    RGBColor(r, g, b)
}

fn draw_one<DB: DrawingBackend<ErrorType: 'static>>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    map: &Heatmap,
) -> Result<(), DrawError> {
    let (nx, ny) = (map.x_ticks.len(), map.y_ticks.len());
    let finite: Vec<f64> = map
        .values
        .iter()
        .flatten()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let hi = map.span.map_or(hi, |s| hi.min(lo + s));
    let scale = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
    let xs = map.x_ticks.clone();
    let ys = map.y_ticks.clone();
    let mut chart = ChartBuilder::on(area)
        .caption(&map.title, (FONT, 24))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..nx as f64, 0f64..ny as f64)?;
    // Ticks at cell centres, labelled with the grid's own values.
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(nx * 2 + 1)
        .y_labels(ny * 2 + 1)
        .x_label_formatter(&|v| centre_label(*v, &xs))
        .y_label_formatter(&|v| centre_label(*v, &ys))
        .x_desc(&map.x_label)
        .y_desc(&map.y_label)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 18))
        .draw()?;
    for (r, row) in map.values.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let (x0, y0) = (c as f64, r as f64);
            let fill = match v {
                Some(v) if v.is_finite() => viridis(scale(*v)),
                _ => RGBColor(200, 200, 200),
            };
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, y0), (x0 + 1.0, y0 + 1.0)],
                fill.filled(),
            )))?;
            let marked = map.marked.contains(&(r, c));
            let text = match v {
                Some(v) if v.is_finite() => format!("{v:.3}{}", if marked { "*" } else { "" }),
                Some(_) => "diverged".into(),
                None => "-".into(),
            };
            let light = matches!(v, Some(v) if v.is_finite() && scale(*v) < 0.6);
            let ink = if light { WHITE } else { BLACK };
            chart.draw_series(std::iter::once(Text::new(
                text,
                (x0 + 0.5, y0 + 0.5),
                (FONT, 15)
                    .into_font()
                    .color(&ink)
                    .pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Center,
                    )),
            )))?;
            if marked {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x0 + 0.03, y0 + 0.03), (x0 + 0.97, y0 + 0.97)],
                    RED.stroke_width(3),
                )))?;
            }
        }
    }
    Ok(())
}

/// The label of the cell whose centre is at `v`, or nothing between centres.
fn centre_label(v: f64, labels: &[String]) -> String {
    let i = v - 0.5;
    if (i - i.round()).abs() < 1e-6 && i >= 0.0 {
        labels.get(i.round() as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// Writes `<stem>.png` and `<stem>.svg` with the maps side by side; returns their paths.
pub fn render_heatmaps(maps: &[Heatmap], stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    register_font();
    if maps.is_empty()
        || maps.iter().any(|m| {
            m.x_ticks.is_empty()
                || m.values.len() != m.y_ticks.len()
                || m.values.iter().any(|r| r.len() != m.x_ticks.len())
        })
    {
        return Err(PlotError::new(
            stem,
            "a heat map needs a value per (row, column)",
        ));
    }
    struct Maps<'a>(&'a [Heatmap]);
    impl Picture for Maps<'_> {
        fn draw<DB: DrawingBackend<ErrorType: 'static>>(
            &self,
            root: &DrawingArea<DB, plotters::coord::Shift>,
        ) -> Result<(), DrawError> {
            for (area, map) in root.split_evenly((1, self.0.len())).iter().zip(self.0) {
                draw_one(area, map)?;
            }
            Ok(())
        }
    }
    write_png_and_svg(&Maps(maps), (720 * maps.len() as u32, 560), stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_carry_their_values_and_marks() {
        let dir = tempfile::tempdir().unwrap();
        let map = Heatmap {
            title: "muP".into(),
            x_label: "width".into(),
            y_label: "learning rate".into(),
            x_ticks: vec!["64".into(), "128".into()],
            y_ticks: vec!["0.005".into(), "0.01".into(), "0.02".into()],
            values: vec![
                vec![Some(4.5), Some(4.4)],
                vec![Some(4.2), Some(4.1)],
                vec![Some(f64::NAN), None],
            ],
            marked: vec![(1, 0), (1, 1)],
            span: Some(1.0),
        };
        let files = render_heatmaps(&[map.clone(), map], &dir.path().join("h")).unwrap();
        assert!(std::fs::metadata(&files[0]).unwrap().len() > 10_000);
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        for text in [
            "4.500",
            "4.100*",
            "4.200*",
            "diverged",
            "learning rate",
            "0.02",
            "128",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert_eq!(centre_label(1.5, &["a".into(), "b".into()]), "b");
        assert_eq!(centre_label(1.0, &["a".into(), "b".into()]), "");
        let ragged = Heatmap {
            x_ticks: vec!["a".into()],
            y_ticks: vec!["b".into()],
            values: vec![vec![]],
            ..Heatmap::default()
        };
        assert!(render_heatmaps(&[ragged], &dir.path().join("r")).is_err());
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
    }
}
