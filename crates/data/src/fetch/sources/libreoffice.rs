//! The LibreOffice help in simplified Chinese: modern technical prose, one document per page.

use super::{file_name, member_data, require, Ctx, Extracted, Sink};
use crate::fetch::archive::deb_members;
use crate::fetch::download::apt_download;
use crate::fetch::error::FetchError;
use crate::fetch::output::Doc;
use crate::fetch::parse::html::help_page;

const PACKAGE: &str = "libreoffice-help-zh-cn";
const PAGES: &str = "usr/share/libreoffice/help/zh-CN/text/";
const COPYRIGHT: &str = "usr/share/doc/libreoffice-help-zh-cn/copyright";

pub fn extract(ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    let deb = apt_download(ctx.clients, ctx.cache, PACKAGE)?;
    let members = deb_members(ctx.clients, &deb, |p| {
        (p.starts_with(PAGES) && p.ends_with(".html")) || p == COPYRIGHT
    })?;
    let mut pages = 0;
    for m in members.iter().filter(|m| m.path.ends_with(".html")) {
        let Some((title, text)) = help_page(m.text(PACKAGE)?) else {
            continue;
        };
        let title = if title.is_empty() {
            m.path.trim_start_matches(PAGES).to_string()
        } else {
            title
        };
        sink(Doc::new(title, text))?;
        pages += 1;
    }
    require(pages, PACKAGE, "help pages")?;
    Ok(Extracted {
        artifact: file_name(&deb),
        notice: member_data(&members, COPYRIGHT),
    })
}
