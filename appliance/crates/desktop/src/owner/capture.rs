//! Screen capture: MIT-SHM grabs into a memfd segment (GetImage as the fallback), the pixel
//! format check, and the XFixes cursor overlay. Encoding happens off the owner thread.

use std::num::NonZeroUsize;
use std::ptr::NonNull;

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::{shm, xfixes};
use x11rb::rust_connection::RustConnection;

use super::Owner;
use crate::Rect;
use crate::encode::RawImage;
use crate::error::DesktopError;

/// A MIT-SHM segment backed by a memfd, mapped read-only here and attached to the server.
pub(super) struct ShmSeg {
    pub(super) seg: u32,
    map: NonNull<std::ffi::c_void>,
    len: usize,
}

impl ShmSeg {
    fn new(conn: &RustConnection, len: usize) -> Result<ShmSeg, DesktopError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            DesktopError::Protocol(format!("shared memory {what}: {e}"))
        };
        let size = NonZeroUsize::new(len).ok_or_else(|| err("size", &"zero"))?;
        let fd =
            nix::sys::memfd::memfd_create(c"zigral-shm", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .map_err(|e| err("memfd_create", &e))?;
        nix::unistd::ftruncate(&fd, len as i64).map_err(|e| err("ftruncate", &e))?;
        // SAFETY: we map a fresh memfd of exactly `len` bytes that nobody else maps in this
        // process; the mapping is unmapped in Drop and only read through `pixels`.
        let map = unsafe {
            nix::sys::mman::mmap(
                None,
                size,
                nix::sys::mman::ProtFlags::PROT_READ,
                nix::sys::mman::MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| err("mmap", &e))?;
        let mut me = ShmSeg { seg: 0, map, len };
        let seg = conn.generate_id().map_err(|e| err("id", &e))?;
        shm::attach_fd(conn, seg, fd, false)
            .map_err(|e| err("attach", &e))?
            .check()
            .map_err(|e| err("attach", &e))?;
        me.seg = seg;
        Ok(me)
    }

    /// The first `n` bytes of the segment.
    fn pixels(&self, n: usize) -> &[u8] {
        let n = n.min(self.len);
        // SAFETY: `map` points to `len` readable bytes for the lifetime of self; the server
        // writes into it only during a ShmGetImage, which has completed (we waited for its
        // reply) before this is called, and no other request targets this segment meanwhile.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<u8>(), n) }
    }
}

impl Drop for ShmSeg {
    fn drop(&mut self) {
        // SAFETY: `map`/`len` come from the successful mmap in `new`; no slice from `pixels`
        // outlives `&self`.
        let _ = unsafe { nix::sys::mman::munmap(self.map, self.len) };
    }
}

// SAFETY: the mapping is plain memory owned by this struct; it is only accessed from the
// thread that owns the ShmSeg (moved into the owner thread once).
unsafe impl Send for ShmSeg {}

