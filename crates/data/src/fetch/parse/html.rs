//! Text of the LibreOffice help pages. Each page is a full HTML document whose navigation,
//! index, search box and debug footer surround the help text proper in `<div id="DisplayArea">`;
//! only that part is kept. Block elements become line breaks, `<pre>` keeps its layout, scripts
//! and styles are dropped and character references decoded.

use super::text::decode_entities;

/// The page title and the text of its display area; `None` for a page without one (the
/// no-script stub, for example).
pub fn help_page(html: &str) -> Option<(String, String)> {
    let title = between(html, "<title>", "</title>")
        .map(|t| decode_entities(t).trim().to_string())
        .unwrap_or_default();
    let start = html.find("id=\"DisplayArea\"")?;
    let body = &html[start..];
    let body_start = body.find('>').map(|i| i + 1)?;
    let body = &body[body_start..];
    let end = ["<div id=\"SearchFrame\"", "<footer"]
        .iter()
        .filter_map(|m| body.find(m))
        .min()
        .unwrap_or(body.len());
    let text = html_text(&body[..end]);
    Some((title, text))
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let len = s[start..].find(close)?;
    Some(&s[start..start + len])
}

/// Elements that break the line before and after them.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "td",
    "th",
    "tr",
    "ul",
];

/// Plain text of an HTML fragment.
pub fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut pre_depth = 0usize;
    let mut rest = html;
    while !rest.is_empty() {
        let lt = rest.find('<').unwrap_or(rest.len());
        push_text(&mut out, &decode_entities(&rest[..lt]), pre_depth > 0);
        rest = &rest[lt..];
        if rest.is_empty() {
            break;
        }
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |i| &after[i + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            push_text(&mut out, rest, pre_depth > 0);
            break;
        };
        let inner = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = inner.starts_with('/');
        let name: String = inner
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if !closing && (name == "script" || name == "style") {
            let close = format!("</{name}");
            rest = find_ascii_ci(rest, &close).map_or("", |i| {
                let tail = &rest[i..];
                tail.find('>').map_or("", |j| &tail[j + 1..])
            });
            continue;
        }
        if name == "pre" {
            if closing {
                pre_depth = pre_depth.saturating_sub(1);
            } else {
                pre_depth += 1;
            }
        }
        if BLOCKS.contains(&name.as_str()) {
            newline(&mut out);
        }
    }
    collapse_blank_lines(&out)
}

/// Appends text; outside `<pre>` whitespace runs become one space and a line never starts with
/// one.
fn push_text(out: &mut String, text: &str, pre: bool) {
    if pre {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        if c.is_whitespace() {
            if !out.is_empty() && !out.ends_with([' ', '\n']) {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
}

fn newline(out: &mut String) {
    while out.ends_with(' ') {
        out.pop();
    }
    out.push('\n');
}

/// Trims line ends, keeps at most one blank line in a row, trims the whole.
fn collapse_blank_lines(s: &str) -> String {
    super::text::tidy_lines(s)
}

fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    let h = haystack.as_bytes();
    let n = needle.as_bytes();
    (0..h.len().saturating_sub(n.len()) + 1).find(|&i| {
        h.get(i..i + n.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_area_only() {
        let page = "<html><head><title>启动自动更正</title><script>var x = '<p>';</script></head>\
            <body><nav>目录</nav><div id=\"DisplayArea\" itemprop=\"x\">\n<h1 id=\"h\">启动自动更正</h1>\n\
            <p class=\"paragraph\">使用<a href=\"x.html\">自动更正</a>替换了   双引号 (&quot;)。</p>\
            <!-- comment <p>hidden</p> --><pre>  x = 1\n  y = 2</pre><p>A &lt;b&gt;</p>\
            </div><div id=\"SearchFrame\"></div><footer><p>debug info</p></footer></body></html>";
        let (title, text) = help_page(page).unwrap();
        assert_eq!(title, "启动自动更正");
        assert_eq!(
            text,
            "启动自动更正\n\n使用自动更正替换了 双引号 (\")。\n\n  x = 1\n  y = 2\n\nA <b>"
        );
    }

    #[test]
    fn a_page_without_display_area_is_skipped() {
        assert!(help_page("<html><title>x</title><body>no script</body></html>").is_none());
    }
}
