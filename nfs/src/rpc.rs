//! ONC RPC v2 (RFC 5531) over TCP: the call header with an AUTH_SYS credential, record marking,
//! and the checks of a reply's header before its result is decoded.

use crate::error::Error;
use crate::proto::Procedure;
use crate::xdr::{Decoder, Encoder};

/// The last fragment of a record has the top bit of its 4-byte header set.
const LAST_FRAGMENT: u32 = 0x8000_0000;

/// The identity a call claims (AUTH_SYS, RFC 5531 appendix A). The server trusts it as given and
/// applies the export's squash rules, so the default is the unprivileged nobody (65534): a scan
/// reads as root only when the caller asks for uid 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; AUTH_SYS carries at most 16.
    pub groups: Vec<u32>,
    /// The client's name in the credential; servers log it, none decides on it.
    pub machine_name: Vec<u8>,
}

impl Default for Credential {
    fn default() -> Credential {
        Credential {
            uid: 65534,
            gid: 65534,
            groups: Vec::new(),
            machine_name: b"scanjob".to_vec(),
        }
    }
}

impl Credential {
    pub fn new(uid: u32, gid: u32, groups: Vec<u32>) -> Credential {
        Credential {
            uid,
            gid,
            groups,
            ..Credential::default()
        }
    }

    /// The credential and an AUTH_NULL verifier as they follow the procedure number in every
    /// call; encoded once per client.
    pub(crate) fn encode(&self) -> Vec<u8> {
        const AUTH_NULL: u32 = 0;
        const AUTH_SYS: u32 = 1;
        let mut body = Encoder::new();
        body.u32(0) // stamp
            .opaque(&self.machine_name[..self.machine_name.len().min(255)])
            .u32(self.uid)
            .u32(self.gid);
        let groups = &self.groups[..self.groups.len().min(16)];
        body.u32(groups.len() as u32);
        for &g in groups {
            body.u32(g);
        }
        let mut enc = Encoder::new();
        enc.u32(AUTH_SYS)
            .opaque(&body.into_bytes())
            .u32(AUTH_NULL)
            .opaque(&[]);
        enc.into_bytes()
    }
}

/// A call as one record: the record mark, the header, then whatever `args` encodes.
pub(crate) fn call_record(
    xid: u32,
    procedure: Procedure,
    credential: &[u8],
    args: impl FnOnce(&mut Encoder),
) -> Vec<u8> {
    const CALL: u32 = 0;
    const RPC_VERSION: u32 = 2;
    let (program, version, number) = procedure.wire();
    let mut enc = Encoder::new();
    enc.u32(0) // the record mark, filled in below
        .u32(xid)
        .u32(CALL)
        .u32(RPC_VERSION)
        .u32(program)
        .u32(version)
        .u32(number)
        .fixed(credential);
    args(&mut enc);
    let mut record = enc.into_bytes();
    let len = (record.len() - 4) as u32 | LAST_FRAGMENT;
    record[..4].copy_from_slice(&len.to_be_bytes());
    record
}

