//! Pixel work for screenshots: BGRX buffers, box-filter scaling, PNG/JPEG/WebP encoding.

use crate::error::DesktopError;
use crate::{ImageFormat, Size};

/// Raw captured pixels: 4 bytes per pixel in X's little-endian 24-bit order (B, G, R, unused).
#[derive(Clone, PartialEq, Eq)]
pub struct RawImage {
    pub width: u32,
    pub height: u32,
    /// `width * height * 4` bytes, rows top to bottom, no padding.
    pub bgrx: Vec<u8>,
}

impl std::fmt::Debug for RawImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawImage")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl RawImage {
    /// The (r, g, b) of pixel `(x, y)`; `None` outside the image.
    pub fn rgb_at(&self, x: u32, y: u32) -> Option<(u8, u8, u8)> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = ((y as usize) * (self.width as usize) + x as usize) * 4;
        Some((self.bgrx[i + 2], self.bgrx[i + 1], self.bgrx[i]))
    }
}

/// Converts BGRX to packed RGB (3 bytes per pixel).
#[doc(hidden)]
pub fn bgrx_to_rgb(src: &[u8]) -> Vec<u8> {
    let n = src.len() / 4;
    let mut out = vec![0u8; n * 3];
    // Four pixels at a time: 16 bytes in, 12 out; the compiler keeps this in registers.
    let mut s4 = src.chunks_exact(16);
    let mut d4 = out.chunks_exact_mut(12);
    for (s, d) in (&mut s4).zip(&mut d4) {
        for p in 0..4 {
            d[p * 3] = s[p * 4 + 2];
            d[p * 3 + 1] = s[p * 4 + 1];
            d[p * 3 + 2] = s[p * 4];
        }
    }
    for (s, d) in s4
        .remainder()
        .chunks_exact(4)
        .zip(d4.into_remainder().chunks_exact_mut(3))
    {
        d[0] = s[2];
        d[1] = s[1];
        d[2] = s[0];
    }
    out
}

/// Fixed-point weight scale: weights of one output pixel sum to 256, so two 8-bit channels
/// multiplied by a weight fit side by side in one u32 (16 bits each) without overflow.
const WONE: u32 = 256;

/// Resampling taps: output `o` reads `len[o]` source pixels from `first[o]` with the weights
/// `weights[off[o]..off[o] + len[o]]` (box / area-average filter).
struct Taps {
    first: Vec<usize>,
    off: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<u32>,
}

fn box_taps(src: u32, dst: u32) -> Taps {
    let (src, dst) = (u64::from(src), u64::from(dst));
    let mut t = Taps {
        first: Vec::with_capacity(dst as usize),
        off: Vec::with_capacity(dst as usize),
        len: Vec::with_capacity(dst as usize),
        weights: Vec::new(),
    };
    for o in 0..dst {
        // Output o covers [o*src, (o+1)*src) in units where a source pixel is `dst` wide.
        let lo = o * src;
        let hi = (o + 1) * src;
        let first = lo / dst;
        let last = (hi - 1) / dst;
        // Cumulative rounding: each weight is the rounded coverage up to its right edge minus
        // that up to its left edge, so weights sum to exactly WONE and errors do not pile up.
        let cum = |edge: u64| -> u32 {
            ((edge.clamp(lo, hi) - lo) * u64::from(WONE) * 2 + src).div_euclid(2 * src) as u32
        };
        let w: Vec<u32> = (first..=last)
            .map(|i| cum((i + 1) * dst) - cum(i * dst))
            .collect();
        t.first.push(first as usize);
        t.off.push(t.weights.len());
        t.len.push(w.len());
        t.weights.extend_from_slice(&w);
    }
    t
}

/// Weighted sums of B,R (`rb`) and G,X (`gx`) lanes back to one BGRX pixel.
#[inline(always)]
fn pack(rb: u32, gx: u32) -> u32 {
    (((rb + 0x0080_0080) >> 8) & 0x00ff_00ff) | ((gx + 0x0080_0080) & 0xff00_ff00)
}

