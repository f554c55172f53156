//! The points of a learning-rate sweep, and the job list that hands them to an external
//! scheduler instead of running them here.

use super::proxy::ProxyShape;
use minicpm_model::Parametrization;
use std::path::Path;

/// One (width, learning rate) proxy: a run of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Directory name of the run, e.g. `mup-d256-lr0.01`.
    pub name: String,
    pub shape: ProxyShape,
    pub lr: f64,
}

/// The grid of a sweep: every width with every learning rate, under one parametrisation.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepGrid {
    pub widths: Vec<usize>,
    pub lrs: Vec<f64>,
    /// Part of each point's name, so that both parametrisations' sweeps can share a directory.
    pub param: Parametrization,
    pub head_dim: usize,
    /// A fixed depth, or None for the paper's depth-grows-with-width rule.
    pub layers: Option<usize>,
}

impl SweepGrid {
    /// Points in width-major order (all LRs of the smallest width first): the cheap points
    /// finish first, so a partial sweep already has complete columns.
    pub fn points(&self) -> Result<Vec<Point>, String> {
        if self.widths.is_empty() || self.lrs.is_empty() {
            return Err("a sweep needs at least one width and one learning rate".into());
        }
        let mut widths = self.widths.clone();
        widths.sort_unstable();
        widths.dedup();
        let mut out = Vec::new();
        for w in widths {
            let shape = ProxyShape::of_width(w, self.head_dim, self.layers)?;
            for &lr in &self.lrs {
                out.push(Point {
                    name: format!("{}-d{w}-lr{lr}", self.param),
                    shape,
                    lr,
                });
            }
        }
        Ok(out)
    }
}

/// Parses a grid such as `0.001,0.01`, `2^-8,2^-6` or `2^-10..2^-4` (every power of two from the
/// first to the last). Values must be positive and finite; duplicates are dropped, order kept.
pub fn parse_grid_values(text: &str) -> Result<Vec<f64>, String> {
    let one = |t: &str| -> Result<f64, String> {
        let t = t.trim();
        let v = match t.strip_prefix("2^") {
            Some(k) => k
                .parse::<i32>()
                .map(|k| 2f64.powi(k))
                .map_err(|_| format!("`{t}`: the exponent of 2^k must be an integer"))?,
            None => t
                .parse::<f64>()
                .map_err(|_| format!("`{t}` is not a number"))?,
        };
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(format!("`{t}` must be positive"))
        }
    };
    let mut out: Vec<f64> = Vec::new();
    for item in text.split(',') {
        let values = match item.split_once("..") {
            Some((a, b)) => {
                let exp = |t: &str| {
                    t.trim()
                        .strip_prefix("2^")
                        .and_then(|k| k.parse::<i32>().ok())
                        .ok_or_else(|| format!("`{item}`: a range goes from 2^a to 2^b"))
                };
                let (a, b) = (exp(a)?, exp(b)?);
                if a > b {
                    return Err(format!("`{item}`: the range runs backwards"));
                }
                (a..=b).map(|k| 2f64.powi(k)).collect()
            }
            None => vec![one(item)?],
        };
        for v in values {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// Quotes a path for a POSIX shell.
fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// One shell line per point that trains it, or resumes it when it was started before (a finished
/// run resumes to no work), so rerunning any line is safe.
pub fn job_list(binary: &Path, points: &[(&Path, &Path)], ranks: usize) -> String {
    let bin = match ranks {
        0 | 1 => quote(binary),
        n => format!("srun -n {n} --kill-on-bad-exit=1 {}", quote(binary)),
    };
    points
        .iter()
        .map(|(config, dir)| {
            let d = quote(dir);
            format!(
                "if [ -f {d}/run.toml ]; then {bin} train --quiet --resume {d}; \
                 else {bin} train --quiet --config {} --out {d}; fi\n",
                quote(config)
            )
        })
        .collect()
}

/// A Slurm array script running line `SLURM_ARRAY_TASK_ID + 1` of `jobs`, each line's run on
/// `ranks` tasks of `threads` cores.
pub fn slurm_array_script(jobs: &Path, count: usize, threads: usize, ranks: usize) -> String {
    format!(
        "#!/bin/bash\n\
         # One point per array task: sbatch {script}\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --ntasks={ranks}\n\
         #SBATCH --cpus-per-task={threads}\n\
         #SBATCH --job-name=minicpm-sweep\n\
         export RAYON_NUM_THREADS={threads}\n\
         eval \"$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {jobs})\"\n",
        script = "slurm.sh",
        last = count.saturating_sub(1),
        ranks = ranks.max(1),
        jobs = quote(jobs),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_parse_lists_powers_and_ranges() {
        assert_eq!(parse_grid_values("0.01, 0.02").unwrap(), vec![0.01, 0.02]);
        assert_eq!(
            parse_grid_values("2^-3..2^-1,0.25").unwrap(),
            vec![0.125, 0.25, 0.5]
        );
        for bad in ["", "0", "-1", "x", "2^1.5", "2^-1..2^-3", "0.1..0.2", "nan"] {
            assert!(parse_grid_values(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn points_are_named_and_ordered_by_width() {
        let grid = SweepGrid {
            widths: vec![256, 128, 256],
            lrs: vec![0.01, 0.005],
            param: Parametrization::Mup,
            head_dim: 64,
            layers: Some(2),
        };
        let names: Vec<String> = grid.points().unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "mup-d128-lr0.01",
                "mup-d128-lr0.005",
                "mup-d256-lr0.01",
                "mup-d256-lr0.005"
            ]
        );
    }

    #[test]
    fn job_lines_resume_or_start_and_quote_paths() {
        let text = job_list(
            Path::new("/bin/minicpm"),
            &[(Path::new("p/a.toml"), Path::new("runs/it's"))],
            1,
        );
        assert_eq!(
            text,
            "if [ -f 'runs/it'\\''s'/run.toml ]; then '/bin/minicpm' train --quiet --resume \
             'runs/it'\\''s'; else '/bin/minicpm' train --quiet --config 'p/a.toml' --out \
             'runs/it'\\''s'; fi\n"
        );
        let slurm = slurm_array_script(Path::new("jobs.txt"), 4, 2, 1);
        assert!(slurm.contains("--array=0-3") && slurm.contains("RAYON_NUM_THREADS=2"));
        // Across ranks: each point a Slurm step of that many tasks, ended as one.
        let two = job_list(
            Path::new("/bin/minicpm"),
            &[(Path::new("a.toml"), Path::new("r"))],
            2,
        );
        assert!(
            two.contains("then srun -n 2 --kill-on-bad-exit=1 '/bin/minicpm' train"),
            "{two}"
        );
        assert!(
            two.contains("else srun -n 2 --kill-on-bad-exit=1 '/bin/minicpm' train"),
            "{two}"
        );
        let slurm = slurm_array_script(Path::new("jobs.txt"), 4, 2, 2);
        assert!(slurm.contains("--ntasks=2") && slurm.contains("--cpus-per-task=2"));
    }
}
