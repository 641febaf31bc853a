//! Who may scan which NFS export. The pods of a `source.nfs` ScanJob speak NFSv3 with AUTH_SYS,
//! which trusts the client: they could read any export the cluster reaches, as any uid, and
//! through the hash step any file's content. So the operator starts runs of an NFS source only
//! where the cluster admin granted it (each of the ScanJob's server addresses on its own): a
//! grant names the namespaces, the server, the export (and so every directory below it), the
//! uids and gids the pods may carry, and whether they may connect from a reserved port (which
//! a `secure` export takes for trust). The chart's
//! `nfs.allowed` list becomes the operator's `--nfs-allowed` (JSON); without it, no NFS source
//! is allowed. A refused ScanJob says in its Degraded condition what is not allowed.

use serde::{Deserialize, Serialize};

use crate::crd::{NfsSource, ScanJob};

/// One grant of the admin's allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NfsGrant {
    /// Namespaces whose ScanJobs the grant covers; `*` for every namespace.
    pub namespaces: Vec<String>,
    /// The server, as `source.nfs.server` names it.
    pub server: String,
    /// The export, as `source.nfs.export` names it; a directory below it is covered too.
    pub export: String,
    /// The uids the pods may carry.
    pub uids: Vec<i64>,
    /// The gids the pods may carry.
    pub gids: Vec<i64>,
    /// Whether the pods may connect from a reserved port (`source.nfs.reservedPort`): a server
    /// that insists on one trusts such a client more, so it is granted explicitly.
    #[serde(default)]
    pub reserved_port: bool,
}

/// The admin's grants; empty allows no NFS source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NfsAllowList(Vec<NfsGrant>);

impl NfsAllowList {
    /// Reads the list from its JSON (an array of grants), naming what is wrong.
    pub fn parse(json: &str) -> Result<Self, String> {
        let grants: Vec<NfsGrant> = serde_json::from_str(json)
            .map_err(|e| format!("--nfs-allowed is not a JSON list of grants: {e}"))?;
        for grant in &grants {
            if !grant.export.starts_with('/') {
                return Err(format!(
                    "--nfs-allowed: export {:?} is not an absolute path",
                    grant.export
                ));
            }
        }
        Ok(Self(grants))
    }

    pub fn new(grants: Vec<NfsGrant>) -> Self {
        Self(grants)
    }

    /// Why the ScanJob's source is not allowed, or `None` when it is (any volume is).
    pub fn refusal(&self, sj: &ScanJob) -> Option<String> {
        let nfs = sj.spec.source.nfs.as_ref()?;
        let namespace = sj.metadata.namespace.as_deref().unwrap_or_default();
        self.check(namespace, nfs).err()
    }

    /// [`NfsAllowList::check_one`] for the server and each further address: every address the
    /// pods connect to is granted as a server of its own.
    pub fn check(&self, namespace: &str, nfs: &NfsSource) -> Result<(), String> {
        self.check_one(namespace, nfs)?;
        for address in &nfs.addresses {
            let other = NfsSource {
                server: address.clone(),
                addresses: Vec::new(),
                ..nfs.clone()
            };
            self.check_one(namespace, &other)?;
        }
        Ok(())
    }

    /// Whether a grant covers this namespace, export and identity, and if not, the closest
    /// miss: the first of namespace, server, export, uid, gid and reserved port that no grant
    /// matches.
    fn check_one(&self, namespace: &str, nfs: &NfsSource) -> Result<(), String> {
        let here: Vec<&NfsGrant> = self
            .0
            .iter()
            .filter(|g| g.namespaces.iter().any(|n| n == "*" || n == namespace))
            .collect();
        if here.is_empty() {
            return Err(format!(
                "no NFS export is allowed in namespace {namespace} (the operator's nfs.allowed grants none here)"
            ));
        }
        let server: Vec<&NfsGrant> = here
            .iter()
            .copied()
            .filter(|g| g.server == nfs.server)
            .collect();
        if server.is_empty() {
            return Err(format!(
                "server {} is not allowed in namespace {namespace}",
                nfs.server
            ));
        }
        let export: Vec<&NfsGrant> = server
            .iter()
            .copied()
            .filter(|g| below(&nfs.export, &g.export))
            .collect();
        if export.is_empty() {
            return Err(format!(
                "export {}:{} is not allowed in namespace {namespace}",
                nfs.server, nfs.export
            ));
        }
        let uid: Vec<&NfsGrant> = export
            .iter()
            .copied()
            .filter(|g| g.uids.contains(&nfs.uid))
            .collect();
        if uid.is_empty() {
            return Err(format!(
                "uid {} is not allowed for {}:{} in namespace {namespace}",
                nfs.uid, nfs.server, nfs.export
            ));
        }
        let identity: Vec<&NfsGrant> = uid
            .iter()
            .copied()
            .filter(|g| g.gids.contains(&nfs.gid))
            .collect();
        if identity.is_empty() {
            return Err(format!(
                "gid {} is not allowed with uid {} for {}:{} in namespace {namespace}",
                nfs.gid, nfs.uid, nfs.server, nfs.export
            ));
        }
        if nfs.reserved_port && !identity.iter().any(|g| g.reserved_port) {
            return Err(format!(
                "a reserved source port is not allowed for {}:{} in namespace {namespace}",
                nfs.server, nfs.export
            ));
        }
        Ok(())
    }
}

