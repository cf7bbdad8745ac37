//! `file://` upstream: a directory in the GOPROXY file layout (the layout of
//! `$GOMODCACHE/cache/download`), checksum-database answers included
//! (`sumdb/<name>/lookup/...`, `sumdb/<name>/tile/...`, as the go command
//! caches them there). Reads only below its root.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::PathBuf;

use super::{Fetch, FetchError, Fetcher, Kind};

pub struct FileFetcher {
    root: PathBuf,
    name: String,
}

impl FileFetcher {
    pub fn new(root: PathBuf) -> FileFetcher {
        let name = format!("file://{}", root.display());
        FileFetcher { root, name }
    }
}

/// How a `file://` upstream is named in what clients read.
const CLIENT_NAME: &str = "file://";

impl Fetcher for FileFetcher {
    fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
        // protocol_path is built from validated, escaped elements: no `..`,
        // no leading `/`, so the join stays below the root.
        let path = self.root.join(req.protocol_path()?);
        if req.kind == Kind::SumSupported {
            // A tree "supports" a checksum database when it holds its
            // directory, as `$GOMODCACHE/cache/download/sumdb/<name>` does
            // once the go command has verified anything against it. The
            // directory has no `supported` file to read.
            return match path.parent().map(|p| p.is_dir()) {
                Some(true) => Ok(Vec::new()),
                _ => Err(FetchError::NotFound { gone: false, message: format!("not found: the file:// upstream has no {}", req.module) }),
            };
        }
        let not_found = || FetchError::NotFound { gone: false, message: format!("not found: {}", req.protocol_path().unwrap_or_default()) };
        // Clients are told "a file:// upstream", never its directory (the
        // log names it: the chain logs every failure with `name()`).
        let fail = |e: std::io::Error| FetchError::Unavailable { upstream: CLIENT_NAME.into(), message: e.to_string() };
        let file = match File::open(&path) {
            Ok(f) => f,
            // A name too long for the filesystem names no file that could exist.
            Err(e)
                if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) || e.raw_os_error() == Some(libc::ENAMETOOLONG) =>
            {
                return Err(not_found())
            }
            Err(e) => return Err(fail(e)),
        };
        let meta = file.metadata().map_err(fail)?;
        if !meta.is_file() {
            return Err(not_found());
        }
        let cap = req.kind.size_cap();
        if meta.len() > cap {
            return Err(FetchError::TooLarge { upstream: CLIENT_NAME.into(), limit: cap });
        }
        let mut body = Vec::with_capacity(meta.len() as usize);
        file.take(cap + 1).read_to_end(&mut body).map_err(fail)?;
        if body.len() as u64 > cap {
            return Err(FetchError::TooLarge { upstream: CLIENT_NAME.into(), limit: cap });
        }
        Ok(body)
    }

    fn name(&self) -> &str {
        &self.name
    }
}