/// Resizes BGRX pixels to `dst` with an area-averaging (box) filter: exact for downscaling
/// (every source pixel contributes by the area it covers), linear blending when upscaling.
/// Two channels are computed per 32-bit multiply (8-bit weights); AVX2 is used when present.
pub fn scale_bgrx(img: &RawImage, dst: Size) -> Result<RawImage, DesktopError> {
    if dst.width == 0 || dst.height == 0 || dst.width > 16384 || dst.height > 16384 {
        return Err(DesktopError::InvalidArgument(format!(
            "scale target {}x{} must be between 1x1 and 16384x16384",
            dst.width, dst.height
        )));
    }
    if img.width == 0 || img.height == 0 {
        return Err(DesktopError::InvalidArgument("empty image".into()));
    }
    if img.bgrx.len() != (img.width as usize) * (img.height as usize) * 4 {
        return Err(DesktopError::InvalidArgument(
            "pixel buffer size does not match".into(),
        ));
    }
    if dst.width == img.width && dst.height == img.height {
        return Ok(img.clone());
    }
    let src = &img.bgrx[..];
    let vt = box_taps(img.height, dst.height);
    let ht = box_taps(img.width, dst.width);
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above), the only requirement of
            // this target_feature function.
            let out = unsafe { scale_avx2(src, img.width as usize, dst, &vt, &ht) };
            return Ok(out);
        }
    }
    Ok(scale_generic(src, img.width as usize, dst, &vt, &ht))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn scale_avx2(src: &[u8], sw: usize, dst: Size, vt: &Taps, ht: &Taps) -> RawImage {
    scale_generic(src, sw, dst, vt, ht)
}

/// Horizontal taps padded to a fixed count N (zero weights), start clamped so that
/// `start + N <= sw`: the inner loop has a constant trip count and no bounds surprises.
type Fixed<const N: usize> = Vec<(usize, [u32; N])>;

enum FixedTaps {
    Two(Fixed<2>),
    Three(Fixed<3>),
    Four(Fixed<4>),
    None,
}

impl FixedTaps {
    fn new(t: &Taps, sw: usize) -> FixedTaps {
        fn build<const N: usize>(t: &Taps, sw: usize) -> Fixed<N> {
            (0..t.first.len())
                .map(|o| {
                    let start = t.first[o].min(sw - N);
                    let mut w = [0u32; N];
                    for k in 0..t.len[o] {
                        w[t.first[o] - start + k] = t.weights[t.off[o] + k];
                    }
                    (start, w)
                })
                .collect()
        }
        let max = t.len.iter().copied().max().unwrap_or(0);
        match max {
            0..=2 if sw >= 2 => FixedTaps::Two(build::<2>(t, sw)),
            3 if sw >= 3 => FixedTaps::Three(build::<3>(t, sw)),
            4 if sw >= 4 => FixedTaps::Four(build::<4>(t, sw)),
            _ => FixedTaps::None,
        }
    }
}

#[inline(always)]
fn hpass<const N: usize>(mid: &[u32], out_row: &mut [u8], taps: &Fixed<N>) {
    for (o, (start, ws)) in out_row.chunks_exact_mut(4).zip(taps) {
        let src = &mid[*start..*start + N];
        let (mut a, mut b) = (0u32, 0u32);
        for k in 0..N {
            let p = src[k];
            a += (p & 0x00ff_00ff) * ws[k];
            b += ((p >> 8) & 0x00ff_00ff) * ws[k];
        }
        o.copy_from_slice(&(pack(a, b) | 0xff00_0000).to_le_bytes());
    }
}

#[inline(always)]
fn hpass_generic(mid: &[u32], out_row: &mut [u8], ht: &Taps) {
    for (ox, o) in out_row.chunks_exact_mut(4).enumerate() {
        let first = ht.first[ox];
        let ws = &ht.weights[ht.off[ox]..ht.off[ox] + ht.len[ox]];
        let taps = &mid[first..first + ws.len()];
        let (mut a, mut b) = (0u32, 0u32);
        for (&w, &p) in ws.iter().zip(taps) {
            a += (p & 0x00ff_00ff) * w;
            b += ((p >> 8) & 0x00ff_00ff) * w;
        }
        o.copy_from_slice(&(pack(a, b) | 0xff00_0000).to_le_bytes());
    }
}

