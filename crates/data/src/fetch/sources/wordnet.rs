//! WordNet glosses from `wordnet-base`, one synset per document: nouns, verbs, adjectives,
//! adverbs in that order.

use super::{file_name, member_data, require, Ctx, Extracted, Sink};
use crate::fetch::archive::deb_members;
use crate::fetch::download::apt_download;
use crate::fetch::error::FetchError;
use crate::fetch::output::Doc;
use crate::fetch::parse::wordnet::synsets;

const PACKAGE: &str = "wordnet-base";
const COPYRIGHT: &str = "usr/share/doc/wordnet-base/copyright";
const DATA: [&str; 4] = [
    "usr/share/wordnet/data.noun",
    "usr/share/wordnet/data.verb",
    "usr/share/wordnet/data.adj",
    "usr/share/wordnet/data.adv",
];

pub fn extract(ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    let deb = apt_download(ctx.clients, ctx.cache, PACKAGE)?;
    let members = deb_members(ctx.clients, &deb, |p| DATA.contains(&p) || p == COPYRIGHT)?;
    let mut total = 0;
    for file in DATA {
        let m = members
            .iter()
            .find(|m| m.path == file)
            .ok_or_else(|| FetchError::format(PACKAGE, format!("no {file}")))?;
        let entries = synsets(m.text(PACKAGE)?)
            .map_err(|e| FetchError::format(PACKAGE, format!("{file}: {e}")))?;
        total += entries.len();
        for (word, text) in entries {
            sink(Doc::new(word, text))?;
        }
    }
    require(total, PACKAGE, "synsets")?;
    Ok(Extracted {
        artifact: file_name(&deb),
        notice: member_data(&members, COPYRIGHT),
    })
}
