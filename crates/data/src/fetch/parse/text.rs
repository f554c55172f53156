//! Small text clean-ups shared by the extractors.

/// Decodes the XML/HTML character references that occur in the packages (`&amp;`, `&lt;`,
/// `&nbsp;`, dashes and quotes, numeric ones: all of HTML's named references). Only complete
/// references (ending in `;`) are decoded; anything else is left as written, which keeps stray
/// ampersands in prose intact.
pub fn decode_entities(s: &str) -> String {
    html_escape::decode_html_entities(s).into_owned()
}

/// Removes control characters other than tab and newline (stray bytes in a few source texts),
/// and turns CRLF line ends into LF.
pub fn strip_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.replace("\r\n", "\n")
            .chars()
            .filter(|&c| !c.is_control() || c == '\n' || c == '\t')
            .collect(),
    )
}

/// Collapses runs of spaces and tabs inside each line, trims every line, keeps at most one blank
/// line in a row and drops leading and trailing blank lines. For prose, not for code.
pub fn tidy_prose(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank_run = 0;
    for line in s.lines() {
        let words: Vec<&str> = line
            .split([' ', '\t', '\u{a0}'])
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(&words.join(" "));
    }
    out
}

/// Trims trailing whitespace of every line, keeps at most one blank line in a row and drops
/// leading and trailing blank lines; indentation is kept. For code and preformatted text.
pub fn tidy_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank_run = 0;
    for line in s.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities("a &amp; b &lt;c&gt; &#20013;&#x6587;"),
            "a & b <c> 中文"
        );
        assert_eq!(decode_entities("AT&T; R&D"), "AT&T; R&D");
        assert_eq!(decode_entities("tail &"), "tail &");
        assert_eq!(decode_entities("a&mdash;b &quot;c&quot;"), "a—b \"c\"");
        assert_eq!(
            decode_entities("&lsquo;x&rsquo; &hellip; &nbsp;"),
            "‘x’ … \u{a0}"
        );
        assert_eq!(
            decode_entities("&bogus; &#xZZ; &amp"),
            "&bogus; &#xZZ; &amp"
        );
    }

    #[test]
    fn controls() {
        assert_eq!(
            strip_controls("4 1\u{2} per\r\ncent\tx"),
            "4 1 per\ncent\tx"
        );
        assert!(matches!(
            strip_controls("plain\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn prose_and_lines() {
        assert_eq!(tidy_prose("\n  a   b \n\n\n\n c\t d\n\n"), "a b\n\nc d");
        assert_eq!(
            tidy_lines("\n\n    x = 1   \n\n\n\n    y\n"),
            "    x = 1\n\n    y"
        );
    }
}