#[inline(always)]
fn scale_generic(src: &[u8], sw: usize, dst: Size, vt: &Taps, ht: &Taps) -> RawImage {
    let dw = dst.width as usize;
    let dh = dst.height as usize;
    let mut out = vec![0u8; dw * dh * 4];
    let mut rb = vec![0u32; sw];
    let mut gx = vec![0u32; sw];
    let mut mid = vec![0u32; sw];
    let fixed = FixedTaps::new(ht, sw);
    for (oy, out_row) in out.chunks_exact_mut(dw * 4).enumerate() {
        // Vertical: weighted sum of the source rows this output row covers (vectorised).
        rb.fill(0);
        gx.fill(0);
        let ws = &vt.weights[vt.off[oy]..vt.off[oy] + vt.len[oy]];
        for (k, &w) in ws.iter().enumerate() {
            let y = vt.first[oy] + k;
            let row = &src[y * sw * 4..(y + 1) * sw * 4];
            for ((a, b), p) in rb.iter_mut().zip(gx.iter_mut()).zip(row.chunks_exact(4)) {
                let p = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                *a += (p & 0x00ff_00ff) * w;
                *b += ((p >> 8) & 0x00ff_00ff) * w;
            }
        }
        for ((m, &a), &b) in mid.iter_mut().zip(&rb).zip(&gx) {
            *m = pack(a, b);
        }
        // Horizontal: sw -> dw pixels.
        match &fixed {
            FixedTaps::Two(t) => hpass(&mid, out_row, t),
            FixedTaps::Three(t) => hpass(&mid, out_row, t),
            FixedTaps::Four(t) => hpass(&mid, out_row, t),
            FixedTaps::None => hpass_generic(&mid, out_row, ht),
        }
    }
    RawImage {
        width: dst.width,
        height: dst.height,
        bgrx: out,
    }
}

/// PNG with the given compression (the library uses [`png::Compression::Fast`]).
#[doc(hidden)]
pub fn encode_png(img: &RawImage, level: png::Compression) -> Result<Vec<u8>, DesktopError> {
    encode_png_with(img, |e| e.set_compression(level))
}

