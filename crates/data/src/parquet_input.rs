//! Documents from Parquet files: one per row of a top-level string column.
//!
//! The column is read row group by row group, a bounded batch of values at a time, so memory
//! stays flat however large the file. Only the text column is decoded. Rows whose text is null
//! are skipped and counted; a file that cannot be decoded is an error naming it, raised before
//! `prepare` writes the index that would mark its source complete.

use crate::error::DataError;
use crate::inputs::{source_of_file, Doc, Skipped};
use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::column::reader::ColumnReader;
use parquet::data_type::ByteArray;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnDescriptor;
use std::path::Path;

/// Rows decoded at a time: enough to amortise the per-call overhead, few enough that a batch of
/// even long documents stays small.
const BATCH_ROWS: usize = 256;

/// Streams the documents of the Parquet file `p` (text in column `text_column`) into `sink`.
pub fn read_parquet(
    p: &Path,
    text_column: &str,
    sink: &mut dyn FnMut(Doc) -> Result<(), DataError>,
) -> Result<Skipped, DataError> {
    let file = std::fs::File::open(p).map_err(|e| DataError::file(p, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| {
        DataError::failed(format!("{}: not a readable Parquet file", p.display()), e)
    })?;
    let column = text_column_index(&reader, text_column).map_err(|msg| DataError::file(p, msg))?;
    let max_def_level = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .column(column)
        .max_def_level();
    let source = source_of_file(p);
    let mut skipped = Skipped::default();
    let mut values: Vec<ByteArray> = Vec::with_capacity(BATCH_ROWS);
    let mut def_levels: Vec<i16> = Vec::with_capacity(BATCH_ROWS);
    for group in 0..reader.num_row_groups() {
        let damaged = |e: parquet::errors::ParquetError| {
            DataError::failed(
                format!("{}: row group {group}, column `{text_column}`", p.display()),
                e,
            )
        };
        let row_group = reader.get_row_group(group).map_err(damaged)?;
        let expected_rows = row_group.metadata().num_rows();
        let ColumnReader::ByteArrayColumnReader(mut column_reader) =
            row_group.get_column_reader(column).map_err(damaged)?
        else {
            return Err(DataError::file(
                p,
                format!("column `{text_column}` is not a byte-array column"),
            ));
        };
        let mut rows: i64 = 0;
        loop {
            values.clear();
            def_levels.clear();
            let (read, _, _) = column_reader
                .read_records(BATCH_ROWS, Some(&mut def_levels), None, &mut values)
                .map_err(damaged)?;
            if read == 0 {
                break;
            }
            rows += read as i64;
            // Values hold only the non-null rows; a definition level below the maximum marks a
            // null. A required column (maximum 0) has no levels: every row holds a value.
            if max_def_level == 0 {
                def_levels.resize(read, 0);
            }
            let levels = def_levels.get(..read).ok_or_else(|| {
                DataError::file(p, format!("row group {group}: fewer levels than rows"))
            })?;
            let mut texts = values.iter();
            for &level in levels {
                if level < max_def_level {
                    skipped.null_text += 1;
                    continue;
                }
                let bytes = texts.next().ok_or_else(|| {
                    DataError::file(p, format!("row group {group}: fewer values than rows"))
                })?;
                match std::str::from_utf8(bytes.data()) {
                    Ok(text) if text.trim().is_empty() => {}
                    Ok(text) => sink(Doc {
                        source: source.clone(),
                        text: text.to_string(),
                    })?,
                    Err(_) => skipped.invalid_utf8 += 1,
                }
            }
        }
        if rows != expected_rows {
            return Err(DataError::file(
                p,
                format!("row group {group} holds {rows} rows but its metadata says {expected_rows} (truncated?)"),
            ));
        }
    }
    Ok(skipped)
}

/// The index of the leaf column holding the text, which must be a top-level string column.
fn text_column_index(
    reader: &SerializedFileReader<std::fs::File>,
    name: &str,
) -> Result<usize, String> {
    let schema = reader.metadata().file_metadata().schema_descr();
    let columns = schema.columns();
    let Some(index) = columns.iter().position(|c| c.path().parts() == [name]) else {
        return Err(
            if schema
                .root_schema()
                .get_fields()
                .iter()
                .any(|f| f.name() == name)
            {
                format!("column `{name}` is not a string column (it is nested)")
            } else {
                format!("no column `{name}` (the text column; see --text-field)")
            },
        );
    };
    let column = &columns[index];
    if !is_string(column) {
        return Err(format!(
            "column `{name}` is not a string column (it is {})",
            describe(column)
        ));
    }
    if column.max_rep_level() > 0 {
        return Err(format!(
            "column `{name}` is not a string column (it is a list)"
        ));
    }
    Ok(index)
}

fn is_string(column: &ColumnDescriptor) -> bool {
    column.physical_type() == PhysicalType::BYTE_ARRAY
        && (matches!(column.logical_type_ref(), Some(LogicalType::String))
            || column.converted_type() == ConvertedType::UTF8)
}

fn describe(column: &ColumnDescriptor) -> String {
    match (column.physical_type(), column.logical_type_ref()) {
        (PhysicalType::BYTE_ARRAY, None) => "binary".to_string(),
        (physical, Some(logical)) => format!("{physical} annotated {logical:?}"),
        (physical, None) => physical.to_string(),
    }
}
