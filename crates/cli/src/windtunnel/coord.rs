//! `windtunnel coord-check`: mean |activation| per kind and width over the first updates.

use super::{read_index, write_index, ProxyArgs};
use clap::Args;
use minicpm_lab::plot::{self, Chart, Series};
use minicpm_model::Parametrization;
use minicpm_train::run_data::RunData;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct CoordArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Updates after initialisation.
    #[arg(long, default_value_t = 5)]
    steps: u64,
    /// Train on the config's data (its stable mixture, probed on the first held-out batch)
    /// instead of random tokens.
    #[arg(long)]
    text: bool,
    /// Where coord-check-<param>.json and the plots go [default: runs/windtunnel/coord-check,
    /// or coord-check-text with --text].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `coord-check-<param>.json`: every measurement of one parametrisation's check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CoordCheckIndex {
    param: Parametrization,
    tokens: ProbeTokens,
    records: Vec<CoordIndexRecord>,
}

/// What the check trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ProbeTokens {
    Random,
    Text,
}

/// Mean |activation| of one kind at one width and step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CoordIndexRecord {
    width: usize,
    step: u64,
    site: String,
    /// None where the activations were not finite (JSON has no NaN).
    mean_abs: Option<f64>,
}

impl CoordCheckIndex {
    fn file_name(param: Parametrization) -> String {
        format!("coord-check-{param}.json")
    }
}

