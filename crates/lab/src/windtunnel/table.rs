//! The sweep's result: final held-out loss over (learning rate, width), and the best learning
//! rate of each width, which is what muP promises to keep fixed.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrTableRow {
    pub lr: f64,
    /// One entry per width; None where the point has not finished (or diverged to NaN).
    pub losses: Vec<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrTable {
    pub widths: Vec<usize>,
    /// Rows in increasing learning rate.
    pub rows: Vec<LrTableRow>,
}

impl LrTable {
    /// Builds the table from (width, lr, loss) results; non-finite losses count as missing.
    pub fn new(results: &[(usize, f64, Option<f64>)]) -> Self {
        let mut widths: Vec<usize> = results.iter().map(|r| r.0).collect();
        widths.sort_unstable();
        widths.dedup();
        let mut lrs: Vec<f64> = results.iter().map(|r| r.1).collect();
        lrs.sort_by(f64::total_cmp);
        lrs.dedup();
        let rows = lrs
            .iter()
            .map(|&lr| LrTableRow {
                lr,
                losses: widths
                    .iter()
                    .map(|&w| {
                        results
                            .iter()
                            .find(|r| r.0 == w && r.1 == lr)
                            .and_then(|r| r.2)
                            .filter(|l| l.is_finite())
                    })
                    .collect(),
            })
            .collect();
        LrTable { widths, rows }
    }

    /// The learning rate with the lowest loss at each width (None for a width with no result).
    pub fn best(&self) -> Vec<Option<(f64, f64)>> {
        (0..self.widths.len())
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.losses[c].map(|l| (r.lr, l)))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
            })
            .collect()
    }

    /// How far the best learning rate moves across widths: the ratio of the largest best LR to
    /// the smallest (1 when it does not move; 2 is one step of a power-of-two grid).
    pub fn best_lr_spread(&self) -> Option<f64> {
        let best: Vec<f64> = self.best().into_iter().flatten().map(|b| b.0).collect();
        let lo = best.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = best.iter().copied().fold(0.0, f64::max);
        (best.len() >= 2).then(|| hi / lo)
    }

    /// A text table: rows are learning rates, columns widths, `*` marks each width's best.
    pub fn render(&self) -> String {
        let best = self.best();
        let mut out = format!("{:>12}", "lr \\ width");
        for w in &self.widths {
            out += &format!("{w:>10}");
        }
        out.push('\n');
        for r in &self.rows {
            out += &format!("{:>12}", r.lr);
            for (c, l) in r.losses.iter().enumerate() {
                let mark = if best[c].is_some_and(|b| b.0 == r.lr) {
                    "*"
                } else {
                    " "
                };
                out += &match l {
                    Some(l) => format!("{l:>9.4}{mark}"),
                    None => format!("{:>9} ", "-"),
                };
            }
            out.push('\n');
        }
        out += &format!("{:>12}", "best lr");
        for b in &best {
            out += &match b {
                // A space first: LRs such as 0.00390625 fill the whole column.
                Some((lr, _)) => format!(" {lr:>9}"),
                None => format!(" {:>9}", "-"),
            };
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_per_width_and_spread() {
        let t = LrTable::new(&[
            (128, 0.01, Some(4.0)),
            (128, 0.02, Some(3.9)),
            (256, 0.01, Some(3.7)),
            (256, 0.02, Some(3.8)),
            (512, 0.01, None),
            (512, 0.02, Some(f64::NAN)),
        ]);
        assert_eq!(t.widths, [128, 256, 512]);
        assert_eq!(t.best(), vec![Some((0.02, 3.9)), Some((0.01, 3.7)), None]);
        assert_eq!(t.best_lr_spread(), Some(2.0));
        let text = t.render();
        assert!(
            text.contains("3.9000*") && text.contains("3.7000*"),
            "{text}"
        );
        assert!(
            text.contains("4.0000 ") && text.lines().count() == 4,
            "{text}"
        );
    }

    #[test]
    fn long_learning_rates_stay_apart_in_the_best_row() {
        let t = LrTable::new(&[
            (64, 0.00390625, Some(4.7)),
            (64, 0.0078125, Some(4.8)),
            (128, 0.00390625, Some(4.6)),
            (128, 0.0078125, Some(4.7)),
        ]);
        let text = t.render();
        let best = text.lines().last().unwrap();
        let fields: Vec<&str> = best.split_whitespace().collect();
        assert_eq!(fields, ["best", "lr", "0.00390625", "0.00390625"], "{text}");
    }
}
