//! Owner and group names for the report, from a passwd-format and a group-format file (the
//! scanned server's `/etc/passwd` and `/etc/group`, or a ConfigMap holding them): the ToC keeps
//! numeric ids, which is all a scan pod can see; a person reads names.

use std::collections::BTreeMap;
use std::path::Path;

use tracing::warn;

use crate::error::{Error, Result};

/// Names by numeric id: user names by uid, group names by gid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerNames {
    pub users: BTreeMap<u32, String>,
    pub groups: BTreeMap<u32, String>,
}

impl OwnerNames {
    /// Reads `passwd` (`name:x:uid:gid:…`) and `group` (`name:x:gid:members`) when given. A
    /// file that cannot be read is an error naming it; a malformed line is skipped with a
    /// warning.
    pub fn load(passwd: Option<&Path>, group: Option<&Path>) -> Result<Self> {
        let read = |flag: &str, path: Option<&Path>| -> Result<BTreeMap<u32, String>> {
            let Some(path) = path else {
                return Ok(BTreeMap::new());
            };
            let bytes = std::fs::read(path).map_err(|source| Error::Io {
                what: format!("{flag} {}", path.display()),
                source,
            })?;
            let (names, malformed) = parse_id_file(&String::from_utf8_lossy(&bytes));
            for line in malformed {
                warn!(
                    file = %path.display(),
                    line,
                    "skipping a line that is not `name:password:id:…`"
                );
            }
            Ok(names)
        };
        Ok(Self {
            users: read("--passwd", passwd)?,
            groups: read("--group", group)?,
        })
    }

    /// The names of those `ids` (decimal strings, as the report's keys are) that have one.
    pub fn named(names: &BTreeMap<u32, String>, ids: &[&str]) -> BTreeMap<String, String> {
        ids.iter()
            .filter_map(|id| {
                let name = names.get(&id.parse::<u32>().ok()?)?;
                Some((id.to_string(), name.clone()))
            })
            .collect()
    }
}

/// Names by id from a passwd- or group-format text (both keep name and id in the first and
/// third fields), and the numbers of its malformed lines (1-based). Blank lines and `#`
/// comments are skipped; an id listed twice keeps its first name, as `getpwuid` does.
pub fn parse_id_file(text: &str) -> (BTreeMap<u32, String>, Vec<usize>) {
    let mut names = BTreeMap::new();
    let mut malformed = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (name, id) = (fields.next(), fields.nth(1));
        match (name, id.and_then(|id| id.trim().parse::<u32>().ok())) {
            (Some(name), Some(id)) if !name.is_empty() => {
                names.entry(id).or_insert_with(|| name.to_string());
            }
            _ => malformed.push(i + 1),
        }
    }
    (names, malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_and_group_lines_give_names_and_bad_lines_are_counted() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    # a comment\n\
                    \n\
                    alice:x:1001:100::/home/alice:/bin/sh\n\
                    broken line\n\
                    bob:x:notanumber:100::/:/bin/sh\n\
                    :x:1002:100::/:/bin/sh\n\
                    alice2:x:1001:100::/:/bin/sh\n\
                    staff:x:50:alice,bob\r\n";
        let (names, malformed) = parse_id_file(text);
        assert_eq!(
            names,
            BTreeMap::from([
                (0, "root".to_string()),
                (50, "staff".to_string()),
                (1001, "alice".to_string()),
            ])
        );
        assert_eq!(malformed, vec![5, 6, 7]);
    }

    #[test]
    fn only_ids_with_a_name_are_named() {
        let names = BTreeMap::from([(0, "root".to_string()), (7, "lp".to_string())]);
        assert_eq!(
            OwnerNames::named(&names, &["0", "1000", "x", ""]),
            BTreeMap::from([("0".to_string(), "root".to_string())])
        );
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let missing = Path::new("/nonexistent/scanjob/passwd");
        let error = OwnerNames::load(Some(missing), None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("--passwd /nonexistent/scanjob/passwd"),
            "{error}"
        );
    }
}
