//! Length-prefixed postcard frames: a 4-byte big-endian length, then that
//! many bytes of postcard. The length is checked against a bound before a
//! single byte of the body is read, so a hostile peer cannot make us
//! allocate more than the bound.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};

/// Default bound on one frame: payload bound (8 MiB) plus headroom.
pub const DEFAULT_MAX_FRAME: usize = 9 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes is over the bound of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("stream closed in the middle of a frame")]
    Truncated,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `value` as one frame (length prefix included).
pub fn encode_frame<T: Serialize>(value: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_frame_into(&mut out, value, max)?;
    Ok(out)
}

/// Appends `value` as one frame to `buf` (a batch being built for one
/// write: no buffer of its own per frame). On an error `buf` is left as it
/// was.
pub fn encode_frame_into<T: Serialize>(
    buf: &mut Vec<u8>,
    value: &T,
    max: usize,
) -> Result<(), FrameError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 4]);
    let encoded = postcard::serialize_with_flavor(value, Append(buf));
    let len = buf.len() - start - 4;
    let err = match encoded {
        Ok(()) if len <= max => {
            buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
            return Ok(());
        }
        Ok(()) => FrameError::TooLarge { size: len, max },
        Err(e) => FrameError::Malformed(e),
    };
    buf.truncate(start);
    Err(err)
}

/// A postcard output that appends to a borrowed vector.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Writes one frame.
pub async fn write_frame<W, T>(w: &mut W, value: &T, max: usize) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = encode_frame(value, max)?;
    w.write_all(&bytes).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R, T>(r: &mut R, max: usize) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { size: len, max });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(Some(postcard::from_bytes(&body)?))
}

/// Reads one frame from a buffered stream: a frame already whole in the
/// buffer is decoded where it lies (no buffer of its own); otherwise as
/// [`read_frame`] does.
pub async fn read_frame_buffered<R, T>(r: &mut R, max: usize) -> Result<Option<T>, FrameError>
where
    R: AsyncBufRead + Unpin,
    T: DeserializeOwned,
{
    let buffered = r.fill_buf().await?;
    if let Some(len) = body_len(buffered) {
        if len > max {
            return Err(FrameError::TooLarge { size: len, max });
        }
        if let Some(body) = buffered.get(4..4 + len) {
            let value = postcard::from_bytes(body)?;
            r.consume(4 + len);
            return Ok(Some(value));
        }
    }
    read_frame(r, max).await
}

/// The body length a frame at the start of `buf` announces, once its
/// 4-byte prefix is there.
fn body_len(buf: &[u8]) -> Option<usize> {
    let head = buf.get(..4)?;
    Some(u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize)
}

/// Whether `buf` starts with a whole frame (so reading it needs no I/O).
pub fn has_whole_frame(buf: &[u8]) -> bool {
    body_len(buf).is_some_and(|len| buf.len() >= 4 + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AddJob, Request, RequestFrame};

    /// Bodies and outputs are written as byte strings (one copy) rather
    /// than as sequences of u8 (a call per byte); postcard gives both the
    /// same bytes, so the wire is what protocol version 2 always was.
    #[test]
    fn byte_fields_keep_the_wire_of_a_u8_sequence() {
        #[derive(Serialize)]
        struct Seq {
            queue: String,
            body: Vec<u8>,
        }
        let job = AddJob::new("q", vec![0u8, 1, 200, 255]);
        let as_bytes = postcard::to_allocvec(&job).unwrap();
        let as_seq = postcard::to_allocvec(&Seq {
            queue: "q".into(),
            body: vec![0u8, 1, 200, 255],
        })
        .unwrap();
        assert_eq!(&as_bytes[..as_seq.len()], &as_seq[..]);
        let back: AddJob = postcard::from_bytes(&as_bytes).unwrap();
        assert_eq!(back, job);
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let f = RequestFrame {
            id: 7,
            request: Request::NodeInfo,
        };
        let bytes = encode_frame(&f, 1024).unwrap();
        let mut r = &bytes[..];
        let back: RequestFrame = read_frame(&mut r, 1024).await.unwrap().unwrap();
        assert_eq!(back, f);
        let end: Option<RequestFrame> = read_frame(&mut r, 1024).await.unwrap();
        assert!(end.is_none());
    }

    #[test]
    fn a_frame_over_the_bound_leaves_the_batch_as_it_was() {
        let small = RequestFrame {
            id: 1,
            request: Request::NodeInfo,
        };
        let big = RequestFrame {
            id: 2,
            request: Request::AddJob(Box::new(AddJob::new("q", vec![7u8; 100]))),
        };
        let mut batch = Vec::new();
        encode_frame_into(&mut batch, &small, 64).unwrap();
        let before = batch.clone();
        let err = encode_frame_into(&mut batch, &big, 64).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { max: 64, .. }), "{err}");
        assert_eq!(batch, before);
        assert_eq!(batch, encode_frame(&small, 64).unwrap());
    }

    #[tokio::test]
    async fn buffered_reads_decode_whole_and_split_frames_alike() {
        let frames: Vec<RequestFrame> = (0..20u64)
            .map(|id| RequestFrame {
                id,
                request: Request::AddJob(Box::new(AddJob::new("q", vec![id as u8; 300]))),
            })
            .collect();
        let mut bytes = Vec::new();
        for f in &frames {
            encode_frame_into(&mut bytes, f, 1024).unwrap();
        }
        // A buffer of 700 bytes holds some frames whole and cuts others.
        let mut r = tokio::io::BufReader::with_capacity(700, &bytes[..]);
        for f in &frames {
            let back: RequestFrame = read_frame_buffered(&mut r, 1024).await.unwrap().unwrap();
            assert_eq!(&back, f);
        }
        let end: Option<RequestFrame> = read_frame_buffered(&mut r, 1024).await.unwrap();
        assert!(end.is_none());
        // The bound holds on the fast path too.
        let mut r = tokio::io::BufReader::new(&bytes[..]);
        let err = read_frame_buffered::<_, RequestFrame>(&mut r, 100)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { max: 100, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_reading() {
        let mut bytes = (u32::MAX).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"junk");
        let mut r = &bytes[..];
        let err = read_frame::<_, RequestFrame>(&mut r, 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
    }

    #[tokio::test]
    async fn garbage_and_truncation_are_errors() {
        let mut bytes = 3u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
        let mut r = &bytes[..];
        assert!(matches!(
            read_frame::<_, RequestFrame>(&mut r, 1024).await,
            Err(FrameError::Malformed(_))
        ));
        let bytes = 10u32.to_be_bytes().to_vec();
        let mut r = &bytes[..];
        assert!(matches!(
            read_frame::<_, RequestFrame>(&mut r, 1024).await,
            Err(FrameError::Truncated)
        ));
    }
}
