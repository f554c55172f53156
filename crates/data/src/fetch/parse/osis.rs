//! The World English Bible as `mod2imp` exports a SWORD module: `$$$Book C:V` keys, each
//! followed by the verse in OSIS XML. Footnotes (`<note>`), editorial section headings
//! (`<title>` without `canonical="true"`) and all tags are removed; canonical titles (the psalm
//! superscriptions, which are scripture) are kept on their own line. Paragraph, poetry-line and
//! chapter milestones become line breaks, so a book reads as running text.
//!
//! Verse fragments are not well-formed XML on their own (paragraphs open in one verse and close
//! in another as `sID`/`eID` milestones), so this is a tag scanner rather than an XML parser.

use super::text::{decode_entities, tidy_prose};

/// One `$$$` entry: its key and its body.
pub struct ImpEntry<'a> {
    pub key: &'a str,
    pub body: &'a str,
}

/// Splits `mod2imp` output into entries.
pub fn imp_entries(imp: &str) -> Vec<ImpEntry<'_>> {
    let mut out = Vec::new();
    let mut rest = imp;
    while let Some(start) = rest.find("$$$") {
        let after = &rest[start + 3..];
        let key_end = after.find('\n').unwrap_or(after.len());
        let key = after[..key_end].trim();
        let body_start = (key_end + 1).min(after.len());
        let body_len = after[body_start..]
            .find("\n$$$")
            .map(|n| n + 1)
            .unwrap_or(after.len() - body_start);
        out.push(ImpEntry {
            key,
            body: &after[body_start..body_start + body_len],
        });
        rest = &after[body_start + body_len..];
    }
    out
}

/// Splits a verse key "I Samuel 3:10" into book, chapter and verse; headings such as
/// "[ Module Heading ]" give `None`.
pub fn parse_key(key: &str) -> Option<(&str, u32, u32)> {
    let (book, cv) = key.rsplit_once(' ')?;
    let (c, v) = cv.split_once(':')?;
    Some((book, c.parse().ok()?, v.parse().ok()?))
}

/// Books in module order, each as (name, text). Book introductions (chapter 0) are left out:
/// they are the edition's front matter, not the text.
pub fn books(imp: &str) -> Vec<(String, String)> {
    let mut books: Vec<(String, String)> = Vec::new();
    for entry in imp_entries(imp) {
        let Some((book, chapter, _verse)) = parse_key(entry.key) else {
            continue;
        };
        if chapter == 0 {
            continue;
        }
        if books.last().is_none_or(|(name, _)| name != book) {
            books.push((book.to_string(), String::new()));
        }
        if let Some((_, text)) = books.last_mut() {
            text.push_str(&verse_text(entry.body));
            text.push(' ');
        }
    }
    books
        .into_iter()
        .map(|(name, raw)| (name, layout(&resolve_gaps(&raw))))
        .filter(|(_, text)| !text.is_empty())
        .collect()
}

/// Marks where a note was cut out; resolved to a space or nothing once the neighbours are known.
const GAP: char = '\u{1}';

/// A chapter start, on a line of its own; becomes the blank line between chapters.
const CHAPTER_BREAK: &str = "\n\u{2}\n";

/// Final layout: one line per paragraph or verse line, a blank line between chapters. Several
/// structural breaks in a row (a title closing, then a line group and a line opening) are one.
fn layout(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chapter_pending = false;
    for line in tidy_prose(raw).lines() {
        if line == "\u{2}" {
            chapter_pending = true;
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str(if chapter_pending { "\n\n" } else { "\n" });
        }
        chapter_pending = false;
        out.push_str(line);
    }
    out
}

/// The text of one verse fragment, with line breaks for structure and [`GAP`] where notes were.
pub fn verse_text(osis: &str) -> String {
    let mut out = String::with_capacity(osis.len());
    // Depth inside an element whose content is dropped (note, editorial title).
    let mut skip_depth = 0usize;
    let mut rest = osis;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if skip_depth == 0 {
                push_text(&mut out, rest);
            }
            break;
        };
        if skip_depth == 0 {
            push_text(&mut out, &rest[..lt]);
        }
        let Some(gt) = rest[lt..].find('>') else {
            // An unterminated tag: keep it as text rather than lose the rest of the verse.
            if skip_depth == 0 {
                out.push_str(&rest[lt..]);
            }
            break;
        };
        let tag = Tag::parse(&rest[lt + 1..lt + gt]);
        rest = &rest[lt + gt + 1..];
        if skip_depth > 0 {
            if !tag.self_closing {
                if tag.closing {
                    skip_depth -= 1;
                } else {
                    skip_depth += 1;
                }
            }
            continue;
        }
        let drops_content = match tag.name {
            "note" => true,
            "title" => !tag.attr_is("canonical", "true"),
            _ => false,
        };
        if drops_content && !tag.closing && !tag.self_closing {
            skip_depth = 1;
            if tag.name == "note" {
                out.push(GAP);
            }
            continue;
        }
        out.push_str(structure(&tag));
    }
    out
}

