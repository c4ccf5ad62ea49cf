//! Waiting for the screen to settle: X Damage on the root window, on a dedicated X connection.
//!
//! [`crate::Desktop::settle`] returns once no significant damage (screen change) has been
//! reported for the quiet window, or at the cap. It runs on its own connection, on a blocking
//! thread, so it never holds up the owner thread: a quick screenshot or another desktop action
//! is not delayed by a settle in progress. One Damage object (report level BoundingBox) on the
//! root lives as long as the connection: creating one damages the whole window for every
//! damage client (the server asks the creator to repaint), which would make a VNC server
//! resend the screen, so it is not recreated per settle. A settle drops the events queued
//! since the last one, clears the region (DamageSubtract) and counts only events the server
//! generated after that (by sequence number), subtracting again after each so the next
//! change reports again. Between settles at most a few events queue: BoundingBox reports only
//! growth of the accumulated region.
//!
//! Tiny damage is ignored: a text caret blinking (Chrome: every 500 ms) repaints a thin
//! rectangle forever and would otherwise keep a page with a focused input from ever settling
//! (see [`is_small`]).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use x11rb::NONE;
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::Event;
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::xproto::Rectangle;
use x11rb::rust_connection::RustConnection;

use crate::Settle;
use crate::error::DesktopError;

/// Damage no wider than this (pixels) is ignored: a text caret (1–2 px wide in Chrome, whose
/// repaint rectangle is a few pixels wider) is never a change worth waiting for.
pub const SMALL_DAMAGE_WIDTH: u16 = 8;
/// Damage of at most this many pixels (e.g. 16×16) is ignored too: a caret in a large font,
/// or a blinking cursor block in a terminal.
pub const SMALL_DAMAGE_AREA: u32 = 256;

/// True for damage too small to wait for (see [`SMALL_DAMAGE_WIDTH`], [`SMALL_DAMAGE_AREA`]).
pub fn is_small(area: Rectangle) -> bool {
    area.width <= SMALL_DAMAGE_WIDTH
        || u32::from(area.width) * u32::from(area.height) <= SMALL_DAMAGE_AREA
}

/// The dedicated connection that watches root-window damage.
pub(crate) struct Watcher {
    conn: RustConnection,
    damage: u32,
}

impl Watcher {
    /// Connects (same display and cookie as the owner's connection) and checks DAMAGE ≥ 1.1.
    pub(crate) fn open(
        display: &str,
        xauthority: Option<&std::path::Path>,
    ) -> Result<Watcher, DesktopError> {
        let (conn, screen_num) = crate::owner::open_connection(display, xauthority)?;
        if conn
            .extension_information(damage::X11_EXTENSION_NAME)?
            .is_none()
        {
            return Err(DesktopError::MissingExtension {
                display: display.to_string(),
                name: "DAMAGE",
                needed_for: "waiting for the screen to settle",
            });
        }
        conn.damage_query_version(1, 1)?.reply()?;
        let root = conn
            .setup()
            .roots
            .get(screen_num)
            .ok_or_else(|| DesktopError::Protocol(format!("screen {screen_num} missing")))?
            .root;
        let damage = conn.generate_id()?;
        conn.damage_create(damage, root, damage::ReportLevel::BOUNDING_BOX)?
            .check()?;
        Ok(Watcher { conn, damage })
    }

    /// Drops every event already received (damage of earlier settles).
    fn drain(&self) -> Result<(), DesktopError> {
        while self.conn.poll_for_event()?.is_some() {}
        Ok(())
    }

    /// Waits until `deadline` for the connection to become readable.
    fn wait_readable(&self, deadline: Instant) -> Result<(), DesktopError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        // Round up so we never wake just before the deadline and spin.
        let ms = left.as_micros().div_ceil(1000).min(u128::from(u16::MAX)) as u16;
        let fd = self.conn.stream().as_fd();
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(DesktopError::ConnectionLost(format!("poll: {e}"))),
        }
    }

    /// See [`crate::Desktop::settle`]. Blocking.
    pub(crate) fn settle(
        &mut self,
        quiet: Duration,
        cap: Duration,
    ) -> Result<Settle, DesktopError> {
        let start = Instant::now();
        self.drain()?;
        let clear = self.conn.damage_subtract(self.damage, NONE, NONE)?;
        // Events the server generated before it processed this subtract carry an older
        // sequence number: damage from before the settle, queued or still in flight.
        let since = clear.sequence_number();
        drop(clear);
        self.conn.flush()?;
        self.watch(since, start, quiet, cap)
    }

    fn watch(
        &mut self,
        since: u64,
        start: Instant,
        quiet: Duration,
        cap: Duration,
    ) -> Result<Settle, DesktopError> {
        let deadline = start + cap;
        let mut last = start;
        let mut damage_events = 0u32;
        let mut ignored_events = 0u32;
        loop {
            while let Some((ev, seq)) = self.conn.poll_for_event_with_sequence()? {
                let Event::DamageNotify(n) = ev else {
                    continue;
                };
                if n.damage != self.damage || seq < since {
                    continue;
                }
                // Clear the region so the next change reports again (BoundingBox reports only
                // growth of the accumulated region).
                self.conn.damage_subtract(self.damage, NONE, NONE)?;
                self.conn.flush()?;
                if is_small(n.area) {
                    ignored_events += 1;
                } else {
                    damage_events += 1;
                    last = Instant::now();
                }
            }
            let now = Instant::now();
            let settled = last + quiet;
            if now >= settled || now >= deadline {
                return Ok(Settle {
                    waited: now - start,
                    damage_events,
                    ignored_events,
                    capped: now < settled,
                });
            }
            self.wait_readable(settled.min(deadline))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(width: u16, height: u16) -> Rectangle {
        Rectangle {
            x: 10,
            y: 10,
            width,
            height,
        }
    }

    #[test]
    fn carets_are_small_page_changes_are_not() {
        assert!(is_small(r(2, 40)), "a caret");
        assert!(is_small(r(8, 300)), "a thin line");
        assert!(is_small(r(16, 16)), "a tiny block");
        assert!(!is_small(r(9, 30)), "a glyph-sized change");
        assert!(!is_small(r(200, 20)), "a text line");
        assert!(!is_small(r(1280, 800)), "the whole screen");
    }
}
