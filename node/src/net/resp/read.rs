//! Reading a client's socket once per readiness event.
//!
//! tokio clears a socket's readiness only when a read answers
//! `WouldBlock`, so the plain `try_read_buf` loop pays a second `recv`
//! after every request just to learn the socket is empty: at pipeline 1
//! that is one syscall in three of the node's. A read that does not fill
//! the room offered has emptied the socket (a stream socket hands over
//! everything it holds, up to the room), so it clears the readiness
//! itself, as the `WouldBlock` would have; new data raises a new event.
//! redis-server likewise reads once per readable event.

use std::io;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Reads what the socket holds into `buf`'s spare room (reserve first).
/// `Ok(0)` is the end of the stream; `WouldBlock` means nothing was there.
pub fn read_some(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let mut got = 0;
    // The read runs inside `try_io` so the readiness cleared is the one
    // observed before the read: an event that lands after it is kept.
    let r = stream.try_io(Interest::READABLE, || {
        let room = buf.spare_capacity_mut();
        let asked = room.len();
        let n = socket2::SockRef::from(stream).recv(room)?;
        // SAFETY: `recv` initialised the first `n` bytes of the spare room.
        unsafe { buf.set_len(buf.len() + n) };
        got = n;
        if n > 0 && n < asked {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        r => r,
    }
}
