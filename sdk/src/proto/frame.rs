//! Length-prefixed postcard frames: a 4-byte big-endian length, then that
//! many bytes of postcard. The length is checked against a bound before a
//! single byte of the body is read, so a hostile peer cannot make us
//! allocate more than the bound.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
    let mut out = postcard::to_extend(value, vec![0u8; 4])?;
    let len = out.len() - 4;
    if len > max {
        return Err(FrameError::TooLarge { size: len, max });
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
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
