//! One WebSocket session: relays between the client's WebSocket and the VNC target's byte
//! stream. Server→client: large reads into a `BytesMut` sent as one binary frame with a
//! vectored write (header + payload, no copy); no buffer is held while the target is idle.
//! For a plain-TCP client and a TCP target the payload never enters user space: it is
//! spliced target → pipe → client, after a frame header sized to what the pipe took.
//! Client→server: frames are unmasked in place and streamed on (through the view-only filter
//! for `view` sessions, and through a gated one for `control` sessions under the control lease:
//! [`crate::control`]). Pings measure RTT; idle and stalled clients are closed, and so is
//! every session of a desktop whose live view is turned off ([`crate::live_view`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, WriteHalf};
use tokio::net::{TcpStream, UnixStream, tcp, unix};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::control::InputGate;
use crate::live_view::LiveViewSignal;
use crate::metrics::{Metrics, SessionStats};
use crate::rfb::{RfbError, ViewOnlyFilter};
use crate::ws::{self, Decoder, Event, ProtocolError, close};

/// Bytes asked for per read from the VNC server (one WebSocket frame at most this big).
pub const READ_SIZE: usize = 256 * 1024;
/// Pipe size asked for on the splice path (one WebSocket frame at most this big).
const PIPE_SIZE: usize = 1024 * 1024;
/// Below this pipe size (e.g. the user's pipe quota is spent) the copy path is used instead.
const PIPE_MIN: usize = 64 * 1024;
/// Initial client→server buffer: RFB client messages are small.
const CLIENT_BUF: usize = 4 * 1024;
/// Reads per wake-up before the other duties (pings, control frames) get a turn.
const READS_PER_TURN: usize = 16;
/// How long a closing session waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Reason of the close frame (code 1008) ending a session whose live view was turned off.
pub const LIVE_VIEW_CLOSE_REASON: &str = "live view turned off";

/// Where a session connects.
#[derive(Debug, Clone)]
pub enum Dest {
    Tcp(String),
    TcpAddr(std::net::SocketAddr),
    Unix(PathBuf),
}

/// A connected VNC target.
#[derive(Debug)]
pub enum TargetStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Dest {
    /// Connects (TCP_NODELAY on) within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> io::Result<TargetStream> {
        let fut = async {
            Ok(match self {
                Dest::Tcp(a) => {
                    let s = TcpStream::connect(a.as_str()).await?;
                    s.set_nodelay(true)?;
                    TargetStream::Tcp(s)
                }
                Dest::TcpAddr(a) => {
                    let s = TcpStream::connect(a).await?;
                    s.set_nodelay(true)?;
                    TargetStream::Tcp(s)
                }
                Dest::Unix(p) => TargetStream::Unix(UnixStream::connect(p).await?),
            })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }
}

enum TargetRead {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
}

impl TargetRead {
    async fn readable(&self) -> io::Result<()> {
        match self {
            TargetRead::Tcp(r) => r.readable().await,
            TargetRead::Unix(r) => r.readable().await,
        }
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            TargetRead::Tcp(r) => r.try_read_buf(buf),
            TargetRead::Unix(r) => r.try_read_buf(buf),
        }
    }

    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            TargetRead::Tcp(r) => Some(r.as_ref()),
            TargetRead::Unix(_) => None,
        }
    }
}

/// The client half the server→client direction writes to; plain TCP can take spliced data.
pub trait ClientSink: AsyncWrite + Unpin {
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl<C: AsyncWrite> ClientSink for WriteHalf<C> {}

impl ClientSink for tcp::OwnedWriteHalf {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

/// The client's connection once the WebSocket handshake is done.
pub enum Client<C> {
    /// Plain TCP: server→client payload is spliced, never copied through user space.
    Tcp(TcpStream),
    /// Any other byte stream (TLS, or an HTTP upgrade that could not be unwrapped).
    Other(C),
}

/// A non-blocking pipe that carries one frame's payload from the target to the client.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    size: usize,
}

impl Pipe {
    /// A pipe of about [`PIPE_SIZE`] bytes; `None` if one cannot be had (fd or pipe quota
    /// exhausted), in which case the session copies instead.
    fn new() -> Option<Pipe> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).ok()?;
        let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as libc::c_int));
        let size = usize::try_from(fcntl(&w, FcntlArg::F_GETPIPE_SZ).ok()?).ok()?;
        (size >= PIPE_MIN).then_some(Pipe { r, w, size })
    }
}

enum TargetWrite {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
}

