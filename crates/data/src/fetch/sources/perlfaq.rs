//! The Perl FAQ (perlfaq1 to perlfaq9 from `perl-doc`) as question/answer pairs.

use super::{file_name, member_data, require, Ctx, Extracted, Sink};
use crate::fetch::archive::deb_members;
use crate::fetch::download::apt_download;
use crate::fetch::error::FetchError;
use crate::fetch::output::Doc;
use crate::fetch::parse::pod::faq_pairs;

const PACKAGE: &str = "perl-doc";
const COPYRIGHT: &str = "usr/share/doc/perl-doc/copyright";

/// `usr/share/perl/<version>/pod/perlfaqN.pod` for N in 1..=9; the index page perlfaq.pod has
/// no questions of its own.
fn is_faq(path: &str) -> bool {
    let Some(name) = path.rsplit('/').next() else {
        return false;
    };
    path.contains("/pod/")
        && name
            .strip_prefix("perlfaq")
            .and_then(|n| n.strip_suffix(".pod"))
            .is_some_and(|n| n.len() == 1 && n.chars().all(|c| c.is_ascii_digit()))
}

pub fn extract(ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    let deb = apt_download(ctx.clients, ctx.cache, PACKAGE)?;
    let members = deb_members(ctx.clients, &deb, |p| is_faq(p) || p == COPYRIGHT)?;
    let mut pairs = 0;
    for m in members.iter().filter(|m| is_faq(&m.path)) {
        let page = m
            .path
            .rsplit('/')
            .next()
            .unwrap_or(&m.path)
            .trim_end_matches(".pod");
        for qa in faq_pairs(m.text(PACKAGE)?) {
            sink(Doc::qa(page, qa.question, qa.answer))?;
            pairs += 1;
        }
    }
    require(pairs, PACKAGE, "perlfaq questions")?;
    Ok(Extracted {
        artifact: file_name(&deb),
        notice: member_data(&members, COPYRIGHT),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn faq_files() {
        assert!(super::is_faq("usr/share/perl/5.36.0/pod/perlfaq4.pod"));
        assert!(!super::is_faq("usr/share/perl/5.36.0/pod/perlfaq.pod"));
        assert!(!super::is_faq("usr/share/man/man1/perlfaq4.1.gz"));
    }
}