/// PNG with encoder settings applied by `tune` (benchmarks compare deflate levels).
#[doc(hidden)]
pub fn encode_png_with(
    img: &RawImage,
    tune: impl FnOnce(&mut png::Encoder<&mut Vec<u8>>),
) -> Result<Vec<u8>, DesktopError> {
    let rgb = bgrx_to_rgb(&img.bgrx);
    let mut out = Vec::with_capacity(rgb.len() / 4);
    let mut enc = png::Encoder::new(&mut out, img.width, img.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    tune(&mut enc);
    let mut w = enc
        .write_header()
        .map_err(|e| DesktopError::Encode(format!("png: {e}")))?;
    w.write_image_data(&rgb)
        .map_err(|e| DesktopError::Encode(format!("png: {e}")))?;
    w.finish()
        .map_err(|e| DesktopError::Encode(format!("png: {e}")))?;
    Ok(out)
}

fn encode_jpeg(img: &RawImage, quality: u8) -> Result<Vec<u8>, DesktopError> {
    if !(1..=100).contains(&quality) {
        return Err(DesktopError::InvalidArgument(format!(
            "JPEG quality {quality} must be 1-100"
        )));
    }
    let (w, h) = (
        u16::try_from(img.width).map_err(|_| DesktopError::Encode("JPEG width > 65535".into()))?,
        u16::try_from(img.height)
            .map_err(|_| DesktopError::Encode("JPEG height > 65535".into()))?,
    );
    let mut out = Vec::with_capacity(img.bgrx.len() / 16);
    // The X pad byte sits where jpeg-encoder expects alpha; JPEG ignores alpha.
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(&img.bgrx, w, h, jpeg_encoder::ColorType::Bgra)
        .map_err(|e| DesktopError::Encode(format!("jpeg: {e}")))?;
    Ok(out)
}

fn encode_webp(img: &RawImage) -> Result<Vec<u8>, DesktopError> {
    let rgb = bgrx_to_rgb(&img.bgrx);
    let mut out = Vec::with_capacity(rgb.len() / 4);
    image_webp::WebPEncoder::new(&mut out)
        .encode(&rgb, img.width, img.height, image_webp::ColorType::Rgb8)
        .map_err(|e| DesktopError::Encode(format!("webp: {e}")))?;
    Ok(out)
}

/// Encodes raw pixels in `format`.
pub fn encode(img: &RawImage, format: ImageFormat) -> Result<Vec<u8>, DesktopError> {
    if img.bgrx.len() != (img.width as usize) * (img.height as usize) * 4 {
        return Err(DesktopError::Encode(
            "pixel buffer size does not match".into(),
        ));
    }
    match format {
        ImageFormat::Png => encode_png(img, png::Compression::Fast),
        ImageFormat::Jpeg { quality } => encode_jpeg(img, quality),
        ImageFormat::Webp => encode_webp(img),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32, mut f: impl FnMut(u32, u32) -> [u8; 3]) -> RawImage {
        let mut bgrx = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let [r, g, b] = f(x, y);
                bgrx.extend_from_slice(&[b, g, r, 0]);
            }
        }
        RawImage {
            width: w,
            height: h,
            bgrx,
        }
    }

    #[test]
    fn taps_sum_to_one() {
        for (s, d) in [(1280, 1024), (800, 768), (10, 3), (3, 10), (7, 7)] {
            let t = box_taps(s, d);
            for o in 0..d as usize {
                let w = &t.weights[t.off[o]..t.off[o] + t.len[o]];
                assert_eq!(w.iter().sum::<u32>(), WONE);
                assert!(t.first[o] + t.len[o] <= s as usize);
            }
        }
    }

    #[test]
    fn box_filter_averages_areas() {
        // 4x2 -> 2x1: each output averages a 2x2 block.
        let img = solid(4, 2, |x, _| if x < 2 { [200, 0, 0] } else { [0, 100, 50] });
        let out = scale_bgrx(
            &img,
            Size {
                width: 2,
                height: 1,
            },
        )
        .expect("scale");
        assert_eq!(out.rgb_at(0, 0), Some((200, 0, 0)));
        assert_eq!(out.rgb_at(1, 0), Some((0, 100, 50)));
        // checkerboard 2x2 -> 1x1 is the mean
        let img = solid(2, 2, |x, y| {
            if (x + y) % 2 == 0 {
                [255, 255, 255]
            } else {
                [1, 1, 1]
            }
        });
        let out = scale_bgrx(
            &img,
            Size {
                width: 1,
                height: 1,
            },
        )
        .expect("scale");
        assert_eq!(out.rgb_at(0, 0), Some((128, 128, 128)));
    }

    #[test]
    fn scaling_matches_a_float_reference() {
        // Pseudo-random image, compared with an exact area average computed in f64.
        let mut seed = 12345u32;
        let img = solid(37, 23, |_, _| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let v = seed.to_le_bytes();
            [v[1], v[2], v[3]]
        });
        for (dw, dh) in [(16, 9), (30, 20), (37, 11), (50, 40), (5, 23)] {
            let out = scale_bgrx(
                &img,
                Size {
                    width: dw,
                    height: dh,
                },
            )
            .expect("scale");
            for oy in 0..dh {
                for ox in 0..dw {
                    let (sx, sy) = (37.0 / f64::from(dw), 23.0 / f64::from(dh));
                    let mut acc = [0f64; 3];
                    for y in 0..23u32 {
                        for x in 0..37u32 {
                            let ow = (f64::from(x + 1).min(f64::from(ox + 1) * sx)
                                - f64::from(x).max(f64::from(ox) * sx))
                            .max(0.0);
                            let oh = (f64::from(y + 1).min(f64::from(oy + 1) * sy)
                                - f64::from(y).max(f64::from(oy) * sy))
                            .max(0.0);
                            let (r, g, b) = img.rgb_at(x, y).expect("px");
                            for (a, v) in acc.iter_mut().zip([r, g, b]) {
                                *a += f64::from(v) * ow * oh;
                            }
                        }
                    }
                    let got = out.rgb_at(ox, oy).expect("out");
                    for (a, v) in acc.iter().zip([got.0, got.1, got.2]) {
                        let want = a / (sx * sy);
                        assert!(
                            (want - f64::from(v)).abs() <= 3.0,
                            "{dw}x{dh} ({ox},{oy}): {want} vs {v}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rgb_conversion() {
        let img = solid(5, 1, |x, _| [x as u8, 10 + x as u8, 20 + x as u8]);
        let rgb = bgrx_to_rgb(&img.bgrx);
        assert_eq!(&rgb[12..15], &[4, 14, 24]);
        assert_eq!(&rgb[0..3], &[0, 10, 20]);
    }
}