pub fn run(a: CoordArgs) -> anyhow::Result<ExitCode> {
    if a.steps == 0 {
        anyhow::bail!("--steps must be at least 1");
    }
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(if a.text {
            "runs/windtunnel/coord-check-text"
        } else {
            "runs/windtunnel/coord-check"
        })
    });
    let device = crate::util::training_device();
    let mut text = None;
    let mut all = Vec::new();
    for w in a.proxy.widths() {
        let shape = a.proxy.shape(w)?;
        let cfg = a.proxy.config(&shape)?;
        // Every width shares the data and its vocabulary: opened (and checked) once.
        if a.text && text.is_none() {
            text = Some(RunData::open(&cfg, cfg.model.vocab_size)?);
        }
        eprintln!("width {w}: {} layers, {} heads", shape.layers, shape.heads);
        for r in minicpm_train::coord_check::run(&cfg, a.steps, text.as_ref(), &device)? {
            all.push((w, r));
        }
    }
    std::fs::create_dir_all(&out)?;
    let param = a.proxy.param;
    let index = CoordCheckIndex {
        param,
        tokens: if a.text {
            ProbeTokens::Text
        } else {
            ProbeTokens::Random
        },
        records: all
            .iter()
            .map(|(w, r)| CoordIndexRecord {
                width: *w,
                step: r.step,
                site: r.site.clone(),
                mean_abs: r.mean_abs.is_finite().then_some(r.mean_abs),
            })
            .collect(),
    };
    write_index(&out.join(CoordCheckIndex::file_name(param)), &index)?;

    // One chart per activation kind: mean |x| against width, a curve per step.
    let mut sites: Vec<&str> = all.iter().map(|(_, r)| r.site.as_str()).collect();
    sites.sort_unstable();
    sites.dedup();
    let mut charts = Vec::new();
    println!("mean |activation| ({param}), by width; growth = widest / narrowest at the last step");
    for site in &sites {
        let mut chart = Chart {
            title: format!("{site} ({param})"),
            x_label: "width".into(),
            y_label: "mean |activation|".into(),
            log_x: true,
            log_y: true,
            series: vec![],
        };
        for step in 0..=a.steps {
            let points: Vec<(f64, f64)> = all
                .iter()
                .filter(|(_, r)| r.site == *site && r.step == step)
                .map(|(w, r)| (*w as f64, r.mean_abs))
                .collect();
            chart.series.push(Series {
                markers: true,
                ..Series::line(format!("step {step}"), points, step as usize)
            });
        }
        let last = &chart.series[a.steps as usize].points;
        let growth = match (last.first(), last.last()) {
            (Some(f), Some(l)) if f.1 > 0.0 => l.1 / f.1,
            _ => f64::NAN,
        };
        let cells: Vec<String> = last.iter().map(|p| format!("{:.4}", p.1)).collect();
        println!("  {site:<10} {}   growth {growth:.2}x", cells.join("  "));
        charts.push(chart);
    }
    for f in plot::render_panels(&charts, 3, &out.join(format!("coord-check-{param}")))? {
        println!("{}", f.display());
    }
    for f in compare(&out)? {
        println!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Once both parametrisations were checked into `out`: per activation, its mean |x| at the last
/// step relative to the narrowest width, muP and SP on one log scale (`coord-check-compare`).
/// Absolute panels scale each axis to its own data, which makes small wiggles look large; the
/// ratio on a shared scale shows what the check is for.
fn compare(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut by_param = Vec::new();
    for param in Parametrization::ALL {
        let Some(index) =
            read_index::<CoordCheckIndex>(&out.join(CoordCheckIndex::file_name(param)))?
        else {
            return Ok(Vec::new());
        };
        // (width, step, site, mean |x|); a measurement that was not finite has no point.
        let records: Vec<(usize, u64, String, f64)> = index
            .records
            .into_iter()
            .filter_map(|r| Some((r.width, r.step, r.site, r.mean_abs?)))
            .collect();
        by_param.push((param, records));
    }
    let mut sites: Vec<String> = by_param[0].1.iter().map(|r| r.2.clone()).collect();
    sites.sort();
    sites.dedup();
    let mut charts = Vec::new();
    for site in &sites {
        let mut chart = Chart {
            title: format!("{site}: relative to the narrowest width"),
            x_label: "width".into(),
            y_label: "mean |activation| / narrowest's".into(),
            log_x: true,
            log_y: true,
            series: vec![],
        };
        for (i, (param, records)) in by_param.iter().enumerate() {
            let last = records.iter().map(|r| r.1).max().unwrap_or(0);
            let mut pts: Vec<(f64, f64)> = records
                .iter()
                .filter(|r| r.2 == *site && r.1 == last)
                .map(|r| (r.0 as f64, r.3))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let Some(&(_, base)) = pts.first() else {
                continue;
            };
            let pts = pts.into_iter().map(|(w, v)| (w, v / base)).collect();
            chart.series.push(Series {
                markers: true,
                dashed: i == 1,
                ..Series::line(format!("{param}, step {last}"), pts, 3 * i)
            });
        }
        charts.push(chart);
    }
    Ok(plot::render_panels(
        &charts,
        3,
        &out.join("coord-check-compare"),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_round_trips_and_a_malformed_one_is_refused() {
        let record = |width: usize, mean_abs: Option<f64>| CoordIndexRecord {
            width,
            step: 5,
            site: "mlp".into(),
            mean_abs,
        };
        let index = CoordCheckIndex {
            param: Parametrization::Sp,
            tokens: ProbeTokens::Text,
            records: vec![record(64, Some(0.25)), record(128, None)],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join(CoordCheckIndex::file_name(Parametrization::Sp));
        write_index(&path, &index).unwrap();
        // The layout the file has always had.
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["param"], "sp");
        assert_eq!(json["tokens"], "text");
        assert_eq!(json["records"][0]["mean_abs"], 0.25);
        assert_eq!(json["records"][1]["mean_abs"], serde_json::Value::Null);
        assert_eq!(read_index::<CoordCheckIndex>(&path).unwrap(), Some(index));

        // A row that used to be dropped without a word now stops the reading, naming the file.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"mlp\"", "7", 1)).unwrap();
        let e = read_index::<CoordCheckIndex>(&path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("coord-check-sp.json") && e.contains("line"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        // No file: that parametrisation has not been checked.
        let none = read_index::<CoordCheckIndex>(&dir.path().join("coord-check-mup.json"));
        assert_eq!(none.unwrap(), None);
    }
}