impl Owner {
    pub(super) fn capture(
        &mut self,
        region: Option<Rect>,
        cursor: bool,
    ) -> Result<(RawImage, Rect), DesktopError> {
        self.pixfmt.clone().map_err(DesktopError::Unsupported)?;
        let r = region.unwrap_or(Rect {
            x: 0,
            y: 0,
            width: self.size.width,
            height: self.size.height,
        });
        let inside = r.x >= 0
            && r.y >= 0
            && r.width > 0
            && r.height > 0
            && i64::from(r.x) + i64::from(r.width) <= i64::from(self.size.width)
            && i64::from(r.y) + i64::from(r.height) <= i64::from(self.size.height);
        if !inside {
            return Err(DesktopError::OutOfBounds {
                what: "screenshot region",
                x: i64::from(r.x),
                y: i64::from(r.y),
                w: r.width,
                h: r.height,
                screen_w: self.size.width,
                screen_h: self.size.height,
            });
        }
        let n = (r.width as usize) * (r.height as usize) * 4;
        let mut bgrx = None;
        if self.shm_ok {
            match self.grab_shm(r, n) {
                Ok(v) => bgrx = Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "MIT-SHM capture failed; using GetImage from now on");
                    self.shm_ok = false;
                    self.shm = None;
                }
            }
        }
        let mut bgrx = match bgrx {
            Some(v) => v,
            None => {
                let rep = self
                    .conn
                    .get_image(
                        xproto::ImageFormat::Z_PIXMAP,
                        self.root,
                        r.x as i16,
                        r.y as i16,
                        r.width as u16,
                        r.height as u16,
                        !0,
                    )?
                    .reply()?;
                if rep.data.len() < n {
                    return Err(DesktopError::Protocol(format!(
                        "GetImage returned {} bytes, expected {n}",
                        rep.data.len()
                    )));
                }
                let mut d = rep.data;
                d.truncate(n);
                d
            }
        };
        if cursor {
            if self.xfixes {
                match self.conn_cursor() {
                    Ok(c) => overlay_cursor(&mut bgrx, r, &c),
                    Err(e) => tracing::warn!(error = %e, "cursor image unavailable"),
                }
            } else {
                tracing::warn!("cursor overlay requested but XFixes is absent");
            }
        }
        Ok((
            RawImage {
                width: r.width,
                height: r.height,
                bgrx,
            },
            r,
        ))
    }

    fn conn_cursor(&self) -> Result<xfixes::GetCursorImageReply, DesktopError> {
        Ok(xfixes::get_cursor_image(&*self.conn)?.reply()?)
    }

    fn grab_shm(&mut self, r: Rect, n: usize) -> Result<Vec<u8>, DesktopError> {
        if self.shm.as_ref().is_none_or(|s| s.len < n) {
            if let Some(old) = self.shm.take() {
                shm::detach(&*self.conn, old.seg)?;
            }
            // Room for the current full screen at least, so region sizes don't thrash.
            let full = (self.size.width as usize) * (self.size.height as usize) * 4;
            self.shm = Some(ShmSeg::new(&self.conn, n.max(full))?);
        }
        let seg = self
            .shm
            .as_ref()
            .ok_or_else(|| DesktopError::Protocol("no shm segment".into()))?;
        shm::get_image(
            &*self.conn,
            self.root,
            r.x as i16,
            r.y as i16,
            r.width as u16,
            r.height as u16,
            !0,
            xproto::ImageFormat::Z_PIXMAP.into(),
            seg.seg,
            0,
        )?
        .reply()?;
        Ok(seg.pixels(n).to_vec())
    }
}

/// Screenshots decode 24/32-bit TrueColor, 32 bits per pixel, LSB-first (B, G, R, X).
pub(super) fn pixel_format_ok(
    conn: &RustConnection,
    screen: &xproto::Screen,
) -> Result<(), String> {
    let setup = conn.setup();
    let depth = screen.root_depth;
    let fmt = setup.pixmap_formats.iter().find(|f| f.depth == depth);
    let visual = screen
        .allowed_depths
        .iter()
        .flat_map(|d| d.visuals.iter())
        .find(|v| v.visual_id == screen.root_visual);
    let ok = (depth == 24 || depth == 32)
        && fmt.is_some_and(|f| f.bits_per_pixel == 32)
        && setup.image_byte_order == xproto::ImageOrder::LSB_FIRST
        && visual.is_some_and(|v| {
            v.red_mask == 0x00ff_0000 && v.green_mask == 0x0000_ff00 && v.blue_mask == 0x0000_00ff
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "screen depth {depth} pixel format (only 24-bit TrueColor, 32 bpp, LSB first is decoded)"
        ))
    }
}

/// Alpha-blends XFixes' premultiplied ARGB cursor onto BGRX pixels of region `r`.
fn overlay_cursor(bgrx: &mut [u8], r: Rect, c: &xfixes::GetCursorImageReply) {
    let ox = i32::from(c.x) - i32::from(c.xhot) - r.x;
    let oy = i32::from(c.y) - i32::from(c.yhot) - r.y;
    let (cw, ch) = (i32::from(c.width), i32::from(c.height));
    for cy in 0..ch {
        let y = oy + cy;
        if y < 0 || y >= r.height as i32 {
            continue;
        }
        for cx in 0..cw {
            let x = ox + cx;
            if x < 0 || x >= r.width as i32 {
                continue;
            }
            let Some(&argb) = c.cursor_image.get((cy * cw + cx) as usize) else {
                continue;
            };
            let a = argb >> 24;
            if a == 0 {
                continue;
            }
            let i = ((y as usize) * (r.width as usize) + x as usize) * 4;
            let inv = 255 - a;
            for (k, shift) in [(0usize, 0u32), (1, 8), (2, 16)] {
                let s = (argb >> shift) & 0xff;
                let d = u32::from(bgrx[i + k]);
                bgrx[i + k] = (s + (d * inv + 127) / 255).min(255) as u8;
            }
        }
    }
}
