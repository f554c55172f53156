//! The Python documentation's reStructuredText sources (`_sources/**/*.rst.txt`). Pages are
//! turned into readable text: heading underlines dropped, link targets and layout-only directives
//! removed, code directives reduced to their indented code, and roles, literals and links made
//! plain. The FAQ pages are also split into question/answer pairs: every section whose heading
//! asks a question.

use super::QaPair;

/// A heading found in a page: the line range it occupies and its title.
struct Heading {
    first_line: usize,
    end_line: usize,
    title: String,
}

/// The question/answer pairs of one FAQ page: sections whose heading contains a `?`, each
/// answered by the text up to the next heading.
pub fn faq_pairs(rst: &str) -> Vec<QaPair> {
    let lines: Vec<&str> = rst.lines().collect();
    let headings = headings(&lines);
    let mut pairs = Vec::new();
    for (i, h) in headings.iter().enumerate() {
        if !h.title.contains('?') {
            continue;
        }
        let end = headings
            .get(i + 1)
            .map_or(lines.len(), |next| next.first_line);
        let answer = to_text(&lines[h.end_line..end].join("\n"));
        if !answer.is_empty() {
            pairs.push(QaPair {
                question: inline(&h.title),
                answer,
            });
        }
    }
    pairs
}

/// A page's title (its first heading) and readable text.
pub fn page(rst: &str) -> (Option<String>, String) {
    let lines: Vec<&str> = rst.lines().collect();
    let title = headings(&lines).first().map(|h| inline(&h.title));
    (title, to_text(rst))
}

fn is_adornment(line: &str) -> bool {
    let mut chars = line.chars();
    match chars.next() {
        Some(c) if "=-~^\"'`#*+".contains(c) => line.len() >= 3 && chars.all(|d| d == c),
        _ => false,
    }
}

