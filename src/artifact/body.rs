//! Where the bytes of an answer live. The one body type: the resolve layer
//! produces it, the protocol wraps it in a reply, the wire sends it from
//! where it lies. Owns that description only: it never copies the bytes
//! into a buffer of its own and never reads or writes a file.

use bytes::Bytes;

use super::fill::FillStream;
use crate::store::StoredBlob;

#[derive(Clone, Debug)]
pub enum Body {
    /// Published in a segment: served straight from the map, or with
    /// `sendfile` from the segment's descriptor.
    Stored(StoredBlob),
    /// Held in memory: `list`/`@latest` answers, messages, and blobs the
    /// store could not take (disk full) passed through to the client, with
    /// their digest for the ETag.
    Memory { bytes: Bytes, sha256: Option<[u8; 32]> },
    /// A zip still arriving from the upstream (`--stream-fills`): sent as
    /// its progress allows; the connection must be cut if the fill fails.
    Filling(FillStream),
}

impl Body {
    pub const fn empty() -> Body {
        Body::Memory { bytes: Bytes::new(), sha256: None }
    }

    pub const fn from_static(text: &'static str) -> Body {
        Body::Memory { bytes: Bytes::from_static(text.as_bytes()), sha256: None }
    }

    pub fn text(text: String) -> Body {
        Body::Memory { bytes: Bytes::from(text), sha256: None }
    }

    /// The bytes, when they are all there (a body still filling has none yet).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Body::Stored(b) => b.bytes(),
            Body::Memory { bytes, .. } => bytes,
            Body::Filling(_) => &[],
        }
    }

    /// Where the bytes lie in a file, when they do (sendfile can serve them).
    pub fn file_range(&self) -> Option<(std::os::fd::RawFd, u64)> {
        match self {
            Body::Stored(b) => Some(b.file_range()),
            Body::Memory { .. } | Body::Filling(_) => None,
        }
    }

    pub fn sha256(&self) -> Option<&[u8; 32]> {
        match self {
            Body::Stored(b) => Some(b.sha256()),
            Body::Memory { sha256, .. } => sha256.as_ref(),
            Body::Filling(_) => None,
        }
    }

    /// A body still filling, taken out (an empty body is left), so that
    /// its sender owns the stream and can let go of the fill buffer as
    /// soon as the fill is done.
    pub fn take_filling(&mut self) -> Option<FillStream> {
        if !matches!(self, Body::Filling(_)) {
            return None;
        }
        match std::mem::replace(self, Body::empty()) {
            Body::Filling(stream) => Some(stream),
            _ => None,
        }
    }
}