impl TargetWrite {
    async fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            TargetWrite::Tcp(w) => w.write_all(b).await,
            TargetWrite::Unix(w) => w.write_all(b).await,
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            TargetWrite::Tcp(w) => w.shutdown().await,
            TargetWrite::Unix(w) => w.shutdown().await,
        };
    }
}

/// Session settings.
#[derive(Debug, Clone)]
pub struct Params {
    pub view_only: bool,
    /// For a `control` session under control leases: whether it may send input right now
    /// (asked before each chunk of client data; input is dropped while it says no).
    pub gate: Option<InputGate>,
    /// For a desktop under the live-view switch: the session is closed once it says off.
    pub live_view: Option<LiveViewSignal>,
    pub heartbeat: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub max_frame: u64,
}

/// Why a session ended.
#[derive(Debug)]
pub enum End {
    /// The VNC server closed its side.
    TargetClosed,
    TargetError(io::Error),
    /// The client sent a close frame with this code.
    ClientClosed(u16),
    /// The client's connection ended without a close frame (mid-frame or not).
    ClientGone {
        mid_frame: bool,
    },
    Protocol(ProtocolError),
    Rfb(RfbError),
    Idle,
    /// The client did not accept data for the idle timeout.
    Stalled,
    Shutdown,
    /// The desktop's live view was turned off.
    LiveViewOff,
}

impl End {
    /// Close frame to send, if the client can still receive one.
    fn close(&self) -> Option<(u16, String)> {
        Some(match self {
            End::TargetClosed => (close::NORMAL, "target closed".into()),
            End::TargetError(e) => (close::INTERNAL, format!("target error: {e}")),
            End::ClientClosed(1005) => (close::NORMAL, String::new()),
            End::ClientClosed(c) => (*c, String::new()),
            End::Protocol(e) => (e.code(), e.to_string()),
            End::Rfb(e) => (close::POLICY, e.to_string()),
            End::Idle => (close::GOING_AWAY, "idle timeout".into()),
            End::Shutdown => (close::GOING_AWAY, "proxy shutting down".into()),
            End::LiveViewOff => (close::POLICY, LIVE_VIEW_CLOSE_REASON.into()),
            End::ClientGone { .. } | End::Stalled => return None,
        })
    }
}

enum Ctrl {
    Pong(Bytes),
    End(End),
}

enum Stop {
    Protocol(ProtocolError),
    Rfb(RfbError),
}

impl From<ProtocolError> for Stop {
    fn from(e: ProtocolError) -> Self {
        Stop::Protocol(e)
    }
}

/// Ping bookkeeping shared by both directions of one session.
struct Pinger {
    start: Instant,
    seq: AtomicU64,
    sent_us: AtomicU64,
}

/// Sends a close frame for a session that could not start (e.g. target unreachable).
pub async fn refuse<C: AsyncWrite + Unpin>(client: &mut C, code: u16, reason: &str) {
    let f = ws::close_frame(code, reason);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        client.write_all(&f).await?;
        client.flush().await
    })
    .await;
}

