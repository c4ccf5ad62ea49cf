//! Display resizing through RandR: a mode for the size (created if needed), the CRTC set to it,
//! the screen size changed, then the server's geometry checked.

use x11rb::CURRENT_TIME;
use x11rb::protocol::randr;
use x11rb::protocol::xproto::ConnectionExt as _;

use super::Owner;
use crate::Size;
use crate::error::DesktopError;

impl Owner {
    pub(super) fn resize(&mut self, width: u32, height: u32) -> Result<Size, DesktopError> {
        let fail = |reason: String| DesktopError::Resize {
            width,
            height,
            reason,
        };
        if !self.randr {
            return Err(DesktopError::MissingExtension {
                display: self.display.clone(),
                name: "RANDR",
                needed_for: "changing the display size",
            });
        }
        if self.size == (Size { width, height }) {
            return Ok(self.size);
        }
        let range = randr::get_screen_size_range(&*self.conn, self.root)?.reply()?;
        if width < u32::from(range.min_width)
            || height < u32::from(range.min_height)
            || width > u32::from(range.max_width)
            || height > u32::from(range.max_height)
        {
            return Err(fail(format!(
                "the server allows {}x{} to {}x{} (Xvfb cannot grow beyond the size it was started with)",
                range.min_width, range.min_height, range.max_width, range.max_height
            )));
        }
        let res = randr::get_screen_resources(&*self.conn, self.root)?.reply()?;
        let (Some(&output), Some(&crtc)) = (res.outputs.first(), res.crtcs.first()) else {
            return Err(fail("the server has no RandR output or CRTC".into()));
        };
        let out_info =
            randr::get_output_info(&*self.conn, output, res.config_timestamp)?.reply()?;
        let existing = res
            .modes
            .iter()
            .find(|m| u32::from(m.width) == width && u32::from(m.height) == height)
            .map(|m| m.id);
        let mode = match existing {
            Some(m) => m,
            None => {
                let name = format!("{width}x{height}");
                let info = randr::ModeInfo {
                    id: 0,
                    width: width as u16,
                    height: height as u16,
                    dot_clock: width * height * 60,
                    hsync_start: width as u16,
                    hsync_end: width as u16,
                    htotal: width as u16,
                    hskew: 0,
                    vsync_start: height as u16,
                    vsync_end: height as u16,
                    vtotal: height as u16,
                    name_len: name.len() as u16,
                    mode_flags: randr::ModeFlag::default(),
                };
                randr::create_mode(&*self.conn, self.root, info, name.as_bytes())?
                    .reply()
                    .map_err(|e| fail(format!("CreateMode: {e}")))?
                    .mode
            }
        };
        if !out_info.modes.contains(&mode) {
            randr::add_output_mode(&*self.conn, output, mode)?
                .check()
                .map_err(|e| fail(format!("AddOutputMode: {e}")))?;
        }
        let mm = |px: u32| (f64::from(px) * 25.4 / 96.0).round() as u32;
        let grow = width > self.size.width || height > self.size.height;
        let set_size = |s: &Self| -> Result<(), DesktopError> {
            randr::set_screen_size(
                &*s.conn,
                s.root,
                width as u16,
                height as u16,
                mm(width),
                mm(height),
            )?
            .check()
            .map_err(|e| fail(format!("SetScreenSize: {e}")))
        };
        if grow {
            // The screen must hold the current CRTC while it changes: grow to the union first.
            let (uw, uh) = (width.max(self.size.width), height.max(self.size.height));
            randr::set_screen_size(&*self.conn, self.root, uw as u16, uh as u16, mm(uw), mm(uh))?
                .check()
                .map_err(|e| fail(format!("SetScreenSize: {e}")))?;
        }
        let r = randr::set_crtc_config(
            &*self.conn,
            crtc,
            CURRENT_TIME,
            res.config_timestamp,
            0,
            0,
            mode,
            randr::Rotation::ROTATE0,
            &[output],
        )?
        .reply()
        .map_err(|e| fail(format!("SetCrtcConfig: {e}")))?;
        if r.status != randr::SetConfig::SUCCESS {
            return Err(fail(format!("SetCrtcConfig status {:?}", r.status)));
        }
        set_size(self)?;
        self.sync()?;
        let geo = self.conn.get_geometry(self.root)?.reply()?;
        self.size = Size {
            width: u32::from(geo.width),
            height: u32::from(geo.height),
        };
        self.shm = None;
        if self.size != (Size { width, height }) {
            return Err(fail(format!(
                "the server reports {}x{} after the change",
                self.size.width, self.size.height
            )));
        }
        Ok(self.size)
    }
}