/// Appends character data; line breaks in the source are layout, not text, so they count as
/// spaces (structure comes from the tags).
fn push_text(out: &mut String, raw: &str) {
    out.extend(
        decode_entities(raw)
            .chars()
            .map(|c| if c == '\n' { ' ' } else { c }),
    );
}

/// The line breaks a structural tag stands for.
fn structure(tag: &Tag<'_>) -> &'static str {
    let starts = !tag.closing && (!tag.self_closing || tag.has_attr("sID"));
    match tag.name {
        "chapter" if starts => CHAPTER_BREAK,
        "div" if starts && !tag.attr_is("type", "x-milestone") => "\n",
        "p" | "lg" | "speaker" | "title" | "item" | "list" => "\n",
        "l" if starts => "\n",
        "lb" => "\n",
        _ => "",
    }
}

/// Resolves note gaps: nothing next to whitespace or punctuation, else one space (a note between
/// two words, as in `God<note/>created`, must not glue them together).
fn resolve_gaps(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        if c != GAP {
            out.push(c);
            continue;
        }
        let prev = out.chars().last();
        let next = chars[i + 1..].iter().copied().find(|&n| n != GAP);
        let opening = |c: char| c.is_whitespace() || "([{“‘\"'".contains(c);
        let closing = |c: char| c.is_whitespace() || ",.;:!?)]}”’\"'—…".contains(c);
        if prev.is_some_and(|p| !opening(p)) && next.is_some_and(|n| !closing(n)) {
            out.push(' ');
        }
    }
    out
}

/// The parts of a tag that matter here.
struct Tag<'a> {
    name: &'a str,
    attrs: &'a str,
    closing: bool,
    self_closing: bool,
}

impl<'a> Tag<'a> {
    fn parse(inner: &'a str) -> Self {
        let closing = inner.starts_with('/');
        let self_closing = inner.ends_with('/');
        let inner = inner.trim_start_matches('/').trim_end_matches('/').trim();
        let name_end = inner.find(char::is_whitespace).unwrap_or(inner.len());
        Tag {
            name: &inner[..name_end],
            attrs: &inner[name_end..],
            closing,
            self_closing,
        }
    }

    fn attr(&self, name: &str) -> Option<&'a str> {
        let mut rest = self.attrs;
        while let Some(eq) = rest.find('=') {
            let key = rest[..eq].trim();
            let after = rest[eq + 1..].trim_start();
            let quote = after.chars().next()?;
            if quote != '"' && quote != '\'' {
                return None;
            }
            let value_end = after[1..].find(quote)? + 1;
            if key == name {
                return Some(&after[1..value_end]);
            }
            rest = &after[value_end + 1..];
        }
        None
    }

    fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    fn attr_is(&self, name: &str, value: &str) -> bool {
        self.attr(name) == Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_titles_and_tags_are_removed() {
        let imp = "$$$[ Module Heading ]\n\n$$$Genesis 0:0\n<title>Preface</title> front matter\n\
            $$$Genesis 1:0\n<chapter n=\"1\" sID=\"Gen.1\"/><title type=\"main\">The Creation</title>\n\
            $$$Genesis 1:1\n<div sID=\"p1\" type=\"x-p\"/><w lemma=\"strong:H0430\">In</w> the \
            beginning, <w>God</w><note placement=\"foot\"><reference>1:1 </reference>The Hebrew \
            word is <rdg>Elohim</rdg>.</note><w>created</w> the heavens &amp; the earth.\n\
            $$$Genesis 1:2\nThe earth was empty.<note>Or, formless</note> God’s Spirit moved.\n\
            $$$Psalms 3:1\n<title canonical=\"true\" type=\"psalm\">A Psalm by David.</title> \
            <lg sID=\"g1\"/><l sID=\"g2\"/>Yahweh, how many!<l eID=\"g2\"/> <l sID=\"g3\"/>Many \
            rise up.<l eID=\"g3\"/>\n";
        let books = books(imp);
        assert_eq!(books.len(), 2);
        assert_eq!(books[0].0, "Genesis");
        assert_eq!(
            books[0].1,
            "In the beginning, God created the heavens & the earth. The earth was empty. God’s \
             Spirit moved."
        );
        assert_eq!(books[1].0, "Psalms");
        assert_eq!(
            books[1].1,
            "A Psalm by David.\nYahweh, how many!\nMany rise up."
        );
    }

    #[test]
    fn keys() {
        assert_eq!(parse_key("I Samuel 3:10"), Some(("I Samuel", 3, 10)));
        assert_eq!(parse_key("[ Testament 1 Heading ]"), None);
    }
}
