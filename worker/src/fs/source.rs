//! Where a scan reads the tree from, as the root names it: a mounted path, read with the
//! fd-relative calls of [`crate::fs::calls`], or `nfs://SERVER[:PORT]/EXPORT`, read by the
//! user-space NFSv3 client of [`crate::fs::nfs`] with no mount and no privilege.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The tree a root names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Mounted(PathBuf),
    Nfs(NfsExport),
}

/// An export as `nfs://SERVER[:PORT]/EXPORT` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsExport {
    /// A host name or an IP address (IPv6 in brackets).
    pub server: String,
    /// The server's portmapper, asked for the MOUNT and NFS ports; 111 unless given.
    pub portmap_port: u16,
    /// The export's path as the server names it for MOUNT, e.g. `/srv/projects`.
    pub export: Vec<u8>,
}

const NFS_SCHEME: &str = "nfs://";

impl Source {
    /// What `root` names: a URL with the `nfs://` scheme, or else a mounted path.
    pub fn of(root: &std::path::Path) -> Result<Source> {
        let bytes = root.as_os_str().as_encoded_bytes();
        if !bytes.starts_with(NFS_SCHEME.as_bytes()) {
            return Ok(Source::Mounted(root.to_path_buf()));
        }
        let bad = |reason: &str| Error::BadRoot {
            path: root.display().to_string(),
            reason: format!("{reason} (expected nfs://SERVER[:PORT]/EXPORT)"),
        };
        let rest = &bytes[NFS_SCHEME.len()..];
        let slash = rest
            .iter()
            .position(|&b| b == b'/')
            .ok_or_else(|| bad("no export path"))?;
        let (authority, export) = rest.split_at(slash);
        let authority =
            std::str::from_utf8(authority).map_err(|_| bad("a server name that is not UTF-8"))?;
        let (server, port) = match authority.rsplit_once(':') {
            // A bracketed IPv6 address holds colons of its own.
            Some((host, port)) if !port.contains(']') => {
                let port = port
                    .parse()
                    .map_err(|_| bad("a port that is not a number"))?;
                (host, port)
            }
            _ => (authority, 111),
        };
        let server = server.trim_start_matches('[').trim_end_matches(']');
        if server.is_empty() {
            return Err(bad("no server"));
        }
        Ok(Source::Nfs(NfsExport {
            server: server.to_string(),
            portmap_port: port,
            export: export.to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_root_names_a_mount_or_an_export() {
        assert_eq!(
            Source::of(Path::new("/scan/projects")).unwrap(),
            Source::Mounted("/scan/projects".into())
        );
        let nfs = |server: &str, portmap_port, export: &[u8]| {
            Source::Nfs(NfsExport {
                server: server.into(),
                portmap_port,
                export: export.to_vec(),
            })
        };
        assert_eq!(
            Source::of(Path::new("nfs://filer1/srv/projects")).unwrap(),
            nfs("filer1", 111, b"/srv/projects")
        );
        assert_eq!(
            Source::of(Path::new("nfs://10.99.0.2:2111/x")).unwrap(),
            nfs("10.99.0.2", 2111, b"/x")
        );
        assert_eq!(
            Source::of(Path::new("nfs://[fd00::2]/x")).unwrap(),
            nfs("fd00::2", 111, b"/x")
        );
        assert_eq!(
            Source::of(Path::new("nfs://[fd00::2]:7/x")).unwrap(),
            nfs("fd00::2", 7, b"/x")
        );
        for bad in ["nfs://filer1", "nfs:///x", "nfs://filer1:port/x"] {
            let error = Source::of(Path::new(bad)).unwrap_err();
            assert!(matches!(error, Error::BadRoot { .. }), "{bad}: {error}");
        }
    }
}
