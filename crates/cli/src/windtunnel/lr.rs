//! `windtunnel lr`: the learning-rate sweep over widths.

use super::{
    read_index, run_points, train_for_tokens, write_index, PlannedPoint, ProxyArgs, SweepArgs,
};
use clap::Args;
use minicpm_lab::heatmap::{render_heatmaps, Heatmap};
use minicpm_lab::number_format::compact;
use minicpm_lab::windtunnel::{
    parse_grid_values, LrSweepIndex, LrSweepKind, LrSweepPoint, LrTable, SweepGrid,
};
use minicpm_model::Parametrization;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct LrArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Learning rates: a list (0.005,0.01), powers of two (2^-8,2^-7) or a range (2^-10..2^-4).
    #[arg(long, required = true)]
    lrs: String,
    /// Training tokens per point: a count (2000000, 2M) or a multiple of the proxy's
    /// non-embedding parameters (20N).
    #[arg(long, default_value = "20N")]
    tokens: String,
    #[command(flatten)]
    sweep: SweepArgs,
    /// Where the points' runs go.
    #[arg(long, default_value = "runs/windtunnel/lr")]
    out: PathBuf,
}

pub fn run(a: LrArgs) -> anyhow::Result<ExitCode> {
    a.sweep.threads()?;
    let lrs = parse_grid_values(&a.lrs).map_err(|e| anyhow::anyhow!("--lrs: {e}"))?;
    let grid = SweepGrid {
        widths: a.proxy.widths.clone(),
        lrs,
        param: a.proxy.param,
        head_dim: a.proxy.head_dim,
        layers: a.proxy.layers,
    };
    let grid_points = grid
        .points()
        .map_err(|e| anyhow::anyhow!("--widths: {e}"))?;

    // Resolve every point's config before training any, so a bad setting fails at once.
    let mut planned = Vec::new();
    for p in &grid_points {
        let mut config = a.proxy.config(&p.shape)?;
        config.optim.lr = p.lr;
        train_for_tokens(&mut config, &a.tokens)?;
        planned.push(PlannedPoint {
            name: p.name.clone(),
            config: a.proxy.check(config)?,
        });
    }
    let steps: Vec<u64> = planned.iter().map(|p| p.config.train.steps).collect();
    let Some(results) = run_points(planned, &a.sweep, &a.out)? else {
        return Ok(ExitCode::SUCCESS);
    };

    let mut table_input = Vec::new();
    let mut points = Vec::new();
    for ((p, r), steps) in grid_points.iter().zip(&results).zip(steps) {
        let s = r.summary.as_ref();
        let loss = s.and_then(|s| s.eval_loss);
        table_input.push((p.shape.hidden, p.lr, loss));
        points.push(LrSweepPoint {
            name: r.name.clone(),
            dir: a.out.join(&r.name),
            param: grid.param,
            width: p.shape.hidden,
            layers: p.shape.layers,
            heads: p.shape.heads,
            intermediate: p.shape.intermediate,
            lr: p.lr,
            non_embedding_params: s.map(|s| s.non_embedding_params),
            steps,
            finished: s.is_some(),
            eval_loss: loss,
            eval_bpb: s.and_then(|s| s.eval_bpb),
        });
    }
    let table = LrTable::new(&table_input);
    let index = LrSweepIndex {
        kind: LrSweepKind::WindtunnelLr,
        tokens: a.tokens.clone(),
        best: table.best(),
        table,
        points,
    };
    write_index(&a.out.join(LrSweepIndex::file_name(a.proxy.param)), &index)?;
    let table = index.table;
    println!(
        "held-out loss after {} tokens ({}):",
        a.tokens, a.proxy.param
    );
    print!("{}", table.render());
    if let Some(spread) = table.best_lr_spread() {
        println!("best LR spread across widths: {spread}x");
    }
    for f in heatmaps(&a.out)? {
        println!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// How the parametrisations are written in prose and on charts.
fn label(param: Parametrization) -> &'static str {
    match param {
        Parametrization::Mup => "muP",
        Parametrization::Sp => "SP",
    }
}

/// `2^-7` for a power of two (the usual grid), the number otherwise.
fn lr_label(lr: f64) -> String {
    let k = lr.log2();
    if k.fract() == 0.0 {
        format!("2^{k}")
    } else {
        compact(lr)
    }
}

/// Loss over (width, LR) for every parametrisation swept into `out` (muP and SP side by side
/// once both have run), each width's best LR marked: `<out>/lr-heatmap.png/svg`.
fn heatmaps(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut maps = Vec::new();
    for param in Parametrization::ALL {
        let Some(index) = read_index::<LrSweepIndex>(&out.join(LrSweepIndex::file_name(param)))?
        else {
            continue;
        };
        let table = index.table;
        let best = table.best();
        let marked = best
            .iter()
            .enumerate()
            .filter_map(|(c, b)| {
                let (lr, _) = (*b)?;
                table.rows.iter().position(|r| r.lr == lr).map(|r| (r, c))
            })
            .collect();
        maps.push(Heatmap {
            title: format!("held-out loss, {}", label(param)),
            x_label: "width".into(),
            y_label: "peak learning rate".into(),
            x_ticks: table.widths.iter().map(|w| w.to_string()).collect(),
            y_ticks: table.rows.iter().map(|r| lr_label(r.lr)).collect(),
            values: table.rows.iter().map(|r| r.losses.clone()).collect(),
            marked,
            span: Some(1.0),
        });
    }
    Ok(render_heatmaps(&maps, &out.join("lr-heatmap"))?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn powers_of_two_are_labelled_as_such() {
        assert_eq!(super::lr_label(0.0078125), "2^-7");
        assert_eq!(super::lr_label(0.01), "0.01");
    }
}
