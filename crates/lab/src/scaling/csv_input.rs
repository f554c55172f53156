//! Reading points from CSV: the project's own `params,tokens,loss` files and the Epoch AI
//! extraction of Chinchilla's Figure 4 (`Model Size`, `Training FLOP`, `loss`).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::error::{PointProblem, ScalingError};
use super::point::{value_problem, Point};

/// Which columns a file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvFormat {
    /// `params,tokens,loss`: the project's own runs.
    Native,
    /// `Model Size,Training FLOP,loss`: Epoch AI's Chinchilla file. It has no token count, so
    /// tokens are recovered as FLOP / (6 N), the same C = 6ND the paper used.
    EpochChinchilla,
}

impl CsvFormat {
    /// The columns this format needs, in the order they are used.
    pub fn columns(self) -> [&'static str; 3] {
        match self {
            CsvFormat::Native => ["params", "tokens", "loss"],
            CsvFormat::EpochChinchilla => ["Model Size", "Training FLOP", "loss"],
        }
    }

    /// Guesses the format from a header: any Epoch-specific column means Epoch, otherwise the
    /// native format, so that a native file missing a column is reported as such.
    pub fn detect<'a>(header: impl IntoIterator<Item = &'a str>) -> Self {
        let epoch = Self::EpochChinchilla.columns();
        let is_epoch = header
            .into_iter()
            .any(|h| epoch[..2].iter().any(|c| h.trim().eq_ignore_ascii_case(c)));
        if is_epoch {
            Self::EpochChinchilla
        } else {
            Self::Native
        }
    }
}

/// Reads a points file, detecting its format from the header.
pub fn read_points(path: impl AsRef<Path>) -> Result<Vec<Point>, ScalingError> {
    read(path.as_ref(), None)
}

/// Reads a points file in a given format.
pub fn read_points_as(
    path: impl AsRef<Path>,
    format: CsvFormat,
) -> Result<Vec<Point>, ScalingError> {
    read(path.as_ref(), Some(format))
}

fn read(path: &Path, format: Option<CsvFormat>) -> Result<Vec<Point>, ScalingError> {
    let file = File::open(path).map_err(|source| ScalingError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_points(file, path, format)
}

/// Parses CSV text from any reader; `source` is only used to name the input in errors. With
/// `format` `None` the format is detected from the header.
pub fn parse_points(
    reader: impl Read,
    source: &Path,
    format: Option<CsvFormat>,
) -> Result<Vec<Point>, ScalingError> {
    let csv_err = |e: csv::Error| ScalingError::Csv {
        path: source.to_path_buf(),
        source: e,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let header = rdr.headers().map_err(csv_err)?.clone();
    let format = format.unwrap_or_else(|| CsvFormat::detect(header.iter()));
    let mut index = [0usize; 3];
    for (slot, column) in index.iter_mut().zip(format.columns()) {
        *slot = header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(column))
            .ok_or_else(|| ScalingError::MissingColumn {
                path: source.to_path_buf(),
                column: column.to_string(),
                header: header.iter().collect::<Vec<_>>().join(","),
            })?;
    }

    let mut points = Vec::new();
    for record in rdr.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line());
        let mut values = [0.0f64; 3];
        for ((value, &i), column) in values.iter_mut().zip(&index).zip(format.columns()) {
            let text = record.get(i).unwrap_or("");
            *value = text.parse().map_err(|_| ScalingError::BadNumber {
                path: source.to_path_buf(),
                line,
                column: column.to_string(),
                value: text.to_string(),
            })?;
        }
        let bad_row = |problem: PointProblem| ScalingError::BadRow {
            path: source.to_path_buf(),
            line,
            problem,
        };
        let [first, second, loss] = values;
        for (column, value) in format.columns().into_iter().zip(values) {
            if let Some(problem) = value_problem(column, value) {
                return Err(bad_row(problem));
            }
        }
        let point = match format {
            CsvFormat::Native => Point::new(first, second, loss),
            CsvFormat::EpochChinchilla => Point::new(first, second / (6.0 * first), loss),
        };
        // FLOP / (6N) can still underflow or overflow for extreme inputs.
        if let Some(problem) = point.problem() {
            return Err(bad_row(problem));
        }
        points.push(point);
    }
    Ok(points)
}
