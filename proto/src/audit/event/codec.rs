//! The [`Codec`] trait: every value in an event body is written and read by one impl, so
//! a field's encoder stands beside its decoder (as in rustls's `msgs::codec`), and each
//! event states its field order once (a struct defined in [`fields!`] encodes its fields in
//! the order declared). The primitives, the [`Writer`] /
//! [`Reader`] they work on and the two errors are here; the event kinds implement the
//! trait beside their definitions.

use super::ids::{RequestId, Timestamp};
use crate::profile::GrantId;

/// Longest string field accepted, in bytes.
pub const MAX_STRING_LEN: usize = 64 * 1024;

/// Why bytes are not a canonical event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed audit event at byte {offset}: {reason}")]
pub struct DecodeError {
    /// Offset into the leaf bytes where decoding failed.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

/// Why an event cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit event cannot be encoded: {0}")]
pub struct EncodeError(pub String);

/// A value with exactly one encoding in an event: [`Codec::encode`] writes it and
/// [`Codec::read`] accepts only those bytes.
pub(crate) trait Codec: Sized {
    /// Appends the canonical bytes of `self`.
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError>;
    /// Reads one value, refusing anything [`Codec::encode`] would not have written.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// Defines a struct whose [`Codec`] is its fields in the order declared: the one place
/// where that order (the event's body layout) is written down.
macro_rules! fields {
    (
        $(#[$meta:meta])*
        pub struct $ty:ident {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident: $fty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $ty {
            $(
                $(#[$fmeta])*
                pub $field: $fty,
            )*
        }

        impl $crate::audit::event::codec::Codec for $ty {
            fn encode(
                &self,
                #[allow(unused_variables)] w: &mut $crate::audit::event::codec::Writer,
            ) -> Result<(), $crate::audit::event::codec::EncodeError> {
                $( $crate::audit::event::codec::Codec::encode(&self.$field, w)?; )*
                Ok(())
            }
            fn read(
                #[allow(unused_variables)] r: &mut $crate::audit::event::codec::Reader<'_>,
            ) -> Result<Self, $crate::audit::event::codec::DecodeError> {
                Ok(Self { $( $field: $crate::audit::event::codec::Codec::read(r)?, )* })
            }
        }
    };
}
pub(crate) use fields;

/// Implements [`Codec`] for a fieldless enum as one byte, naming an unknown byte as
/// `unknown <what> <n>`.
macro_rules! byte_enum {
    ($ty:ident, $what:literal { $($variant:ident = $n:literal),* $(,)? }) => {
        impl $crate::audit::event::codec::Codec for $ty {
            fn encode(
                &self,
                w: &mut $crate::audit::event::codec::Writer,
            ) -> Result<(), $crate::audit::event::codec::EncodeError> {
                w.u8(match self { $( $ty::$variant => $n, )* });
                Ok(())
            }
            fn read(
                r: &mut $crate::audit::event::codec::Reader<'_>,
            ) -> Result<Self, $crate::audit::event::codec::DecodeError> {
                match r.u8()? {
                    $( $n => Ok($ty::$variant), )*
                    v => {
                        r.pos -= 1;
                        r.err(format!(concat!("unknown ", $what, " {}"), v))
                    }
                }
            }
        }
    };
}
pub(crate) use byte_enum;

/// Where an event's bytes are written.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn len(&mut self, n: usize, what: &str) -> Result<(), EncodeError> {
        let n32 = u32::try_from(n)
            .map_err(|_| EncodeError(format!("{what} of {n} items is too long")))?;
        self.u32(n32);
        Ok(())
    }
}

/// Where an event's bytes are read from: `buf[pos..]` is what is left.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl Reader<'_> {
    /// A decoding error at the current offset.
    pub(crate) fn err<T>(&self, reason: String) -> Result<T, DecodeError> {
        Err(DecodeError {
            offset: self.pos,
            reason,
        })
    }
    /// True when bytes are left (for a trailing optional field).
    pub(crate) fn has_more(&self) -> bool {
        self.pos < self.buf.len()
    }
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return self.err(format!(
                "truncated: need {n} more bytes, {} left",
                self.buf.len() - self.pos
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// Integers are big-endian, fixed width.
macro_rules! int {
    ($($ty:ident),*) => {$(
        impl Codec for $ty {
            fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
                w.$ty(*self);
                Ok(())
            }
            fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                r.$ty()
            }
        }
    )*};
}
int!(u32, u64);

/// `bool = 0 | 1`.
impl Codec for bool {
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.u8(u8::from(*self));
        Ok(())
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => {
                r.pos -= 1;
                r.err(format!("boolean byte is {v}, not 0 or 1"))
            }
        }
    }
}

/// Fixed-size bytes (SHA-256 digests, Merkle roots), written as they are.
impl<const N: usize> Codec for [u8; N] {
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.buf.extend_from_slice(self);
        Ok(())
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array()
    }
}

/// `string = len:u32 | UTF-8 bytes (len <= MAX_STRING_LEN)`.
impl Codec for String {
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        if self.len() > MAX_STRING_LEN {
            return Err(EncodeError(format!(
                "a string field is {} bytes, more than the {MAX_STRING_LEN} allowed",
                self.len()
            )));
        }
        w.len(self.len(), "string")?;
        w.buf.extend_from_slice(self.as_bytes());
        Ok(())
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.u32()? as usize;
        if n > MAX_STRING_LEN {
            r.pos -= 4;
            return r.err(format!(
                "string length {n} exceeds the {MAX_STRING_LEN}-byte limit"
            ));
        }
        let at = r.pos;
        let bytes = r.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(DecodeError {
                offset: at + e.valid_up_to(),
                reason: "string is not valid UTF-8".into(),
            }),
        }
    }
}

/// `list = count:u32 | strings`.
impl Codec for Vec<String> {
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.len(self.len(), "list")?;
        for s in self {
            s.encode(w)?;
        }
        Ok(())
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.u32()? as usize;
        // Every item takes at least its 4-byte length: refuse counts the input cannot hold
        // before allocating for them.
        if n > (r.buf.len() - r.pos) / 4 {
            r.pos -= 4;
            return r.err(format!("list of {n} items cannot fit in what is left"));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(String::read(r)?);
        }
        Ok(v)
    }
}

/// `option = 0 | 1 item`.
impl<T: Codec> Codec for Option<T> {
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            None => {
                w.u8(0);
                Ok(())
            }
            Some(v) => {
                w.u8(1);
                v.encode(w)
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(None),
            1 => Ok(Some(T::read(r)?)),
            v => {
                r.pos -= 1;
                r.err(format!("option tag is {v}, not 0 or 1"))
            }
        }
    }
}

/// A boxed kind encodes as what it holds.
impl<T: Codec> Codec for Box<T> {
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        (**self).encode(w)
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        T::read(r).map(Box::new)
    }
}

/// Ids and times are their number: `u64`.
macro_rules! newtype_u64 {
    ($($ty:ident),*) => {$(
        impl Codec for $ty {
            fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
                w.u64(self.0);
                Ok(())
            }
            fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                r.u64().map($ty)
            }
        }
    )*};
}
newtype_u64!(RequestId, GrantId, Timestamp);
