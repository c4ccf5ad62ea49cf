//! Shared by the desktop tests: another X client's drawing, and an Xvfb with extra arguments.

#![allow(dead_code)]

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use zigral_tests::Xvfb;

/// Fills `r` of `drawable` with `pixel` (0xRRGGBB) through `gc`, then makes a round trip: the
/// server has drawn it (and reported any damage) when this returns.
pub fn fill(
    conn: &impl Connection,
    drawable: xproto::Drawable,
    gc: xproto::Gcontext,
    pixel: u32,
    r: xproto::Rectangle,
) {
    conn.change_gc(gc, &xproto::ChangeGCAux::new().foreground(pixel))
        .expect("change gc");
    conn.poly_fill_rectangle(drawable, gc, &[r]).expect("fill");
    conn.get_input_focus()
        .expect("sync")
        .reply()
        .expect("sync reply");
}

/// Starts a 320x240 Xvfb with extra arguments on a display it picks; the display's number.
pub fn xvfb_with(args: &[&str]) -> (Xvfb, u32) {
    let x = Xvfb::start_with(320, 240, args);
    let display = x.display;
    (x, display)
}
