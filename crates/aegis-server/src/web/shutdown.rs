//! Cutting connections at shutdown. axum's graceful shutdown stops accepting and lets requests
//! in flight finish, but a stalled firmware download (a device that stopped reading) would hold
//! it open for as long as the stall timeout allows. [`CutOnCancel`] wraps a listener so that
//! every connection it accepted fails its next read or write (and wakes any that wait) once a
//! token is cancelled: the server cancels it a short grace after shutdown begins.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A listener whose connections are cut when `cut` is cancelled.
#[derive(Debug)]
pub struct CutOnCancel<L> {
    inner: L,
    cut: CancellationToken,
}

impl<L> CutOnCancel<L> {
    pub fn new(inner: L, cut: CancellationToken) -> Self {
        CutOnCancel { inner, cut }
    }
}

impl<L: Listener> Listener for CutOnCancel<L> {
    type Io = CutIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        let cut = Box::pin(self.cut.clone().cancelled_owned());
        (CutIo { inner: io, cut }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that fails once its token is cancelled.
#[derive(Debug)]
pub struct CutIo<S> {
    inner: S,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> CutIo<S> {
    /// Registers the waker with the token; an error once it is cancelled.
    fn check(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.cut.as_mut().poll(cx).is_ready().then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server is shutting down",
            )
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CutIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CutIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
