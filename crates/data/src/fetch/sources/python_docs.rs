//! The Python documentation's sources from `python3.11-doc`: the FAQ as question/answer pairs
//! and every other page as one document. Both sources read the same package, downloaded once.

use super::{file_name, member_data, require, Ctx, Extracted, Sink};
use crate::fetch::archive::{deb_members, Member};
use crate::fetch::download::apt_download;
use crate::fetch::error::FetchError;
use crate::fetch::output::Doc;
use crate::fetch::parse::rst::{faq_pairs, page};

const PACKAGE: &str = "python3.11-doc";
const SOURCES: &str = "usr/share/doc/python3.11/html/_sources/";
const COPYRIGHT: &str = "usr/share/doc/python3.11-doc/copyright";

fn members(ctx: &Ctx<'_>) -> Result<(Vec<Member>, String), FetchError> {
    let deb = apt_download(ctx.clients, ctx.cache, PACKAGE)?;
    let members = deb_members(ctx.clients, &deb, |p| {
        (p.starts_with(SOURCES) && p.ends_with(".txt")) || p == COPYRIGHT
    })?;
    Ok((members, file_name(&deb)))
}

fn is_faq(path: &str) -> bool {
    path.strip_prefix(SOURCES)
        .is_some_and(|p| p.starts_with("faq/"))
}

pub fn extract_faq(ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    let (members, artifact) = members(ctx)?;
    let mut pairs = 0;
    for m in members.iter().filter(|m| is_faq(&m.path)) {
        let page = m
            .path
            .trim_start_matches(SOURCES)
            .trim_end_matches(".rst.txt");
        for qa in faq_pairs(m.text(PACKAGE)?) {
            sink(Doc::qa(format!("Python {page}"), qa.question, qa.answer))?;
            pairs += 1;
        }
    }
    require(pairs, PACKAGE, "FAQ questions")?;
    Ok(Extracted {
        artifact,
        notice: member_data(&members, COPYRIGHT),
    })
}

pub fn extract_pages(ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    let (members, artifact) = members(ctx)?;
    let mut pages = 0;
    for m in members
        .iter()
        .filter(|m| m.path.starts_with(SOURCES) && !is_faq(&m.path))
    {
        let (title, text) = page(m.text(PACKAGE)?);
        let rel = m.path.trim_start_matches(SOURCES).trim_end_matches(".txt");
        sink(Doc::new(title.unwrap_or_else(|| rel.to_string()), text))?;
        pages += 1;
    }
    require(pages, PACKAGE, "documentation pages")?;
    Ok(Extracted {
        artifact,
        notice: member_data(&members, COPYRIGHT),
    })
}