/// `path` is `export` or a directory below it (component by component).
fn below(path: &str, export: &str) -> bool {
    let export = export.trim_end_matches('/');
    match path.strip_prefix(export) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || export.is_empty(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(server: &str, export: &str, uid: i64, gid: i64) -> NfsSource {
        NfsSource {
            server: server.into(),
            export: export.into(),
            port: 111,
            uid,
            gid,
            reserved_port: false,
            addresses: Vec::new(),
        }
    }

    fn list() -> NfsAllowList {
        NfsAllowList::parse(
            r#"[{"namespaces": ["data"], "server": "filer1", "export": "/ifs/data",
                 "uids": [65534, 1000], "gids": [65534]},
                {"namespaces": ["data"], "server": "filer1", "export": "/ifs/data/secure",
                 "uids": [65534], "gids": [65534], "reservedPort": true},
                {"namespaces": ["*"], "server": "filer2", "export": "/", "uids": [65534], "gids": [65534]}]"#,
        )
        .unwrap()
    }

    #[test]
    fn a_grant_covers_its_namespaces_export_and_directories_below_as_its_identities() {
        let list = list();
        assert_eq!(
            list.check("data", &source("filer1", "/ifs/data", 1000, 65534)),
            Ok(())
        );
        assert_eq!(
            list.check(
                "data",
                &source("filer1", "/ifs/data/projects", 65534, 65534)
            ),
            Ok(())
        );
        assert_eq!(
            list.check("other", &source("filer2", "/anything", 65534, 65534)),
            Ok(())
        );
    }

    #[test]
    fn a_refusal_names_the_first_thing_no_grant_allows() {
        let list = list();
        let refused = |ns: &str, s: NfsSource| list.check(ns, &s).unwrap_err();
        assert_eq!(
            refused("other", source("filer1", "/ifs/data", 65534, 65534)),
            "server filer1 is not allowed in namespace other"
        );
        assert_eq!(
            refused("data", source("filer1", "/ifs/database", 65534, 65534)),
            "export filer1:/ifs/database is not allowed in namespace data"
        );
        assert_eq!(
            refused("data", source("filer1", "/ifs", 65534, 65534)),
            "export filer1:/ifs is not allowed in namespace data"
        );
        assert_eq!(
            refused("data", source("filer1", "/ifs/data", 0, 65534)),
            "uid 0 is not allowed for filer1:/ifs/data in namespace data"
        );
        assert_eq!(
            refused("data", source("filer1", "/ifs/data", 1000, 0)),
            "gid 0 is not allowed with uid 1000 for filer1:/ifs/data in namespace data"
        );
        assert!(
            NfsAllowList::default()
                .check("data", &source("filer1", "/ifs/data", 65534, 65534))
                .unwrap_err()
                .starts_with("no NFS export is allowed in namespace data")
        );
    }

    #[test]
    fn a_reserved_source_port_needs_a_grant_that_allows_it() {
        let list = list();
        let reserved = |export: &str| NfsSource {
            reserved_port: true,
            ..source("filer1", export, 65534, 65534)
        };
        assert_eq!(list.check("data", &reserved("/ifs/data/secure/a")), Ok(()));
        assert_eq!(
            list.check("data", &reserved("/ifs/data/open")),
            Err(
                "a reserved source port is not allowed for filer1:/ifs/data/open in namespace data"
                    .into()
            )
        );
        assert_eq!(
            list.check("data", &source("filer1", "/ifs/data/open", 65534, 65534)),
            Ok(())
        );
    }

    #[test]
    fn every_further_address_of_the_server_needs_a_grant_of_its_own() {
        let list = list();
        let spread = |addresses: &[&str]| NfsSource {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            ..source("filer1", "/ifs/data", 65534, 65534)
        };
        let granted_too = NfsAllowList::parse(
            r#"[{"namespaces": ["data"], "server": "filer1", "export": "/ifs", "uids": [65534], "gids": [65534]},
                {"namespaces": ["data"], "server": "filer1-b", "export": "/ifs/data", "uids": [65534], "gids": [65534]}]"#,
        )
        .unwrap();
        assert_eq!(granted_too.check("data", &spread(&["filer1-b"])), Ok(()));
        assert_eq!(
            list.check("data", &spread(&["filer1-b"])),
            Err("server filer1-b is not allowed in namespace data".into())
        );
    }

    #[test]
    fn a_bad_list_is_an_error_naming_it() {
        for bad in [
            "{}",
            r#"[{"namespaces": [], "server": "a", "export": "/x", "uids": [], "gids": [], "extra": 1}]"#,
            r#"[{"namespaces": [], "server": "a", "export": "x", "uids": [], "gids": []}]"#,
        ] {
            let error = NfsAllowList::parse(bad).unwrap_err();
            assert!(error.starts_with("--nfs-allowed"), "{bad}: {error}");
        }
    }
}
