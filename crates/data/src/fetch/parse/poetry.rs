//! Poems from the `chinese-poetry` package: JSON arrays of objects whose body is in `paragraphs`,
//! `content` or `para` and whose title is in `title`, `rhythmic` (the tune of a 词) or `chapter`,
//! with `chapter`/`section` grouping in 诗经 and 楚辞. Single poems are short, so consecutive poems
//! of one collection are joined into documents of a few kilobytes.

use serde_json::Value;

/// One poem: a heading line ("国风·周南·关雎"), its author if known, and its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Poem {
    pub heading: String,
    pub author: Option<String>,
    pub lines: Vec<String>,
}

impl Poem {
    /// Heading, author and body, one per line.
    pub fn render(&self) -> String {
        let mut out = self.heading.clone();
        if let Some(a) = &self.author {
            push_line(&mut out, a);
        }
        for l in &self.lines {
            push_line(&mut out, l);
        }
        out
    }
}

fn push_line(out: &mut String, line: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(line);
}

/// Parses one collection file; entries without a body are skipped.
pub fn poems(json: &str) -> Result<Vec<Poem>, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = value
        .as_array()
        .ok_or("expected a JSON array of poems".to_string())?;
    Ok(items.iter().filter_map(poem).collect())
}

fn poem(v: &Value) -> Option<Poem> {
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let lines: Vec<String> = ["paragraphs", "content", "para"]
        .iter()
        .find_map(|k| v.get(*k))
        .map(|body| match body {
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            Value::String(s) => s.lines().map(|l| l.trim().to_string()).collect(),
            _ => Vec::new(),
        })
        .unwrap_or_default();
    if lines.is_empty() {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in [
        field("chapter"),
        field("section"),
        field("title").or(field("rhythmic")),
    ]
    .into_iter()
    .flatten()
    {
        if !parts.contains(&p) {
            parts.push(p);
        }
    }
    Some(Poem {
        heading: parts.join("·"),
        author: field("author").map(str::to_string),
        lines,
    })
}

/// Joins rendered poems, separated by a blank line, into documents of at most `max_bytes`
/// (a single longer poem is a document of its own; poems are never split).
pub fn chunk(poems: &[Poem], max_bytes: usize) -> Vec<String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for p in poems {
        let text = p.render();
        if !current.is_empty() && current.len() + 2 + text.len() > max_bytes {
            docs.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(&text);
    }
    if !current.is_empty() {
        docs.push(current);
    }
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_each_collection() {
        let ci = r#"[{"author":"和岘","paragraphs":["气和玉烛，睿化著鸿明。","缇管一阳生。"],"rhythmic":"导引"},
                     {"author":"x","paragraphs":[],"rhythmic":"empty"}]"#;
        let shijing = r#"[{"title":"关雎","chapter":"国风","section":"周南","content":["关关雎鸠，在河之洲。"]}]"#;
        let chuci =
            r#"[{"title":"离骚","section":"离骚","author":"屈原","content":["帝高阳之苗裔兮"]}]"#;
        let lunyu = r#"[{"chapter":"学而篇","paragraphs":["子曰：学而时习之"]}]"#;
        let p = poems(ci).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].render(),
            "导引\n和岘\n气和玉烛，睿化著鸿明。\n缇管一阳生。"
        );
        assert_eq!(
            poems(shijing).unwrap()[0].render(),
            "国风·周南·关雎\n关关雎鸠，在河之洲。"
        );
        assert_eq!(
            poems(chuci).unwrap()[0].render(),
            "离骚\n屈原\n帝高阳之苗裔兮"
        );
        assert_eq!(
            poems(lunyu).unwrap()[0].render(),
            "学而篇\n子曰：学而时习之"
        );
        assert!(poems("{}").is_err());
    }

    #[test]
    fn chunks_respect_the_limit_and_poem_boundaries() {
        let p = |s: &str| Poem {
            heading: s.into(),
            author: None,
            lines: vec!["x".repeat(10)],
        };
        let poems = vec![p("a"), p("b"), p("c")];
        let docs = chunk(&poems, 30);
        assert_eq!(
            docs,
            vec![
                format!("a\n{0}\n\nb\n{0}", "x".repeat(10)),
                format!("c\n{}", "x".repeat(10))
            ]
        );
        assert_eq!(chunk(&poems, 1).len(), 3);
    }
}