/// Runs a session until either side ends; returns why. `pending` holds client bytes that
/// arrived with the handshake.
pub async fn run<C>(
    client: Client<C>,
    pending: Bytes,
    target: TargetStream,
    stats: Arc<SessionStats>,
    metrics: Arc<Metrics>,
    params: Params,
    shutdown: CancellationToken,
) -> End
where
    C: AsyncRead + AsyncWrite + Send + Unpin,
{
    match client {
        Client::Tcp(s) => {
            let (cr, cw) = s.into_split();
            run_halves(cr, cw, pending, target, stats, metrics, params, shutdown).await
        }
        Client::Other(c) => {
            let (cr, cw) = tokio::io::split(c);
            run_halves(cr, cw, pending, target, stats, metrics, params, shutdown).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_halves<R, W>(
    mut cr: R,
    mut cw: W,
    pending: Bytes,
    target: TargetStream,
    stats: Arc<SessionStats>,
    metrics: Arc<Metrics>,
    params: Params,
    shutdown: CancellationToken,
) -> End
where
    R: AsyncRead + Unpin,
    W: ClientSink,
{
    let (tr, mut tw) = match target {
        TargetStream::Tcp(s) => {
            let (r, w) = s.into_split();
            (TargetRead::Tcp(r), TargetWrite::Tcp(w))
        }
        TargetStream::Unix(s) => {
            let (r, w) = s.into_split();
            (TargetRead::Unix(r), TargetWrite::Unix(w))
        }
    };
    let (ctrl_tx, mut ctrl_rx) = mpsc::channel::<Ctrl>(4);
    let pinger = Pinger {
        start: Instant::now(),
        seq: AtomicU64::new(0),
        sent_us: AtomicU64::new(0),
    };
    let mut decoder = Decoder::new(params.max_frame);
    let mut cbuf = BytesMut::with_capacity(CLIENT_BUF.max(pending.len()));
    cbuf.extend_from_slice(&pending);
    let mut filter = if params.view_only {
        Some(ViewOnlyFilter::new())
    } else {
        params
            .gate
            .as_ref()
            .map(|g| ViewOnlyFilter::gated(g.allowed()))
    };

    let end = {
        let s2c = server_to_client(
            &tr,
            &mut cw,
            &mut ctrl_rx,
            &stats,
            &metrics,
            &params,
            &pinger,
            &shutdown,
        );
        let c2s = async {
            let end = client_to_server(
                &mut cr,
                &mut tw,
                &mut cbuf,
                &mut decoder,
                filter.as_mut(),
                params.gate.as_ref(),
                &ctrl_tx,
                &stats,
                &metrics,
                &pinger,
            )
            .await;
            // Hand the end to the writer so the close frame goes out on a frame boundary.
            let _ = ctrl_tx.send(Ctrl::End(end)).await;
            std::future::pending::<End>().await
        };
        tokio::select! {
            e = s2c => e,
            e = c2s => e,
        }
    };
    tw.shutdown().await;
    // We started the close: wait (briefly) for the client's close frame so that closing the
    // socket does not reset a connection whose close frame the browser has not read yet.
    if matches!(
        end,
        End::TargetClosed
            | End::TargetError(_)
            | End::Idle
            | End::Shutdown
            | End::Protocol(_)
            | End::LiveViewOff
    ) || matches!(end, End::Rfb(_))
    {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            let mut trash = [0u8; 4096];
            if matches!(end, End::Protocol(_)) {
                // The stream cannot be parsed any more: read until the client hangs up.
                while cr.read(&mut trash).await.unwrap_or(0) > 0 {}
                return;
            }
            loop {
                let mut done = false;
                let r = decoder.decode::<ProtocolError>(&mut cbuf, |e| {
                    done |= matches!(e, Event::Close(_));
                    Ok(())
                });
                if done || r.is_err() {
                    return;
                }
                cbuf.reserve(CLIENT_BUF);
                if cr.read_buf(&mut cbuf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        })
        .await;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, cw.shutdown()).await;
    if let Some(f) = &filter {
        let c = f.counts();
        stats.dropped_input.store(c.dropped_messages, Relaxed);
    }
    end
}

/// Writes one unmasked frame with a vectored write; `None` if it stalled past `deadline`.
async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    opcode: u8,
    payload: &[u8],
    deadline: Option<Duration>,
) -> Result<(), End> {
    let mut hdr = [0u8; 10];
    let n = ws::server_header(opcode, payload.len(), &mut hdr);
    let mut buf = Buf::chain(&hdr[..n], payload);
    let fut = async {
        w.write_all_buf(&mut buf).await?;
        w.flush().await
    };
    match deadline {
        Some(d) => match tokio::time::timeout(d, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::ClientGone { mid_frame: false }),
            Err(_) => Err(End::Stalled),
        },
        None => fut.await.map_err(|_| End::ClientGone { mid_frame: false }),
    }
}

#[allow(clippy::too_many_arguments)]
async fn server_to_client<W: ClientSink>(
    tr: &TargetRead,
    cw: &mut W,
    ctrl: &mut mpsc::Receiver<Ctrl>,
    stats: &SessionStats,
    metrics: &Metrics,
    params: &Params,
    pinger: &Pinger,
    shutdown: &CancellationToken,
) -> End {
    let deadline = params.idle_timeout;
    let period = match (params.heartbeat, params.idle_timeout) {
        (Some(h), _) => Some(h),
        (None, Some(i)) => Some((i / 4).max(Duration::from_millis(100))),
        (None, None) => None,
    };
    let mut tick = period.map(|p| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut live_view = params.live_view.clone();
    let mut buf = BytesMut::new();
    // Splice when both ends are TCP sockets; the pipe is made on the first data.
    let mut splice_ok = cw.tcp().is_some() && tr.tcp().is_some();
    let mut pipe: Option<Pipe> = None;
    let end = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break End::Shutdown,
            _ = async { match live_view.as_mut() { Some(l) => l.turned_off().await, None => std::future::pending().await } } => {
                break End::LiveViewOff;
            }
            c = ctrl.recv() => match c {
                Some(Ctrl::Pong(p)) => {
                    if let Err(e) = write_frame(cw, ws::OP_PONG, &p, deadline).await {
                        break e;
                    }
                }
                Some(Ctrl::End(e)) => break e,
                None => break End::ClientGone { mid_frame: false },
            },
            _ = async { match tick.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                let idle_ms = stats.elapsed_ms().saturating_sub(stats.last_rx_ms.load(Relaxed));
                if params.idle_timeout.is_some_and(|i| idle_ms > i.as_millis() as u64) {
                    break End::Idle;
                }
                if params.heartbeat.is_some() {
                    let seq = pinger.seq.fetch_add(1, Relaxed) + 1;
                    pinger.sent_us.store(pinger.start.elapsed().as_micros() as u64, Relaxed);
                    if let Err(e) = write_frame(cw, ws::OP_PING, &seq.to_be_bytes(), deadline).await {
                        break e;
                    }
                }
            }
            r = tr.readable() => {
                if let Err(e) = r {
                    break End::TargetError(e);
                }
                if splice_ok && pipe.is_none() {
                    pipe = Pipe::new();
                    splice_ok = pipe.is_some();
                }
                let r = match (&pipe, tr.tcp(), cw.tcp()) {
                    (Some(p), Some(t), Some(c)) if splice_ok => {
                        relay_ready_splice(t, c, p, stats, metrics, deadline).await
                    }
                    _ => relay_ready(tr, cw, &mut buf, stats, metrics, deadline).await,
                };
                if let Err(e) = r {
                    break e;
                }
            }
        }
    };
    if let Some((code, reason)) = end.close() {
        let mut p = Vec::with_capacity(2 + reason.len());
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(&reason.as_bytes()[..reason.len().min(120)]);
        let _ = write_frame(cw, ws::OP_CLOSE, &p, Some(CLOSE_WAIT)).await;
    }
    end
}

