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

const WBITS: u32 = 14;
const WONE: u32 = 1 << WBITS;

/// For each output index: first source index and fixed-point weights (summing to `WONE`) of
/// the source pixels its area covers (box / area-average filter).
fn box_taps(src: u32, dst: u32) -> Vec<(usize, Vec<u32>)> {
    let (src, dst) = (u64::from(src), u64::from(dst));
    let mut taps = Vec::with_capacity(dst as usize);
    for o in 0..dst {
        // Output o covers [o*src, (o+1)*src) in units where a source pixel is `dst` wide.
        let lo = o * src;
        let hi = (o + 1) * src;
        let first = lo / dst;
        let last = (hi - 1) / dst;
        let mut w: Vec<u32> = (first..=last)
            .map(|i| {
                let a = lo.max(i * dst);
                let b = hi.min((i + 1) * dst);
                ((b - a) * u64::from(WONE) / src) as u32
            })
            .collect();
        let sum: u32 = w.iter().sum();
        if let Some(m) = w.iter_mut().max() {
            *m += WONE - sum;
        }
        taps.push((first as usize, w));
    }
    taps
}

/// Resizes BGRX pixels to `dst` with an area-averaging (box) filter: exact for downscaling
/// (every source pixel contributes by the area it covers), linear blending when upscaling.
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
    if dst.width == img.width && dst.height == img.height {
        return Ok(img.clone());
    }
    let sw = img.width as usize;
    let dw = dst.width as usize;
    let dh = dst.height as usize;
    let row_bytes = sw * 4;

    // Vertical pass first (rows are contiguous, the inner loop vectorises): sh rows -> dh rows.
    let vtaps = box_taps(img.height, dst.height);
    let mut mid = vec![0u8; dh * row_bytes];
    let mut acc = vec![0u32; row_bytes];
    for (oy, (first, weights)) in vtaps.iter().enumerate() {
        acc.iter_mut().for_each(|a| *a = WONE / 2);
        for (k, w) in weights.iter().enumerate() {
            let row = &img.bgrx[(first + k) * row_bytes..(first + k + 1) * row_bytes];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += u32::from(p) * w;
            }
        }
        let out = &mut mid[oy * row_bytes..(oy + 1) * row_bytes];
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = (a >> WBITS) as u8;
        }
    }

    // Horizontal pass: sw -> dw pixels per row.
    let htaps = box_taps(img.width, dst.width);
    let mut out = vec![0u8; dw * dh * 4];
    for (src_row, dst_row) in mid
        .chunks_exact(row_bytes)
        .zip(out.chunks_exact_mut(dw * 4))
    {
        for ((first, weights), px) in htaps.iter().zip(dst_row.chunks_exact_mut(4)) {
            let (mut b, mut g, mut r) = (WONE / 2, WONE / 2, WONE / 2);
            let base = first * 4;
            for (k, w) in weights.iter().enumerate() {
                let s = &src_row[base + k * 4..base + k * 4 + 3];
                b += u32::from(s[0]) * w;
                g += u32::from(s[1]) * w;
                r += u32::from(s[2]) * w;
            }
            px[0] = (b >> WBITS) as u8;
            px[1] = (g >> WBITS) as u8;
            px[2] = (r >> WBITS) as u8;
            px[3] = 0xff;
        }
    }
    Ok(RawImage {
        width: dst.width,
        height: dst.height,
        bgrx: out,
    })
}

/// PNG with the given compression (the library uses [`png::Compression::Fast`]).
#[doc(hidden)]
pub fn encode_png(img: &RawImage, level: png::Compression) -> Result<Vec<u8>, DesktopError> {
    let rgb = bgrx_to_rgb(&img.bgrx);
    let mut out = Vec::with_capacity(rgb.len() / 4);
    let mut enc = png::Encoder::new(&mut out, img.width, img.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(level);
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

    fn solid(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> RawImage {
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
            for (_, w) in box_taps(s, d) {
                assert_eq!(w.iter().sum::<u32>(), WONE);
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
    fn rgb_conversion() {
        let img = solid(5, 1, |x, _| [x as u8, 10 + x as u8, 20 + x as u8]);
        let rgb = bgrx_to_rgb(&img.bgrx);
        assert_eq!(&rgb[12..15], &[4, 14, 24]);
        assert_eq!(&rgb[0..3], &[0, 10, 20]);
    }
}
