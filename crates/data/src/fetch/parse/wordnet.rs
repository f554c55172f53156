//! WordNet 3.0 synsets from the `data.noun`, `data.verb`, `data.adj` and `data.adv` files of
//! `wordnet-base`. A data line is `offset lex_filenum ss_type w_cnt (word lex_id)... p_cnt
//! pointers... | gloss`, with `w_cnt` in hexadecimal; the licence header lines start with two
//! spaces. Each synset becomes "words (part of speech): gloss".

/// (first word, entry text) for every synset in one data file.
pub fn synsets(data: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in data.lines().enumerate() {
        if line.starts_with("  ") || line.trim().is_empty() {
            continue;
        }
        let (head, gloss) = line
            .split_once(" | ")
            .ok_or_else(|| format!("line {}: no gloss", n + 1))?;
        let fields: Vec<&str> = head.split_whitespace().collect();
        let bad = |what: &str| format!("line {}: {what}", n + 1);
        let pos = match fields.get(2).copied() {
            Some("n") => "noun",
            Some("v") => "verb",
            Some("a") | Some("s") => "adjective",
            Some("r") => "adverb",
            _ => return Err(bad("unknown part of speech")),
        };
        let count = fields
            .get(3)
            .and_then(|c| usize::from_str_radix(c, 16).ok())
            .ok_or_else(|| bad("bad word count"))?;
        let words: Vec<String> = (0..count)
            .map(|i| fields.get(4 + 2 * i).map(|w| word(w)))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("fewer words than counted"))?;
        let Some(first) = words.first().cloned() else {
            continue;
        };
        out.push((
            first,
            format!("{} ({pos}): {}", words.join(", "), gloss.trim()),
        ));
    }
    Ok(out)
}

/// A lemma as written: underscores are spaces, and adjective position markers such as "(p)" go.
fn word(raw: &str) -> String {
    let w = match raw.find('(') {
        Some(i) if raw.ends_with(')') => &raw[..i],
        _ => raw,
    };
    w.replace('_', " ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn synset_lines() {
        let data = "  1 This software and database is being provided to you\n\
            00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 021 * 00005041 v 0000 \
            02 + 02 00 | draw air into, and expel out of, the lungs; \"I can breathe better\"  \n\
            00013887 00 s 02 galore(ip) 0 in_abundance 0 000 | in great numbers  \n";
        let s = super::synsets(data).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].1,
            "breathe, take a breath, respire, suspire (verb): draw air into, and expel out of, \
             the lungs; \"I can breathe better\""
        );
        assert_eq!(
            s[1],
            (
                "galore".to_string(),
                "galore, in abundance (adjective): in great numbers".to_string()
            )
        );
        assert!(super::synsets("00001 03 n 09 x 0 000 | g\n").is_err());
    }
}
