//! Strict deserialisation shared by every config file the project reads: an unknown key or a
//! value of the wrong type is an error that names the file and the dotted path of the field.

use crate::error::ModelError;
use serde::de::DeserializeOwned;

/// Deserialises `value`, rejecting unknown keys. `origin` (a file name) goes into the error.
pub fn from_value<T: DeserializeOwned>(
    value: serde_json::Value,
    origin: &str,
) -> Result<T, ModelError> {
    let mut unknown: Vec<String> = Vec::new();
    let mut record = |path: serde_ignored::Path| unknown.push(path.to_string());
    let de = serde_ignored::Deserializer::new(value, &mut record);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(de);
    match parsed {
        Err(e) => {
            let field = e.path().to_string();
            Err(ModelError::Config {
                origin: origin.to_string(),
                field,
                msg: e.into_inner().to_string(),
            })
        }
        Ok(_) if !unknown.is_empty() => Err(ModelError::Config {
            origin: origin.to_string(),
            field: unknown[0].clone(),
            msg: "unknown key".into(),
        }),
        Ok(v) => Ok(v),
    }
}

/// Parses TOML text into a JSON value tree (so TOML and JSON configs share one strict path).
pub fn toml_to_value(text: &str, origin: &str) -> Result<serde_json::Value, ModelError> {
    let t: toml::Table = toml::from_str(text).map_err(|e| ModelError::Parse {
        origin: origin.to_string(),
        msg: one_line(&e.to_string()),
    })?;
    serde_json::to_value(t).map_err(|e| ModelError::Parse {
        origin: origin.to_string(),
        msg: e.to_string(),
    })
}

/// Error messages of parsers span several lines (a source excerpt); the CLI prints one line.
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        a: usize,
    }
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    #[test]
    fn unknown_key_is_named() {
        let v = toml_to_value("[inner]\na = 1\nb = 2\n", "f.toml").unwrap();
        let e = from_value::<Outer>(v, "f.toml").unwrap_err().to_string();
        assert!(
            e.contains("f.toml") && e.contains("inner.b") && e.contains("unknown key"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_is_named() {
        let v = toml_to_value("[inner]\na = \"x\"\n", "f.toml").unwrap();
        let e = from_value::<Outer>(v, "f.toml").unwrap_err().to_string();
        assert!(e.contains("inner.a") && e.contains("invalid type"), "{e}");
    }
}
