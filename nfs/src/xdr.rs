//! XDR (RFC 4506), the encoding of every ONC RPC message: big-endian 32-bit units, variable
//! opaques padded to a multiple of four.
//!
//! Only the few shapes NFSv3, MOUNT and the portmapper need. Decoding reads from the received
//! record and checks every length against what is left before it allocates, so a server that
//! sends garbage produces an error, never a panic or a huge allocation.

use crate::error::Error;

/// Builds one message (a call's header and arguments).
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new() -> Encoder {
        Encoder {
            buf: Vec::with_capacity(256),
        }
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Encoder {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Encoder {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Variable-length opaque (or string): length, bytes, zero padding.
    pub(crate) fn opaque(&mut self, bytes: &[u8]) -> &mut Encoder {
        // Every caller passes names, handles or credentials far below 4 GiB.
        self.u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        self.fixed(bytes)
    }

    /// Fixed-length opaque: bytes and zero padding, no length.
    pub(crate) fn fixed(&mut self, bytes: &[u8]) -> &mut Encoder {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(self.buf.len() + pad(bytes.len()), 0);
        self
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads one received message front to back.
#[derive(Debug)]
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Decoder<'a> {
        Decoder { buf }
    }

    #[cfg(test)]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        if n > self.buf.len() {
            return Err(Error::Malformed(format!(
                "{what}: needs {n} bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        let hi = self.u32(what)?;
        let lo = self.u32(what)?;
        Ok((u64::from(hi) << 32) | u64::from(lo))
    }

    pub(crate) fn bool(&mut self, what: &'static str) -> Result<bool, Error> {
        match self.u32(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Error::Malformed(format!("{what}: boolean {other}"))),
        }
    }

    /// Variable-length opaque of at most `max` bytes, borrowed from the message.
    pub(crate) fn opaque(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(Error::Malformed(format!("{what}: length {len} > {max}")));
        }
        self.fixed(len, what)
    }

    /// Fixed-length opaque of `len` bytes, borrowed, padding skipped.
    pub(crate) fn fixed(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let bytes = self.take(len, what)?;
        self.take(pad(len), what)?;
        Ok(bytes)
    }
}

/// Zero bytes after `len` bytes of opaque data, to the next multiple of four.
fn pad(len: usize) -> usize {
    (4 - len % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_round_trip_pads_to_four() {
        let mut enc = Encoder::new();
        enc.opaque(b"abcde").u32(7).u64(1 << 40);
        let bytes = enc.into_bytes();
        assert_eq!(bytes.len(), 4 + 8 + 4 + 8);
        let mut dec = Decoder::new(&bytes);
        assert_eq!(dec.opaque(16, "name").unwrap(), b"abcde");
        assert_eq!(dec.u32("n").unwrap(), 7);
        assert_eq!(dec.u64("n").unwrap(), 1 << 40);
        assert_eq!(dec.remaining(), 0);
    }

    #[test]
    fn lengths_beyond_the_message_are_errors() {
        let bytes = [0xff, 0xff, 0xff, 0xf0, 1, 2];
        assert!(Decoder::new(&bytes).opaque(usize::MAX, "x").is_err());
        assert!(Decoder::new(&bytes).opaque(8, "x").is_err());
        assert!(Decoder::new(&bytes[..3]).u32("x").is_err());
        assert!(Decoder::new(&[0, 0, 0, 2]).bool("x").is_err());
    }
}
