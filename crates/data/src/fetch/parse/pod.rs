//! The Perl FAQ (perlfaq1-9) in POD. Each `=head2` is a question and the paragraphs up to the
//! next heading are its answer. Formatting codes (`C<...>`, `L<...>`, `E<...>`, with the
//! `C<< ... >>` form) become plain text, verbatim (indented) paragraphs are kept as written, and
//! list markup becomes bullets.

use super::QaPair;

/// The question/answer pairs of one perlfaq document, in order.
pub fn faq_pairs(pod: &str) -> Vec<QaPair> {
    let mut pairs = Vec::new();
    let mut question: Option<String> = None;
    let mut answer: Vec<String> = Vec::new();
    let mut bullet: Option<String> = None;
    let mut skipping_until: Option<String> = None;
    let mut flush = |question: &mut Option<String>, answer: &mut Vec<String>| {
        if let Some(q) = question.take() {
            if !answer.is_empty() {
                pairs.push(QaPair {
                    question: q,
                    answer: answer.join("\n\n"),
                });
            }
        }
        answer.clear();
    };
    for para in paragraphs(pod) {
        if let Some(end) = &skipping_until {
            if para.starts_with(end.as_str()) {
                skipping_until = None;
            }
            continue;
        }
        if let Some(cmd) = para.strip_prefix('=') {
            let (name, arg) = cmd.split_once(char::is_whitespace).unwrap_or((cmd, ""));
            let arg = arg.split_whitespace().collect::<Vec<_>>().join(" ");
            match name {
                "head1" => flush(&mut question, &mut answer),
                "head2" => {
                    flush(&mut question, &mut answer);
                    question = Some(prose(&arg));
                }
                "head3" | "head4" => answer.push(prose(&arg)),
                "item" => match arg.as_str() {
                    "" | "*" | "-" => bullet = Some("- ".into()),
                    n if n.trim_end_matches('.').chars().all(|c| c.is_ascii_digit()) => {
                        bullet = Some(format!("{}. ", n.trim_end_matches('.')));
                    }
                    other => answer.push(prose(other)),
                },
                "begin" => {
                    let format = arg.split_whitespace().next().unwrap_or("");
                    skipping_until = Some(format!("=end {format}"));
                }
                _ => {}
            }
            continue;
        }
        if question.is_none() {
            continue;
        }
        if para.starts_with([' ', '\t']) {
            answer.push(para.trim_end().to_string());
        } else {
            let text = prose(&para);
            answer.push(match bullet.take() {
                Some(b) => format!("{b}{text}"),
                None => text,
            });
        }
    }
    flush(&mut question, &mut answer);
    pairs
}

/// An ordinary paragraph or heading as one line of plain text. Spaces are collapsed after the
/// codes are rendered, since a dropped index entry (`X<...>`) leaves its spaces behind.
fn prose(s: &str) -> String {
    inline(s).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Paragraphs: runs of lines separated by lines that are empty or only whitespace.
fn paragraphs(pod: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in pod.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(current.join("\n"));
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        out.push(current.join("\n"));
    }
    out
}

/// Renders POD formatting codes as plain text.
pub fn inline(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut pos = 0;
    sequence(&chars, &mut pos, None)
}

/// Reads text up to the end of the current code: one `>` for `X<...>`, or whitespace then `n`
/// `>` for `X<< ... >>` (`close = Some(n)`); to the end of input at top level.
fn sequence(chars: &[char], pos: &mut usize, close: Option<usize>) -> String {
    let mut out = String::new();
    while *pos < chars.len() {
        let c = chars[*pos];
        match close {
            Some(1) if c == '>' => {
                *pos += 1;
                return out;
            }
            Some(n) if n > 1 && c.is_whitespace() && closes(chars, *pos, n) => {
                while chars.get(*pos).is_some_and(|c| c.is_whitespace()) {
                    *pos += 1;
                }
                *pos += n;
                return out;
            }
            _ => {}
        }
        if c.is_ascii_uppercase() && chars.get(*pos + 1) == Some(&'<') {
            let mut n = 0;
            while chars.get(*pos + 1 + n) == Some(&'<') {
                n += 1;
            }
            let multi = n > 1 && chars.get(*pos + 1 + n).is_some_and(|c| c.is_whitespace());
            let (n, skip) = if multi { (n, 1 + n) } else { (1, 2) };
            *pos += skip;
            if multi {
                while chars.get(*pos).is_some_and(|c| c.is_whitespace()) {
                    *pos += 1;
                }
            }
            let content = sequence(chars, pos, Some(n));
            out.push_str(&render(c, &content));
            continue;
        }
        out.push(c);
        *pos += 1;
    }
    out
}

