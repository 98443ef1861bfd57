//! Typed receives of `Pod` values, shared by Queue and Pipe: a message of
//! the wrong size, too long or too short, is consumed and returned in
//! [`Error::WrongSize`], so it neither wedges later typed receives nor is
//! lost.

use bytemuck::Pod;

use crate::error::{Error, Origin, Result};

/// Receives a `T` from `s`: first into the value itself (`into`), and, when
/// the message is longer (`BufferTooSmall`), as an owned message (`owned`),
/// which is a `T` after all if another consumer took the long one first.
pub(crate) fn take<T: Pod, S: ?Sized>(
    s: &mut S,
    into: impl Fn(&mut S, &mut [u8]) -> Result<usize>,
    owned: impl Fn(&mut S) -> Result<Vec<u8>>,
) -> Result<T> {
    let size = std::mem::size_of::<T>();
    let mut v = T::zeroed();
    match into(s, bytemuck::bytes_of_mut(&mut v)) {
        Ok(n) if n == size => Ok(v),
        Ok(n) => Err(Error::WrongSize {
            origin: Origin::UNKNOWN,
            expected: size,
            message: bytemuck::bytes_of(&v)[..n.min(size)].to_vec(),
        }),
        Err(Error::BufferTooSmall { .. }) => {
            let m = owned(s)?;
            if m.len() == size {
                Ok(bytemuck::pod_read_unaligned(&m))
            } else {
                Err(Error::WrongSize {
                    origin: Origin::UNKNOWN,
                    expected: size,
                    message: m,
                })
            }
        }
        Err(e) => Err(e),
    }
}

/// Encodes a value for a serde message (postcard 1; see the crate docs).
#[cfg(feature = "serde")]
pub(crate) fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| Error::InvalidArgument(format!("cannot encode: {e}")))
}

/// Decodes a serde message from a private copy of its bytes.
#[cfg(feature = "serde")]
pub(crate) fn decode<T: serde::de::DeserializeOwned>(msg: &[u8]) -> Result<T> {
    postcard::from_bytes(msg).map_err(|e| Error::InvalidArgument(format!("cannot decode: {e}")))
}