/// The transaction id of a reply record, which picks the call it answers.
pub(crate) fn reply_xid(record: &[u8]) -> Option<u32> {
    let b = record.get(..4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Checks a reply's header (a reply, accepted, SUCCESS) and returns a decoder at its result.
pub(crate) fn reply_body(procedure: Procedure, record: &[u8]) -> Result<Decoder<'_>, Error> {
    let mut dec = Decoder::new(record);
    dec.u32("xid")?;
    if dec.u32("msg_type")? != 1 {
        return Err(Error::Malformed("a call where a reply was expected".into()));
    }
    let rejected = |reason: String| Error::Rejected { procedure, reason };
    match dec.u32("reply_stat")? {
        0 => {
            dec.u32("verifier flavor")?;
            dec.opaque(400, "verifier")?;
            match dec.u32("accept_stat")? {
                0 => Ok(dec),
                1 => Err(rejected("program unavailable".into())),
                2 => {
                    let (low, high) = (dec.u32("low")?, dec.u32("high")?);
                    Err(rejected(format!(
                        "program version mismatch (server has {low}..={high})"
                    )))
                }
                3 => Err(rejected("procedure unavailable".into())),
                4 => Err(rejected("garbage arguments".into())),
                5 => Err(rejected("system error".into())),
                other => Err(Error::Malformed(format!("accept_stat {other}"))),
            }
        }
        1 => match dec.u32("reject_stat")? {
            0 => Err(rejected("RPC version mismatch".into())),
            1 => {
                let why = match dec.u32("auth_stat")? {
                    1 => "bad credential",
                    2 => "credential rejected (the server wants a new session)",
                    3 => "bad verifier",
                    4 => "verifier rejected",
                    5 => "credential too weak (the export wants another flavor)",
                    _ => "authentication error",
                };
                Err(rejected(why.into()))
            }
            other => Err(Error::Malformed(format!("reject_stat {other}"))),
        },
        other => Err(Error::Malformed(format!("reply_stat {other}"))),
    }
}

/// Parses record marks out of a byte stream: fragments are joined until the last one, and a
/// record longer than `max` is an error (its length came from the server).
#[derive(Debug)]
pub(crate) struct RecordReader {
    max: usize,
}

impl RecordReader {
    pub(crate) fn new(max: usize) -> RecordReader {
        RecordReader { max }
    }

    /// Reads the next whole record; `Ok(None)` at a clean end of stream between records.
    pub(crate) async fn next<R: tokio::io::AsyncRead + Unpin>(
        &self,
        stream: &mut R,
    ) -> Result<Option<Vec<u8>>, RecordError> {
        use tokio::io::AsyncReadExt;

        let mut record = Vec::new();
        loop {
            let mut mark = [0; 4];
            match stream.read_exact(&mut mark).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && record.is_empty() => {
                    return Ok(None);
                }
                Err(e) => return Err(RecordError::Io(e)),
            }
            let mark = u32::from_be_bytes(mark);
            let len = (mark & !LAST_FRAGMENT) as usize;
            if record.len() + len > self.max {
                return Err(RecordError::TooLong(record.len() + len));
            }
            let start = record.len();
            record.resize(start + len, 0);
            stream
                .read_exact(&mut record[start..])
                .await
                .map_err(RecordError::Io)?;
            if mark & LAST_FRAGMENT != 0 {
                return Ok(Some(record));
            }
        }
    }
}

#[derive(Debug)]
pub(crate) enum RecordError {
    Io(std::io::Error),
    TooLong(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_record_is_marked_with_its_length() {
        let cred = Credential::default().encode();
        let record = call_record(7, Procedure::Null, &cred, |_| {});
        let mark = u32::from_be_bytes([record[0], record[1], record[2], record[3]]);
        assert_eq!(mark & LAST_FRAGMENT, LAST_FRAGMENT);
        assert_eq!((mark & !LAST_FRAGMENT) as usize, record.len() - 4);
        assert_eq!(reply_xid(&record[4..]), Some(7));
    }

    #[tokio::test]
    async fn fragments_are_joined_and_oversized_records_refused() {
        let mut stream: &[u8] = &[0, 0, 0, 2, b'a', b'b', 0x80, 0, 0, 1, b'c'];
        let reader = RecordReader::new(16);
        assert_eq!(reader.next(&mut stream).await.unwrap().unwrap(), b"abc");
        assert!(reader.next(&mut stream).await.unwrap().is_none());

        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            reader.next(&mut huge).await,
            Err(RecordError::TooLong(_))
        ));
        let mut cut: &[u8] = &[0x80, 0, 0, 8, 1, 2];
        assert!(matches!(
            reader.next(&mut cut).await,
            Err(RecordError::Io(_))
        ));
    }
}
