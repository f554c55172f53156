//! The World English Bible from the `sword-text-web` SWORD module, exported with `mod2imp`
//! (from libsword-utils, fetched and unpacked into the cache when the machine lacks it) and
//! stripped of OSIS markup; one document per book.

use super::{file_name, member_data, require, Ctx, Extracted, Sink};
use crate::fetch::archive::{deb_members, write_members};
use crate::fetch::client::Client;
use crate::fetch::download::apt_download;
use crate::fetch::error::FetchError;
use crate::fetch::output::Doc;
use crate::fetch::packaged_tool::packaged_command;
use crate::fetch::parse::osis::books;

const PACKAGE: &str = "sword-text-web";
const COPYRIGHT: &str = "usr/share/doc/sword-text-web/copyright";
const SWORD_ROOT: &str = "usr/share/sword/";
/// The package that ships mod2imp.
const TOOLS: &str = "libsword-utils";

pub fn extract(ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    // The exporter first: without it the module is of no use, so it is not downloaded.
    let mut cmd = packaged_command(ctx.clients, ctx.cache, Client::Mod2imp, TOOLS)?;
    let deb = apt_download(ctx.clients, ctx.cache, PACKAGE)?;
    let members = deb_members(ctx.clients, &deb, |p| {
        p.starts_with(SWORD_ROOT) || p == COPYRIGHT
    })?;
    // mod2imp reads a module library from disk: mods.d/*.conf plus the module files.
    let library = ctx.cache.join("sword");
    if library.exists() {
        std::fs::remove_dir_all(&library).map_err(|e| FetchError::file(&library, e))?;
    }
    let module_files: Vec<_> = members
        .iter()
        .filter_map(|m| {
            m.path
                .strip_prefix(SWORD_ROOT)
                .map(|rel| crate::fetch::archive::Member {
                    path: rel.to_string(),
                    data: m.data.clone(),
                })
        })
        .collect();
    write_members(&module_files, &library)?;
    let module = module_files
        .iter()
        .filter(|m| m.path.starts_with("mods.d/") && m.path.ends_with(".conf"))
        .find_map(|m| module_name(&String::from_utf8_lossy(&m.data)))
        .ok_or_else(|| FetchError::format(PACKAGE, "no SWORD module configuration in mods.d/"))?;

    cmd.arg(&module)
        .env("SWORD_PATH", &library)
        // A user's own ~/.sword must not shadow the module just unpacked.
        .env("HOME", &library);
    let imp = ctx.clients.output(cmd)?;
    let imp = String::from_utf8(imp)
        .map_err(|e| FetchError::format(PACKAGE, format!("mod2imp output is not UTF-8: {e}")))?;
    let books = books(&imp);
    require(books.len(), PACKAGE, "books")?;
    for (name, text) in books {
        sink(Doc::new(name, text))?;
    }
    Ok(Extracted {
        artifact: file_name(&deb),
        notice: member_data(&members, COPYRIGHT),
    })
}

/// The module name: the `[Name]` section header of its configuration file.
fn module_name(conf: &str) -> Option<String> {
    conf.lines()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']') && l.len() > 2)
        .map(|l| l[1..l.len() - 1].to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn module_name_from_conf() {
        let conf = "## Sword module configuration file\n\n[engWEB2015eb]\nModDrv=zText\n";
        assert_eq!(super::module_name(conf).as_deref(), Some("engWEB2015eb"));
        assert_eq!(super::module_name("ModDrv=zText"), None);
    }
}