fn headings(lines: &[&str]) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let next = lines.get(i + 1).copied().unwrap_or("");
        let after = lines.get(i + 2).copied().unwrap_or("");
        if is_adornment(line) && !next.trim().is_empty() && after == line {
            out.push(Heading {
                first_line: i,
                end_line: i + 3,
                title: next.trim().to_string(),
            });
            i += 3;
        } else if !line.trim().is_empty()
            && !line.starts_with([' ', '\t'])
            && is_adornment(next)
            && !is_adornment(line)
        {
            out.push(Heading {
                first_line: i,
                end_line: i + 2,
                title: line.trim().to_string(),
            });
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

/// Directives whose whole block is layout or build machinery, not text.
const DROPPED_BLOCKS: &[&str] = &[
    "contents",
    "highlight",
    "index",
    "only",
    "testsetup",
    "testcleanup",
    "toctree",
    "raw",
    "include",
    "sectionauthor",
    "moduleauthor",
    "currentmodule",
    "module",
    "tabularcolumns",
    "image",
    "figure",
    "literalinclude",
    "productionlist",
];

/// Readable text of a reST fragment.
pub fn to_text(rst: &str) -> String {
    let lines: Vec<&str> = rst.lines().collect();
    let mut out: Vec<String> = Vec::new();
    // Page metadata (":tocdepth: 2", ":orphan:") above the first text is for the builder.
    let mut i = lines
        .iter()
        .position(|l| !l.trim().is_empty() && !is_field(l))
        .unwrap_or(lines.len());
    while i < lines.len() {
        let line = lines[i];
        let next = lines.get(i + 1).copied().unwrap_or("");
        if is_adornment(line.trim_end()) && !line.starts_with(' ') {
            i += 1;
            continue;
        }
        if !line.trim().is_empty() && !line.starts_with(' ') && is_adornment(next) {
            out.push(inline(line.trim()));
            i += 2;
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if let Some(directive) = trimmed.strip_prefix(".. ") {
            // Link targets and comments carry no text.
            let Some((name, arg)) = directive.split_once("::") else {
                i = block_end(&lines, i, indent);
                continue;
            };
            let name = name.trim();
            let arg = arg.trim();
            if DROPPED_BLOCKS.contains(&name) || name.contains(' ') {
                i = block_end(&lines, i, indent);
                continue;
            }
            let label = match name {
                "note" => Some("Note:".to_string()),
                "seealso" => Some("See also:".to_string()),
                "warning" => Some("Warning:".to_string()),
                "versionadded" => Some(format!("New in version {arg}.")),
                "versionchanged" => Some(format!("Changed in version {arg}:")),
                "deprecated" => Some(format!("Deprecated since version {arg}:")),
                "function" | "method" | "class" | "data" | "attribute" | "exception"
                | "decorator" | "classmethod" | "staticmethod" | "describe" | "option"
                | "envvar" | "cmdoption" | "opcode" | "c:function" | "c:type" | "c:macro"
                | "c:member" | "c:var" => Some(arg.to_string()),
                _ => None,
            };
            if let Some(label) = label {
                out.push(format!("{}{}", " ".repeat(indent), inline(&label)));
            }
            // Skip the directive's option lines (`:name: value`) right below it.
            i += 1;
            while lines
                .get(i)
                .is_some_and(|l| l.trim_start().starts_with(':') && indent_of(l) > indent)
            {
                i += 1;
            }
            continue;
        }
        if trimmed == "::" {
            i += 1;
            continue;
        }
        let mut text = inline(line);
        // A paragraph ending in "::" introduces a literal block; one colon reads right.
        if text.ends_with("::") {
            text.pop();
        }
        out.push(text);
        i += 1;
    }
    super::text::tidy_lines(&out.join("\n"))
}

/// A field-list line such as ":tocdepth: 2" (but not a role such as ":ref:`x`").
fn is_field(line: &str) -> bool {
    line.strip_prefix(':')
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(name, value)| {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && (value.is_empty() || value.starts_with(' '))
        })
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The line after a directive's block: everything below it that is blank or indented deeper.
fn block_end(lines: &[&str], start: usize, indent: usize) -> usize {
    let mut i = start + 1;
    while i < lines.len() {
        let l = lines[i];
        if !l.trim().is_empty() && indent_of(l) <= indent {
            break;
        }
        i += 1;
    }
    i
}

/// Roles that name prose (a section, a glossary term, a key) rather than code.
const PROSE_ROLES: &[&str] = &[
    "ref",
    "term",
    "doc",
    "kbd",
    "menuselection",
    "guilabel",
    "newsgroup",
    "source",
    "dfn",
    "abbr",
    "manpage",
    "program",
    "file",
    "mailheader",
    "title",
    "sup",
    "sub",
    "emphasis",
    "strong",
];

/// Renders inline markup: ``literal`` and code roles as `literal`, prose roles as their text,
/// :pep:/:rfc: as "PEP 8", and `text <url>`_ links as "text (url)".
pub fn inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("``") {
            if let Some(end) = after.find("``") {
                out.push('`');
                out.push_str(&after[..end]);
                out.push('`');
                rest = &after[end + 2..];
                continue;
            }
        }
        if rest.starts_with(':') {
            if let Some((role, content, tail)) = role(rest) {
                out.push_str(&render_role(role, content));
                rest = tail;
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix('`') {
            if let Some(end) = after.find('`') {
                let content = &after[..end];
                let tail = &after[end + 1..];
                let underscores = tail.len() - tail.trim_start_matches('_').len();
                if (1..=2).contains(&underscores) {
                    out.push_str(&link_text(content));
                    rest = &tail[underscores..];
                    continue;
                }
                out.push_str(content);
                rest = tail;
                continue;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// Splits ":role:`content`rest" (roles may contain one colon, as in `c:func`).
fn role(s: &str) -> Option<(&str, &str, &str)> {
    let body = s.strip_prefix(':')?;
    let tick = body.find(":`")?;
    let name = &body[..tick];
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-' || c == '_');
    if !valid {
        return None;
    }
    let after = &body[tick + 2..];
    let end = after.find('`')?;
    Some((name, &after[..end], &after[end + 1..]))
}

fn render_role(role: &str, content: &str) -> String {
    let shown = match content.rsplit_once('<') {
        Some((text, target)) if target.ends_with('>') && !text.trim().is_empty() => {
            text.trim().to_string()
        }
        _ => {
            let c = content.trim_start_matches('!');
            match c.strip_prefix('~') {
                Some(path) => path.rsplit('.').next().unwrap_or(path).to_string(),
                None => c.to_string(),
            }
        }
    };
    match role {
        "pep" => format!("PEP {shown}"),
        "rfc" => format!("RFC {shown}"),
        r if PROSE_ROLES.contains(&r) => shown,
        _ => format!("`{shown}`"),
    }
}

/// `text <url>` shows as "text (url)"; a bare name shows as itself.
fn link_text(content: &str) -> String {
    match content.rsplit_once('<') {
        Some((text, url)) if url.ends_with('>') && !text.trim().is_empty() => {
            format!("{} ({})", text.trim(), url.trim_end_matches('>'))
        }
        Some((_, url)) if url.ends_with('>') => url.trim_end_matches('>').to_string(),
        _ => content.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAQ: &str = ":tocdepth: 2\n\n==================\nGeneral Python FAQ\n==================\n\n\
        .. only:: html\n\n   .. contents::\n\n\nGeneral Information\n===================\n\n\
        What is Python?\n---------------\n\nPython is an interpreted language.  See \
        :ref:`tutorial-index` and\nthe `Beginner's Guide <https://example.org/bg>`_.\n\n\
        .. _why-self:\n\nWhy use ``self``?\n-----------------\n\nUse :func:`len` or \
        :meth:`~str.join`, see :pep:`8`. For example::\n\n   >>> len('ab')\n   2\n\n\
        .. code-block:: python\n\n   x = 1\n\n.. versionchanged:: 3.8\n   Now faster.\n\n\
        How do you remove multiple items from a list\n--------------------------------------------\n\n\
        Not a question.\n";

    #[test]
    fn faq_questions_and_clean_answers() {
        let pairs = faq_pairs(FAQ);
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].question, "What is Python?");
        assert_eq!(
            pairs[0].answer,
            "Python is an interpreted language.  See tutorial-index and\nthe Beginner's Guide \
             (https://example.org/bg)."
        );
        assert_eq!(pairs[1].question, "Why use `self`?");
        assert_eq!(
            pairs[1].answer,
            "Use `len` or `join`, see PEP 8. For example:\n\n   >>> len('ab')\n   2\n\n   x = 1\n\n\
             Changed in version 3.8:\n   Now faster."
        );
    }

    #[test]
    fn page_title_and_text() {
        let (title, text) = page(FAQ);
        assert_eq!(title.as_deref(), Some("General Python FAQ"));
        assert!(
            text.starts_with("General Python FAQ\n\nGeneral Information\n\n"),
            "{text}"
        );
        assert!(!text.contains("contents::"));
        assert!(!text.contains("====="));
    }
}
