//! Raw path bytes in JSON documents: a plain string when the bytes are UTF-8 (the usual case,
//! readable in `plan.json`), `{"hex": "…"}` otherwise, so no name is ever mangled.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `dir/name`, or `name` alone at the root (`dir` empty): paths are relative to the scan root.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        path.extend_from_slice(dir);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// The directory part of a relative path; empty for an entry of the root.
pub fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => &[],
    }
}

/// The last component of a relative path.
pub fn name_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => &path[slash + 1..],
        None => path,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PathBytes(pub Vec<u8>);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    Text(String),
    Hex { hex: String },
}

impl Serialize for PathBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => Repr::Text(text.to_string()),
            Err(_) => Repr::Hex {
                hex: self.0.iter().map(|b| format!("{b:02x}")).collect(),
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PathBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Text(text) => Ok(Self(text.into_bytes())),
            Repr::Hex { hex } => (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                        .ok_or_else(|| serde::de::Error::custom("invalid hex path"))
                })
                .collect::<Result<Vec<u8>, _>>()
                .map(Self),
        }
    }
}

impl std::fmt::Display for PathBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_round_trips() {
        for bytes in [b"plain/name".to_vec(), vec![b'a', 0xff, 0xfe, b'/', 0x80]] {
            let json = serde_json::to_string(&PathBytes(bytes.clone())).unwrap();
            let back: PathBytes = serde_json::from_str(&json).unwrap();
            assert_eq!(back.0, bytes, "{json}");
        }
    }
}
