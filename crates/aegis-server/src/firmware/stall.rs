//! Cutting stalled connections. A device that stops reading blocks the connection's writes,
//! and then hyper stops asking the response body for data, so only the connection itself can
//! notice. [`StallGuard`] wraps each accepted stream: while a read or write is blocked, a timer
//! of the injected [`Clock`] runs; any progress resets it; when it fires the operation fails
//! with `TimedOut` and hyper drops the connection (and with it the download, which the tracker
//! then reports as aborted). An idle keep-alive connection is cut after the same time.
//!
//! Serve the device listener with [`device_listener`] so this applies to every connection:
//! `axum::serve(device_listener(tcp, timeout, clock), router.into_make_service_with_connect_info::<SocketAddr>())`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::serve::{Listener, ListenerExt, TapIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::time::{SharedClock, Sleep};

/// Default time a connection may make no progress before it is cut.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A stream whose blocked reads and writes fail after `timeout` without progress.
#[derive(Debug)]
pub struct StallGuard<S> {
    inner: S,
    timeout: Duration,
    clock: SharedClock,
    deadline: Option<DebugSleep>,
}

/// `Sleep` with a Debug impl.
struct DebugSleep(Sleep);

impl std::fmt::Debug for DebugSleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sleep")
    }
}

impl<S> StallGuard<S> {
    pub fn new(inner: S, timeout: Duration, clock: SharedClock) -> Self {
        StallGuard {
            inner,
            timeout,
            clock,
            deadline: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let timeout = self.timeout;
        let clock = &self.clock;
        let sleep = self
            .deadline
            .get_or_insert_with(|| DebugSleep(clock.sleep(timeout)));
        sleep.0.as_mut().poll(cx)
    }

    fn progressed(&mut self) {
        self.deadline = None;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => stalled(this, cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => stalled(this, cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => stalled(this, cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// After the inner operation returned Pending: starts the timer if it is not running, and
/// fails the operation once it has run out.
fn stalled<S, T>(this: &mut StallGuard<S>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
    if this.poll_deadline(cx).is_ready() {
        this.progressed();
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer made no progress within the stall timeout",
        )));
    }
    Poll::Pending
}

/// A TCP listener whose connections are wrapped in [`StallGuard`]s and have `TCP_NODELAY` set.
#[derive(Debug)]
pub struct StallGuardListener {
    inner: TcpListener,
    timeout: Duration,
    clock: SharedClock,
}

impl Listener for StallGuardListener {
    type Io = StallGuard<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        (
            StallGuard::new(stream, self.timeout, self.clock.clone()),
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The device listener type. It is a [`TapIo`] so that axum's `ConnectInfo<SocketAddr>` works
/// with it unchanged.
pub type DeviceListener = TapIo<StallGuardListener, fn(&mut StallGuard<TcpStream>)>;

/// Wraps a bound TCP listener for the device side: stalled connections are cut after
/// `stall_timeout` of `clock` time without progress.
pub fn device_listener(
    listener: TcpListener,
    stall_timeout: Duration,
    clock: SharedClock,
) -> DeviceListener {
    let guarded = StallGuardListener {
        inner: listener,
        timeout: stall_timeout,
        clock,
    };
    guarded.tap_io(set_nodelay as fn(&mut StallGuard<TcpStream>))
}

fn set_nodelay(stream: &mut StallGuard<TcpStream>) {
    if let Err(e) = stream.get_ref().set_nodelay(true) {
        tracing::debug!("could not set TCP_NODELAY on a device connection: {e}");
    }
}
