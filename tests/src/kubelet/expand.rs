//! Kubelet-style `$(VAR)` expansion and the path rewriting that stands in for mounts.

use std::path::Path;

/// Expands `$(NAME)` references the way a kubelet does for env values, command and args:
/// `$$` is a literal `$`, and a reference to an undefined variable is left as written.
pub fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A container path and the local directory or file that stands in for it.
#[derive(Debug, Clone)]
pub struct PathMapping {
    pub container: String,
    pub local: String,
}

impl PathMapping {
    pub fn new(container: impl Into<String>, local: &Path) -> Self {
        Self {
            container: container.into(),
            local: local.to_string_lossy().into_owned(),
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// Rewrites container paths (mount paths, the termination message path) in `input` to their local
/// stand-ins. Processes share the host's file system, so a path the pod spec names must be
/// translated where it is written. A path is replaced where it starts at a word boundary (start,
/// or after a character that cannot be part of a path, or after `file://`) and ends at a path
/// boundary (end, `/`, or a character that cannot be part of a file name). The longest mapping
/// wins.
pub fn rewrite_paths(input: &str, mappings: &[PathMapping]) -> String {
    let mut sorted: Vec<&PathMapping> = mappings
        .iter()
        .filter(|m| m.container != m.local && m.container.starts_with('/'))
        .collect();
    sorted.sort_by_key(|m| std::cmp::Reverse(m.container.len()));
    if sorted.is_empty() {
        return input.to_owned();
    }
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    'scan: while i < input.len() {
        let before = &input[..i];
        let at_boundary = before.is_empty()
            || before.ends_with("file://")
            || before
                .chars()
                .next_back()
                .is_some_and(|c| c != '/' && !is_name_char(c));
        if at_boundary {
            for m in &sorted {
                let container = m.container.trim_end_matches('/');
                if let Some(after) = input[i..].strip_prefix(container) {
                    let ends = after
                        .chars()
                        .next()
                        .is_none_or(|c| c == '/' || !is_name_char(c));
                    if ends && !container.is_empty() {
                        out.push_str(&m.local);
                        i += container.len();
                        continue 'scan;
                    }
                }
            }
        }
        let c = input[i..]
            .chars()
            .next()
            .expect("index is on a char boundary");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars() -> HashMap<&'static str, &'static str> {
        HashMap::from([("A", "alpha"), ("IDX", "2")])
    }

    #[test]
    fn expands_like_a_kubelet() {
        let v = vars();
        let look = |n: &str| v.get(n).copied();
        assert_eq!(expand("--index $(IDX)", look), "--index 2");
        assert_eq!(expand("$(A)-$(IDX)", look), "alpha-2");
        assert_eq!(expand("$$(A) $$", look), "$(A) $");
        assert_eq!(expand("$(MISSING) and $A", look), "$(MISSING) and $A");
        assert_eq!(expand("open $(A", look), "open $(A");
        assert_eq!(expand("trailing $", look), "trailing $");
    }

    #[test]
    fn rewrites_container_paths_at_boundaries_only() {
        let m = [
            PathMapping::new("/data", Path::new("/tmp/pod/data")),
            PathMapping::new("/dev/termination-log", Path::new("/tmp/pod/term")),
        ];
        assert_eq!(rewrite_paths("/data", &m), "/tmp/pod/data");
        assert_eq!(
            rewrite_paths("--root=/data/x", &m),
            "--root=/tmp/pod/data/x"
        );
        assert_eq!(
            rewrite_paths("file:///data/toc", &m),
            "file:///tmp/pod/data/toc"
        );
        assert_eq!(
            rewrite_paths("echo hi > /dev/termination-log", &m),
            "echo hi > /tmp/pod/term"
        );
        assert_eq!(
            rewrite_paths("/database /x/data /data2", &m),
            "/database /x/data /data2"
        );
    }
}