/// Whether whitespace at `pos` is followed by `n` closing brackets.
fn closes(chars: &[char], pos: usize, n: usize) -> bool {
    let mut i = pos;
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    (0..n).all(|k| chars.get(i + k) == Some(&'>'))
}

fn render(code: char, content: &str) -> String {
    match code {
        'X' | 'Z' => String::new(),
        'E' => escape(content),
        'L' => link(content),
        _ => content.to_string(),
    }
}

fn escape(name: &str) -> String {
    let c = match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "verbar" => Some('|'),
        "sol" => Some('/'),
        "quot" => Some('"'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        n => {
            let code = if let Some(hex) = n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
                u32::from_str_radix(hex, 16).ok()
            } else if n.len() > 1 && n.starts_with('0') {
                u32::from_str_radix(&n[1..], 8).ok()
            } else {
                n.parse().ok()
            };
            code.and_then(char::from_u32)
        }
    };
    c.map_or_else(|| name.to_string(), String::from)
}

/// `L<text|target>` shows the text; `L<page/"section">` reads `"section" in page`; URLs and
/// page names show as they are.
fn link(content: &str) -> String {
    if let Some((text, _)) = content.split_once('|') {
        return text.to_string();
    }
    if content.contains("://") {
        return content.to_string();
    }
    match content.split_once('/') {
        Some((page, section)) => {
            let section = section.trim_matches('"');
            if page.is_empty() {
                format!("\"{section}\"")
            } else {
                format!("\"{section}\" in {page}")
            }
        }
        None => content.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_codes() {
        assert_eq!(
            inline("use C<printf> or I<B<sprintf>>"),
            "use printf or sprintf"
        );
        assert_eq!(inline("C<< $a->{x} >> and C<<< <=> >>>"), "$a->{x} and <=>");
        assert_eq!(
            inline("a E<lt>b E<gt> E<0x41>E<66>X<index entry>"),
            "a <b > AB"
        );
        assert_eq!(
            inline(
                "see L<perlop/\"Floating-point Arithmetic\">, L<the docs|perlfunc> and L<perlvar>"
            ),
            "see \"Floating-point Arithmetic\" in perlop, the docs and perlvar"
        );
        assert_eq!(inline("1 > 0 and x < y"), "1 > 0 and x < y");
    }

    #[test]
    fn head2_questions_with_answers() {
        let pod = "=head1 NAME\n\nperlfaq4 - Data Manipulation\n\n=head1 Data: Numbers\n\n\
            =head2 Why is int() broken? X<int>\n\nYour C<int()> is most probably\nworking just fine.\n\n    \
            print int(0.6/0.2-2), \"\\n\";\n\n=over 4\n\n=item *\n\nfirst point\n\n=item Named\n\n\
            described\n\n=back\n\n=begin html\n\n<p>skip</p>\n\n=end html\n\n=head2 Empty?\n\n\
            =head1 AUTHOR\n\nsomeone\n\n=cut\n";
        let pairs = faq_pairs(pod);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].question, "Why is int() broken?");
        assert_eq!(
            pairs[0].answer,
            "Your int() is most probably working just fine.\n\n    print int(0.6/0.2-2), \"\\n\";\
             \n\n- first point\n\nNamed\n\ndescribed"
        );
    }
}