/// Reads what the target has ready (up to a few reads) and sends each read as one frame.
async fn relay_ready<W: AsyncWrite + Unpin>(
    tr: &TargetRead,
    cw: &mut W,
    buf: &mut BytesMut,
    stats: &SessionStats,
    metrics: &Metrics,
    deadline: Option<Duration>,
) -> Result<(), End> {
    for _ in 0..READS_PER_TURN {
        buf.reserve(READ_SIZE);
        match tr.try_read_buf(buf) {
            Ok(0) => return Err(End::TargetClosed),
            Ok(n) => {
                let payload = buf.split().freeze();
                write_frame(cw, ws::OP_BINARY, &payload, deadline).await?;
                drop(payload);
                stats.bytes_to_client.fetch_add(n as u64, Relaxed);
                stats.frames_to_client.fetch_add(1, Relaxed);
                metrics.bytes_to_client.fetch_add(n as u64, Relaxed);
                metrics.frames_to_client.fetch_add(1, Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Idle again: hold no buffer while waiting.
                *buf = BytesMut::new();
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(End::TargetError(e)),
        }
    }
    Ok(())
}

/// Splice path of [`relay_ready`]: moves what the target has ready into the pipe, writes a
/// frame header for exactly that many bytes, then splices the pipe into the client.
async fn relay_ready_splice(
    target: &TcpStream,
    client: &TcpStream,
    pipe: &Pipe,
    stats: &SessionStats,
    metrics: &Metrics,
    deadline: Option<Duration>,
) -> Result<(), End> {
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    for _ in 0..READS_PER_TURN {
        // The pipe is empty here, so EAGAIN can only mean the socket has nothing ready.
        let r = target.try_io(Interest::READABLE, || {
            splice(target, None, &pipe.w, None, pipe.size, flags).map_err(io::Error::from)
        });
        let n = match r {
            Ok(0) => return Err(End::TargetClosed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(End::TargetError(e)),
        };
        let mut hdr = [0u8; 10];
        let hl = ws::server_header(ws::OP_BINARY, n, &mut hdr);
        let fut = async {
            send_more(client, &hdr[..hl]).await?;
            let mut left = n;
            while left > 0 {
                let r = client.try_io(Interest::WRITABLE, || {
                    splice(&pipe.r, None, client, None, left, flags).map_err(io::Error::from)
                });
                match r {
                    Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                    Ok(k) => left -= k.min(left),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => client.writable().await?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        match deadline {
            Some(d) => match tokio::time::timeout(d, fut).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(End::ClientGone { mid_frame: false }),
                Err(_) => return Err(End::Stalled),
            },
            None => fut
                .await
                .map_err(|_| End::ClientGone { mid_frame: false })?,
        }
        stats.bytes_to_client.fetch_add(n as u64, Relaxed);
        stats.frames_to_client.fetch_add(1, Relaxed);
        metrics.bytes_to_client.fetch_add(n as u64, Relaxed);
        metrics.frames_to_client.fetch_add(1, Relaxed);
    }
    Ok(())
}

/// Writes all of `data` to the client with `MSG_MORE`, so the payload spliced right after it
/// leaves in the same segments.
async fn send_more(client: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let r = client.try_io(Interest::WRITABLE, || {
            let fd = client.as_fd().as_raw_fd();
            // SAFETY: `fd` is the client socket, open for as long as `client` is borrowed; the
            // pointer and length describe the live slice `data`.
            let n = unsafe {
                libc::send(
                    fd,
                    data.as_ptr().cast(),
                    data.len(),
                    libc::MSG_MORE | libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match r {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(k) => data = &data[k.min(data.len())..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => client.writable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn client_to_server<R: AsyncRead + Unpin>(
    cr: &mut R,
    tw: &mut TargetWrite,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
    mut filter: Option<&mut ViewOnlyFilter>,
    gate: Option<&InputGate>,
    ctrl: &mpsc::Sender<Ctrl>,
    stats: &SessionStats,
    metrics: &Metrics,
    pinger: &Pinger,
) -> End {
    let mut out = BytesMut::new();
    loop {
        if let (Some(f), Some(g)) = (filter.as_deref_mut(), gate) {
            let allow = g.allowed();
            if allow != f.allows_input() {
                tracing::info!(
                    session = stats.id,
                    input = allow,
                    "control lease changed: input {}",
                    if allow { "allowed again" } else { "dropped" }
                );
                f.set_allow_input(allow);
            }
        }
        let mut closed = None;
        let frames_before = decoder.frames;
        let mut data_bytes = 0u64;
        let r = decoder.decode::<Stop>(buf, |ev| {
            match ev {
                Event::Data(d) => {
                    data_bytes += d.len() as u64;
                    match filter.as_deref_mut() {
                        Some(f) => f.feed(d, &mut out).map_err(Stop::Rfb)?,
                        None => out.extend_from_slice(d),
                    }
                }
                Event::Ping(p) => {
                    // A client that floods pings faster than we answer just loses some pongs.
                    let _ = ctrl.try_send(Ctrl::Pong(Bytes::copy_from_slice(p)));
                }
                Event::Pong(p) => {
                    let seq = pinger.seq.load(Relaxed);
                    if seq > 0 && p == seq.to_be_bytes() {
                        let now = pinger.start.elapsed().as_micros() as u64;
                        stats.record_rtt(now.saturating_sub(pinger.sent_us.load(Relaxed)));
                    }
                }
                Event::Close(code) => closed = Some(code),
            }
            Ok(())
        });
        let frames = decoder.frames - frames_before;
        stats.frames_from_client.fetch_add(frames, Relaxed);
        stats.bytes_from_client.fetch_add(data_bytes, Relaxed);
        metrics.frames_from_client.fetch_add(frames, Relaxed);
        metrics.bytes_from_client.fetch_add(data_bytes, Relaxed);
        if let Some(f) = filter.as_deref() {
            let dropped = f.counts().dropped_messages;
            let before = stats.dropped_input.swap(dropped, Relaxed);
            metrics
                .dropped_input
                .fetch_add(dropped.saturating_sub(before), Relaxed);
        }
        // Forward what was accepted before any error, so the server sees a consistent prefix.
        if !out.is_empty() {
            if let Err(e) = tw.write_all(&out).await {
                return End::TargetError(e);
            }
            out.clear();
        }
        match r {
            Err(Stop::Protocol(e)) => return End::Protocol(e),
            Err(Stop::Rfb(e)) => return End::Rfb(e),
            Ok(_) => {}
        }
        if let Some(code) = closed {
            return End::ClientClosed(code);
        }
        if buf.capacity() - buf.len() < CLIENT_BUF / 4 {
            buf.reserve(CLIENT_BUF);
        }
        match cr.read_buf(buf).await {
            Ok(0) | Err(_) => {
                return End::ClientGone {
                    mid_frame: decoder.mid_frame() || !buf.is_empty(),
                };
            }
            Ok(_) => stats.touch_rx(),
        }
    }
}
